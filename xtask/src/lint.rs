//! `cargo xtask lint`: formatting and clippy with warnings as errors, on the host crates and on
//! the eBPF crate (for the BPF target, with Debian's toolchain, as memwatch/build.rs builds it).
use std::process::Command;

use crate::{setup, util};

pub(crate) fn run() -> anyhow::Result<()> {
    setup::run()?;
    util::run(util::cargo().args(["fmt", "--all", "--check"]))?;
    util::run(util::cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    let root = util::workspace();
    let path = std::env::join_paths(
        [root.join(".tools/bin"), "/usr/bin".into()]
            .into_iter()
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let mut ebpf = Command::new("/usr/bin/cargo");
    ebpf.current_dir(root.join("memwatch-ebpf")).env("PATH", path).env("RUSTC", "/usr/bin/rustc").env("RUSTC_BOOTSTRAP", "1").args([
        "clippy",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]);
    util::run(&mut ebpf)
}
