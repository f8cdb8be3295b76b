//! What the OOM tracker asks of the host, as a small trait: the facts a kill's explanation needs
//! from `/proc` and cgroupfs, and the clock. [`Host`] reads them for real through the host
//! layer ([`crate::host`]) and the runtimes' [`Watcher`]; the tracker's unit tests answer from
//! fixture data.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use super::event::ProcessInfo;
pub use crate::parse::cgroup::MemoryStat;
use crate::{
    Roots,
    apps::AppFacts,
    host::{self, cgroups, procs},
    parse::proc::ProcStat,
    runtime::{Facts, Watcher},
};

/// A process as `/proc` shows it while it is still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFacts {
    /// The process (thread group) the task belongs to: the kernel names an OOM victim by the
    /// task it chose, which may be any thread of it (a JVM's "VM Periodic Task").
    pub info: ProcessInfo,
    /// Its memory cgroup's path (relative to the memory hierarchy's root).
    pub cgroup: Option<String>,
    /// Who its parent is (what tells its container's main process from a child).
    pub lineage: Lineage,
}

pub trait World {
    /// What `/proc` says now of the process task `pid` belongs to, if it is still there.
    fn process(&self, pid: u32) -> Option<ProcFacts>;
    /// `pid`'s runtime facts, read now while it lives (fresh live figures), else as read when
    /// it started; None when no known runtime runs it.
    fn runtime(&self, pid: u32) -> Option<Facts>;
    /// `pid`'s application settings (a data store's), as read when it started, else now.
    fn app(&self, _pid: u32) -> Option<AppFacts> {
        None
    }
    /// A program just started: read now, while it lives, what its kill would need later (its
    /// runtime facts), for a kill that comes before any sample sees it.
    fn exec(&self, _pid: u32) {}
    /// The path of the memory cgroup whose id is `id`, found by walking the hierarchy (for
    /// cgroups newer than the last sample).
    fn cgroup_path(&self, id: u64) -> Option<String>;
    /// (namespace, pod, container) of a container id from the kubelet's log layout, read now:
    /// for a container no sample saw (the kubelet wrote its log's name as it created it).
    fn kube_names(&self, _container_id: &str) -> Option<(String, String, String)> {
        None
    }
    /// (id, path) of the cgroup at `path` and of each ancestor, deepest first.
    fn ancestry(&self, path: &str) -> Vec<(u64, String)>;
    /// How often the cgroup at `path` hit its own limit, now.
    fn limit_events(&self, path: &str) -> Option<u64>;
    /// The parts of the memory of the cgroup at `path` (memory.stat), now.
    fn memory_parts(&self, path: &str) -> Option<MemoryStat>;
    /// Whether `memory.oom.group` is set on the cgroup at `path` (v2).
    fn oom_group(&self, _path: &str) -> bool {
        false
    }
    /// The processes of the cgroup at `path` now, largest RSS first, at most `max`.
    fn processes(&self, path: &str, max: usize) -> Vec<ProcessInfo>;
    /// Unix seconds now.
    fn wall_now(&self) -> f64;
    /// Unix seconds of an instant of CLOCK_BOOTTIME (how the kernel stamps its records).
    fn boot_to_wall(&self, boot_ns: u64) -> f64;
}

/// The programs container runtimes run as pid 1 to reap and forward signals; the process they
/// start is the container's main one.
const INITS: &[&str] = &["tini", "tini-static", "catatonit", "dumb-init", "docker-init"];

/// Who a process's parent is, read while both live: what tells a container's main process
/// from its children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lineage {
    /// Its pid in its own pid namespace.
    pub nspid: Option<u32>,
    /// Its parent's memory cgroup, comm and pid in its namespace; its grandparent's cgroup.
    pub parent_cgroup: Option<String>,
    pub parent_comm: Option<String>,
    pub parent_nspid: Option<u32>,
    pub grandparent_cgroup: Option<String>,
}

impl Lineage {
    /// `pid`'s (parent `ppid`), read now.
    pub fn read(procfs: &std::path::Path, pid: u32, ppid: u32) -> Lineage {
        let parent = (ppid != 0).then(|| procs::stat(procfs, ppid)).flatten();
        Lineage {
            nspid: procs::ids(procfs, pid).map(|(_, n)| n),
            parent_cgroup: (ppid != 0).then(|| procs::memory_cgroup(procfs, ppid)).flatten(),
            parent_comm: parent.as_ref().map(|p| p.comm.to_string()),
            parent_nspid: (ppid != 0).then(|| procs::ids(procfs, ppid).map(|(_, n)| n)).flatten(),
            grandparent_cgroup: parent.filter(|p| p.ppid != 0).and_then(|p| procs::memory_cgroup(procfs, p.ppid)),
        }
    }

    /// What the process was to its container at `cgroup` (pure): its main process when it is
    /// pid 1 in its own pid namespace, was started from outside the container (the runtime's
    /// shim, systemd: a container without a pid namespace of its own), or by a runtime's init
    /// that is itself the container's first; else a child of it. None when its parent was not
    /// read.
    pub fn role(&self, cgroup: &str) -> Option<super::event::VictimRole> {
        use super::event::VictimRole;
        if self.nspid == Some(1) {
            return Some(VictimRole::Main);
        }
        let parent = self.parent_cgroup.as_deref()?;
        if parent != cgroup {
            return Some(VictimRole::Main);
        }
        let init = self.parent_comm.as_deref().is_some_and(|c| INITS.contains(&c));
        let first = self.parent_nspid == Some(1) || self.grandparent_cgroup.as_deref().is_some_and(|g| g != cgroup);
        Some(if init && first { VictimRole::Main } else { VictimRole::Child })
    }
}

