//! The OOM tracker: a state machine from the kernel's records and the samples to events. It
//! does no I/O of its own: it is told the time, and asks a [`World`] for the host's facts.
//!
//! A kill is seen three ways. `oom:mark_victim` sends its record when the victim is chosen (in
//! the context of whichever task triggered it). Where the kernel passes the victim task (6.8+),
//! a second program sends the victim's own cgroup at the kill. When the victim exits, the exit
//! hook sends one more record from the victim's own context. A kill is explained once its
//! victim has exited, or after [`EXIT_WAIT`], whichever comes first; records may come in any
//! order. The kernel's own per-cgroup kill counters are reconciled with what was explained:
//! what the probe never saw (daemon down, ring buffer full) becomes a `kernel_counter` event.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use super::{
    event::{Event, Source},
    explain::{self, Context, Kill, PartsRead},
    record::OomKill,
    world::{ProcFacts, World},
};
use crate::{history::History, runtime::Facts, snapshot::Snapshot};

/// How long to wait for a victim's exit record before explaining the kill with what we have.
pub const EXIT_WAIT: Duration = Duration::from_millis(1500);
/// How long the kernel's counter may run ahead of the probe before the difference is reported
/// as missed (the probe's records may still be on their way).
pub const MISSED_GRACE: Duration = Duration::from_secs(2);
/// How long a record that came before the one it belongs to is kept.
const EARLY_KEEP: Duration = Duration::from_secs(10);
/// Kills with the same trigger this close together are one incident (the kernel kills a
/// `memory.oom.group` cgroup's tasks in one go).
pub const INCIDENT: f64 = 1.0;

fn same_incident(a: &Pending, b: &Pending) -> bool {
    !std::ptr::eq(a, b) && a.mark.trigger_pid == b.mark.trigger_pid && (a.time - b.time).abs() < INCIDENT
}

/// Where the events of one incident are kills of a whole cgroup (`memory.oom.group` set on it
/// or an ancestor below the limit that was hit), one event for them all: the largest victim's,
/// with every victim listed and the count of kills.
fn merge_group(events: &mut [Event], world: &dyn World) -> Option<Event> {
    if events.len() < 2 {
        return None;
    }
    let cgroup = events[0].cgroup.clone();
    if events.iter().any(|e| e.cgroup != cgroup) {
        return None;
    }
    // The highest cgroup from the victims' own up to the one at its limit with oom.group set.
    let stop = events[0].constrained_by.clone().unwrap_or_else(|| "/".into());
    let mut group = None;
    let mut path = cgroup.as_str();
    loop {
        if path.is_empty() || path == "/" {
            break;
        }
        if world.oom_group(path) {
            group = Some(path.to_string());
        }
        if path == stop {
            break;
        }
        path = crate::host::cgroups::parent_path(path).unwrap_or("/");
    }
    let group = group?;
    events.sort_by_key(|e| std::cmp::Reverse(e.victim.as_ref().and_then(|v| v.rss_bytes).unwrap_or(0)));
    let killed: Vec<_> = events.iter().filter_map(|e| e.victim.clone()).collect();
    let mut e = events[0].clone();
    e.count = events.len() as u64;
    e.group = Some(super::event::GroupKill { cgroup: group, killed });
    e.explanation = super::reasons::reasons(&e);
    Some(e)
}

/// A kill seen by `mark_victim`, waiting for its victim to exit.
struct Pending {
    mark: OomKill,
    seen: Instant,
    time: f64,
    exit: Option<OomKill>,
    task_memcg: Option<u64>,
    /// Read from /proc as soon as the record arrived, while the victim may still be there.
    proc_: Option<ProcFacts>,
    runtime: Option<Facts>,
    /// memory.stat of the cgroup at its limit (else the trigger's), read as the record came in.
    parts: Option<PartsRead>,
    /// The process the victim task belongs to, where known.
    tgid: Option<u32>,
}

/// How long an event waits at most for the names of its stacks' frames.
const NAMES_WAIT: Duration = Duration::from_millis(500);

