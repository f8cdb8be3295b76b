//! `cargo xtask soak`: set up, build in release mode, and run the soak benchmark
//! (`tests/benches/soak.rs`): the daemon against churn and scrapes, RSS and CPU over time.
use crate::{setup, util};

pub(crate) fn run(minutes: f64) -> anyhow::Result<()> {
    setup::run()?;
    util::run(util::cargo().args(["build", "--release", "--bins"]))?;
    util::run(util::cargo().args(["bench", "--package", "memwatch-tests", "--bench", "soak", "--"]).arg(minutes.to_string()))
}
