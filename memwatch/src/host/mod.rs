//! What this host offers memwatch (kernel version, BTF, cgroup mode, PSI, page size), and the
//! lookups of its cgroups ([`cgroups`]) and processes ([`procs`]) that more than one stage
//! makes. Roots are parameters so the same code reads a host mount inside a container or a
//! fixture tree.

pub mod cgroups;
pub mod procs;

use std::{
    fs,
    path::{Path, PathBuf},
};

/// How cgroups are mounted, seen from the cgroupfs root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum CgroupMode {
    /// Pure cgroup v2 at the root.
    V2 { root: PathBuf },
    /// Memory controller on a v1 hierarchy and a v2 hierarchy beside it (systemd's hybrid).
    Hybrid { memory: PathBuf, unified: PathBuf },
    /// cgroup v1 only.
    V1 { memory: PathBuf },
    /// No memory controller found.
    None,
}

/// Which kind of cgroup setup a host has, without its paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    V2,
    Hybrid,
    V1,
    #[default]
    None,
}

impl CgroupMode {
    pub fn version(&self) -> CgroupVersion {
        match self {
            CgroupMode::V2 { .. } => CgroupVersion::V2,
            CgroupMode::Hybrid { .. } => CgroupVersion::Hybrid,
            CgroupMode::V1 { .. } => CgroupVersion::V1,
            CgroupMode::None => CgroupVersion::None,
        }
    }

    /// The hierarchy whose directories carry memory accounting.
    pub fn memory_root(&self) -> Option<&Path> {
        match self {
            CgroupMode::V2 { root } => Some(root),
            CgroupMode::Hybrid { memory, .. } | CgroupMode::V1 { memory } => Some(memory),
            CgroupMode::None => None,
        }
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, CgroupMode::V2 { .. })
    }

    pub fn label(&self) -> &'static str {
        match self {
            CgroupMode::V2 { .. } => "v2",
            CgroupMode::Hybrid { .. } => "hybrid",
            CgroupMode::V1 { .. } => "v1",
            CgroupMode::None => "none",
        }
    }
}

/// Decides the mode from which marker files exist under `root` (`/sys/fs/cgroup`).
pub fn cgroup_mode(root: &Path) -> CgroupMode {
    let v2_memory =
        fs::read_to_string(root.join("cgroup.controllers")).map(|c| c.split_whitespace().any(|x| x == "memory")).unwrap_or(false);
    if v2_memory {
        return CgroupMode::V2 { root: root.to_path_buf() };
    }
    let memory = root.join("memory");
    if memory.join("memory.usage_in_bytes").exists() {
        let unified = root.join("unified");
        return if unified.join("cgroup.controllers").exists() {
            CgroupMode::Hybrid { memory, unified }
        } else {
            CgroupMode::V1 { memory }
        };
    }
    CgroupMode::None
}

/// Whether pressure stall information is readable (absent or EOPNOTSUPP when PSI is off).
pub fn psi_available(procfs: &Path) -> bool {
    fs::read_to_string(procfs.join("pressure/memory")).is_ok()
}

pub fn kernel_release(procfs: &Path) -> Option<String> {
    fs::read_to_string(procfs.join("sys/kernel/osrelease")).ok().map(|s| s.trim().to_string())
}

/// (major, minor) of the running kernel.
pub fn kernel_version(procfs: &Path) -> Option<(u32, u32)> {
    parse_version(&kernel_release(procfs)?)
}

/// (major, minor) from a release string such as `6.1.0-27-amd64` or `5.10.226`.
pub fn parse_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub fn btf_available(sysfs: &Path) -> bool {
    sysfs.join("kernel/btf/vmlinux").exists()
}

/// The size of a memory page on this machine (4096 where sysconf cannot say).
/// Clock ticks a second, the unit of a process's start time in `/proc/<pid>/stat`.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as u64 } else { 100 }
}

/// Seconds since boot (CLOCK_BOOTTIME: the clock processes' start times count on).
pub fn boot_seconds() -> Option<f64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_version("6.1.0-27-amd64"), Some((6, 1)));
        assert_eq!(parse_version("5.10.226"), Some((5, 10)));
        assert_eq!(parse_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_version("garbage"), None);
    }

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        dir
    }

    #[test]
    fn detects_each_mode() {
        let v2 = tree(&[("cgroup.controllers", "cpuset cpu io memory pids\n")]);
        assert_eq!(cgroup_mode(v2.path()).label(), "v2");
        let hybrid = tree(&[("memory/memory.usage_in_bytes", "1\n"), ("unified/cgroup.controllers", "\n")]);
        assert_eq!(cgroup_mode(hybrid.path()).label(), "hybrid");
        assert_eq!(cgroup_mode(hybrid.path()).memory_root(), Some(hybrid.path().join("memory").as_path()));
        let v1 = tree(&[("memory/memory.usage_in_bytes", "1\n")]);
        assert_eq!(cgroup_mode(v1.path()).label(), "v1");
        // v2 without the memory controller enabled at the root is not a memory hierarchy.
        let v2_nomem = tree(&[("cgroup.controllers", "cpu io\n")]);
        assert_eq!(cgroup_mode(v2_nomem.path()), CgroupMode::None);
    }
}