/// How long a victim process is remembered, to tell a second marking of it from a new kill.
const VICTIM_KEEP: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Tracker {
    pending: Vec<Pending>,
    /// Records that came before their kill's own: victim pid -> (record, when).
    early_exit: HashMap<u32, (OomKill, Instant)>,
    early_memcg: HashMap<u32, (u64, Instant)>,
    /// Victim processes (tgid) of recent kills: a thread of one that allocates while dying is
    /// marked a victim again by the kernel (to let it use reserves), which is no new kill.
    recent_victims: Vec<(u32, Instant)>,
    /// Per cgroup id, kills explained by events (the cgroup's and its descendants').
    explained: HashMap<u64, u64>,
    discrepancy_since: HashMap<u64, Instant>,
    /// Per cgroup id, its kernel counter as last reconciled: a counter below it is a new
    /// cgroup with an old id; a counter below `explained` but not below it is only a read
    /// older than the latest events (the counter is read on a slower cadence).
    last_counter: HashMap<u64, u64>,
    /// The two newest samples: a kill is compared with the one taken before it.
    older: Option<Arc<Snapshot>>,
    newer: Option<Arc<Snapshot>>,
    /// The containers' recent history, when the pipeline keeps one.
    history: Option<Arc<RwLock<History>>>,
    /// The containers' recent fault stacks and their names, when the sampler runs.
    stacks: Option<(Arc<RwLock<crate::stacks::Store>>, Arc<crate::stacks::symbolize::Names>)>,
    /// memwatch's first run (no journal from before): the first sample's kill counts are a
    /// baseline of kills from before memwatch started, not kills it missed.
    first_run: bool,
    /// That baseline, once taken, until the journal takes it.
    baseline: Option<HashMap<u64, u64>>,
}

impl Tracker {
    pub fn new() -> Self {
        Tracker::default()
    }

    /// The next sample's kill counts are from before memwatch started (its first run).
    pub fn first_run(&mut self) {
        self.first_run = true;
    }

    /// The kills found on the kernel's counters at the first sample of a first run, per cgroup
    /// id (beyond what events explained), once.
    pub fn take_baseline(&mut self) -> Option<HashMap<u64, u64>> {
        self.baseline.take()
    }

    /// Draw on this history for what grew before a kill.
    pub fn set_history(&mut self, history: Arc<RwLock<History>>) {
        self.history = Some(history);
    }

    /// Draw on these fault stacks for which code grew before a kill.
    pub fn set_stacks(&mut self, store: Arc<RwLock<crate::stacks::Store>>, names: Arc<crate::stacks::symbolize::Names>) {
        self.stacks = Some((store, names));
    }

    /// Cgroup v1 (memory + swap in the second page counter), as the newest sample says.
    fn v1(&self) -> bool {
        self.newer.as_ref().is_some_and(|s| matches!(s.cgroup_mode, crate::host::CgroupVersion::V1 | crate::host::CgroupVersion::Hybrid))
    }

    /// Reads the parts of the memory of the cgroup a kill is about, now, while they are as the
    /// kill left them (file, shmem and kernel memory outlive the victim).
    fn read_parts(&self, k: &OomKill, world: &dyn World) -> Option<PartsRead> {
        let level = explain::constrained_level(&k.levels, self.v1()).or(k.levels.first())?;
        let id = level.cgroup_id;
        let path = self.newer.as_ref().and_then(|s| s.cgroups.get(&id).map(|c| c.path.to_string())).or_else(|| world.cgroup_path(id))?;
        Some(PartsRead { cgroup_id: id, stat: world.memory_parts(&path)?, at: world.wall_now() })
    }

    /// An event recorded (now or in an earlier run) explains kills in its cgroup and ancestors.
    /// A whole-cgroup kill (`memory.oom.group`) is on the kernel's counters once more than it
    /// killed processes: the kernel kills (and counts) the victim it chose, then every member of
    /// the group, the victim again among them (seen on 6.1).
    pub fn account(&mut self, e: &Event) {
        if !e.is_kill() {
            return;
        }
        let counted = e.count + u64::from(e.group.is_some());
        for id in &e.cgroup_ids {
            *self.explained.entry(*id).or_default() += counted;
        }
    }

