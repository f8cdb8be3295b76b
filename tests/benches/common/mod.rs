//! What the benchmarks share: the workspace, the release binary they run, the root check, a
//! process's RSS. Each bench is its own crate and uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Whether this runs as root; if not, says the bench is skipped and why (benches print
/// numbers and assert nothing, so a skip is the honest result without root).
pub(crate) fn root_or_skip(needs: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        println!("skipping: needs root to {needs}");
    }
    root
}

/// The release build of memwatch the benches run (`cargo build --release --bins`).
pub(crate) fn release_memwatch() -> PathBuf {
    let memwatch = workspace().join("target/release/memwatch");
    assert!(memwatch.exists(), "{} missing: cargo build --release --bins", memwatch.display());
    memwatch
}

/// `VmRSS` of a process in KiB; None when it is gone.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
}

/// `n` empty memory cgroups of the bench's own (`<memory root>/<name>/cNNNN`), removed when
/// dropped; `include` is the daemon's `--cgroups.include` for them.
pub(crate) struct CgroupTree {
    pub dir: PathBuf,
    pub include: String,
    n: usize,
}

impl CgroupTree {
    pub(crate) fn new(name: &str, n: usize) -> CgroupTree {
        let mode = memwatch::host::cgroup_mode(Path::new("/sys/fs/cgroup"));
        let root = mode.memory_root().expect("a memory controller").to_path_buf();
        let name = format!("{name}-{}", std::process::id());
        let tree = CgroupTree { dir: root.join(&name), include: format!("/{name}(/.*)?"), n };
        std::fs::create_dir(&tree.dir).unwrap();
        for i in 0..n {
            std::fs::create_dir(tree.dir.join(format!("c{i:04}"))).unwrap();
        }
        tree
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for i in 0..self.n {
            let _ = std::fs::remove_dir(self.dir.join(format!("c{i:04}")));
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
