//! From a kill's kernel records and what the host says of it to the [`Event`]: whose it was
//! (the victim's own cgroup), why (which limit, or the machine), and the container as it was.

use super::{
    event::{
        AtKill, Constraint, Event, GoProcess, Growth, GrowthField, MemState, ProcessGrowth, ProcessInfo, Recent, Source, Trigger, Victim,
    },
    reasons,
    record::{Level, OomKill},
    world::{MemoryStat, ProcFacts, World},
};
use crate::{
    history::{Field, History},
    parse::identity,
    runtime::{Facts, ProcessFacts},
    snapshot::{Container, Snapshot},
};

/// The processes an event lists, at most.
pub const TOP_PROCESSES: usize = 10;
/// How far back an event looks for what grew.
pub const RECENT_WINDOW: f64 = 30.0;
/// A page counter this close to its limit is at it: a charge that fails may be a huge page
/// (2 MiB) and a batch of pages more.
pub const AT_LIMIT_MARGIN: u64 = (2 << 20) + (256 << 10);

/// A cgroup's memory.stat, read as soon as a kill's record came in.
#[derive(Debug, Clone, PartialEq)]
pub struct PartsRead {
    pub cgroup_id: u64,
    pub stat: MemoryStat,
    /// Unix seconds of the read.
    pub at: f64,
}

/// Everything known of one kill when it is explained.
pub struct Kill<'a> {
    /// The tracepoint's record.
    pub mark: &'a OomKill,
    /// The record the victim sent as it exited, if it did.
    pub exit: Option<&'a OomKill>,
    /// The victim's own memory cgroup at the kill, where the kernel says (6.8+).
    pub task_memcg: Option<u64>,
    /// Unix seconds of the kill.
    pub time: f64,
    /// The victim as /proc showed it when the record arrived.
    pub proc_: Option<&'a ProcFacts>,
    /// The victim's runtime facts, read when the record arrived.
    pub runtime: Option<&'a Facts>,
    /// The parts of the memory of the cgroup at its limit, read when the record arrived.
    pub parts: Option<&'a PartsRead>,
    /// The process the victim task belongs to, where known (the kernel may name a thread).
    pub tgid: Option<u32>,
}

/// What else an explanation draws on besides the kill and the host.
pub struct Context<'a> {
    /// The sample taken last before the kill.
    pub before: Option<&'a Snapshot>,
    /// The newest samples, for cgroups the `before` sample did not have.
    pub snaps: &'a [&'a Snapshot],
    pub history: Option<&'a History>,
    /// The fault stacks sampled before the kill, and their names.
    pub stacks: Option<(&'a crate::stacks::Store, &'a crate::stacks::symbolize::Names)>,
    /// Seconds between samples.
    pub interval: f64,
    /// Cgroup v1 (the second page counter is memory + swap).
    pub v1: bool,
}

fn at_limit(usage: Option<u64>, limit: Option<u64>) -> bool {
    matches!((usage, limit), (Some(u), Some(l)) if u + AT_LIMIT_MARGIN >= l)
}

/// The level whose limit the kill hit: the deepest at its limit (memory, or on v1 memory +
/// swap). None: no cgroup was at its limit, the machine ran out.
pub fn constrained_level(levels: &[Level], v1: bool) -> Option<&Level> {
    levels.iter().find(|l| at_limit(Some(l.usage_bytes), l.limit_bytes) || (v1 && at_limit(l.swap_usage_bytes, l.swap_limit_bytes)))
}

/// Whose kill it was: the victim's own cgroup, its ancestry, and the container it is.
struct Whose<'a> {
    /// Its path (relative to the memory hierarchy's root), when known.
    path: Option<String>,
    /// (id, path) of it and its ancestors, deepest first.
    chain: Vec<(u64, String)>,
    id: u64,
    /// As the samples showed it.
    container: Option<&'a Container>,
}

