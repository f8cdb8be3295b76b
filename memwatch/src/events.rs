//! OOM kills, from the kernel's records to explained events: attributed to the victim's own
//! memory cgroup, with the constraint (cgroup limit or whole machine), the victim's size, the
//! container's memory just before, its largest processes and their Go settings; reconciled
//! with the kernel's per-cgroup counters so a kill the probe missed is still reported.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use serde::{Deserialize, Serialize};

use crate::{
    Roots,
    collector::{cgroupfs, procfs},
    journal::Journal,
    oom::OomKill,
    parse::identity,
    snapshot::{Process, Snapshot},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Seen by the `oom:mark_victim` probe.
    Probe,
    /// Counted by the kernel's per-cgroup counter but not seen by the probe (daemon down,
    /// buffer full): the victim is unknown.
    KernelCounter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// A cgroup's memory limit was reached (`constrained_by` names it).
    Cgroup,
    /// No cgroup was at its limit: the machine ran out.
    Machine,
    Unknown,
}

impl Constraint {
    pub fn label(self) -> &'static str {
        match self {
            Constraint::Cgroup => "cgroup",
            Constraint::Machine => "machine",
            Constraint::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Victim {
    pub pid: u32,
    pub comm: String,
    pub vsz_bytes: Option<u64>,
    /// anon + file + shmem resident pages at the kill.
    pub rss_bytes: Option<u64>,
    pub anon_rss_bytes: Option<u64>,
    pub oom_score_adj: Option<i16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub pid: u32,
    pub comm: String,
}

/// The container's memory in the last sample before the kill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemState {
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
    pub limit_bytes: u64,
    pub headroom_bytes: u64,
}

/// A Go program in the container, and the only two variables read from its environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoProcess {
    pub pid: u32,
    pub comm: String,
    pub gomemlimit: Option<String>,
    pub gogc: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    /// Unix seconds.
    pub time: f64,
    pub source: Source,
    /// Kills this event stands for: 1 from the probe; N for kills only the kernel counted.
    pub count: u64,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub container_id: String,
    pub cgroup: String,
    pub cgroup_id: u64,
    /// The cgroup's id and its ancestors', for reconciling with hierarchical counters.
    pub cgroup_ids: Vec<u64>,
    pub constraint: Constraint,
    #[serde(default)]
    pub constrained_by: Option<String>,
    #[serde(default)]
    pub victim: Option<Victim>,
    #[serde(default)]
    pub trigger: Option<Trigger>,
    #[serde(default)]
    pub before: Option<MemState>,
    #[serde(default)]
    pub top_processes: Vec<Process>,
    #[serde(default)]
    pub go: Vec<GoProcess>,
}

/// What readers see of OOM kills.
#[derive(Debug, Clone, Default)]
pub struct OomView {
    /// The most recent events, oldest first.
    pub events: Vec<Event>,
    pub by_constraint: BTreeMap<&'static str, u64>,
    pub missed_total: u64,
    /// Unix time of the last kill per cgroup id (the victim's cgroup and its ancestors).
    pub last_kill: HashMap<u64, f64>,
}

/// A kill seen by `mark_victim`, waiting for its victim to exit (which names its cgroup).
struct Pending {
    mark: OomKill,
    seen: Instant,
    time: f64,
    exit: Option<OomKill>,
    /// The victim's own memory cgroup at the kill, where the kernel tells (6.8+).
    task_memcg: Option<u64>,
    /// Read from /proc as soon as the record arrived, while the victim may still be there.
    proc_stat: Option<Process>,
    proc_cgroup: Option<String>,
    go: Option<GoProcess>,
}

/// How long to wait for a victim's exit record before using what we have.
const EXIT_WAIT: Duration = Duration::from_millis(1500);
/// How long the kernel's counter may run ahead of the probe before the difference is
/// reported as missed (the probe's event may still be on its way).
const MISSED_GRACE: Duration = Duration::from_secs(2);

pub struct OomTracker {
    roots: Roots,
    journal: Option<Journal>,
    max_events: usize,
    events: Vec<Event>,
    next_seq: u64,
    pending: Vec<Pending>,
    /// Victim cgroups reported before their kill's own record (the two come from different
    /// programs on the same tracepoint, in no set order): pid -> (memcg id, when).
    early_memcg: HashMap<u32, (u64, Instant)>,
    reconciled: HashMap<u64, u64>,
    discrepancy_since: HashMap<u64, Instant>,
    by_constraint: BTreeMap<&'static str, u64>,
    missed_total: u64,
    last_kill: HashMap<u64, f64>,
    /// The two newest snapshots: the kill is compared with the one taken before it.
    older: Option<Arc<Snapshot>>,
    newer: Option<Arc<Snapshot>>,
    view: Arc<OomView>,
}

