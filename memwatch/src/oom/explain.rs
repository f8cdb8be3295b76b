//! From a kill's kernel records and what the host says of it to the [`Event`]: whose it was
//! (the victim's own cgroup), why (which limit, or the machine), and the container as it was.

use super::{
    event::{Constraint, Event, GoProcess, MemState, ProcessInfo, Source, Trigger, Victim},
    record::OomKill,
    world::{GoSettings, ProcFacts, World},
};
use crate::{parse::identity, snapshot::Snapshot};

/// The processes an event lists, at most.
pub const TOP_PROCESSES: usize = 10;

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
    /// The victim's Go settings, read when the record arrived.
    pub go: Option<&'a GoSettings>,
}

/// Builds the event. `before` is the sample taken last before the kill; `snaps` the newest
/// ones, for cgroups the `before` sample did not have.
pub fn explain(k: &Kill<'_>, before: Option<&Snapshot>, snaps: &[&Snapshot], world: &dyn World) -> Event {
    let mark = k.mark;
    let memcg = k.exit.and_then(|x| x.victim_memcg_id).filter(|id| *id != 0).or(k.task_memcg).or(mark.victim_memcg_id);
    // The victim's cgroup path: from a sample, else by walking for its id, else from /proc.
    let path = memcg
        .and_then(|id| snaps.iter().find_map(|s| s.cgroups.get(&id).map(|c| c.path.to_string())))
        .or_else(|| memcg.and_then(|id| world.cgroup_path(id)))
        .or_else(|| k.proc_.and_then(|p| p.cgroup.clone()));
    // Ancestry by path, so cgroups newer than the last sample work too.
    let chain = path.as_deref().map(|p| world.ancestry(p)).unwrap_or_default();
    let id = memcg.or_else(|| chain.first().map(|(id, _)| *id)).unwrap_or(0);
    let cgroup_ids: Vec<u64> = if chain.is_empty() && id != 0 { vec![id] } else { chain.iter().map(|(i, _)| *i).collect() };
    let container = before.and_then(|s| s.container(id)).or_else(|| snaps.iter().find_map(|s| s.container(id)));
    let (namespace, pod, name, container_id) = match container {
        Some(c) => (c.namespace.to_string(), c.pod.to_string(), c.container.to_string(), c.container_id.to_string()),
        None => {
            let ident = identity::classify(path.as_deref().unwrap_or(""));
            (String::new(), String::new(), String::new(), ident.container_id.unwrap_or_default())
        }
    };
    let (constraint, constrained_by) = constraint(&chain, before, world);
    let victim = victim(k);
    let top = processes(path.as_deref(), container.map(|c| c.top_processes.as_slice()).unwrap_or_default(), world);
    let mut go: Vec<GoProcess> =
        k.go.map(|g| GoProcess { pid: mark.victim_pid, comm: victim.comm.clone(), gomemlimit: g.gomemlimit.clone(), gogc: g.gogc.clone() })
            .into_iter()
            .collect();
    for p in top.iter().filter(|t| t.pid != mark.victim_pid) {
        if let Some(g) = world.go(p.pid) {
            go.push(GoProcess { pid: p.pid, comm: p.comm.clone(), gomemlimit: g.gomemlimit, gogc: g.gogc });
        }
    }
    Event {
        seq: 0,
        time: k.time,
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
    Victim {
        pid: mark.victim_pid,
        comm: mark
            .victim_comm
            .clone()
            .or_else(|| k.exit.and_then(|x| x.victim_comm.clone()))
            .or_else(|| k.proc_.map(|p| p.info.comm.clone()))
            .unwrap_or_default(),
        vsz_bytes: mark.total_vm_bytes.or_else(|| k.proc_.map(|p| p.info.vsz_bytes)),
        rss_bytes: rss,
        anon_rss_bytes: mark.anon_rss_bytes,
        oom_score_adj: mark.oom_score_adj,
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
