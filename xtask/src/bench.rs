//! `cargo xtask bench [NAME]`: set up, build in release mode, and run the benchmarks, or one of
//! them (they print numbers against a baseline measured in the same run; they assert nothing).
use crate::{setup, util};

/// Every bench, in the order `cargo xtask bench` runs them:
/// - overhead: the kernel hooks' cost to the processes they watch; sample: the daemon's own;
/// - history: what the containers' history costs in memory at 1,000 containers;
/// - stacks: what 10,000 distinct fault stacks cost the daemon in memory;
/// - tls: what TLS with client certificates and basic auth costs a scrape of 1,000 containers;
/// - webview: the web view at 1,000 containers (size, first paint in Chromium, a polling
///   browser's cost);
/// - warnings: the warnings' precision and recall over the corpus of real software;
/// - rightsize: the replay of memory-limit rules (memwatch's, VPA's, KRR's) on real workloads.
const BENCHES: &[&str] = &["overhead", "sample", "history", "stacks", "tls", "webview", "warnings", "rightsize"];

pub(crate) fn run(name: Option<&str>) -> anyhow::Result<()> {
    if let Some(n) = name {
        anyhow::ensure!(BENCHES.contains(&n), "no bench {n:?}: one of {}", BENCHES.join(", "));
    }
    setup::run()?;
    util::run(util::cargo().args(["build", "--release", "--bins"]))?;
    for b in BENCHES.iter().filter(|b| name.is_none_or(|n| n == **b)) {
        util::run(util::cargo().args(["bench", "--package", "memwatch-tests", "--bench", b]))?;
    }
    Ok(())
}
