//! Which code faulted memory in: sampled user stacks at page faults, from the kernel's maps to
//! named frames, kept per container for OOM events, profiles and `memwatch top`.
//!
//! Apart, as in a profiler: the kernel side samples (`memwatch-ebpf/src/stacks.rs`);
//! [`Sampled`] is a raw record drained from its maps ([`crate::probes::stacks`]); [`resolve`] turns its addresses
//! into (object, file offset) frames while the process lives (a victim's maps are gone by the
//! time its event is built); [`symbolize`] names them on a thread of its own, cached per object;
//! [`Store`] keeps each container's recent stacks, bounded; [`profile`] writes them out (pprof,
//! folded stacks, an SVG flame graph, the JSON that events and `top` carry).
//!
//! When the sampler runs ([`crate::probes::stacks::Mode`]): `at-risk` (the default) attaches it
//! only while some container is at risk ([`crate::risk::at_risk`]) and counts only those;
//! `always`; `off`.

pub mod gopclntab;
pub mod profile;
pub mod resolve;
pub mod symbolize;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use crate::snapshot::Snapshot;
pub use resolve::{Frame, ObjectId};

/// A resolved stack, interned: frames leaf first.
pub type Stack = Arc<[Frame]>;

/// One container's samples of one stack over one drain.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Unix seconds of the drain (the samples are from the slow period before it).
    pub time: f64,
    pub tgid: u32,
    pub comm: Arc<str>,
    pub stack: Stack,
    pub samples: u64,
}

/// Entries kept per container, and in all (the oldest go first): an entry is one stack's
/// samples in one drain, so a container faulting under 10,000 distinct stacks in one slow
/// period keeps them all.
const PER_CONTAINER: usize = 16_384;
const TOTAL: usize = 65_536;
/// Distinct stacks interned at most; beyond it the table starts over (entries keep theirs).
const INTERNED: usize = 32_768;

/// Every container's recent stacks, bounded in age (`--history`) and count.
#[derive(Debug, Default)]
pub struct Store {
    by_cgroup: HashMap<u64, VecDeque<Entry>>,
    total: usize,
    /// Each distinct stack once, shared by its entries (looked up by its frames).
    interned: HashSet<Stack>,
    /// The sampling period and page size the samples were taken with.
    pub period: u64,
    pub page_size: u64,
    /// How long entries are kept (`--history`).
    pub keep_seconds: f64,
    /// Since when (Unix seconds) the sampler has counted each container without a break: those
    /// at risk, or asked for (`--record`), under `--stacks at-risk`.
    pub counted_since: HashMap<u64, f64>,
    /// Since when it has counted every container (`--stacks always`).
    pub all_since: Option<f64>,
}

impl Store {
    pub fn new(period: u64, page_size: u64, keep_seconds: f64) -> Store {
        Store { period, page_size, keep_seconds, ..Store::default() }
    }

    /// Whether container `id` has a stack kept from `since` (Unix seconds) on.
    pub fn has_since(&self, id: u64, since: f64) -> bool {
        self.by_cgroup.get(&id).is_some_and(|q| q.back().is_some_and(|e| e.time >= since))
    }

    fn intern(&mut self, frames: Vec<Frame>) -> Stack {
        if let Some(s) = self.interned.get(frames.as_slice()) {
            return s.clone();
        }
        if self.interned.len() >= INTERNED {
            self.interned.clear();
        }
        let s: Stack = Arc::from(frames);
        self.interned.insert(s.clone());
        s
    }

    /// Adds one resolved count of a drain; [`Store::prune`] once the drain is in.
    pub fn add(&mut self, time: f64, cgroup_id: u64, tgid: u32, comm: Arc<str>, frames: Vec<Frame>, samples: u64) {
        let stack = self.intern(frames);
        let q = self.by_cgroup.entry(cgroup_id).or_default();
        q.push_back(Entry { time, tgid, comm, stack, samples });
        self.total += 1;
        if q.len() > PER_CONTAINER {
            q.pop_front();
            self.total -= 1;
        }
    }

    /// Forgets entries older than `keep_seconds` and, past [`TOTAL`], the oldest.
    pub fn prune(&mut self, now: f64) {
        let keep = self.keep_seconds;
        let mut total = 0;
        self.by_cgroup.retain(|_, q| {
            while q.front().is_some_and(|e| now - e.time > keep) {
                q.pop_front();
            }
            total += q.len();
            !q.is_empty()
        });
        self.total = total;
        while self.total > TOTAL {
            let Some(oldest) =
                self.by_cgroup.iter().filter_map(|(id, q)| q.front().map(|e| (e.time, *id))).min_by(|a, b| a.0.total_cmp(&b.0))
            else {
                break;
            };
            if let Some(q) = self.by_cgroup.get_mut(&oldest.1) {
                q.pop_front();
                self.total -= 1;
            }
        }
    }