impl OomTracker {
    /// With a state directory, events persist in a journal there; its warnings are returned.
    pub fn new(roots: Roots, state_dir: Option<&Path>, max_events: usize) -> (OomTracker, Vec<String>) {
        let mut warnings = Vec::new();
        let mut t = OomTracker {
            roots,
            journal: None,
            max_events,
            events: Vec::new(),
            next_seq: 1,
            pending: Vec::new(),
            early_memcg: HashMap::new(),
            reconciled: HashMap::new(),
            discrepancy_since: HashMap::new(),
            by_constraint: BTreeMap::new(),
            missed_total: 0,
            last_kill: HashMap::new(),
            older: None,
            newer: None,
            view: Arc::default(),
        };
        if let Some(dir) = state_dir {
            match Journal::open(dir, max_events) {
                Ok((journal, loaded)) => {
                    if let Some(w) = loaded.warning {
                        warnings.push(format!("{}: {w}", journal.path().display()));
                    }
                    t.reconciled = loaded.baseline;
                    for e in loaded.events {
                        t.account(&e);
                        t.events.push(e);
                    }
                    t.next_seq = t.events.iter().map(|e| e.seq).max().unwrap_or(0) + 1;
                    t.journal = Some(journal);
                    t.view = t.build_view();
                }
                Err(e) => warnings.push(format!("OOM events will not survive a restart: {e}")),
            }
        }
        (t, warnings)
    }

    fn account(&mut self, e: &Event) {
        for id in &e.cgroup_ids {
            *self.reconciled.entry(*id).or_default() += e.count;
            let last = self.last_kill.entry(*id).or_default();
            *last = last.max(e.time);
        }
        *self.by_constraint.entry(e.constraint.label()).or_default() += e.count;
        if e.source == Source::KernelCounter {
            self.missed_total += e.count;
        }
    }

    /// The current view (rebuilt only when events change).
    pub fn view(&self) -> Arc<OomView> {
        self.view.clone()
    }

    fn build_view(&self) -> Arc<OomView> {
        Arc::new(OomView {
            events: self.events.clone(),
            by_constraint: self.by_constraint.clone(),
            missed_total: self.missed_total,
            last_kill: self.last_kill.clone(),
        })
    }

    /// A record from the kernel. Returns true when an event was completed.
    pub fn on_record(&mut self, k: OomKill) -> bool {
        if k.victim_task {
            let memcg = k.victim_memcg_id.filter(|id| *id != 0);
            match (self.pending.iter_mut().find(|p| p.mark.victim_pid == k.victim_pid), memcg) {
                (Some(p), Some(id)) => p.task_memcg = Some(id),
                (None, Some(id)) => {
                    let now = Instant::now();
                    self.early_memcg.retain(|_, (_, at)| now.duration_since(*at) < EXIT_WAIT * 4);
                    self.early_memcg.insert(k.victim_pid, (id, now));
                }
                _ => {}
            }
            return false;
        }
        if k.victim_exit {
            if let Some(p) = self.pending.iter_mut().find(|p| p.mark.victim_pid == k.victim_pid) {
                p.exit = Some(k);
            }
            return self.finish_ready(Instant::now());
        }
        let pid = k.victim_pid;
        let procfs = &self.roots.procfs;
        let proc_stat = std::fs::read_to_string(procfs.join(format!("{pid}/stat")))
            .ok()
            .and_then(|s| crate::parse::proc::stat(&s))
            .map(|s| Process { pid, comm: s.comm.clone(), vsz_bytes: s.vsize_bytes, rss_bytes: s.rss_pages * crate::probes::page_size(), faults: s.faults, ebpf: None });
        let proc_cgroup = std::fs::read_to_string(procfs.join(format!("{pid}/cgroup"))).ok().and_then(|s| crate::parse::proc::memory_cgroup_path(&s));
        let go = procfs::go_info(procfs, pid).map(|(gomemlimit, gogc)| GoProcess {
            pid,
            comm: k.victim_comm.clone().unwrap_or_default(),
            gomemlimit,
            gogc,
        });
        let task_memcg = self.early_memcg.remove(&pid).map(|(id, _)| id);
        self.pending.push(Pending { time: kill_time(k.boot_ns), mark: k, seen: Instant::now(), exit: None, task_memcg, proc_stat, proc_cgroup, go });
        false
    }

