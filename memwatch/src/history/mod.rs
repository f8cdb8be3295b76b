//! Recent history of every exported container, at sample resolution, for a bounded window:
//! what an OOM event says grew before a kill, and what `/api/v1/trace` draws.
//!
//! Memory is the design constraint (1,000 containers × 15 minutes × several series). Each
//! series is stored change-only and delta-encoded: a point is written only when the value
//! differs from the sample before, as a varint of the sample-number gap and a zigzag varint of
//! the value's change, in chunks of [`CHUNK_POINTS`] points so whole chunks fall out of the
//! window. An idle container costs one point per series; a busy one a few bytes per series and
//! sample. Sample times are kept once for all containers. The largest processes of each
//! container are kept for a shorter window, at most every [`PROCESS_EVERY`].
//!
//! The crate `prometheus` has no history and a TSDB is far more than this needs; the encoding
//! is 60 lines here.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use crate::snapshot::{Container, Snapshot};

/// Points per chunk.
const CHUNK_POINTS: u32 = 64;
/// How far back the process lists go: enough for "what grew in the 30 s before the kill".
pub const PROCESS_WINDOW: Duration = Duration::from_secs(60);
/// At most one kept process list per container in this long (the newest always replaces the
/// last one within it).
pub const PROCESS_EVERY: Duration = Duration::from_secs(5);
/// Processes kept per container and list.
pub const PROCESSES_KEPT: usize = 5;
/// Containers no longer seen whose history is still kept (the most recently gone first): the
/// window alone bounds nothing on a node where thousands of cgroups come and go every second.
pub const DEPARTED_KEPT: usize = 1024;

/// The series kept per container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    WorkingSet,
    Usage,
    Anon,
    /// Page cache, shmem included.
    File,
    Shmem,
    Limit,
    Vsz,
    ProcessRss,
    /// Cumulative (rates are derived).
    PageFaults,
    /// Cumulative bytes mapped by mmap (anonymous and file), from the kernel side.
    MmapBytes,
}

impl Field {
    pub const ALL: [Field; 10] = [
        Field::WorkingSet,
        Field::Usage,
        Field::Anon,
        Field::File,
        Field::Shmem,
        Field::Limit,
        Field::Vsz,
        Field::ProcessRss,
        Field::PageFaults,
        Field::MmapBytes,
    ];