    /// Kills already explained before (a compacted journal's baseline).
    pub fn account_baseline(&mut self, baseline: &HashMap<u64, u64>) {
        for (id, n) in baseline {
            *self.explained.entry(*id).or_default() += n;
        }
    }

    /// A record from the kernel; returns the kills it completed. Three kinds: the victim task's
    /// memory cgroup (6.8+), the victim's exit (which completes its kill), and the mark itself.
    pub fn on_record(&mut self, k: OomKill, now: Instant, world: &dyn World) -> Vec<Event> {
        if k.victim_task {
            self.on_victim_task(&k, now);
            return vec![];
        }
        if k.victim_exit {
            self.on_victim_exit(k, now);
        } else {
            self.on_mark(k, now, world);
        }
        self.finish_ready(now, world)
    }

    /// The victim task's own memory cgroup, told apart from the trigger's (kernels 6.8+); it may
    /// come before its mark.
    fn on_victim_task(&mut self, k: &OomKill, now: Instant) {
        let Some(id) = k.victim_memcg_id.filter(|id| *id != 0) else { return };
        match self.pending.iter_mut().find(|p| p.mark.victim_pid == k.victim_pid) {
            Some(p) => p.task_memcg = Some(id),
            None => {
                self.early_memcg.insert(k.victim_pid, (id, now));
            }
        }
    }

    /// The victim exited: its kill can be explained (it may come before its mark).
    fn on_victim_exit(&mut self, k: OomKill, now: Instant) {
        let pid = k.victim_pid;
        match self.pending.iter_mut().find(|p| p.mark.victim_pid == pid && p.exit.is_none()) {
            Some(p) => p.exit = Some(k),
            None => {
                self.early_exit.insert(pid, (k, now));
            }
        }
    }

    /// A kill's mark: what is known of the victim is read now, while it may still live, and the
    /// kill waits for its exit.
    fn on_mark(&mut self, k: OomKill, now: Instant, world: &dyn World) {
        let pid = k.victim_pid;
        self.early_exit.retain(|_, (_, at)| now.duration_since(*at) < EARLY_KEEP);
        self.early_memcg.retain(|_, (_, at)| now.duration_since(*at) < EARLY_KEEP);
        self.recent_victims.retain(|(_, at)| now.duration_since(*at) < VICTIM_KEEP);
        let proc_ = world.process(pid);
        // The kernel marks a task that allocates while it dies as a victim too, from its own
        // context (victim and trigger the same task): its process was killed already.
        let tgid = proc_.as_ref().map(|p| p.info.pid).or((k.victim_pid == k.trigger_pid).then_some(k.trigger_tgid));
        if let Some(t) = tgid {
            let again = self.recent_victims.iter().any(|(v, _)| *v == t) || self.pending.iter().any(|p| p.tgid == Some(t));
            if again && k.victim_pid == k.trigger_pid {
                return;
            }
            self.recent_victims.push((t, now));
        }
        let parts = self.read_parts(&k, world);
        let runtime = world.runtime(tgid.unwrap_or(pid));
        let time = world.boot_to_wall(k.boot_ns);
        self.pending.push(Pending {
            time,
            seen: now,
            exit: self.early_exit.remove(&pid).map(|(r, _)| r),
            task_memcg: self.early_memcg.remove(&pid).map(|(id, _)| id),
            mark: k,
            proc_,
            runtime,
            parts,
            tgid,
        });
    }

    /// A new sample: completes kills whose time is up and reconciles with the kernel's counters.
    pub fn on_snapshot(&mut self, snap: Arc<Snapshot>, now: Instant, world: &dyn World) -> Vec<Event> {
        self.older = self.newer.replace(snap);
        let mut done = self.finish_ready(now, world);
        done.extend(self.reconcile(now, world));
        done
    }