impl Whose<'_> {
    /// The path of the cgroup `id`: from the ancestry, a sample, else by walking for it.
    fn path_of(&self, id: u64, snaps: &[&Snapshot], world: &dyn World) -> Option<String> {
        self.chain
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, p)| p.clone())
            .or_else(|| snaps.iter().find_map(|s| s.cgroups.get(&id).map(|c| c.path.to_string())))
            .or_else(|| world.cgroup_path(id))
    }

    fn cgroup_ids(&self) -> Vec<u64> {
        if self.chain.is_empty() && self.id != 0 { vec![self.id] } else { self.chain.iter().map(|(i, _)| *i).collect() }
    }

    /// (namespace, pod, container, container id); for a container no sample saw, its names
    /// from the kubelet's log layout as it is now.
    fn names(&self, world: &dyn World) -> (String, String, String, String) {
        match self.container {
            Some(c) => (c.namespace.to_string(), c.pod.to_string(), c.container.to_string(), c.container_id.to_string()),
            None => {
                let id = identity::classify(self.path.as_deref().unwrap_or("")).container_id.unwrap_or_default();
                let (ns, pod, name) = if id.is_empty() { None } else { world.kube_names(&id) }.unwrap_or_default();
                (ns, pod, name, id)
            }
        }
    }
}

/// Finds the victim's cgroup: from its exit record, the kernel's task record or the
/// tracepoint's; its path from a sample, else by walking for its id, else from /proc.
fn whose<'a>(k: &Kill<'_>, cx: &Context<'a>, world: &dyn World) -> Whose<'a> {
    let mark = k.mark;
    let memcg = k.exit.and_then(|x| x.victim_memcg_id).filter(|id| *id != 0).or(k.task_memcg).or(mark.victim_memcg_id);
    let path = memcg
        .and_then(|id| cx.snaps.iter().find_map(|s| s.cgroups.get(&id).map(|c| c.path.to_string())))
        .or_else(|| memcg.and_then(|id| world.cgroup_path(id)))
        .or_else(|| k.proc_.and_then(|p| p.cgroup.clone()));
    // Ancestry by path, so cgroups newer than the last sample work too.
    let chain = path.as_deref().map(|p| world.ancestry(p)).unwrap_or_default();
    let id = memcg.or_else(|| chain.first().map(|(id, _)| *id)).unwrap_or(0);
    let container = cx.before.and_then(|s| s.container(id)).or_else(|| cx.snaps.iter().find_map(|s| s.container(id)));
    Whose { path, chain, id, container }
}

/// Builds the event. `before` is the sample taken last before the kill; `snaps` the newest
/// ones, for cgroups the `before` sample did not have.
pub fn explain(k: &Kill<'_>, cx: &Context<'_>, world: &dyn World) -> Event {
    let mark = k.mark;
    let who = whose(k, cx, world);
    let (namespace, pod, name, container_id) = who.names(world);
    let hit = constrained_level(&mark.levels, cx.v1);
    let (constraint, constrained_by) = match hit {
        _ if mark.levels.is_empty() => constraint(&who.chain, cx.before, world),
        Some(l) => (Constraint::Cgroup, who.path_of(l.cgroup_id, cx.snaps, world)),
        None => (Constraint::Machine, None),
    };
    // The cgroup the state at the kill is of: the one at its limit, else the victim's.
    let level = hit.or_else(|| mark.levels.iter().find(|l| l.cgroup_id == who.id)).or(mark.levels.first());
    let at_kill = level.map(|l| at_kill(l, who.path_of(l.cgroup_id, cx.snaps, world).unwrap_or_default(), k, cx.v1));
    let mut victim = victim(k);
    // What it was to its container: by its lineage, against the container the kernel says it
    // was in (its own cgroup may be unreadable by now).
    victim.role = k.proc_.zip(who.path.as_deref()).and_then(|(p, path)| p.lineage.role(path));
    let top = processes(who.path.as_deref(), who.container.map(|c| c.top_processes.as_slice()).unwrap_or_default(), world);
    let sampled = who.container.map(|c| &*c.runtimes).unwrap_or_default();
    let (go, runtimes) = runtimes(k, &victim, &top, sampled, world);
    let recent = cx.history.map(|h| recent(h, who.id, k.time, cx.interval, at_kill.as_ref(), Some(&victim), &top));
    let mut event = Event {
        count: 1,
        namespace,
        pod,
        container: name,
        container_id,
        cgroup: who.path.clone().unwrap_or_default(),
        constraint,
        constrained_by,
        victim: Some(victim),
        trigger: Some(Trigger { pid: mark.trigger_pid, comm: mark.trigger_comm.clone() }),
        before: who.container.map(mem_state),
        top_processes: top,
        go,
        runtimes,
        machine_memory_bytes: cx.before.or(cx.snaps.first().copied()).map(|s| s.machine_memory_bytes).filter(|m| *m > 0),
        at_kill,
        recent,
        stacks: cx.stacks.and_then(|(store, names)| {
            let id = level.map_or(who.id, |l| l.cgroup_id);
            let ids = descendants(id, who.path_of(id, cx.snaps, world).as_deref(), cx.snaps);
            crate::stacks::event_stacks(store, names, &ids, k.time, k.tgid)
        }),
        ..Event::empty(k.time, super::event::EventKind::OomKill, Source::Probe, who.id, who.cgroup_ids())
    };
    with_growth(&mut event);
    event.explanation = reasons::reasons(&event);
    event
}

