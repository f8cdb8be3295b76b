//! `cargo xtask bench`: set up, build in release mode, and run the benchmarks (they print
//! numbers against a baseline measured in the same run; they assert nothing).
use crate::{setup, util};

pub(crate) fn run() -> anyhow::Result<()> {
    setup::run()?;
    util::run(util::cargo().args(["build", "--release", "--bins"]))?;
    // The kernel hooks' cost to the processes they watch, then the daemon's own cost.
    util::run(util::cargo().args(["bench", "--package", "memwatch-tests", "--bench", "overhead"]))?;
    util::run(util::cargo().args(["bench", "--package", "memwatch-tests", "--bench", "sample"]))?;
    // What the containers' history costs in memory at 1,000 containers.
    util::run(util::cargo().args(["bench", "--package", "memwatch-tests", "--bench", "history"]))?;
    // What 10,000 distinct fault stacks cost the daemon in memory.
    util::run(util::cargo().args(["bench", "--package", "memwatch-tests", "--bench", "stacks"]))?;
    // What TLS with client certificates and basic auth costs a scrape of 1,000 containers.
    util::run(util::cargo().args(["bench", "--package", "memwatch-tests", "--bench", "tls"]))?;
    // The web view at 1,000 containers: its size, first paint in Chromium, a polling browser's cost.
    util::run(util::cargo().args(["bench", "--package", "memwatch-tests", "--bench", "webview"]))?;
    // The warnings' precision and recall over the corpus of real software.
    util::run(util::cargo().args(["bench", "--package", "memwatch-tests", "--bench", "warnings"]))
}
