//! `/api/v1/recommendations`: each container's recommendation ([`crate::rightsize`]) from this
//! daemon's own history (`--history`, 15 minutes unless told) and the kills it saw, marked as
//! such: one node's recent past, not Prometheus's weeks.

use serde::Serialize;

use crate::{
    history::{ContainerHistory, Field},
    oom::{EventKind, OomView},
    rightsize::{self, Evidence, Recommendation, Runtime},
    snapshot::{Container, Snapshot},
};

/// Points the non-reclaimable series is thinned to (the highest of each stretch).
const POINTS: usize = 90;

/// One container's recommendation, with what it rests on.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub id: u64,
    pub name: String,
    pub cgroup: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The workload its pod belongs to (from the pod's name), where it is a pod's.
    pub workload: String,
    pub evidence: Evidence,
    pub recommendation: Recommendation,
}

/// How the evidence names this daemon's history of `window`.
pub fn source(window: std::time::Duration) -> String {
    format!("{} of this node's history", humantime::format_duration(window))
}

/// The runtime of a container's processes, as far as its memory ceiling goes.
pub fn runtime(c: &Container, machine: u64) -> Option<Runtime> {
    rightsize::runtime_of(&c.runtimes, Some(c.limit_bytes).filter(|_| !c.limit_is_machine), machine)
}

fn field(h: &ContainerHistory, f: Field) -> impl Iterator<Item = (f64, Option<u64>)> + '_ {
    let k = Field::ALL.iter().position(|x| *x == f).expect("a field of ALL");
    h.samples.iter().map(move |(t, v)| (*t, v[k]))
}

/// The evidence of one container's history and the kills in it.
pub fn evidence(c: &Container, h: &ContainerHistory, oom: &OomView, machine: u64, source: &str) -> Evidence {
    // Per sample: the page cache reclaim can free (file less shmem), and the usage less it.
    let parts: Vec<(f64, Option<u64>, Option<u64>)> = field(h, Field::Usage)
        .zip(field(h, Field::File))
        .zip(field(h, Field::Shmem))
        .map(|(((t, u), (_, f)), (_, s))| (t, u, f.map(|f| f.saturating_sub(s.unwrap_or(0)))))
        .collect();
    let all: Vec<(f64, u64)> = parts.iter().filter_map(|(t, u, r)| Some((*t, (*u)?.saturating_sub(r.unwrap_or(0))))).collect();
    let reclaimable = parts.iter().filter_map(|p| p.2).max();
    let every = all.len().div_ceil(POINTS).max(1);
    let nonreclaimable = all.chunks(every).filter_map(|c| c.iter().copied().max_by_key(|p| p.1)).collect();
    let mut ws: Vec<u64> = field(h, Field::WorkingSet).filter_map(|(_, v)| v).collect();
    ws.sort_unstable();
    let p90 = (!ws.is_empty()).then(|| ws[((ws.len() - 1) as f64 * 0.9).round() as usize]);
    let since = h.samples.first().map_or(0.0, |s| s.0);
    let kills: Vec<_> =
        oom.events.iter().filter(|e| e.kind == EventKind::OomKill && e.time >= since && e.cgroup_ids.contains(&c.id)).collect();
    Evidence {
        source: source.to_string(),
        nonreclaimable,
        peak_bytes: c.peak_bytes,
        reclaimable_max_bytes: reclaimable,
        working_set_p90_bytes: p90,
        kills: kills.len() as u64,
        kill_limit_bytes: kills.iter().filter_map(|e| e.at_kill.as_ref()?.limit_bytes).max(),
        limit_bytes: Some(c.limit_bytes).filter(|_| !c.limit_is_machine),
        runtime: runtime(c, machine),
    }
}

/// Every exported container's entry, by name.
pub fn entries(snap: &Snapshot, histories: &[ContainerHistory], oom: &OomView, window: std::time::Duration) -> Vec<Entry> {
    let source = source(window);
    let mut out: Vec<Entry> = histories
        .iter()
        .filter_map(|h| {
            let c = snap.container(h.id)?;
            let evidence = evidence(c, h, oom, snap.machine_memory_bytes, &source);
            Some(Entry {
                id: c.id,
                name: c.display_name().to_string(),
                cgroup: c.cgroup.to_string(),
                namespace: c.namespace.to_string(),
                pod: c.pod.to_string(),
                container: c.container.to_string(),
                workload: if c.pod.is_empty() { String::new() } else { rightsize::workload(&c.pod).to_string() },
                recommendation: rightsize::recommend(&evidence),
                evidence,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    out
}