/// Tells the stacks what the container grew by over their window (its anonymous memory, else
/// its working set), so that they say what share of the growth they stand for.
fn with_growth(e: &mut Event) {
    let grown = e.recent.as_ref().and_then(|r| {
        let of = |f: GrowthField| r.growth.iter().find(|g| g.what == f).map(|g| g.delta_bytes.max(0) as u64);
        of(GrowthField::Anon).or_else(|| of(GrowthField::WorkingSet))
    });
    if let Some(s) = e.stacks.as_mut() {
        s.growth_bytes = grown;
    }
}

/// Why a warning is raised: the risks that hold, the limit hits of the last minute, and the
/// seconds since an OOM kill in the container when it is still at risk after one.
#[derive(Debug, Clone, PartialEq)]
pub struct WarningCause {
    pub risks: Vec<crate::risk::Risk>,
    pub hits: u64,
    pub after_kill: Option<f64>,
}

/// The event of a warning for container `c` of sample `snap`, raised at `time`: what a kill's
/// event carries where it is known before one (the container's state, who grew and which code,
/// its runtimes' facts as last sampled), and the warning's own facts.
pub fn warning(c: &Container, snap: &Snapshot, cx: &Context<'_>, cause: WarningCause, time: f64) -> Event {
    let top: Vec<ProcessInfo> = c
        .top_processes
        .iter()
        .take(TOP_PROCESSES)
        .map(|p| ProcessInfo { pid: p.pid, comm: p.comm.to_string(), vsz_bytes: p.vsz_bytes, rss_bytes: p.rss_bytes })
        .collect();
    let runtimes: Vec<ProcessFacts> = c.runtimes.iter().filter(|p| p.runtime.is_some() || p.malloc.is_some()).cloned().collect();
    let go = go_programs(&runtimes);
    let mut e = sampled_event(c, snap, super::event::EventKind::Warning, time);
    e.recent = cx.history.map(|h| recent(h, c.id, time, cx.interval, None, None, &top));
    e.top_processes = top;
    e.go = go;
    e.runtimes = runtimes;
    e.stacks = cx.stacks.and_then(|(store, names)| {
        let ids = descendants(c.id, Some(&c.cgroup), &[snap]);
        crate::stacks::event_stacks(store, names, &ids, time, None)
    });
    with_growth(&mut e);
    e.warning = Some(super::event::Warning { after_kill_seconds: cause.after_kill, ..warning_facts(c, cause.risks, cause.hits) });
    e.explanation = reasons::warning_reasons(&e);
    e
}

/// The event that clears warning `seq` (raised at `since`) of container `c`.
pub fn cleared(c: &Container, snap: &Snapshot, seq: u64, since: f64, hits: u64, time: f64) -> Event {
    let mut e = sampled_event(c, snap, super::event::EventKind::Cleared, time);
    e.warning =
        Some(super::event::Warning { warning_seq: Some(seq), warned_for_seconds: Some(time - since), ..warning_facts(c, vec![], hits) });
    e.explanation = reasons::warning_reasons(&e);
    e
}

/// A warning's (or cleared's) facts of container `c`: its state, growth and time to the limit
/// (the working set's trend: the time to OOM), and its limit hits of the last minute.
fn warning_facts(c: &Container, risks: Vec<crate::risk::Risk>, hits: u64) -> super::event::Warning {
    super::event::Warning {
        risks,
        state: mem_state(c),
        growth_bytes_per_second: c.time_to_oom_seconds.filter(|t| *t > 0.0).map(|t| c.headroom_bytes as f64 / t),
        time_to_limit_seconds: c.time_to_oom_seconds,
        limit_hits_last_minute: hits,
        warning_seq: None,
        warned_for_seconds: None,
        after_kill_seconds: None,
        parts: Some(super::event::Parts {
            anon_bytes: c.rss_bytes,
            file_bytes: c.cache_bytes.saturating_sub(c.shmem_bytes),
            shmem_bytes: c.shmem_bytes,
            kernel_bytes: c.kernel_bytes,
        }),
    }
}