    fn of(self, c: &Container) -> Option<u64> {
        Some(match self {
            Field::WorkingSet => c.working_set_bytes,
            Field::Usage => c.usage_bytes,
            Field::Anon => c.rss_bytes,
            Field::File => c.cache_bytes,
            Field::Shmem => c.shmem_bytes,
            Field::Limit => c.limit_bytes,
            Field::Vsz => c.vsz_bytes,
            Field::ProcessRss => c.process_rss_bytes,
            Field::PageFaults => c.page_faults?,
            Field::MmapBytes => c.ebpf.map(|e| e.mmap_anon_bytes + e.mmap_file_bytes)?,
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// A run of points: the first in the clear, the rest as deltas from the one before.
#[derive(Debug, Clone)]
struct Chunk {
    first: (u64, u64),
    last: (u64, u64),
    points: u32,
    deltas: Vec<u8>,
}

impl Chunk {
    fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut pos = 0;
        let mut cur = self.first;
        let mut first = true;
        std::iter::from_fn(move || {
            if first {
                first = false;
                return Some(cur);
            }
            let gap = get_varint(&self.deltas, &mut pos)?;
            let z = get_varint(&self.deltas, &mut pos)?;
            let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
            cur = (cur.0 + gap, cur.1.wrapping_add(delta as u64));
            Some(cur)
        })
    }
}

/// One value over time: (sample number, value) points, written only on change.
#[derive(Debug, Clone, Default)]
struct Series {
    chunks: VecDeque<Chunk>,
}

impl Series {
    fn push(&mut self, n: u64, v: u64) {
        if let Some(c) = self.chunks.back_mut() {
            if c.last.1 == v {
                return;
            }
            if c.points < CHUNK_POINTS {
                let delta = v.wrapping_sub(c.last.1) as i64;
                put_varint(&mut c.deltas, n - c.last.0);
                put_varint(&mut c.deltas, ((delta << 1) ^ (delta >> 63)) as u64);
                c.last = (n, v);
                c.points += 1;
                return;
            }
            c.deltas.shrink_to_fit();
        }
        self.chunks.push_back(Chunk { first: (n, v), last: (n, v), points: 1, deltas: Vec::new() });
    }

    /// Drops chunks wholly before sample `n`, keeping the one whose value holds at `n`.
    fn trim(&mut self, n: u64) {
        while self.chunks.len() > 1 && self.chunks[1].first.0 <= n {
            self.chunks.pop_front();
        }
    }

    fn points(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.chunks.iter().flat_map(Chunk::iter)
    }

    /// The value holding at each of `ns` (ascending, none before `from`), walking the change
    /// points once.
    fn values_at<'a>(&'a self, from: u64, ns: impl Iterator<Item = u64> + 'a) -> impl Iterator<Item = Option<u64>> + 'a {
        let mut cur = self.at(from);
        let mut later = self.points().skip_while(move |(n, _)| *n <= from).peekable();
        ns.map(move |n| {
            while let Some((_, v)) = later.next_if(|(m, _)| *m <= n) {
                cur = Some(v);
            }
            cur
        })
    }

    /// The value at sample `n`: the last point at or before it.
    fn at(&self, n: u64) -> Option<u64> {
        let i = self.chunks.partition_point(|c| c.first.0 <= n);
        let chunk = self.chunks.get(i.checked_sub(1)?)?;
        chunk.iter().take_while(|(m, _)| *m <= n).last().map(|(_, v)| v)
    }

    fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * size_of::<Chunk>() + self.chunks.iter().map(|c| c.deltas.capacity()).sum::<usize>()
    }
}

/// A process as kept in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPoint {
    pub pid: u32,
    pub comm: Arc<str>,
    pub rss_bytes: u64,
}

/// One container's history.
#[derive(Debug, Clone)]
struct Track {
    name: Arc<str>,
    cgroup: Arc<str>,
    namespace: Arc<str>,
    pod: Arc<str>,
    container: Arc<str>,
    first_n: u64,
    last_n: u64,
    series: Vec<Series>,
    /// (sample number, its largest processes).
    processes: VecDeque<(u64, Arc<[ProcessPoint]>)>,
}

/// What one container looked like over a stretch of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerHistory {
    pub id: u64,
    /// `namespace/pod/container` where known, else the cgroup path.
    pub name: Arc<str>,
    pub cgroup: Arc<str>,
    pub namespace: Arc<str>,
    pub pod: Arc<str>,
    pub container: Arc<str>,
    /// Unix time of its first sample in the history (not necessarily its creation).
    pub first_seen: f64,
    /// Per sample in the stretch where the container existed: (Unix time, value of each
    /// [`Field::ALL`], None where not known).
    pub samples: Vec<(f64, [Option<u64>; Field::ALL.len()])>,
}

/// The history of all containers.
#[derive(Debug)]
pub struct History {
    window: Duration,
    /// Sample number of `times[0]`.
    base: u64,
    times: VecDeque<f64>,
    tracks: HashMap<u64, Track>,
}

/// The default window: 15 minutes.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);

impl Default for History {
    fn default() -> Self {
        History::new(DEFAULT_WINDOW)
    }
}

