//! Language runtimes in each cgroup's processes (see [`crate::runtime`]): which runtime each
//! runs and its facts, read when the procfs collector re-read a cgroup's processes (its slow
//! cadence) for processes not seen before, and again every slow period for runtimes whose facts
//! include live figures (the JVM's heap). The largest process of a container near its limit also
//! has its malloc arenas read from `smaps` once a slow period. Nothing is read every sample: a
//! cgroup with nothing due keeps its last result. Data stores' settings (`crate::apps`) are read
//! once per process, from what the exec hook read where it saw the start.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{CollectError, Collector, CollectorId, SampleInput, SnapshotBuilder};
use crate::{
    Roots,
    apps::AppFacts,
    host::{cgroups::LimitWalk, procs},
    runtime::layout::{Breakdown, Facts as LayoutFacts},
    runtime::{self, Facts, MallocFacts, ProcessFacts, Reader, RuntimeId, Watcher},
};

/// A container at or above this share of its limit has its largest process's arenas read.
const NEAR_LIMIT: f64 = 0.8;
/// At most this many smaps reads a sample (each costs milliseconds for a large process).
const SMAPS_PER_SAMPLE: usize = 4;
/// Facts not yet settled (a JVM starting) are read again each sample, at most this often.
const UNSETTLED_RETRIES: u8 = 20;

/// One process as last read: who it is (pid and start time), its runtime and facts.
struct Known {
    start: u64,
    runtime: Option<RuntimeId>,
    facts: Option<Facts>,
    read_at: Instant,
    malloc: Option<(MallocFacts, Instant)>,
    retries: u8,
    /// Its application's settings (read once: they are the start's).
    app: Option<AppFacts>,
}

impl Known {
    fn unsettled(&self) -> bool {
        self.retries < UNSETTLED_RETRIES && self.facts.as_ref().is_some_and(|f| !runtime::get(f.runtime()).settled(f))
    }
}

pub struct Runtimes {
    slow: Duration,
    reader: Option<Reader>,
    /// The exec hook's reads, shared with the OOM stage: what a program was started with,
    /// where it rewrites its command line once it runs.
    watcher: Option<Arc<Watcher>>,
    known: HashMap<u32, Known>,
    /// Per cgroup id: its last result, and when a live refresh is next due (None: never).
    cgroups: HashMap<u64, (Arc<[ProcessFacts]>, Option<Instant>)>,
}

impl Runtimes {
    pub fn new(slow: Duration, watcher: Option<Arc<Watcher>>) -> Self {
        Runtimes { slow, reader: None, watcher, known: HashMap::new(), cgroups: HashMap::new() }
    }
}

impl Collector for Runtimes {
    fn id(&self) -> CollectorId {
        CollectorId::Runtimes
    }

