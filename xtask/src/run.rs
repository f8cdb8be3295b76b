//! `cargo xtask run`: set up, build in release mode, run the daemon in the foreground.
use std::process::Command;

use crate::{setup, util};

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    util::run(util::cargo().args(["build", "--release", "--package", "memwatch", "--bin", "memwatch"]))?;
    let bin = util::workspace().join("target/release/memwatch");
    let args: Vec<String> = if args.is_empty() { vec!["serve".into()] } else { args.to_vec() };
    util::run(Command::new(bin).args(args))
}