    /// The entries of the cgroups `ids` (a container and its descendants) since `since`,
    /// optionally of one process.
    pub fn entries(&self, ids: &[u64], since: f64, pid: Option<u32>) -> Vec<&Entry> {
        ids.iter()
            .filter_map(|id| self.by_cgroup.get(id))
            .flat_map(|q| q.iter())
            .filter(|e| e.time >= since && pid.is_none_or(|p| p == e.tgid))
            .collect()
    }

    /// Bytes a number of samples stands for: samples × period × page size.
    pub fn bytes(&self, samples: u64) -> u64 {
        samples.saturating_mul(self.period).saturating_mul(self.page_size)
    }

    /// Distinct stacks interned now (a bound on the store's memory).
    pub fn stacks(&self) -> usize {
        self.interned.len()
    }
}

/// The window before a kill an OOM event's stacks cover.
pub const EVENT_WINDOW: f64 = 30.0;

/// What an OOM event at `time` says of the stacks of cgroups `ids` (the container at its limit
/// and its descendants): those drained in the window before it (and the drain just after, which
/// holds the seconds before it), the victim's apart.
pub fn event_stacks(store: &Store, names: &symbolize::Names, ids: &[u64], time: f64, victim: Option<u32>) -> Option<profile::EventStacks> {
    let entries: Vec<&Entry> =
        store.entries(ids, time - EVENT_WINDOW, None).into_iter().filter(|e| e.time <= time + EVENT_WINDOW / 3.0).collect();
    profile::Profile::for_event(&entries, store.period, store.page_size, EVENT_WINDOW, victim, time, names)
}

impl Store {
    /// The sampler counts `ids` from `now` on (and no others): each keeps its start while it
    /// stays counted.
    pub fn counting(&mut self, ids: &HashSet<u64>, now: f64) {
        self.counted_since.retain(|id, _| ids.contains(id));
        for id in ids {
            self.counted_since.entry(*id).or_insert(now);
        }
    }

    /// Since when the sampler has counted all of `ids` (the latest start among them); None when
    /// it does not count some of them now.
    pub fn covered_since(&self, ids: &[u64]) -> Option<f64> {
        if let Some(t) = self.all_since {
            return Some(t);
        }
        ids.iter().map(|id| self.counted_since.get(id).copied()).try_fold(f64::MIN, |acc, t| t.map(|t| acc.max(t)))
    }
}

/// What a profile holds, said where it holds less than it was asked for: empty, or covering
/// only part of the time asked (`since`..`now`), and why.
pub fn coverage_note(samples: u64, covered_since: Option<f64>, since: f64, now: f64) -> Option<String> {
    let asked = now - since;
    match covered_since {
        None if samples == 0 => Some(format!(
            "no samples: the fault-stack sampler does not count this container now (under --stacks at-risk it counts only \
             containers at risk); record {asked:.0} s from now with --record {asked:.0}"
        )),
        None => Some(format!(
            "partial: the fault-stack sampler counted this container only part of the last {asked:.0} s (under --stacks at-risk it \
             counts only containers at risk); record from now with --record {asked:.0}"
        )),
        Some(t) if t > since + 1.0 => Some(format!(
            "partial: the fault-stack sampler has counted this container only for the last {:.0} s of the {asked:.0} s asked \
             (since {}){}",
            (now - t).max(0.0),
            crate::rfc3339(t),
            if samples == 0 { ", and saw no fault there yet" } else { "" }
        )),
        Some(_) if samples == 0 => Some(format!("no samples: the container faulted in no new memory in the last {asked:.0} s")),
        Some(_) => None,
    }
}

/// Which stacks a profile is of: a container (and the containers below it), or a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Container(String),
    Pid(u32),
}

impl Subject {
    /// A number is a process id; anything else names a container (`namespace/pod/container`,
    /// a pod's `namespace/pod`, or a cgroup path).
    pub fn parse(s: &str) -> Subject {
        match s.parse::<u32>() {
            Ok(pid) => Subject::Pid(pid),
            Err(_) => Subject::Container(s.to_string()),
        }
    }
}

/// A profile asked for a container the sample does not have.
#[derive(Debug, thiserror::Error)]
#[error("no container {0:?} (give namespace/pod/container, namespace/pod, a cgroup path, or a pid)")]
pub struct NoContainer(pub String);