impl History {
    pub fn new(window: Duration) -> History {
        History { window, base: 0, times: VecDeque::new(), tracks: HashMap::new() }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// The number the next sample gets.
    fn next_n(&self) -> u64 {
        self.base + self.times.len() as u64
    }

    /// Takes in one sample.
    pub fn push(&mut self, snap: &Snapshot) {
        let t = crate::unix_seconds(snap.taken_at);
        let n = self.next_n();
        self.times.push_back(t);
        for c in snap.containers.iter() {
            let track = self.tracks.entry(c.id).or_insert_with(|| Track {
                name: c.display_name(),
                cgroup: c.cgroup.clone(),
                namespace: c.namespace.clone(),
                pod: c.pod.clone(),
                container: c.container.clone(),
                first_n: n,
                last_n: n,
                series: vec![Series::default(); Field::ALL.len()],
                processes: VecDeque::new(),
            });
            if !c.pod.is_empty() && track.pod.is_empty() {
                (track.name, track.namespace, track.pod, track.container) =
                    (c.display_name(), c.namespace.clone(), c.pod.clone(), c.container.clone());
            }
            track.last_n = n;
            for (s, f) in track.series.iter_mut().zip(Field::ALL) {
                // A value unknown in this sample holds the last one (the gap is not drawn).
                if let Some(v) = f.of(c) {
                    s.push(n, v);
                }
            }
            let procs: Arc<[ProcessPoint]> = c
                .top_processes
                .iter()
                .take(PROCESSES_KEPT)
                .map(|p| ProcessPoint { pid: p.pid, comm: p.comm.clone(), rss_bytes: p.rss_bytes })
                .collect();
            // Within PROCESS_EVERY of the list before it, the newest list replaces the last.
            let before_last = track.processes.len().checked_sub(2).map(|i| track.processes[i].0);
            let recent = before_last
                .and_then(|m| self.times.get(m.checked_sub(self.base)? as usize))
                .is_some_and(|when| t - when < PROCESS_EVERY.as_secs_f64());
            match track.processes.back_mut() {
                Some(last) if last.1 == procs => {}
                Some(last) if recent => *last = (n, procs),
                _ => track.processes.push_back((n, procs)),
            }
        }
        self.trim(t);
        self.forget_departed(n);
    }

    /// Keeps the histories of at most [`DEPARTED_KEPT`] containers not in sample `n`, those
    /// seen last most recently.
    fn forget_departed(&mut self, n: u64) {
        // Counted first: most samples are under the bound and need no list.
        if self.tracks.values().filter(|t| t.last_n < n).count() <= DEPARTED_KEPT {
            return;
        }
        let mut departed: Vec<(u64, u64)> = self.tracks.iter().filter(|(_, t)| t.last_n < n).map(|(id, t)| (t.last_n, *id)).collect();
        let drop = departed.len() - DEPARTED_KEPT;
        departed.select_nth_unstable(drop - 1);
        for (_, id) in &departed[..drop] {
            self.tracks.remove(id);
        }
        if self.tracks.capacity() > 2 * self.tracks.len().max(DEPARTED_KEPT) {
            self.tracks.shrink_to_fit();
        }
    }

    /// Forgets what is older than the window.
    fn trim(&mut self, now: f64) {
        let window = self.window.as_secs_f64();
        while self.times.front().is_some_and(|t| now - t > window) {
            self.times.pop_front();
            self.base += 1;
        }
        let base = self.base;
        let proc_from = self.times.partition_point(|t| now - t > PROCESS_WINDOW.as_secs_f64()) as u64 + base;
        self.tracks.retain(|_, tr| {
            if tr.last_n < base {
                return false;
            }
            for s in &mut tr.series {
                s.trim(base);
            }
            while tr.processes.len() > 1 && tr.processes[1].0 <= proc_from {
                tr.processes.pop_front();
            }
            true
        });
    }

    /// Unix time of sample `n`, if still kept.
    fn time(&self, n: u64) -> Option<f64> {
        self.times.get(n.checked_sub(self.base)? as usize).copied()
    }

    /// The first sample number at or after Unix time `t`.
    fn n_at_or_after(&self, t: f64) -> u64 {
        self.base + self.times.partition_point(|x| *x < t) as u64
    }

    /// Each container's samples from Unix time `since` on, of those `select` accepts (by id
    /// and name), ordered by name.
    pub fn range(&self, since: f64, select: impl Fn(u64, &str, &str) -> bool) -> Vec<ContainerHistory> {
        let from = self.n_at_or_after(since);
        let mut out: Vec<ContainerHistory> = self
            .tracks
            .iter()
            .filter(|(id, tr)| tr.last_n >= from && select(**id, &tr.name, &tr.cgroup))
            .map(|(id, tr)| self.history_of(*id, tr, from.max(tr.first_n), tr.last_n))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        out
    }

    fn history_of(&self, id: u64, tr: &Track, from: u64, to: u64) -> ContainerHistory {
        let mut samples: Vec<(f64, [Option<u64>; Field::ALL.len()])> =
            (from..=to).filter_map(|n| Some((self.time(n)?, [None; Field::ALL.len()]))).collect();
        for (f, s) in tr.series.iter().enumerate() {
            // Each sample gets the value holding then.
            for (k, v) in s.values_at(from, from..=to).enumerate() {
                if let Some(sample) = samples.get_mut(k) {
                    sample.1[f] = v;
                }
            }
        }
        ContainerHistory {
            id,
            name: tr.name.clone(),
            cgroup: tr.cgroup.clone(),
            namespace: tr.namespace.clone(),
            pod: tr.pod.clone(),
            container: tr.container.clone(),
            first_seen: self.time(tr.first_n).unwrap_or(0.0),
            samples,
        }
    }

    /// One field of every container from Unix time `since` on, at most `points` values each,
    /// evenly spaced by sample, oldest first: the web view's sparklines, without decoding the
    /// other series ([`History::range`] decodes them all).
    pub fn recent(&self, field: Field, since: f64, points: usize) -> HashMap<u64, Vec<u64>> {
        let f = Field::ALL.iter().position(|x| *x == field).expect("a field of ALL");
        let from = self.n_at_or_after(since);
        let points = points.max(2) as u64;
        self.tracks
            .iter()
            .filter(|(_, tr)| tr.last_n >= from)
            .map(|(id, tr)| {
                let (start, end) = (from.max(tr.first_n), tr.last_n);
                let step = (end - start + 1).div_ceil(points).max(1);
                // Every `step`-th sample from the first, and the last.
                let ns = (start..end).step_by(step as usize).chain(std::iter::once(end));
                (*id, tr.series[f].values_at(start, ns).flatten().collect())
            })
            .collect()
    }

    /// Unix time of the first sample that had container `id`, if it is in the history.
    pub fn first_seen(&self, id: u64) -> Option<f64> {
        let tr = self.tracks.get(&id)?;
        self.time(tr.first_n).or(self.times.front().copied())
    }

    /// Container `id`'s value of `field` in the last sample at or before Unix time `t`, with
    /// that sample's time.
    pub fn value_at(&self, id: u64, field: Field, t: f64) -> Option<(f64, u64)> {
        let tr = self.tracks.get(&id)?;
        // The last sample at or before `t` (exactly at: `t` is often a sample's own time, and at
        // Unix-time magnitudes an f64 cannot be nudged by a nanosecond).
        let n = (self.base + self.times.partition_point(|x| *x <= t) as u64).checked_sub(1)?.min(tr.last_n);
        if n < tr.first_n {
            return None;
        }
        let i = Field::ALL.iter().position(|f| *f == field)?;
        Some((self.time(n)?, tr.series[i].at(n)?))
    }

    /// Container `id`'s largest processes as kept last at or before Unix time `t`.
    pub fn processes_at(&self, id: u64, t: f64) -> Option<(f64, Arc<[ProcessPoint]>)> {
        let tr = self.tracks.get(&id)?;
        tr.processes.iter().rev().find_map(|(n, p)| {
            let when = self.time(*n)?;
            (when <= t).then(|| (when, p.clone()))
        })
    }

    /// An estimate of the heap this history holds, in bytes.
    pub fn heap_bytes(&self) -> usize {
        let per_track = |tr: &Track| {
            size_of::<Track>()
                + tr.series.capacity() * size_of::<Series>()
                + tr.series.iter().map(Series::heap_bytes).sum::<usize>()
                + tr.processes.capacity() * size_of::<(u64, Arc<[ProcessPoint]>)>()
                + tr.processes.iter().map(|(_, p)| p.len() * size_of::<ProcessPoint>() + 16).sum::<usize>()
        };
        self.times.capacity() * 8 + self.tracks.capacity() * (8 + size_of::<Track>()) + self.tracks.values().map(per_track).sum::<usize>()
    }

    pub fn containers(&self) -> usize {
        self.tracks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixture::{container, snapshot};

    fn with(id: u64, ws: u64) -> Container {
        let mut c = container(id, &format!("/c{id}"));
        c.working_set_bytes = ws;
        c
    }

    #[test]
    fn only_the_most_recently_departed_containers_are_kept() {
        let mut h = History::new(Duration::from_secs(100_000));
        // A long-lived container, and a new one every sample that is gone by the next.
        let total = DEPARTED_KEPT as u64 + 500;
        for i in 0..total {
            h.push(&snapshot(1000.0 + i as f64, vec![with(1, 5), with(100 + i, 7)]));
        }
        assert_eq!(h.containers(), 1 + DEPARTED_KEPT + 1, "the live two and the departed kept");
        assert!(h.first_seen(1).is_some(), "the live container stays");
        assert!(h.first_seen(100 + total - 2).is_some(), "the last departed stays");
        assert!(h.first_seen(100 + total - 1 - DEPARTED_KEPT as u64).is_some(), "the oldest kept");
        assert!(h.first_seen(100 + total - 2 - DEPARTED_KEPT as u64).is_none(), "one older is gone");
        assert!(h.first_seen(100).is_none());
    }

    #[test]
    fn varints_and_zigzag_round_trip_through_chunks() {
        let mut s = Series::default();
        let values = [5u64, 5, 7, 1 << 40, 0, 3, 3, 3, u64::MAX, 9];
        for (n, v) in values.iter().enumerate() {
            s.push(n as u64 + 10, *v);
        }
        let pts: Vec<_> = s.points().collect();
        assert_eq!(pts, [(10, 5), (12, 7), (13, 1 << 40), (14, 0), (15, 3), (18, u64::MAX), (19, 9)], "change only");
        assert_eq!((s.at(9), s.at(11), s.at(17), s.at(100)), (None, Some(5), Some(3), Some(9)));
        // Many points over several chunks, then trimming keeps the value that holds.
        let mut s = Series::default();
        for n in 0..1000u64 {
            s.push(n, n * 4096);
        }
        assert!(s.chunks.len() > 10);
        s.trim(500);
        assert_eq!(s.at(500), Some(500 * 4096));
        assert_eq!(s.at(999), Some(999 * 4096));
        assert!(s.points().next().unwrap().0 <= 500);
    }

    #[test]
    fn a_container_over_time_and_the_window() {
        let mut h = History::new(Duration::from_secs(10));
        for t in 0..20u64 {
            let mut cs = vec![with(1, 100 + t.min(5))];
            if t >= 15 {
                cs.push(with(2, 7));
            }
            h.push(&snapshot(1000.0 + t as f64, cs));
        }
        // The window is 10 s: samples from 1009 on.
        let all = h.range(0.0, |_, _, _| true);
        assert_eq!(all.len(), 2);
        let one = &all[0];
        assert_eq!(one.samples.first().unwrap().0, 1009.0);
        assert_eq!(one.samples.len(), 11);
        let ws = Field::ALL.iter().position(|f| *f == Field::WorkingSet).unwrap();
        assert!(one.samples.iter().all(|s| s.1[ws] == Some(105)), "the value before the window holds");
        assert_eq!(all[1].first_seen, 1015.0);
        assert_eq!(h.value_at(1, Field::WorkingSet, 1012.5), Some((1012.0, 105)));
        assert_eq!(h.value_at(2, Field::WorkingSet, 1014.9), None, "not there yet");
        assert_eq!(h.first_seen(2), Some(1015.0));
        // A container gone from the window is forgotten.
        for t in 20..40u64 {
            h.push(&snapshot(1000.0 + t as f64, vec![with(2, 7)]));
        }
        assert_eq!(h.containers(), 1);
    }

    #[test]
    fn recent_values_of_one_field_thinned_evenly_agree_with_the_full_range() {
        let mut h = History::new(Duration::from_secs(1000));
        for t in 0..100u64 {
            let mut cs = vec![with(1, 1000 + t)];
            if t >= 90 {
                cs.push(with(2, 7 + t));
            }
            h.push(&snapshot(1000.0 + t as f64, cs));
        }
        let r = h.recent(Field::WorkingSet, 1050.0, 10);
        // Samples 50..=99 in steps of 5, the last one always.
        assert_eq!(r[&1], (50..100).step_by(5).map(|t| 1000 + t).chain([1099]).collect::<Vec<_>>());
        assert_eq!(r[&2], (90..100).map(|t| 7 + t).collect::<Vec<_>>(), "a young one from its first sample, ten samples in all");
        let ws = Field::ALL.iter().position(|f| *f == Field::WorkingSet).unwrap();
        let full = h.range(1050.0, |id, _, _| id == 1);
        assert_eq!(full[0].samples.iter().step_by(5).map(|s| s.1[ws].unwrap()).collect::<Vec<_>>(), r[&1][..10]);
        assert!(h.recent(Field::WorkingSet, 2000.0, 10).is_empty(), "nothing after the last sample");
    }

    #[test]
    fn the_value_at_a_samples_own_unix_time() {
        // At today's Unix times an f64 step is ~0.2 µs: "at or before" must include equality.
        let mut h = History::new(Duration::from_secs(900));
        let t0 = 1_795_354_191.372_22;
        h.push(&snapshot(t0, vec![with(1, 0)]));
        h.push(&snapshot(t0 + 1.0, vec![with(1, 64 << 20)]));
        let first = h.first_seen(1).unwrap();
        assert_eq!(h.value_at(1, Field::WorkingSet, first), Some((t0, 0)));
        assert_eq!(h.value_at(1, Field::WorkingSet, t0 + 1.0), Some((t0 + 1.0, 64 << 20)));
        assert_eq!(h.value_at(1, Field::WorkingSet, t0 - 0.5), None);
    }

    #[test]
    fn processes_are_kept_sparsely() {
        let mut h = History::new(Duration::from_secs(900));
        for t in 0..30u64 {
            let mut c = with(1, 100);
            c.top_processes = vec![crate::snapshot::Process {
                pid: 7,
                comm: Arc::from("grow"),
                vsz_bytes: 0,
                rss_bytes: t * 1000,
                faults: 0,
                ebpf: None,
            }];
            h.push(&snapshot(1000.0 + t as f64, vec![c]));
        }
        let (when, p) = h.processes_at(1, 1029.0).unwrap();
        assert_eq!((when, p[0].rss_bytes), (1029.0, 29_000), "the newest");
        let (when, _) = h.processes_at(1, 1010.0).unwrap();
        assert!((1005.0..=1010.0).contains(&when), "{when}");
        assert!(h.tracks[&1].processes.len() <= 9, "{}", h.tracks[&1].processes.len());
    }
}