fn mem_state(c: &Container) -> MemState {
    MemState {
        usage_bytes: c.usage_bytes,
        working_set_bytes: c.working_set_bytes,
        limit_bytes: c.limit_bytes,
        headroom_bytes: c.headroom_bytes,
    }
}

/// An event of a sample's about container `c`: its names, and nothing of a kill.
fn sampled_event(c: &Container, snap: &Snapshot, kind: super::event::EventKind, time: f64) -> Event {
    Event {
        constraint: Constraint::Cgroup,
        constrained_by: Some(c.cgroup.to_string()),
        before: Some(mem_state(c)),
        machine_memory_bytes: Some(snap.machine_memory_bytes).filter(|m| *m > 0),
        ..of_container(c, snap, kind, Source::Sample, time)
    }
}

/// An event about container `c` of `snap`: its names and ancestry, no other fact.
pub fn of_container(c: &Container, snap: &Snapshot, kind: super::event::EventKind, source: Source, time: f64) -> Event {
    Event {
        namespace: c.namespace.to_string(),
        pod: c.pod.to_string(),
        container: c.container.to_string(),
        container_id: c.container_id.to_string(),
        cgroup: c.cgroup.to_string(),
        ..Event::empty(time, kind, source, c.id, snap.ancestry(c.id))
    }
}

/// A cgroup and the containers below it in the newest sample (a pod's limit covers its
/// containers' cgroups, where the faults are counted).
fn descendants(id: u64, path: Option<&str>, snaps: &[&Snapshot]) -> Vec<u64> {
    let mut ids = vec![id];
    if let (Some(p), Some(s)) = (path, snaps.first()) {
        let prefix = format!("{}/", p.trim_end_matches('/'));
        ids.extend(s.containers.iter().filter(|c| c.cgroup.starts_with(&prefix)).map(|c| c.id));
    }
    ids
}

/// The runtime facts of the victim (read when its record came in, else as last sampled) and
/// of the container's other processes (read now while they live, else as last sampled); and
/// its Go programs as the event's `go` lists them.
fn runtimes(
    k: &Kill<'_>,
    victim: &Victim,
    top: &[ProcessInfo],
    sampled: &[ProcessFacts],
    world: &dyn World,
) -> (Vec<GoProcess>, Vec<ProcessFacts>) {
    let last = |pid: u32| sampled.iter().find(|p| p.pid == pid);
    // A data store's settings: as sampled (the exec hook's read where it saw the start), else
    // as the exec hook read them, else read now.
    let facts = |pid: u32, comm: &str, runtime: Option<Facts>| ProcessFacts {
        pid,
        comm: comm.to_string(),
        runtime: runtime.or_else(|| last(pid).and_then(|p| p.runtime.clone())),
        malloc: last(pid).and_then(|p| p.malloc.clone()),
        app: last(pid).and_then(|p| p.app.clone()).or_else(|| world.app(pid)),
    };
    // Read as the record came in, the victim may already be past reading (a dying task's root
    // is gone): then its last sampled facts say more.
    let settled = |f: &&Facts| crate::runtime::get(f.runtime()).settled(f);
    let at_kill = k.runtime.filter(settled).or_else(|| last(victim.pid).and_then(|p| p.runtime.as_ref())).or(k.runtime);
    let mut all = vec![facts(victim.pid, &victim.comm, at_kill.cloned())];
    for p in top.iter().filter(|t| t.pid != victim.pid) {
        all.push(facts(p.pid, &p.comm, world.runtime(p.pid)));
    }
    let seen: Vec<u32> = all.iter().map(|a| a.pid).collect();
    all.extend(sampled.iter().filter(|s| !seen.contains(&s.pid)).cloned());
    all.retain(|p| p.runtime.is_some() || p.malloc.is_some() || p.app.is_some());
    (go_programs(&all), all)
}