/// The entries of a subject since `since`.
pub fn select<'a>(store: &'a Store, snap: &Snapshot, subject: &Subject, since: f64) -> Result<Vec<&'a Entry>, NoContainer> {
    match subject {
        Subject::Pid(pid) => Ok(store.by_cgroup.values().flat_map(|q| q.iter()).filter(|e| e.time >= since && e.tgid == *pid).collect()),
        Subject::Container(_) => Ok(store.entries(&subject_ids(snap, subject)?, since, None)),
    }
}

/// The memory cgroups a subject's stacks are counted in: a container's and those below it; a
/// process's own.
pub fn subject_ids(snap: &Snapshot, subject: &Subject) -> Result<Vec<u64>, NoContainer> {
    match subject {
        Subject::Pid(pid) => {
            let ids: Vec<u64> = snap.containers.iter().filter(|c| c.top_processes.iter().any(|p| p.pid == *pid)).map(|c| c.id).collect();
            Ok(ids)
        }
        Subject::Container(want) => {
            let matched: Vec<&crate::snapshot::Container> = snap.containers.iter().filter(|c| c.is_named(want)).collect();
            if matched.is_empty() {
                return Err(NoContainer(want.clone()));
            }
            let mut ids: Vec<u64> = Vec::new();
            for m in matched {
                let prefix = format!("{}/", m.cgroup.trim_end_matches('/'));
                ids.push(m.id);
                ids.extend(snap.containers.iter().filter(|c| c.cgroup.starts_with(&prefix)).map(|c| c.id));
            }
            ids.sort_unstable();
            ids.dedup();
            Ok(ids)
        }
    }
}

/// Each container's top `n` stacks since `since`, for `memwatch top`.
pub fn top_per_container(store: &Store, names: &symbolize::Names, since: f64, n: usize) -> HashMap<u64, Vec<profile::StackUse>> {
    store
        .by_cgroup
        .iter()
        .filter_map(|(id, q)| {
            let p = profile::Profile::of(q.iter().filter(|e| e.time >= since), store.period, store.page_size);
            (p.samples > 0).then(|| (*id, p.top(n, names)))
        })
        .collect()
}

/// The stage of the sample step that drains the sampler's maps, resolves what it drained while
/// the processes live, asks for names, and keeps the result.
pub struct Stage {
    maps: Option<crate::probes::stacks::StackMaps>,
    resolver: resolve::Resolver,
    symbolizer: Option<symbolize::Symbolizer>,
    pub store: Arc<std::sync::RwLock<Store>>,
    pub names: Arc<symbolize::Names>,
    slow: std::time::Duration,
    last: Option<std::time::Instant>,
}

impl Stage {
    /// Whether there is a sampler (its maps): with stacks off or no eBPF there is none.
    pub fn is_sampling(&self) -> bool {
        self.maps.is_some()
    }

    /// The sampler counts `ids` from `now` on (under `--stacks at-risk`): recorded for what
    /// profiles say they cover.
    pub fn counting(&self, ids: &HashSet<u64>, now: f64) {
        if self.maps.is_some() {
            self.store.write().unwrap_or_else(|e| e.into_inner()).counting(ids, now);
        }
    }

    /// With no maps (stacks off, or no eBPF) the stage does nothing and starts no thread.
    pub fn new(
        maps: Option<crate::probes::stacks::StackMaps>,
        procfs: std::path::PathBuf,
        slow: std::time::Duration,
        period: u64,
        page_size: u64,
        keep: std::time::Duration,
        always: bool,
    ) -> Stage {
        let symbolizer = maps.as_ref().map(|_| symbolize::Symbolizer::spawn());
        let names = symbolizer.as_ref().map(|s| s.names()).unwrap_or_default();
        let mut store = Store::new(period, page_size, keep.as_secs_f64());
        if always && maps.is_some() {
            store.all_since = Some(crate::unix_seconds(std::time::SystemTime::now()));
        }
        Stage {
            maps,
            resolver: resolve::Resolver::new(procfs),
            symbolizer,
            store: Arc::new(std::sync::RwLock::new(store)),
            names,
            slow,
            last: None,
        }
    }

    /// Drains when a slow period has passed since the last drain, or at once when `urgent`
    /// (a container at risk: its processes' maps are read while they live).
    pub fn drain_if_due(&mut self, now: std::time::Instant, wall: f64, urgent: bool) {
        if self.maps.is_some() && (urgent || self.last.is_none_or(|l| now.duration_since(l) >= self.slow)) {
            self.last = Some(now);
            self.drain(wall);
        }
    }