    /// The processes of the cgroup at `path` under `root` (the memory hierarchy), largest RSS
    /// first, at most ten, read now: the sampled list may be a slow period old.
    fn cgroup_processes(&self, root: &Path, path: &str) -> Vec<Process> {
        let Ok(text) = std::fs::read_to_string(root.join(path.trim_start_matches('/')).join("cgroup.procs")) else { return vec![] };
        let page = crate::probes::page_size();
        let mut procs: Vec<Process> = crate::parse::cgroup::procs(&text)
            .into_iter()
            .take(1000)
            .filter_map(|pid| {
                let s = crate::parse::proc::stat(&std::fs::read_to_string(self.roots.procfs.join(format!("{pid}/stat"))).ok()?)?;
                Some(Process { pid, comm: s.comm, vsz_bytes: s.vsize_bytes, rss_bytes: s.rss_pages * page, faults: s.faults, ebpf: None })
            })
            .collect();
        procs.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
        procs.truncate(10);
        procs
    }

    /// A new snapshot: completes waiting kills whose time is up and reconciles with the
    /// kernel's counters. Returns true when events changed.
    pub fn on_snapshot(&mut self, snap: Arc<Snapshot>, now: Instant) -> bool {
        self.older = self.newer.replace(snap);
        let mut changed = self.finish_ready(now);
        changed |= self.reconcile(now);
        changed
    }