/// The real host, through its filesystem roots.
pub struct Host {
    roots: Roots,
    runtimes: Arc<Watcher>,
    page_size: u64,
}

impl Host {
    pub fn new(roots: Roots) -> Self {
        let w = Arc::new(Watcher::new(roots.procfs.clone()));
        Self::watching(roots, w)
    }

    /// A host whose programs' starts are read by `watcher`, shared with the sampler's runtimes
    /// collector.
    pub fn watching(roots: Roots, watcher: Arc<Watcher>) -> Self {
        Host { runtimes: watcher, roots, page_size: host::page_size() }
    }

    fn memory_root(&self) -> Option<(PathBuf, bool)> {
        let mode = host::cgroup_mode(&self.roots.cgroupfs);
        let v2 = mode.is_v2();
        mode.memory_root().map(|r| (r.to_path_buf(), v2))
    }

    fn dir(root: &Path, path: &str) -> PathBuf {
        root.join(path.trim_start_matches('/'))
    }

    fn info(&self, s: ProcStat) -> ProcessInfo {
        ProcessInfo { pid: s.pid, comm: s.comm.to_string(), vsz_bytes: s.vsize_bytes, rss_bytes: s.rss_pages * self.page_size }
    }
}

impl World for Host {
    fn process(&self, pid: u32) -> Option<ProcFacts> {
        let procfs = &self.roots.procfs;
        let cgroup = procs::memory_cgroup(procfs, pid);
        let tgid = procs::tgid(procfs, pid).unwrap_or(pid);
        let stat = procs::stat(procfs, tgid).or_else(|| procs::stat(procfs, pid))?;
        let lineage = Lineage::read(procfs, stat.pid, stat.ppid);
        Some(ProcFacts { info: self.info(stat), cgroup, lineage })
    }

    fn runtime(&self, pid: u32) -> Option<Facts> {
        self.runtimes.facts(pid)
    }

    fn app(&self, pid: u32) -> Option<AppFacts> {
        self.runtimes.app(pid)
    }

    fn exec(&self, pid: u32) {
        self.runtimes.exec(pid);
    }

    fn kube_names(&self, container_id: &str) -> Option<(String, String, String)> {
        let dir = std::fs::read_dir(self.roots.kubelet_logs.join("containers")).ok()?;
        dir.filter_map(Result::ok).find_map(|e| {
            let c = crate::parse::kubelet::container_log(e.file_name().to_str()?)?;
            (c.container_id == container_id).then_some((c.namespace, c.pod, c.container))
        })
    }

    fn cgroup_path(&self, id: u64) -> Option<String> {
        cgroups::find_by_id(&self.memory_root()?.0, id)
    }

    fn ancestry(&self, path: &str) -> Vec<(u64, String)> {
        self.memory_root().map(|(root, _)| cgroups::ancestry(&root, path)).unwrap_or_default()
    }

    fn limit_events(&self, path: &str) -> Option<u64> {
        let (root, v2) = self.memory_root()?;
        cgroups::limit_events(&Self::dir(&root, path), v2)
    }

    fn memory_parts(&self, path: &str) -> Option<MemoryStat> {
        let (root, v2) = self.memory_root()?;
        cgroups::memory_parts(&Self::dir(&root, path), v2)
    }

    fn oom_group(&self, path: &str) -> bool {
        self.memory_root().is_some_and(|(root, v2)| v2 && cgroups::oom_group(&Self::dir(&root, path)))
    }

    fn processes(&self, path: &str, max: usize) -> Vec<ProcessInfo> {
        let Some((root, _)) = self.memory_root() else { return vec![] };
        procs::of_cgroup(&self.roots.procfs, &Self::dir(&root, path), max).into_iter().map(|s| self.info(s)).collect()
    }

    fn wall_now(&self) -> f64 {
        crate::unix_seconds(SystemTime::now())
    }

    fn boot_to_wall(&self, boot_ns: u64) -> f64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into a valid timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let boot_now = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
        self.wall_now() - (boot_now - boot_ns as f64 / 1e9).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oom::event::VictimRole;

    #[test]
    fn main_or_child_by_lineage() {
        let c = "/kubepods/pod1/app";
        let l = |nspid, parent: &str, comm: &str, pn, gp: &str| Lineage {
            nspid,
            parent_cgroup: Some(parent.into()),
            parent_comm: Some(comm.into()),
            parent_nspid: pn,
            grandparent_cgroup: Some(gp.into()),
        };
        assert_eq!(l(Some(1), c, "x", None, "/").role(c), Some(VictimRole::Main), "pid 1 in its namespace");
        assert_eq!(
            l(Some(7), "/system.slice/containerd.service", "containerd-shim", None, "/").role(c),
            Some(VictimRole::Main),
            "started from outside"
        );
        assert_eq!(l(Some(7), c, "tini", Some(1), "/").role(c), Some(VictimRole::Main), "started by the runtime's init");
        assert_eq!(l(Some(9), c, "postgres", Some(1), "/").role(c), Some(VictimRole::Child), "a backend of the postmaster");
        assert_eq!(l(None, c, "postgres", None, c).role(c), Some(VictimRole::Child), "no pid namespace: its parent inside");
        assert_eq!(Lineage::default().role(c), None, "nothing read");
    }
}
