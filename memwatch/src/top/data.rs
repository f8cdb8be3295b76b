//! What `top` knows, changed only by frames: each container's row, with rates between the
//! last two frames, a short working-set history, and whether it saw an OOM kill lately.

use std::collections::{HashMap, HashSet, VecDeque};

use super::Frame;
use crate::{oom::Event, snapshot::Container};

/// Rates of one process between the last two frames.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcRow {
    pub pid: u32,
    pub comm: String,
    pub vsz: u64,
    pub rss: u64,
    pub faults_per_s: Option<f64>,
    pub mmap_bytes_per_s: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub id: u64,
    pub name: String,
    pub container: Container,
    pub headroom_pct: f64,
    pub faults_per_s: Option<f64>,
    pub mmap_bytes_per_s: Option<f64>,
    /// Percent of time some task stalled on memory (PSI), over the last interval.
    pub pressure_pct: Option<f64>,
    /// Working-set history, oldest first.
    pub history: Vec<u64>,
    /// An OOM kill in the last 10 minutes, or during this session.
    pub recent_oom: bool,
    /// Under a memory warning: its latest warning has not been cleared.
    pub warned: bool,
    /// At risk of an OOM kill in this frame, by the one definition (`crate::risk`).
    pub at_risk: bool,
    pub procs: Vec<ProcRow>,
}

/// Counters of one container in the previous frame.
#[derive(Debug, Clone, Copy)]
struct Prev {
    t: f64,
    faults: Option<u64>,
    mmap: Option<u64>,
    pressure_us: Option<u64>,
    oom_kills: Option<u64>,
}

/// Counters of one process in the previous frame.
#[derive(Debug, Clone, Copy)]
struct ProcPrev {
    t: f64,
    faults: Option<u64>,
    mmap: Option<u64>,
}

/// Working-set samples kept per container (for the sparkline).
const HISTORY: usize = 40;
/// An OOM kill this recent (seconds) marks its container: the risk definition's.
const RECENT_OOM_SECS: f64 = crate::risk::RECENT_KILL_SECONDS;

/// Per second, between a counter's reading now and `dt` seconds before; None when either is
/// unknown or no time passed. The one rate helper of `top`.
pub fn rate(now: Option<u64>, before: Option<u64>, dt: f64) -> Option<f64> {
    (dt > 0.0).then(|| Some(now?.saturating_sub(before?) as f64 / dt)).flatten()
}

#[derive(Debug, Default)]
pub struct Data {
    taken_at: f64,
    rows: Vec<Row>,
    events: Vec<Event>,
    stacks: HashMap<u64, Vec<crate::stacks::profile::StackUse>>,
    prev: HashMap<u64, Prev>,
    prev_procs: HashMap<u32, ProcPrev>,
    history: HashMap<u64, VecDeque<u64>>,
    oomed: HashMap<u64, bool>,
}

impl Data {
    pub fn new() -> Data {
        Data::default()
    }

    /// Unix seconds of the last frame.
    pub fn taken_at(&self) -> f64 {
        self.taken_at
    }

    /// Every container of the last frame, in the frame's order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn row(&self, id: u64) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// A container's top fault stacks of the last minute, where sampled.
    pub fn stacks(&self, id: u64) -> &[crate::stacks::profile::StackUse] {
        self.stacks.get(&id).map(Vec::as_slice).unwrap_or_default()
    }