/// The Go programs among processes' runtime facts, as an event's `go` lists them.
fn go_programs(all: &[ProcessFacts]) -> Vec<GoProcess> {
    all.iter()
        .filter_map(|p| match &p.runtime {
            Some(Facts::Go(s)) => Some(super::reasons::runtimes::go::process(p.pid, &p.comm, s.clone())),
            _ => None,
        })
        .collect()
}

/// The state at the kill of the cgroup at `level`: usage, limit and swap from the kernel's
/// record; the parts from memory.stat read when the record came in (anonymous memory derived,
/// since the victim's is being freed by then).
fn at_kill(level: &Level, cgroup: String, k: &Kill<'_>, v1: bool) -> AtKill {
    let usage = level.usage_bytes;
    let swap = if v1 { level.swap_usage_bytes.map(|memsw| memsw.saturating_sub(usage)) } else { level.swap_usage_bytes };
    let parts = k.parts.filter(|p| p.cgroup_id == level.cgroup_id);
    let stat = parts.map(|p| p.stat).unwrap_or_default();
    let file_total = stat.file;
    let shmem = stat.shmem;
    let kernel = stat.kernel;
    let anon = file_total.map(|f| usage.saturating_sub(f).saturating_sub(kernel.unwrap_or(0)));
    let mut missing = Vec::new();
    for (name, v) in [("anon", anon), ("file", file_total), ("shmem", shmem), ("kernel", kernel), ("swap", swap)] {
        if v.is_none() {
            missing.push(name.to_string());
        }
    }
    AtKill {
        cgroup,
        cgroup_id: level.cgroup_id,
        usage_bytes: usage,
        limit_bytes: level.limit_bytes,
        swap_bytes: swap,
        anon_bytes: anon,
        file_bytes: file_total.map(|f| f.saturating_sub(shmem.unwrap_or(0))),
        shmem_bytes: shmem,
        kernel_bytes: kernel,
        missing,
        parts_read_after_ms: parts.map(|p| ((p.at - k.time).max(0.0) * 1000.0).round() as u64),
    }
}

/// What grew in the container in the [`RECENT_WINDOW`] before the kill, and who grew.
/// The last look at a container's processes that counts for "growing now": at least this many
/// seconds before the event (the history looks every 5 s)...
const LOOK_AT_LEAST: f64 = 2.0;
/// ...and at most this many.
const LOOK_AT_MOST: f64 = 15.0;

fn recent(h: &History, id: u64, time: f64, interval: f64, at: Option<&AtKill>, victim: Option<&Victim>, now: &[ProcessInfo]) -> Recent {
    let first_seen = h.first_seen(id).filter(|f| *f <= time);
    let from_t = first_seen.map_or(time, |f| f.max(time - RECENT_WINDOW));
    let mut growth = Vec::new();
    let ours = at.filter(|a| a.cgroup_id == id);
    let fields = [
        (GrowthField::WorkingSet, Field::WorkingSet, None),
        (GrowthField::Anon, Field::Anon, ours.and_then(|a| a.anon_bytes)),
        (GrowthField::File, Field::File, ours.and_then(|a| a.file_bytes.zip(a.shmem_bytes).map(|(f, s)| f + s))),
        (GrowthField::Shmem, Field::Shmem, ours.and_then(|a| a.shmem_bytes)),
    ];
    for (what, field, at_kill) in fields {
        // From: the sample at the window's start; a container never sampled started empty.
        let from = match first_seen {
            Some(_) => h.value_at(id, field, from_t).map(|(_, v)| v),
            None => Some(0),
        };
        let to = at_kill.or_else(|| h.value_at(id, field, time).map(|(_, v)| v));
        if let (Some(from), Some(to)) = (from, to) {
            growth.push(Growth { what, from_bytes: from, to_bytes: to, delta_bytes: to as i64 - from as i64 });
        }
    }
    let then = first_seen.and_then(|_| h.processes_at(id, from_t)).map(|(_, p)| p);
    // The last look at its processes a few seconds before: who grew since, not since birth.
    let look = first_seen.and_then(|_| h.processes_at(id, time - LOOK_AT_LEAST)).filter(|(t, _)| time - t <= LOOK_AT_MOST);
    let mut procs: Vec<ProcessGrowth> = Vec::new();
    let victim_rss = victim.and_then(|v| v.rss_bytes.map(|r| (v.pid, v.comm.clone(), r)));
    let current = victim_rss.into_iter().chain(now.iter().map(|p| (p.pid, p.comm.clone(), p.rss_bytes)));
    for (pid, comm, to) in current {
        if procs.iter().any(|p| p.pid == pid) {
            continue;
        }
        let from = then.as_ref().and_then(|t| t.iter().find(|p| p.pid == pid)).map(|p| p.rss_bytes);
        let delta = to as i64 - from.unwrap_or(0) as i64;
        let recent = look.as_ref().map(|(t, ps)| {
            let base = ps.iter().find(|p| p.pid == pid).map_or(0, |p| p.rss_bytes);
            (to as i64 - base as i64, time - t)
        });
        if delta > 0 {
            procs.push(ProcessGrowth {
                pid,
                comm,
                from_rss_bytes: from,
                to_rss_bytes: to,
                delta_bytes: delta,
                recent_delta_bytes: recent.map(|r| r.0),
                recent_seconds: recent.map(|r| r.1),
            });
        }
    }
    // The one growing now first: by its growth since the last look, then over the window.
    procs.sort_by(|a, b| {
        b.recent_delta_bytes
            .unwrap_or(b.delta_bytes)
            .cmp(&a.recent_delta_bytes.unwrap_or(a.delta_bytes))
            .then(b.delta_bytes.cmp(&a.delta_bytes))
            .then(a.pid.cmp(&b.pid))
    });
    procs.truncate(5);
    Recent {
        window_seconds: time - from_t,
        first_seen_seconds_before: first_seen.map(|f| time - f),
        younger_than_a_sample: first_seen.is_none_or(|f| time - f < interval),
        growth,
        processes: procs,
    }
}