    /// Completes kills whose victim exited, or that waited long enough.
    pub fn finish_ready(&mut self, now: Instant) -> bool {
        let mut changed = false;
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].exit.is_some() || now.duration_since(self.pending[i].seen) >= EXIT_WAIT {
                let p = self.pending.remove(i);
                let e = self.explain(p);
                self.record(e);
                changed = true;
            } else {
                i += 1;
            }
        }
        changed
    }

    /// When the oldest waiting kill must be completed, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.seen + EXIT_WAIT).min()
    }

    fn record(&mut self, mut e: Event) {
        e.seq = self.next_seq;
        self.next_seq += 1;
        self.account(&e);
        match e.source {
            Source::Probe => tracing::warn!(
                target: "memwatch::oom",
                seq = e.seq,
                victim_pid = e.victim.as_ref().map(|v| v.pid).unwrap_or(0),
                victim_comm = e.victim.as_ref().map(|v| v.comm.as_str()).unwrap_or(""),
                victim_rss_bytes = e.victim.as_ref().and_then(|v| v.rss_bytes).unwrap_or(0),
                namespace = e.namespace.as_str(),
                pod = e.pod.as_str(),
                container = e.container.as_str(),
                cgroup = e.cgroup.as_str(),
                constraint = e.constraint.label(),
                constrained_by = e.constrained_by.as_deref().unwrap_or(""),
                limit_bytes = e.before.as_ref().map(|b| b.limit_bytes).unwrap_or(0),
                "OOM kill"
            ),
            Source::KernelCounter => tracing::warn!(
                target: "memwatch::oom",
                seq = e.seq,
                count = e.count,
                namespace = e.namespace.as_str(),
                pod = e.pod.as_str(),
                container = e.container.as_str(),
                cgroup = e.cgroup.as_str(),
                "OOM kills counted by the kernel but missed by the probe"
            ),
        }
        self.events.push(e);
        if let Some(j) = self.journal.as_mut() {
            if let Err(err) = j.append(self.events.last().unwrap()) {
                tracing::error!("writing the OOM journal {}: {err}", j.path().display());
            }
        }
        if self.events.len() > self.max_events {
            let extra = self.events.len() - self.max_events;
            self.events.drain(..extra);
        }
        self.view = self.build_view();
    }

    /// The snapshot taken last before `time` (else the oldest we have).
    fn before(&self, time: f64) -> Option<&Arc<Snapshot>> {
        let t = |s: &Snapshot| crate::unix_seconds(s.taken_at);
        match (&self.older, &self.newer) {
            (_, Some(n)) if t(n) <= time => Some(n),
            (Some(o), _) => Some(o),
            (None, n) => n.as_ref(),
        }
    }

    fn explain(&self, p: Pending) -> Event {
        let mark = &p.mark;
        let memcg = p.exit.as_ref().and_then(|x| x.victim_memcg_id).filter(|id| *id != 0).or(p.task_memcg).or(mark.victim_memcg_id);
        let memory_root = self.newer.as_ref().and_then(|_| crate::host::cgroup_mode(&self.roots.cgroupfs).memory_root().map(Path::to_path_buf));
        let v2 = self.newer.as_ref().is_some_and(|s| s.cgroup_mode == "v2");
        let snaps = [self.newer.as_ref(), self.older.as_ref()];
        // The victim's cgroup path: from a snapshot, else by walking for its id, else /proc.
        let path = memcg
            .and_then(|id| snaps.iter().flatten().find_map(|s| s.cgroups.get(&id).map(|c| c.path.to_string())))
            .or_else(|| memcg.zip(memory_root.as_ref()).and_then(|(id, root)| cgroupfs::find_by_id(root, id)))
            .or_else(|| p.proc_cgroup.clone());
        let id = memcg.or_else(|| path.as_ref().zip(memory_root.as_ref()).and_then(|(pth, root)| cgroupfs::id_of(root, pth))).unwrap_or(0);
        // Ancestry by path, so cgroups newer than the last sample work too.
        let chain: Vec<(u64, String)> = match (&path, &memory_root) {
            (Some(pth), Some(root)) => cgroupfs::ancestry(root, pth),
            _ => vec![],
        };
        let cgroup_ids: Vec<u64> = if chain.is_empty() && id != 0 { vec![id] } else { chain.iter().map(|(i, _)| *i).collect() };
        let before = self.before(p.time);
        let container = before.and_then(|s| s.container(id)).or_else(|| snaps.iter().flatten().find_map(|s| s.container(id)));
        let (namespace, pod, name, container_id) = match container {
            Some(c) => (c.namespace.to_string(), c.pod.to_string(), c.container.to_string(), c.container_id.to_string()),
            None => {
                let ident = identity::classify(path.as_deref().unwrap_or(""));
                (String::new(), String::new(), String::new(), ident.container_id.unwrap_or_default())
            }
        };
        // Deepest cgroup on the chain whose limit-hit counter rose since the sample before.
        let (constraint, constrained_by) = match (&memory_root, chain.is_empty()) {
            (Some(root), false) => {
                let hit = chain.iter().filter(|(_, pth)| pth != "/").find(|(cid, pth)| {
                    let now = cgroupfs::limit_events(&root.join(pth.trim_start_matches('/')), v2).unwrap_or(0);
                    let was = before.and_then(|s| s.cgroups.get(cid)).and_then(|c| c.limit_events).unwrap_or(0);
                    now > was
                });
                match hit {
                    Some((_, pth)) => (Constraint::Cgroup, Some(pth.clone())),
                    None => (Constraint::Machine, None),
                }
            }
            _ => (Constraint::Unknown, None),
        };
        let rss = match (mark.anon_rss_bytes, mark.file_rss_bytes, mark.shmem_rss_bytes) {
            (Some(a), f, s) => Some(a + f.unwrap_or(0) + s.unwrap_or(0)),
            _ => p.proc_stat.as_ref().map(|s| s.rss_bytes),
        };
        let victim = Victim {
            pid: mark.victim_pid,
            comm: mark
                .victim_comm
                .clone()
                .or_else(|| p.exit.as_ref().and_then(|x| x.victim_comm.clone()))
                .or_else(|| p.proc_stat.as_ref().map(|s| s.comm.to_string()))
                .unwrap_or_default(),
            vsz_bytes: mark.total_vm_bytes.or_else(|| p.proc_stat.as_ref().map(|s| s.vsz_bytes)),
            rss_bytes: rss,
            anon_rss_bytes: mark.anon_rss_bytes,
            oom_score_adj: mark.oom_score_adj,
        };
        // The container's other processes as they are now (the victim is in `victim`).
        let now: Vec<Process> = path.as_deref().zip(memory_root.as_deref()).map(|(pth, root)| self.cgroup_processes(root, pth)).unwrap_or_default();
        // Largest first: those now, and those of the last sample that are gone (the victim).
        let mut top = now;
        for before in container.map(|c| c.top_processes.as_slice()).unwrap_or_default() {
            if !top.iter().any(|p| p.pid == before.pid) {
                top.push(before.clone());
            }
        }
        top.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
        top.truncate(10);
        let mut go: Vec<GoProcess> = p.go.into_iter().collect();
        for proc_ in top.iter().filter(|t| t.pid != mark.victim_pid) {
            if let Some((gomemlimit, gogc)) = procfs::go_info(&self.roots.procfs, proc_.pid) {
                go.push(GoProcess { pid: proc_.pid, comm: proc_.comm.to_string(), gomemlimit, gogc });
            }
        }
        Event {
            seq: 0,
            time: p.time,
            source: Source::Probe,
            count: 1,
            namespace,
            pod,
            container: name,
            container_id,
            cgroup: path.unwrap_or_default(),
            cgroup_id: id,
            cgroup_ids,
            constraint,
            constrained_by,
            victim: Some(victim),
            trigger: Some(Trigger { pid: mark.trigger_pid, comm: mark.trigger_comm.clone() }),
            before: container.map(|c| MemState {
                usage_bytes: c.usage_bytes,
                working_set_bytes: c.working_set_bytes,
                limit_bytes: c.limit_bytes,
                headroom_bytes: c.headroom_bytes,
            }),
            top_processes: top,
            go,
        }
    }

    /// Reports kills the kernel counted in a container beyond what the probe explained, once
    /// the difference has lasted MISSED_GRACE with no kill in flight.
    fn reconcile(&mut self, now: Instant) -> bool {
        let Some(snap) = self.newer.clone() else { return false };
        let mut containers: Vec<_> = snap.containers.iter().filter(|c| c.oom_kills.is_some()).collect();
        // Deepest first: a child's missed kill also explains its ancestors' counters.
        containers.sort_by_cached_key(|c| std::cmp::Reverse(c.cgroup.matches('/').count()));
        let mut changed = false;
        for c in containers {
            let kernel = c.oom_kills.unwrap_or(0);
            let explained = self.reconciled.get(&c.id).copied().unwrap_or(0);
            if kernel < explained {
                self.reconciled.insert(c.id, kernel); // counter reset: a new cgroup with an old id
                self.discrepancy_since.remove(&c.id);
                continue;
            }
            if kernel == explained {
                self.discrepancy_since.remove(&c.id);
                continue;
            }
            let since = *self.discrepancy_since.entry(c.id).or_insert(now);
            if !self.pending.is_empty() || now.duration_since(since) < MISSED_GRACE {
                continue;
            }
            self.discrepancy_since.remove(&c.id);
            let e = Event {
                seq: 0,
                time: crate::unix_seconds(SystemTime::now()),
                source: Source::KernelCounter,
                count: kernel - explained,
                namespace: c.namespace.to_string(),
                pod: c.pod.to_string(),
                container: c.container.to_string(),
                container_id: c.container_id.to_string(),
                cgroup: c.cgroup.to_string(),
                cgroup_id: c.id,
                cgroup_ids: snap.ancestry(c.id),
                constraint: Constraint::Unknown,
                constrained_by: None,
                victim: None,
                trigger: None,
                before: None,
                top_processes: vec![],
                go: vec![],
            };
            self.record(e);
            changed = true;
        }
        changed
    }
}