    /// Takes a new frame: rates against the previous one, history, recent kills. Returns
    /// false when it is the same sample again.
    pub fn update(&mut self, frame: Frame) -> bool {
        let t = frame.taken_at;
        if t <= self.taken_at && !self.rows.is_empty() {
            return false;
        }
        self.taken_at = t;
        let mut rows = Vec::with_capacity(frame.containers.len());
        let mut seen = HashMap::new();
        let mut procs_seen = HashMap::new();
        for c in frame.containers.iter() {
            let prev = self.prev.get(&c.id).copied();
            let dt = prev.map_or(0.0, |p| t - p.t);
            let now = Prev {
                t,
                faults: c.page_faults,
                mmap: c.ebpf.map(|e| e.mmap_anon_bytes + e.mmap_file_bytes),
                pressure_us: c.pressure.map(|p| p.some_us),
                oom_kills: c.oom_kills,
            };
            let killed_now = matches!((prev.and_then(|p| p.oom_kills), c.oom_kills), (Some(a), Some(b)) if b > a);
            let oomed = self.oomed.entry(c.id).or_default();
            *oomed |= killed_now;
            let recent_oom =
                *oomed || frame.events.iter().any(|e| e.is_kill() && e.cgroup_ids.contains(&c.id) && e.time >= t - RECENT_OOM_SECS);
            // The latest warning or cleared event of this container says whether it is warned.
            let warned = frame
                .events
                .iter()
                .rev()
                .find(|e| !e.is_kill() && e.cgroup_id == c.id)
                .is_some_and(|e| e.kind == crate::oom::EventKind::Warning);
            let hist = self.history.entry(c.id).or_default();
            hist.push_back(c.working_set_bytes);
            while hist.len() > HISTORY {
                hist.pop_front();
            }
            let procs = c
                .top_processes
                .iter()
                .map(|p| {
                    let now = ProcPrev { t, faults: Some(p.faults), mmap: p.ebpf.map(|e| e.mmap_anon_bytes + e.mmap_file_bytes) };
                    let before = self.prev_procs.get(&p.pid).copied();
                    let dt = before.map_or(0.0, |b| t - b.t);
                    procs_seen.insert(p.pid, now);
                    ProcRow {
                        pid: p.pid,
                        comm: p.comm.to_string(),
                        vsz: p.vsz_bytes,
                        rss: p.rss_bytes,
                        faults_per_s: rate(now.faults, before.and_then(|b| b.faults), dt),
                        mmap_bytes_per_s: rate(now.mmap, before.and_then(|b| b.mmap), dt),
                    }
                })
                .collect();
            rows.push(Row {
                id: c.id,
                name: c.display_name().to_string(),
                container: c.clone(),
                headroom_pct: c.headroom_ratio * 100.0,
                faults_per_s: rate(now.faults, prev.and_then(|p| p.faults), dt),
                mmap_bytes_per_s: rate(now.mmap, prev.and_then(|p| p.mmap), dt),
                pressure_pct: rate(now.pressure_us, prev.and_then(|p| p.pressure_us), dt).map(|us| us / 1e4),
                history: hist.iter().copied().collect(),
                recent_oom,
                warned,
                at_risk: !crate::risk::risks(c, false).is_empty(),
                procs,
            });
            seen.insert(c.id, now);
        }
        let live: HashSet<u64> = seen.keys().copied().collect();
        self.history.retain(|id, _| live.contains(id));
        self.oomed.retain(|id, _| live.contains(id));
        self.prev = seen;
        self.prev_procs = procs_seen;
        self.rows = rows;
        self.events = frame.events;
        self.stacks = frame.stacks;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::snapshot::Process;

    fn container(id: u64, faults: u64, mmap: u64, proc_faults: u64) -> Container {
        let mut c: Container = serde_json::from_value(serde_json::json!({
            "cgroup": format!("/c{id}"), "id": id, "namespace": "", "pod": "", "container": "", "container_id": "",
            "kind": "other", "qos": null, "usage_bytes": 100, "working_set_bytes": 90, "rss_bytes": 80, "cache_bytes": 10,
            "swap_bytes": null, "vsz_bytes": 1000, "process_rss_bytes": 80, "limit_bytes": 1000, "limit_is_machine": false,
            "headroom_bytes": 910, "headroom_ratio": 0.91, "high_bytes": null, "major_page_faults": null,
            "ebpf": null, "pressure": null, "oom_kills": 0, "processes": 1, "time_to_oom_seconds": null, "top_processes": []
        }))
        .unwrap();
        c.page_faults = Some(faults);
        c.ebpf = Some(memwatch_common::Counters { mmap_anon_bytes: mmap, ..Default::default() });
        c.top_processes = vec![Process { pid: 7, comm: Arc::from("p"), vsz_bytes: 1, rss_bytes: 1, faults: proc_faults, ebpf: None }];
        c
    }

    fn frame(t: f64, containers: Vec<Container>) -> Frame {
        Frame { taken_at: t, containers: Arc::new(containers), events: vec![], stacks: HashMap::new() }
    }

    #[test]
    fn rates_come_from_two_frames() {
        let mut d = Data::new();
        assert!(d.update(frame(10.0, vec![container(1, 100, 1000, 50)])));
        let r = &d.rows()[0];
        assert_eq!((r.faults_per_s, r.mmap_bytes_per_s, r.procs[0].faults_per_s), (None, None, None), "no rate from one frame");
        assert!(!d.update(frame(10.0, vec![container(1, 999, 9999, 999)])), "the same sample again");
        assert!(d.update(frame(12.0, vec![container(1, 300, 5000, 70)])));
        let r = &d.rows()[0];
        assert_eq!(r.faults_per_s, Some(100.0));
        assert_eq!(r.mmap_bytes_per_s, Some(2000.0));
        assert_eq!(r.procs[0].faults_per_s, Some(10.0));
        assert_eq!(r.history, vec![90, 90]);
    }

    #[test]
    fn the_rate_helper() {
        assert_eq!(rate(Some(10), Some(4), 2.0), Some(3.0));
        assert_eq!(rate(Some(10), None, 2.0), None);
        assert_eq!(rate(Some(10), Some(4), 0.0), None);
        assert_eq!(rate(Some(3), Some(4), 1.0), Some(0.0), "a reset is not a negative rate");
    }
}