    fn collect(&mut self, roots: &Roots, _: &SampleInput, out: &mut SnapshotBuilder) -> Result<(), CollectError> {
        let now = Instant::now();
        let reader = match &self.reader {
            Some(r) if r.procfs() == roots.procfs => self.reader.as_ref().expect("just seen"),
            _ => self.reader.insert(Reader::new(roots.procfs.clone())),
        };
        // Effective limits, parents first (the cgroups come in walk order).
        let mut limits = LimitWalk::with_capacity(out.cgroups.len());
        let mut smaps_left = SMAPS_PER_SAMPLE;
        let mut live_pids: HashSet<u32> = HashSet::new();
        let mut live_cgroups: HashSet<u64> = HashSet::with_capacity(out.cgroups.len());
        for i in 0..out.cgroups.len() {
            let cg = out.cgroups[i].clone();
            let limit = limits.visit(i, cg.parent.as_ref(), cg.own_limit);
            live_cgroups.insert(cg.id);
            let near = limit.is_some_and(|l| cg.usage as f64 >= NEAR_LIMIT * l as f64);
            let cached = self.cgroups.get(&cg.id);
            let due = cached.is_none_or(|(_, due)| due.is_some_and(|d| now >= d));
            if !(cg.pids_fresh || due || near && smaps_left > 0) {
                if let Some((arc, _)) = cached {
                    out.cgroups[i].runtimes = arc.clone();
                }
                live_pids.extend(cg.procs.iter().map(|p| p.pid));
                continue;
            }
            let largest = cg.procs.iter().max_by_key(|p| p.rss_pages).map(|p| p.pid).filter(|_| near);
            let mut facts = Vec::new();
            let mut next_due: Option<Instant> = None;
            for p in cg.procs.iter() {
                live_pids.insert(p.pid);
                let k = self.known.get_mut(&p.pid).filter(|k| k.start == p.start_ticks);
                let k = match k {
                    Some(k) => {
                        let live_due = k.runtime.is_some_and(|r| runtime::get(r).live()) && now.duration_since(k.read_at) >= self.slow;
                        if live_due || k.unsettled() {
                            if k.unsettled() {
                                k.retries += 1;
                            }
                            let fresh = match (&k.facts, k.unsettled()) {
                                (Some(f), false) => reader.refresh(p.pid, f),
                                _ => reader.read(p.pid, false).and_then(|r| r.facts),
                            };
                            if fresh.is_some() {
                                k.facts = fresh;
                            }
                            k.read_at = now;
                        }
                        k
                    }
                    None => {
                        let r = reader.read(p.pid, false);
                        let started = match (&self.watcher, &r) {
                            (Some(w), Some(r)) if r.app.is_some() => w.started(p.pid, r.exe),
                            _ => None,
                        };
                        let app = started.and_then(|s| s.app).or_else(|| r.as_ref().and_then(|r| r.app.clone()));
                        self.known
                            .entry(p.pid)
                            .insert_entry(Known {
                                start: p.start_ticks,
                                runtime: r.as_ref().and_then(|r| r.runtime),
                                facts: r.and_then(|r| r.facts),
                                read_at: now,
                                malloc: None,
                                retries: 0,
                                app,
                            })
                            .into_mut()
                    }
                };
                if Some(p.pid) == largest
                    && k.runtime != Some(RuntimeId::Go)
                    && smaps_left > 0
                    && k.malloc.as_ref().is_none_or(|(_, at)| now.duration_since(*at) >= self.slow)
                {
                    smaps_left -= 1;
                    k.malloc = malloc(&roots.procfs, p.pid).map(|m| (m, now));
                }
                if k.runtime.is_some_and(|r| runtime::get(r).live()) {
                    let due = if k.unsettled() { now } else { k.read_at + self.slow };
                    next_due = Some(next_due.map_or(due, |d| d.min(due)));
                }
                if k.facts.is_some() || k.malloc.is_some() || k.app.is_some() {
                    facts.push(ProcessFacts {
                        pid: p.pid,
                        comm: p.comm.to_string(),
                        runtime: k.facts.clone(),
                        malloc: k.malloc.as_ref().map(|(m, _)| m.clone()),
                        app: k.app.clone(),
                    });
                }
            }
            let arc: Arc<[ProcessFacts]> = facts.into();
            out.cgroups[i].runtimes = arc.clone();
            self.cgroups.insert(cg.id, (arc, next_due));
        }
        self.known.retain(|pid, _| live_pids.contains(pid));
        self.cgroups.retain(|id, _| live_cgroups.contains(id));
        Ok(())
    }
}

/// A process's malloc arenas, from its smaps.
fn malloc(procfs: &std::path::Path, pid: u32) -> Option<MallocFacts> {
    let maps = procs::smaps(procfs, pid)?;
    let exe = procs::exe_path(procfs, pid).map(|p| p.to_string_lossy().into_owned());
    let b = Breakdown::of(&maps, &LayoutFacts { exe, ..LayoutFacts::default() });
    let arena_max = runtime::env::read(procfs, pid).and_then(|e| e.get("MALLOC_ARENA_MAX").map(String::from));
    Some(MallocFacts::of(&b, arena_max))
}