    /// Explains kills whose victim exited, or that waited long enough. Kills of one incident
    /// (the same trigger within [`INCIDENT`]) wait for each other, and where the kernel killed
    /// a whole cgroup at once (`memory.oom.group`) they become one event.
    pub fn finish_ready(&mut self, now: Instant, world: &dyn World) -> Vec<Event> {
        let is_ready = |p: &Pending| p.exit.is_some() || now.duration_since(p.seen) >= EXIT_WAIT;
        let all = std::mem::take(&mut self.pending);
        let ready: Vec<bool> = all.iter().map(|p| is_ready(p) && all.iter().filter(|q| same_incident(p, q)).all(is_ready)).collect();
        let mut ready_now = Vec::new();
        for (p, r) in all.into_iter().zip(ready) {
            if r { ready_now.push(p) } else { self.pending.push(p) }
        }
        let mut ready = ready_now;
        let mut out = Vec::new();
        if !ready.is_empty() {
            // Frames first seen just before the kills are being named: wait for that once,
            // briefly, before any lock an explanation takes.
            self.settle_names();
        }
        while !ready.is_empty() {
            let first = ready.remove(0);
            let (mates, rest): (Vec<Pending>, Vec<Pending>) = ready.into_iter().partition(|q| same_incident(&first, q));
            ready = rest;
            let mut events: Vec<Event> = std::iter::once(&first).chain(&mates).map(|p| self.explain(p, world)).collect();
            if let Some(e) = merge_group(&mut events, world) {
                events = vec![e];
            }
            for e in events {
                self.account(&e);
                out.push(e);
            }
        }
        out
    }

