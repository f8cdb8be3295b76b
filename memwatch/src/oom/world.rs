//! What the OOM tracker asks of the host, as a small trait: the facts a kill's explanation needs
//! from `/proc` and cgroupfs, and the clock. [`Host`] reads them for real; the tracker's unit
//! tests answer from fixture data.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::event::ProcessInfo;
pub use crate::parse::cgroup::MemoryStat;
use crate::{Roots, collector::cgroupfs, host};

/// A process as `/proc` shows it while it is still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFacts {
    pub info: ProcessInfo,
    /// Its memory cgroup's path (relative to the memory hierarchy's root).
    pub cgroup: Option<String>,
}

/// A Go program's memory settings: the only two variables ever read from an environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoSettings {
    pub gomemlimit: Option<String>,
    pub gogc: Option<String>,
}

pub trait World {
    /// What `/proc` says of `pid` now, if it is still there.
    fn process(&self, pid: u32) -> Option<ProcFacts>;
    /// `pid`'s Go settings; None when it is not a Go program (or gone and never watched).
    fn go(&self, pid: u32) -> Option<GoSettings>;
    /// Reads now, while `pid` lives, what its kill would need later (its Go settings): for
    /// programs just started (`exec`: read again even if known), which may be killed before
    /// any sample sees them, and for processes a sample sees (read once).
    fn watch(&self, _pid: u32, _exec: bool) {}
    /// The path of the memory cgroup whose id is `id`, found by walking the hierarchy (for
    /// cgroups newer than the last sample).
    fn cgroup_path(&self, id: u64) -> Option<String>;
    /// (id, path) of the cgroup at `path` and of each ancestor, deepest first.
    fn ancestry(&self, path: &str) -> Vec<(u64, String)>;
    /// How often the cgroup at `path` hit its own limit, now.
    fn limit_events(&self, path: &str) -> Option<u64>;
    /// The parts of the memory of the cgroup at `path` (memory.stat), now.
    fn memory_parts(&self, path: &str) -> Option<MemoryStat>;
    /// The processes of the cgroup at `path` now, largest RSS first, at most `max`.
    fn processes(&self, path: &str, max: usize) -> Vec<ProcessInfo>;
    /// Unix seconds now.
    fn wall_now(&self) -> f64;
    /// Unix seconds of an instant of CLOCK_BOOTTIME (how the kernel stamps its records).
    fn boot_to_wall(&self, boot_ns: u64) -> f64;
}

/// The real host, through its filesystem roots.
pub struct Host {
    roots: Roots,
    watched: std::sync::Mutex<Watched>,
}

/// Processes at most remembered by [`Host::watch`], oldest forgotten first.
const WATCHED_PROCESSES: usize = 16384;
/// Executables at most remembered as Go or not.
const WATCHED_EXECUTABLES: usize = 4096;

/// What was read of watched processes: per pid, its executable (device, inode) and its Go
/// settings (None: not Go); per executable, whether it is Go.
#[derive(Default)]
struct Watched {
    pids: std::collections::HashMap<u32, ((u64, u64), Option<GoSettings>)>,
    order: std::collections::VecDeque<u32>,
    exes: std::collections::HashMap<(u64, u64), bool>,
}

impl Host {
    pub fn new(roots: Roots) -> Self {
        Host { roots, watched: Default::default() }
    }

    /// The (device, inode) of `pid`'s executable, while it lives.
    fn exe_id(&self, pid: u32) -> Option<(std::fs::File, (u64, u64))> {
        use std::os::unix::fs::MetadataExt;
        let f = std::fs::File::open(self.roots.procfs.join(format!("{pid}/exe"))).ok()?;
        let m = f.metadata().ok()?;
        let id = (m.dev(), m.ino());
        Some((f, id))
    }

    fn memory_root(&self) -> Option<(PathBuf, bool)> {
        let mode = host::cgroup_mode(&self.roots.cgroupfs);
        let v2 = mode.is_v2();
        mode.memory_root().map(|r| (r.to_path_buf(), v2))
    }