/// The deepest cgroup on the chain (the root aside) whose limit-hit counter rose since the
/// sample before the kill; none rose: the machine ran out.
fn constraint(chain: &[(u64, String)], before: Option<&Snapshot>, world: &dyn World) -> (Constraint, Option<String>) {
    if chain.is_empty() {
        return (Constraint::Unknown, None);
    }
    let hit = chain.iter().filter(|(_, p)| p != "/").find(|(id, p)| {
        let now = world.limit_events(p).unwrap_or(0);
        let was = before.and_then(|s| s.cgroups.get(id)).and_then(|c| c.limit_events).unwrap_or(0);
        now > was
    });
    match hit {
        Some((_, p)) => (Constraint::Cgroup, Some(p.clone())),
        None => (Constraint::Machine, None),
    }
}

fn victim(k: &Kill<'_>) -> Victim {
    let mark = k.mark;
    let rss = match (mark.anon_rss_bytes, mark.file_rss_bytes, mark.shmem_rss_bytes) {
        (Some(a), f, s) => Some(a + f.unwrap_or(0) + s.unwrap_or(0)),
        _ => k.proc_.map(|p| p.info.rss_bytes),
    };
    // The kernel names the task it chose; where that is a thread, the process is the victim.
    let process = k.proc_.filter(|p| p.info.pid != mark.victim_pid);
    Victim {
        pid: k.tgid.unwrap_or(mark.victim_pid),
        comm: process
            .map(|p| p.info.comm.clone())
            .or_else(|| mark.victim_comm.clone())
            .or_else(|| k.exit.and_then(|x| x.victim_comm.clone()))
            .or_else(|| k.proc_.map(|p| p.info.comm.clone()))
            .unwrap_or_default(),
        vsz_bytes: mark.total_vm_bytes.or_else(|| k.proc_.map(|p| p.info.vsz_bytes)),
        rss_bytes: rss,
        anon_rss_bytes: mark.anon_rss_bytes,
        oom_score_adj: mark.oom_score_adj,
        role: None,
    }
}

/// The container's largest processes: those there now (the sampled list may be a slow period
/// old), and those of the last sample that are gone (the victim among them).
fn processes(path: Option<&str>, sampled: &[crate::snapshot::Process], world: &dyn World) -> Vec<ProcessInfo> {
    let mut top = path.map(|p| world.processes(p, TOP_PROCESSES)).unwrap_or_default();
    for p in sampled {
        if !top.iter().any(|t| t.pid == p.pid) {
            top.push(ProcessInfo { pid: p.pid, comm: p.comm.to_string(), vsz_bytes: p.vsz_bytes, rss_bytes: p.rss_bytes });
        }
    }
    top.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
    top.truncate(TOP_PROCESSES);
    top
}
