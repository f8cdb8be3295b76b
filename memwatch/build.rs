//! Builds the eBPF programs (memwatch-ebpf) for the BPF target with aya-build, using Debian's
//! Rust toolchain (linked into rustup as `debian-web`) and bpf-linker from `.tools/bin`.
//! `scripts/setup.sh` installs both.
use std::{env, path::PathBuf};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.parent().expect("workspace root").to_path_buf();
    let tools = root.join(".tools/bin");
    if tools.join("bpf-linker").exists() {
        let path = env::var_os("PATH").unwrap_or_default();
        let joined = env::join_paths(std::iter::once(tools).chain(env::split_paths(&path)))?;
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { env::set_var("PATH", joined) };
    } else if which("bpf-linker").is_none() && env::var_os("AYA_BUILD_SKIP").is_none() {
        anyhow::bail!(
            "bpf-linker not found in {} or on PATH: run scripts/setup.sh first (it installs the eBPF toolchain)",
            root.join(".tools/bin").display()
        );
    }
    println!("cargo:rerun-if-changed={}", root.join("memwatch-common/src").display());
    let ebpf_dir = root.join("memwatch-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package { name: "memwatch-ebpf", root_dir: ebpf_dir.to_str().expect("utf-8 path"), ..Default::default() }],
        aya_build::Toolchain::Custom("debian-web"),
    )
}

fn which(bin: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?).map(|d| d.join(bin)).find(|p| p.exists())
}