/// Wall-clock time of a CLOCK_BOOTTIME instant.
fn kill_time(boot_ns: u64) -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let boot_now = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
    let wall_now = crate::unix_seconds(SystemTime::now());
    wall_now - (boot_now - boot_ns as f64 / 1e9).max(0.0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn event(seq: u64, cgroup_id: u64) -> Event {
        Event {
            seq,
            time: 1_700_000_000.0 + seq as f64,
            source: Source::Probe,
            count: 1,
            namespace: String::new(),
            pod: String::new(),
            container: String::new(),
            container_id: String::new(),
            cgroup: format!("/c{cgroup_id}"),
            cgroup_id,
            cgroup_ids: vec![cgroup_id, 1],
            constraint: Constraint::Cgroup,
            constrained_by: Some(format!("/c{cgroup_id}")),
            victim: Some(Victim { pid: 100 + seq as u32, comm: "hog".into(), vsz_bytes: None, rss_bytes: Some(1), anon_rss_bytes: None, oom_score_adj: None }),
            trigger: None,
            before: None,
            top_processes: vec![],
            go: vec![],
        }
    }

    #[test]
    fn journal_counts_explain_kernel_counters() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut t, w) = OomTracker::new(crate::Roots::default(), Some(dir.path()), 100);
            assert!(w.is_empty());
            t.record(event(0, 10));
            t.record(event(0, 10));
            t.record(event(0, 11));
        }
        let (t, _) = OomTracker::new(crate::Roots::default(), Some(dir.path()), 100);
        assert_eq!(t.reconciled[&10], 2);
        assert_eq!(t.reconciled[&11], 1);
        assert_eq!(t.reconciled[&1], 3, "the common ancestor");
        assert_eq!(t.next_seq, 4);
        assert_eq!(t.by_constraint["cgroup"], 3);
    }
}
