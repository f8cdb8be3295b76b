//! What the OOM tracker asks of the host, as a small trait: the facts a kill's explanation needs
//! from `/proc` and cgroupfs, and the clock. [`Host`] reads them for real through the host
//! layer ([`crate::host`]) and the runtimes' [`Watcher`]; the tracker's unit tests answer from
//! fixture data.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::event::ProcessInfo;
pub use crate::parse::cgroup::MemoryStat;
use crate::{
    Roots,
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
    /// Whether it is its container's main process or a child of it.
    pub role: Option<super::event::VictimRole>,
}

pub trait World {
    /// What `/proc` says now of the process task `pid` belongs to, if it is still there.
    fn process(&self, pid: u32) -> Option<ProcFacts>;
    /// `pid`'s runtime facts, read now while it lives (fresh live figures), else as read when
    /// it started; None when no known runtime runs it.
    fn runtime(&self, pid: u32) -> Option<Facts>;
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

/// Whether the process `pid` (parent `ppid`, memory cgroup `cgroup`) is its container's main
/// process: pid 1 in its own pid namespace; or started from outside its container (the runtime's
/// shim, systemd: a container without a pid namespace of its own); or started by a runtime's
/// init that is itself the container's first. Else a child: the container lives on without it.
pub fn role(procfs: &std::path::Path, pid: u32, ppid: u32, cgroup: Option<&str>) -> Option<super::event::VictimRole> {
    use super::event::VictimRole;
    let (_, nspid) = procs::ids(procfs, pid)?;
    if nspid == 1 {
        return Some(VictimRole::Main);
    }
    let outside = |p: u32| p == 0 || procs::memory_cgroup(procfs, p).as_deref() != cgroup;
    if outside(ppid) {
        return Some(VictimRole::Main);
    }
    let parent = procs::stat(procfs, ppid)?;
    let parent_first = procs::ids(procfs, ppid).is_some_and(|(_, n)| n == 1) || outside(parent.ppid);
    Some(if INITS.contains(&&*parent.comm) && parent_first { VictimRole::Main } else { VictimRole::Child })
}

/// The real host, through its filesystem roots.
pub struct Host {
    roots: Roots,
    runtimes: Watcher,
    page_size: u64,
}

impl Host {
    pub fn new(roots: Roots) -> Self {
        Host { runtimes: Watcher::new(roots.procfs.clone()), roots, page_size: host::page_size() }
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
        let tgid = procs::tgid(procfs, pid).unwrap_or(pid);
        let stat = procs::stat(procfs, tgid).or_else(|| procs::stat(procfs, pid))?;
        let cgroup = procs::memory_cgroup(procfs, pid);
        let role = role(procfs, stat.pid, stat.ppid, cgroup.as_deref());
        Some(ProcFacts { info: self.info(stat), cgroup, role })
    }

    fn runtime(&self, pid: u32) -> Option<Facts> {
        self.runtimes.facts(pid)
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
