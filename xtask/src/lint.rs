//! `cargo xtask lint`: formatting and clippy with warnings as errors, on the host crates and on
//! the eBPF crate (for the BPF target, with Debian's toolchain, as memwatch/build.rs builds it).
use std::process::Command;

use crate::{layers, setup, util};

/// The layer check alone: every upward `use crate::` of the memwatch crate, named.
pub(crate) fn layers() -> anyhow::Result<()> {
    let src = util::workspace().join("memwatch/src");
    let files = layers::read_tree(&src)?;
    let v = layers::check(&files).map_err(anyhow::Error::msg)?;
    if !v.is_empty() {
        for x in &v {
            eprintln!("memwatch/src/{x}");
        }
        anyhow::bail!("{} import(s) point up the layers ({}); see CONTRIBUTING.md", v.len(), layers::describe());
    }
    eprintln!("layers: {} files, no upward import ({})", files.len(), layers::describe());
    Ok(())
}

pub(crate) fn run() -> anyhow::Result<()> {
    setup::run()?;
    layers()?;
    crate::docs::check()?;
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