    /// When the oldest waiting kill must be explained, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.seen + EXIT_WAIT).min()
    }

    /// The sample taken last before `time` (else the oldest there is).
    fn before(&self, time: f64) -> Option<&Snapshot> {
        let t = |s: &Snapshot| crate::unix_seconds(s.taken_at);
        match (&self.older, &self.newer) {
            (_, Some(n)) if t(n) <= time => Some(n),
            (Some(o), _) => Some(o),
            (None, n) => n.as_deref(),
        }
    }

    fn explain(&self, p: &Pending, world: &dyn World) -> Event {
        let kill = Kill {
            mark: &p.mark,
            exit: p.exit.as_ref(),
            task_memcg: p.task_memcg,
            time: p.time,
            proc_: p.proc_.as_ref(),
            runtime: p.runtime.as_ref(),
            parts: p.parts.as_ref(),
            tgid: p.tgid,
        };
        self.with_context(self.before(p.time), |cx| explain::explain(&kill, cx, world))
    }

    /// Waits briefly for the names of frames first seen just now.
    pub fn settle_names(&self) {
        if let Some((_, names)) = &self.stacks {
            names.settle(NAMES_WAIT);
        }
    }

    /// Runs `f` with what an explanation draws on: `before` (the sample before the event), the
    /// newest samples, the history and the fault stacks.
    pub fn with_context<R>(&self, before: Option<&Snapshot>, f: impl FnOnce(&explain::Context<'_>) -> R) -> R {
        let snaps: Vec<&Snapshot> = [self.newer.as_deref(), self.older.as_deref()].into_iter().flatten().collect();
        let interval = match (&self.older, &self.newer) {
            (Some(o), Some(n)) => n.taken_at.duration_since(o.taken_at).map(|d| d.as_secs_f64()).unwrap_or(1.0),
            _ => 1.0,
        };
        let history = self.history.as_ref().map(|h| h.read().unwrap_or_else(|e| e.into_inner()));
        let stacks = self.stacks.as_ref().map(|(s, n)| (s.read().unwrap_or_else(|e| e.into_inner()), n.as_ref()));
        let cx = Context {
            before,
            snaps: &snaps,
            history: history.as_deref(),
            stacks: stacks.as_ref().map(|(s, n)| (&**s, *n)),
            interval,
            v1: self.v1(),
        };
        f(&cx)
    }

    /// Kills the kernel counted in a container beyond what events explained, once the
    /// difference has lasted [`MISSED_GRACE`] with no kill in flight; on a first run, the
    /// counters as they are become the baseline instead.
    fn reconcile(&mut self, now: Instant, world: &dyn World) -> Vec<Event> {
        let Some(snap) = self.newer.clone() else { return vec![] };
        if std::mem::take(&mut self.first_run) {
            self.baseline = Some(self.take_counters_as_baseline(&snap));
            return vec![];
        }
        self.missed_kills(&snap, now, world)
    }

    /// Kills already on the counters when memwatch first ran: explained by the baseline.
    fn take_counters_as_baseline(&mut self, snap: &Snapshot) -> HashMap<u64, u64> {
        let mut baseline = HashMap::new();
        for c in snap.containers.iter() {
            let kernel = c.oom_kills.unwrap_or(0);
            let explained = self.explained.entry(c.id).or_default();
            if kernel > *explained {
                baseline.insert(c.id, kernel - *explained);
                *explained = kernel;
            }
        }
        baseline
    }

    /// The containers whose counters show more kills than events explained, for long enough:
    /// one `kernel_counter` event each, with the count.
    fn missed_kills(&mut self, snap: &Snapshot, now: Instant, world: &dyn World) -> Vec<Event> {
        let mut containers: Vec<_> = snap.containers.iter().filter(|c| c.oom_kills.is_some()).collect();
        // Deepest first: a child's missed kill also explains its ancestors' counters.
        containers.sort_by_cached_key(|c| std::cmp::Reverse(c.cgroup.matches('/').count()));
        let mut out = Vec::new();
        let mut counters = HashMap::with_capacity(containers.len());
        for c in containers {
            let kernel = c.oom_kills.unwrap_or(0);
            let before = self.last_counter.get(&c.id).copied();
            counters.insert(c.id, kernel);
            let explained = self.explained.get(&c.id).copied().unwrap_or(0);
            if kernel <= explained {
                if before.is_some_and(|b| kernel < b) {
                    self.explained.insert(c.id, kernel); // a reset: a new cgroup with an old id
                }
                self.discrepancy_since.remove(&c.id);
                continue;
            }
            let since = *self.discrepancy_since.entry(c.id).or_insert(now);
            if !self.pending.is_empty() || now.duration_since(since) < MISSED_GRACE {
                continue;
            }
            self.discrepancy_since.remove(&c.id);
            let mut e = Event {
                count: kernel - explained,
                ..explain::of_container(c, snap, super::event::EventKind::OomKill, Source::KernelCounter, world.wall_now())
            };
            e.explanation = super::reasons::reasons(&e);
            self.account(&e);
            out.push(e);
        }
        self.last_counter = counters;
        out
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, collections::HashMap};

    use super::*;
    use crate::{
        oom::{
            event::{Constraint, ProcessInfo, ReasonKind},
            world::ProcFacts,
        },
        snapshot::fixture::{container, snapshot},
    };

    /// A host made of fixture data: cgroups by id and path, their limit-hit counters, and
    /// processes.
    #[derive(Default)]
    struct Fixture {
        paths: HashMap<u64, String>,
        limit_events: RefCell<HashMap<String, u64>>,
        procs: HashMap<u32, ProcFacts>,
        parts: HashMap<String, crate::oom::world::MemoryStat>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let mut f = Fixture::default();
            f.paths.insert(1, "/".into());
            for id in [10, 11] {
                f.paths.insert(id, format!("/c{id}"));
            }
            f
        }
    }

    impl World for Fixture {
        fn process(&self, pid: u32) -> Option<ProcFacts> {
            self.procs.get(&pid).cloned()
        }
        fn runtime(&self, _: u32) -> Option<Facts> {
            None
        }
        fn cgroup_path(&self, id: u64) -> Option<String> {
            self.paths.get(&id).cloned()
        }
        fn ancestry(&self, path: &str) -> Vec<(u64, String)> {
            let id = |p: &str| self.paths.iter().find(|(_, v)| *v == p).map(|(k, _)| *k);
            let mut out: Vec<(u64, String)> = id(path).map(|i| (i, path.to_string())).into_iter().collect();
            if path != "/" {
                out.push((1, "/".into()));
            }
            out
        }
        fn limit_events(&self, path: &str) -> Option<u64> {
            self.limit_events.borrow().get(path).copied()
        }
        fn memory_parts(&self, path: &str) -> Option<crate::oom::world::MemoryStat> {
            self.parts.get(path).copied()
        }
        fn processes(&self, _: &str, _: usize) -> Vec<ProcessInfo> {
            vec![]
        }
        fn wall_now(&self) -> f64 {
            2_000.0
        }
        fn boot_to_wall(&self, boot_ns: u64) -> f64 {
            1_000.0 + boot_ns as f64 / 1e9
        }
    }

    /// The tracepoint's record of a kill of `pid` at 1 s after boot.
    fn mark(pid: u32) -> OomKill {
        OomKill {
            victim_exit: false,
            victim_task: false,
            boot_ns: 1_000_000_000,
            victim_pid: pid,
            victim_comm: Some("hog".into()),
            victim_memcg_id: None,
            total_vm_bytes: None,
            anon_rss_bytes: Some(64),
            file_rss_bytes: None,
            shmem_rss_bytes: None,
            pgtables_bytes: None,
            uid: None,
            oom_score_adj: None,
            trigger_pid: 5,
            trigger_tgid: 5,
            trigger_comm: "trigger".into(),
            trigger_cgroup_id: 0,
            trigger_memcg_id: 0,
            levels: vec![],
        }
    }

    /// The record a victim sends from its own context as it exits, in cgroup `memcg`.
    fn exit(pid: u32, memcg: u64) -> OomKill {
        OomKill { victim_exit: true, victim_memcg_id: Some(memcg), victim_comm: None, ..mark(pid) }
    }

    fn task(pid: u32, memcg: u64) -> OomKill {
        OomKill { victim_task: true, victim_memcg_id: Some(memcg), ..mark(pid) }
    }

    fn with_sample(world: &Fixture) -> (Tracker, Instant) {
        let mut t = Tracker::new();
        let now = Instant::now();
        assert!(t.on_snapshot(Arc::new(snapshot(900.0, vec![container(10, "/c10"), container(11, "/c11")])), now, world).is_empty());
        (t, now)
    }

    #[test]
    fn a_kill_is_explained_when_its_victim_exits() {
        let world = Fixture::new();
        world.limit_events.borrow_mut().insert("/c10".into(), 1);
        let (mut t, now) = with_sample(&world);
        assert!(t.on_record(mark(42), now, &world).is_empty(), "waits for the victim");
        assert_eq!(t.next_deadline(), Some(now + EXIT_WAIT));
        let done = t.on_record(exit(42, 10), now + Duration::from_millis(30), &world);
        assert_eq!(done.len(), 1);
        let e = &done[0];
        assert_eq!((e.cgroup.as_str(), e.cgroup_id, &e.cgroup_ids[..]), ("/c10", 10, &[10, 1][..]));
        assert_eq!((e.constraint, e.constrained_by.as_deref()), (Constraint::Cgroup, Some("/c10")));
        assert_eq!(e.victim.as_ref().unwrap().pid, 42);
        assert_eq!(e.before.as_ref().unwrap().limit_bytes, 1000, "the container as last sampled");
        assert_eq!(e.time, 1_001.0);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn a_victim_that_exits_late_or_never_is_explained_after_the_wait() {
        let mut world = Fixture::new();
        world.procs.insert(
            42,
            ProcFacts {
                info: ProcessInfo { pid: 42, comm: "hog".into(), vsz_bytes: 5, rss_bytes: 6 },
                cgroup: Some("/c11".into()),
                lineage: Default::default(),
            },
        );
        let (mut t, now) = with_sample(&world);
        assert!(t.on_record(mark(42), now, &world).is_empty());
        assert!(t.finish_ready(now + EXIT_WAIT - Duration::from_millis(1), &world).is_empty());
        let done = t.finish_ready(now + EXIT_WAIT, &world);
        assert_eq!(done.len(), 1);
        // No record named its cgroup: /proc did, when the kill was seen. No limit counter rose.
        assert_eq!((done[0].cgroup.as_str(), done[0].constraint), ("/c11", Constraint::Machine));
        // The exit record that comes late makes no second event.
        assert!(t.on_record(exit(42, 11), now + EXIT_WAIT * 2, &world).is_empty());
        assert!(t.finish_ready(now + EXIT_WAIT * 4, &world).is_empty());
    }

    #[test]
    fn records_that_come_before_the_kills_own() {
        let world = Fixture::new();
        let (mut t, now) = with_sample(&world);
        // The victim's cgroup at the kill (6.8+), then its exit, then the tracepoint's record.
        assert!(t.on_record(task(42, 11), now, &world).is_empty());
        assert!(t.on_record(exit(43, 10), now, &world).is_empty());
        let done = t.on_record(mark(43), now, &world);
        assert_eq!(done.len(), 1, "its exit already came");
        assert_eq!(done[0].cgroup_id, 10);
        assert!(t.on_record(mark(42), now, &world).is_empty(), "still running");
        let done = t.finish_ready(now + EXIT_WAIT, &world);
        assert_eq!(done[0].cgroup_id, 11, "from the task record");
    }

    #[test]
    fn kills_the_probe_missed_are_reported_with_their_count() {
        let world = Fixture::new();
        let (mut t, now) = with_sample(&world);
        // One kill the probe saw in /c10; the kernel counts three there.
        t.on_record(mark(42), now, &world);
        t.on_record(exit(42, 10), now, &world);
        let mut c = container(10, "/c10");
        c.oom_kills = Some(3);
        let snap = |t: f64| Arc::new(snapshot(t, vec![c.clone()]));
        assert!(t.on_snapshot(snap(901.0), now, &world).is_empty(), "grace: records may be on their way");
        assert!(t.on_snapshot(snap(902.0), now + MISSED_GRACE / 2, &world).is_empty());
        let done = t.on_snapshot(snap(903.0), now + MISSED_GRACE, &world);
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].source, done[0].count, done[0].cgroup_id), (Source::KernelCounter, 2, 10));
        assert!(t.on_snapshot(snap(904.0), now + MISSED_GRACE * 3, &world).is_empty(), "explained now");
    }

    #[test]
    fn the_state_at_the_kill_and_what_grew_before_it() {
        use crate::{history::History, oom::record::Level, parse::cgroup::MemoryStat};
        const MIB: u64 = 1 << 20;
        let mut world = Fixture::new();
        world.parts.insert(
            "/c10".into(),
            MemoryStat { file: Some(3 * MIB), shmem: Some(2 * MIB), kernel: Some(MIB), anon: Some(0), ..Default::default() },
        );
        let history = Arc::new(RwLock::new(History::new(Duration::from_secs(900))));
        let mut t = Tracker::new();
        t.set_history(history.clone());
        let now = Instant::now();
        // Samples at 970..=1000 (the kill is at 1001): working set and anon grow 1 MiB/s.
        for s in 0..=30u64 {
            let mut c = container(10, "/c10");
            (c.working_set_bytes, c.rss_bytes) = (s * MIB, s * MIB);
            let snap = Arc::new(snapshot(970.0 + s as f64, vec![c]));
            history.write().unwrap().push(&snap);
            t.on_snapshot(snap, now, &world);
        }
        let level = |id, usage, limit| Level {
            cgroup_id: id,
            usage_bytes: usage,
            limit_bytes: limit,
            swap_usage_bytes: Some(0),
            swap_limit_bytes: None,
        };
        let mut k = mark(42);
        k.levels = vec![level(10, 32 * MIB - 4096, Some(32 * MIB)), level(1, 40 * MIB, None)];
        assert!(t.on_record(k, now, &world).is_empty());
        let e = t.on_record(exit(42, 10), now, &world).remove(0);
        assert_eq!((e.constraint, e.constrained_by.as_deref()), (Constraint::Cgroup, Some("/c10")));
        let a = e.at_kill.as_ref().expect("state at the kill");
        assert_eq!((a.cgroup.as_str(), a.usage_bytes, a.limit_bytes), ("/c10", 32 * MIB - 4096, Some(32 * MIB)));
        assert_eq!((a.file_bytes, a.shmem_bytes, a.kernel_bytes), (Some(MIB), Some(2 * MIB), Some(MIB)));
        assert_eq!(a.anon_bytes, Some(32 * MIB - 4096 - 3 * MIB - MIB), "usage less the rest");
        assert!(a.missing.is_empty(), "{:?}", a.missing);
        let r = e.recent.as_ref().expect("history");
        assert_eq!(r.window_seconds, 30.0);
        assert!(!r.younger_than_a_sample);
        let anon = r.growth.iter().find(|g| g.what == crate::oom::event::GrowthField::Anon).unwrap();
        assert_eq!(anon.from_bytes, MIB, "the sample 30 s before the kill");
        assert!(e.explanation.iter().any(|r| r.kind == ReasonKind::AnonGrowth), "{:?}", e.explanation);
        // No level at its limit: the machine ran out.
        let mut k = mark(43);
        k.levels = vec![level(10, 5 * MIB, Some(32 * MIB)), level(1, 40 * MIB, None)];
        t.on_record(k, now, &world);
        let e = t.on_record(exit(43, 10), now, &world).remove(0);
        assert_eq!(e.constraint, Constraint::Machine);
        assert_eq!(e.explanation[0].kind, ReasonKind::Machine);
    }

    #[test]
    fn a_first_run_takes_the_counters_as_a_baseline() {
        let world = Fixture::new();
        let mut t = Tracker::new();
        t.first_run();
        let now = Instant::now();
        let mut c = container(11, "/c11");
        c.oom_kills = Some(2);
        let snap = |t: f64, c: &crate::snapshot::Container| Arc::new(snapshot(t, vec![c.clone()]));
        assert!(t.on_snapshot(snap(900.0, &c), now, &world).is_empty());
        assert_eq!(t.take_baseline(), Some(HashMap::from([(11, 2)])));
        assert_eq!(t.take_baseline(), None, "once");
        assert!(t.on_snapshot(snap(903.0, &c), now + MISSED_GRACE * 2, &world).is_empty(), "not missed");
        // A kill while memwatch runs that the probe does not see is missed, as ever.
        c.oom_kills = Some(3);
        assert!(t.on_snapshot(snap(904.0, &c), now + MISSED_GRACE * 3, &world).is_empty());
        let done = t.on_snapshot(snap(907.0, &c), now + MISSED_GRACE * 5, &world);
        assert_eq!((done.len(), done[0].count, done[0].source), (1, 1, Source::KernelCounter));
        assert_eq!(done[0].explanation[0].kind, ReasonKind::Missed);
    }

    #[test]
    fn a_counter_read_before_the_latest_kill_is_not_a_reset() {
        let world = Fixture::new();
        let (mut t, now) = with_sample(&world);
        let snap = |t: f64, kills: u64| {
            let mut c = container(10, "/c10");
            c.oom_kills = Some(kills);
            Arc::new(snapshot(t, vec![c]))
        };
        assert!(t.on_snapshot(snap(901.0, 0), now, &world).is_empty());
        // Two kills seen by the probe; the counter (read on a slower cadence) still says one.
        for pid in [42, 43] {
            t.on_record(mark(pid), now, &world);
            t.on_record(exit(pid, 10), now, &world);
        }
        assert!(t.on_snapshot(snap(902.0, 1), now, &world).is_empty());
        // Read again: two. Nothing was missed.
        for (i, at) in [(3.0, MISSED_GRACE), (4.0, MISSED_GRACE * 3)] {
            assert!(t.on_snapshot(snap(900.0 + i, 2), now + at, &world).is_empty(), "no kill counted twice");
        }
        // A counter below the last one read: a new cgroup with the old id, which starts over.
        assert!(t.on_snapshot(snap(905.0, 0), now + MISSED_GRACE * 4, &world).is_empty());
        assert!(t.on_snapshot(snap(906.0, 1), now + MISSED_GRACE * 5, &world).is_empty());
        let done = t.on_snapshot(snap(907.0, 1), now + MISSED_GRACE * 7, &world);
        assert_eq!((done.len(), done[0].count), (1, 1), "its unseen kill is missed");
    }

    #[test]
    fn a_cgroup_first_seen_with_kills_on_its_counter() {
        // After the first run: reported as missed by the probe, once, after the grace period.
        let world = Fixture::new();
        let mut t = Tracker::new();
        let now = Instant::now();
        let mut c = container(11, "/c11");
        c.oom_kills = Some(2);
        let snap = |t: f64| Arc::new(snapshot(t, vec![c.clone()]));
        assert!(t.on_snapshot(snap(900.0), now, &world).is_empty());
        let done = t.on_snapshot(snap(903.0), now + MISSED_GRACE, &world);
        assert_eq!((done.len(), done[0].count), (1, 2));
    }
}