    fn dir(root: &Path, path: &str) -> PathBuf {
        root.join(path.trim_start_matches('/'))
    }
}

impl World for Host {
    fn process(&self, pid: u32) -> Option<ProcFacts> {
        let procfs = &self.roots.procfs;
        let stat = crate::parse::proc::stat(&std::fs::read_to_string(procfs.join(format!("{pid}/stat"))).ok()?)?;
        let cgroup =
            std::fs::read_to_string(procfs.join(format!("{pid}/cgroup"))).ok().and_then(|s| crate::parse::proc::memory_cgroup_path(&s));
        let info = ProcessInfo {
            pid,
            comm: stat.comm.to_string(),
            vsz_bytes: stat.vsize_bytes,
            rss_bytes: stat.rss_pages * crate::probes::page_size(),
        };
        Some(ProcFacts { info, cgroup })
    }

    fn go(&self, pid: u32) -> Option<GoSettings> {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((exe, go)) = watched.pids.get(&pid) {
            // Still the same program (or gone, and this is the last word on it).
            match self.exe_id(pid) {
                Some((_, id)) if id != *exe => {}
                _ => return go.clone(),
            }
        }
        drop(watched);
        crate::collector::procfs::go_info(&self.roots.procfs, pid).map(|(gomemlimit, gogc)| GoSettings { gomemlimit, gogc })
    }

    fn watch(&self, pid: u32, exec: bool) {
        if !exec && self.watched.lock().unwrap_or_else(|e| e.into_inner()).pids.contains_key(&pid) {
            return;
        }
        let Some((file, exe)) = self.exe_id(pid) else { return };
        let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let is_go = match w.exes.get(&exe) {
            Some(g) => *g,
            None => {
                let g = crate::collector::procfs::is_go_binary(&file);
                if w.exes.len() >= WATCHED_EXECUTABLES {
                    w.exes.clear();
                }
                w.exes.insert(exe, g);
                g
            }
        };
        let go = if is_go {
            crate::collector::procfs::go_env(&self.roots.procfs, pid).map(|(gomemlimit, gogc)| GoSettings { gomemlimit, gogc })
        } else {
            None
        };
        if w.pids.insert(pid, (exe, go)).is_none() {
            w.order.push_back(pid);
        }
        while w.order.len() > WATCHED_PROCESSES {
            if let Some(old) = w.order.pop_front() {
                w.pids.remove(&old);
            }
        }
    }

    fn cgroup_path(&self, id: u64) -> Option<String> {
        cgroupfs::find_by_id(&self.memory_root()?.0, id)
    }

    fn ancestry(&self, path: &str) -> Vec<(u64, String)> {
        self.memory_root().map(|(root, _)| cgroupfs::ancestry(&root, path)).unwrap_or_default()
    }

    fn limit_events(&self, path: &str) -> Option<u64> {
        let (root, v2) = self.memory_root()?;
        cgroupfs::limit_events(&Self::dir(&root, path), v2)
    }

    fn memory_parts(&self, path: &str) -> Option<MemoryStat> {
        let (root, v2) = self.memory_root()?;
        cgroupfs::memory_parts(&Self::dir(&root, path), v2)
    }

    fn processes(&self, path: &str, max: usize) -> Vec<ProcessInfo> {
        let Some((root, _)) = self.memory_root() else { return vec![] };
        let Ok(text) = std::fs::read_to_string(Self::dir(&root, path).join("cgroup.procs")) else { return vec![] };
        let mut procs: Vec<ProcessInfo> =
            crate::parse::cgroup::procs(&text).into_iter().take(10_000).filter_map(|pid| Some(self.process(pid)?.info)).collect();
        // A process that has exited (a zombie, as a victim is for a moment) has no memory.
        procs.retain(|p| p.vsz_bytes > 0);
        procs.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
        procs.truncate(max);
        procs
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