    /// Drains the maps now, stamping what was drained with `wall` (Unix seconds).
    pub fn drain(&mut self, wall: f64) {
        let Some(maps) = self.maps.as_mut() else { return };
        let drained = maps.drain();
        if drained.is_empty() {
            return;
        }
        let mut resolved = Vec::with_capacity(drained.len());
        for s in &drained {
            let (frames, comm) = self.resolver.resolve(s);
            resolved.push((s.cgroup_id, s.tgid, comm, frames, s.samples));
        }
        if let Some(sym) = self.symbolizer.as_mut() {
            sym.request(&self.resolver.objects, resolved.iter().flat_map(|r| r.3.iter()));
        }
        let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
        for (cgroup_id, tgid, comm, frames, samples) in resolved {
            store.add(wall, cgroup_id, tgid, comm, frames, samples);
        }
        store.prune(wall);
        drop(store);
        let procfs = self.resolver.procfs().to_path_buf();
        self.resolver.retain(|pid| crate::host::procs::dir(&procfs, pid).exists());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_profile_holds_is_said_where_it_is_less_than_asked() {
        let mut store = Store::new(64, 4096, 900.0);
        store.counting(&HashSet::from([1, 2]), 100.0);
        store.counting(&HashSet::from([1, 2, 3]), 110.0);
        assert_eq!(store.covered_since(&[1, 2]), Some(100.0), "counted without a break");
        assert_eq!(store.covered_since(&[1, 3]), Some(110.0), "the latest start of them");
        store.counting(&HashSet::from([3]), 120.0);
        assert_eq!(store.covered_since(&[1]), None, "no longer counted");
        // Not counted at all: it says so and how to record.
        let n = coverage_note(0, None, 90.0, 100.0).unwrap();
        assert!(
            n.starts_with("no samples: the fault-stack sampler does not count this container now") && n.ends_with("--record 10"),
            "{n}"
        );
        // Counted for the last 3 s of the 10 asked.
        let n = coverage_note(5, Some(97.0), 90.0, 100.0).unwrap();
        assert!(
            n.starts_with("partial: the fault-stack sampler has counted this container only for the last 3 s of the 10 s asked"),
            "{n}"
        );
        assert_eq!(coverage_note(5, Some(80.0), 90.0, 100.0), None, "all of it");
        store.all_since = Some(50.0);
        assert_eq!(store.covered_since(&[9]), Some(50.0), "--stacks always");
    }
    use resolve::ObjectId;

    fn frames(n: u64) -> Vec<Frame> {
        (0..3).map(|i| Frame { object: ObjectId(1), offset: n * 16 + i, main: true, jit: false }).collect()
    }

    #[test]
    fn a_stack_is_kept_once_and_entries_are_bounded_by_age_and_count() {
        let mut s = Store::new(64, 4096, 100.0);
        let comm: Arc<str> = Arc::from("app");
        for t in 0..3 {
            s.add(t as f64, 7, 1, comm.clone(), frames(1), 2);
        }
        s.prune(2.0);
        assert_eq!(s.stacks(), 1, "the same frames are one interned stack");
        let e = s.entries(&[7], 0.0, None);
        assert_eq!(e.len(), 3);
        assert!(Arc::ptr_eq(&e[0].stack, &e[2].stack));
        assert_eq!(s.entries(&[7], 1.0, Some(1)).len(), 2, "since and pid select");
        assert!(s.entries(&[7], 0.0, Some(2)).is_empty());
        // Older than keep_seconds: gone at the next prune.
        s.prune(101.5);
        assert_eq!(s.entries(&[7], 0.0, None).len(), 1);
        // One container keeps at most PER_CONTAINER entries, the newest.
        for n in 0..(PER_CONTAINER as u64 + 10) {
            s.add(200.0 + n as f64 / 1e6, 8, 1, comm.clone(), frames(n), 1);
        }
        s.prune(201.0);
        let e = s.entries(&[8], 0.0, None);
        assert_eq!(e.len(), PER_CONTAINER);
        assert_eq!(e[0].stack[0].offset, 10 * 16, "the oldest went first");
        // In all at most TOTAL, the oldest first across containers.
        for c in 0..=(TOTAL / PER_CONTAINER) as u64 {
            for n in 0..PER_CONTAINER as u64 {
                s.add(300.0 + c as f64, 100 + c, 1, comm.clone(), frames(n), 1);
            }
        }
        s.prune(320.0);
        assert_eq!(s.total, TOTAL);
        assert!(s.entries(&[8], 0.0, None).is_empty(), "older than keep_seconds");
        assert!(s.entries(&[100], 0.0, None).is_empty(), "past TOTAL the oldest went first");
        assert_eq!(s.entries(&[101], 0.0, None).len(), PER_CONTAINER);
        assert!(s.stacks() <= INTERNED);
    }
}
