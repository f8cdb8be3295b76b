//! From what the collectors gathered to the per-container model: effective limits, working
//! set and headroom, sums over each cgroup's subtree, counters of removed cgroups folded into
//! their parents, which cgroups to export, and the predicted time to OOM.

use std::{
    sync::Arc,
    collections::{BTreeMap, HashMap, VecDeque},
    time::SystemTime,
};

use memwatch_common::Counters;

use crate::{
    collector::SnapshotBuilder,
    parse::identity::{self, Kind},
    snapshot::{Container, Process, SelfStats, Snapshot},
};

/// Which cgroups become series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CgroupFilter {
    /// Kubernetes containers, container-runtime scopes, systemd services, and any other
    /// cgroup with a memory limit of its own outside the kubepods tree.
    Default,
    /// Every memory cgroup but the root.
    All,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub filter: CgroupFilter,
    /// At most this many series for containers; the rest are dropped and counted.
    pub max_series: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { filter: CgroupFilter::Default, max_series: 200_000 }
    }
}

/// Series each exported container adds to `/metrics` at most.
pub const SERIES_PER_CONTAINER: usize = 24;

/// How far back the working-set trend for time-to-OOM looks.
const TREND_WINDOW_SECS: f64 = 60.0;

/// What the model keeps between samples.
#[derive(Debug, Default)]
pub struct ModelState {
    ebpf: EbpfTotals,
    /// (monotonic seconds, working set) per cgroup id.
    history: HashMap<u64, VecDeque<(f64, u64)>>,
    /// Per cgroup id: its path, what the path says it is, and its container id.
    identity: HashMap<u64, (Arc<str>, identity::Identity, Arc<str>)>,
    errors_total: BTreeMap<(String, String), u64>,
    series_dropped_total: u64,
}

/// The kernel side's counts per cgroup since memwatch started, each cgroup's own (not its
/// subtree's). Counts of a cgroup that is gone, or that was never seen in a walk, move to its
/// nearest ancestor that is still there, so no subtree total ever goes backwards.
#[derive(Debug, Default)]
pub struct EbpfTotals {
    own: HashMap<u64, Counters>,
    /// Parent of every cgroup with counts or seen in the last walk: from walks, and from the
    /// kernel side for cgroups no walk saw.
    parent: HashMap<u64, u64>,
    /// Ids in the previous walk.
    walked: std::collections::HashSet<u64>,
    /// Counted but not (yet) walked: how many samples it has waited to appear.
    waiting: HashMap<u64, u32>,
    /// Cgroups that left the walk recently (samples since): their late counts (a slot retired
    /// after they were gone) move to their ancestor at once.
    departed: HashMap<u64, u32>,
}

/// How long a departed cgroup is remembered as such.
const DEPARTED_MEMORY: u32 = 600;

/// How many samples counts of an unknown cgroup wait for it to appear in a walk (it may have
/// been created just after the walk) before they move to its nearest known ancestor.
const UNSEEN_PATIENCE: u32 = 2;

impl EbpfTotals {
    /// Takes one sample's deltas and walk (id, parent id; the root has no parent); returns each
    /// walked cgroup's own total.
    pub fn update(&mut self, deltas: &crate::ledger::Deltas, walk: &[(u64, Option<u64>)]) -> HashMap<u64, Counters> {
        for d in deltas.0.values() {
            self.own.entry(d.cgroup_id).or_default().accumulate(&d.counters);
            if d.parent_id != 0 && d.parent_id != d.cgroup_id {
                self.parent.entry(d.cgroup_id).or_insert(d.parent_id);
            }
        }
        let root = walk.iter().find(|(_, p)| p.is_none()).map(|(id, _)| *id);
        let walked: std::collections::HashSet<u64> = walk.iter().map(|(id, _)| *id).collect();
        for (id, parent) in walk {
            if let Some(p) = parent {
                self.parent.insert(*id, *p);
            }
        }
        for id in self.walked.iter().filter(|id| !walked.contains(id)) {
            self.departed.insert(*id, 0);
        }
        self.departed.retain(|id, age| {
            *age += 1;
            *age <= DEPARTED_MEMORY && !walked.contains(id)
        });
        let strays: Vec<u64> = self.own.keys().copied().filter(|id| !walked.contains(id)).collect();
        for id in strays {
            let gone = self.departed.contains_key(&id);
            let waited = self.waiting.entry(id).or_default();
            *waited += 1;
            if !gone && *waited <= UNSEEN_PATIENCE {
                continue;
            }
            self.waiting.remove(&id);
            // The nearest ancestor in this walk, else the root.
            let mut target = root;
            let mut cur = self.parent.get(&id).copied();
            for _ in 0..64 {
                let Some(p) = cur else { break };
                if walked.contains(&p) {
                    target = Some(p);
                    break;
                }
                cur = self.parent.get(&p).copied();
            }
            if let (Some(t), Some(c)) = (target, self.own.remove(&id)) {
                self.own.entry(t).or_default().accumulate(&c);
            }
        }
        self.waiting.retain(|id, _| self.own.contains_key(id));
        // Keep parent links only where they may still be needed.
        self.parent.retain(|id, _| walked.contains(id) || self.own.contains_key(id) || self.departed.contains_key(id));
        self.walked = walked;
        walk.iter().map(|(id, _)| (*id, self.own.get(id).copied().unwrap_or_default())).collect()
    }
}

/// When a sample was taken and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub wall: SystemTime,
    /// Monotonic seconds, for rates.
    pub mono: f64,
    pub duration: f64,
}

pub fn build(mut b: SnapshotBuilder, st: &mut ModelState, opts: &Options, t: Timing) -> Snapshot {
    let n = b.cgroups.len();
    let parents: Vec<Option<usize>> = b.cgroups.iter().map(|c| c.parent).collect();

    // eBPF counters: each cgroup's own, then summed over its subtree.
    let subtree_ebpf: Option<Vec<Counters>> = b.ebpf.as_ref().map(|ebpf| {
        let walk: Vec<(u64, Option<u64>)> = b.cgroups.iter().map(|c| (c.id, c.parent.map(|p| b.cgroups[p].id))).collect();
        let own = st.ebpf.update(&ebpf.deltas, &walk);
        let mut sums: Vec<Counters> = b.cgroups.iter().map(|c| own.get(&c.id).copied().unwrap_or_default()).collect();
        sum_subtrees(&parents, &mut sums, |parent, child| parent.accumulate(child));
        sums
    });
    let fault_probe = b.probes.iter().any(|p| p.name == "page_fault_user" && p.is_attached());

    // Processes over each subtree.
    let page = if b.page_size > 0 { b.page_size } else { 4096 };
    let mut procs = vec![(0u64, 0u64, 0u64); n]; // (count, vsz, rss)
    for (i, c) in b.cgroups.iter().enumerate() {
        for p in c.procs.iter() {
            procs[i].0 += 1;
            procs[i].1 += p.vsize_bytes;
            procs[i].2 += p.rss_pages * page;
        }
    }
    sum_subtrees(&parents, &mut procs, |p, c| {
        p.0 += c.0;
        p.1 += c.1;
        p.2 += c.2;
    });

    // The tightest limit among a cgroup and its ancestors.
    let machine = b.machine_memory.unwrap_or(0);
    let mut limit: Vec<Option<u64>> = vec![None; n];
    for i in 0..n {
        let inherited = b.cgroups[i].parent.and_then(|p| limit[p]);
        limit[i] = match (b.cgroups[i].own_limit, inherited) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    let mut containers = Vec::new();
    let empty: Arc<str> = Arc::from("");
    for (i, c) in b.cgroups.iter().enumerate() {
        if c.parent.is_none() {
            continue; // the root: node-level numbers are node_exporter's job
        }
        // A cgroup's path does not change while it lives: classify it once.
        let (ident, container_id) = match st.identity.get(&c.id) {
            Some((path, ident, cid)) if Arc::ptr_eq(path, &c.path) || **path == *c.path => (ident, cid.clone()),
            _ => {
                let ident = identity::classify(&c.path);
                let cid: Arc<str> = ident.container_id.as_deref().map(Arc::from).unwrap_or_else(|| empty.clone());
                st.identity.insert(c.id, (c.path.clone(), ident, cid));
                let (_, ident, cid) = &st.identity[&c.id];
                (ident, cid.clone())
            }
        };
        let export = match opts.filter {
            CgroupFilter::All => true,
            CgroupFilter::Default => match ident.kind {
                Kind::KubernetesContainer | Kind::RuntimeContainer | Kind::SystemdService => true,
                Kind::KubernetesPod => false,
                Kind::Other => c.own_limit.is_some() && !c.path.contains("kubepods"),
            },
        };
        if !export {
            continue;
        }
        let (namespace, pod, container) = ident
            .container_id
            .as_ref()
            .and_then(|id| b.names.containers.get(id.as_str()).cloned())
            .or_else(|| {
                let (ns, pod) = b.names.pods.get(ident.pod_uid.as_deref()?)?.clone();
                Some((ns, pod, empty.clone()))
            })
            .unwrap_or_else(|| (empty.clone(), empty.clone(), empty.clone()));
        let working_set = c.usage.saturating_sub(c.inactive_file);
        let (limit_bytes, limit_is_machine) = match limit[i] {
            Some(l) if l < machine || machine == 0 => (l, false),
            _ => (machine, true),
        };
        let headroom = limit_bytes.saturating_sub(working_set);
        let mut top: Vec<Process> = c
            .procs
            .iter()
            .map(|p| Process {
                pid: p.pid,
                comm: p.comm.clone(),
                vsz_bytes: p.vsize_bytes,
                rss_bytes: p.rss_pages * page,
                faults: p.faults,
                ebpf: b.proc_counters.get(&p.pid).copied(),
            })
            .collect();
        top.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
        top.truncate(10);
        let (kind, qos) = (ident.kind, ident.qos);
        let hist = st.history.entry(c.id).or_default();
        hist.push_back((t.mono, working_set));
        while hist.front().is_some_and(|(ts, _)| t.mono - ts > TREND_WINDOW_SECS) {
            hist.pop_front();
        }
        containers.push(Container {
            cgroup: c.path.clone(),
            id: c.id,
            namespace,
            pod,
            container,
            container_id,
            kind,
            qos,
            usage_bytes: c.usage,
            working_set_bytes: working_set,
            rss_bytes: c.anon,
            cache_bytes: c.file,
            swap_bytes: c.swap,
            vsz_bytes: procs[i].1,
            process_rss_bytes: procs[i].2,
            limit_bytes,
            limit_is_machine,
            headroom_bytes: headroom,
            headroom_ratio: if limit_bytes > 0 { headroom as f64 / limit_bytes as f64 } else { 0.0 },
            high_bytes: c.high,
            major_page_faults: c.major_faults,
            // Counted per event when that probe runs, else the kernel's own counter.
            page_faults: if fault_probe { subtree_ebpf.as_ref().map(|s| s[i].page_faults) } else { c.page_faults },
            ebpf: subtree_ebpf.as_ref().map(|s| s[i]),
            pressure: c.pressure,
            oom_kills: c.oom_kills,
            processes: procs[i].0,
            time_to_oom_seconds: time_to_oom(hist, headroom),
            top_processes: top,
        });
    }
    let exported: std::collections::HashSet<u64> = containers.iter().map(|c| c.id).collect();
    st.history.retain(|id, _| exported.contains(id));
    let walked: std::collections::HashSet<u64> = b.cgroups.iter().map(|c| c.id).collect();
    st.identity.retain(|id, _| walked.contains(id));

    // The series guard: Kubernetes containers first, then by path.
    let max_containers = opts.max_series / SERIES_PER_CONTAINER;
    if containers.len() > max_containers {
        containers.sort_by(|a, b| {
            let k8s = |c: &Container| c.kind != Kind::KubernetesContainer;
            k8s(a).cmp(&k8s(b)).then(a.cgroup.cmp(&b.cgroup))
        });
        let dropped = containers.len() - max_containers;
        containers.truncate(max_containers);
        containers.sort_by(|a, b| a.cgroup.cmp(&b.cgroup));
        st.series_dropped_total += (dropped * SERIES_PER_CONTAINER) as u64;
    }

    for (k, v) in std::mem::take(&mut b.errors) {
        *st.errors_total.entry(k).or_default() += v;
    }
    let ebpf = b.ebpf.unwrap_or_default();
    let cgroups = b
        .cgroups
        .iter()
        .map(|c| {
            let info = crate::snapshot::CgroupInfo {
                path: c.path.clone(),
                parent: c.parent.map(|p| b.cgroups[p].id),
                limit_events: c.limit_events,
            };
            (c.id, info)
        })
        .collect();
    Snapshot {
        taken_at: t.wall,
        cgroup_mode: b.mode.as_ref().map(|m| m.version()).unwrap_or_default(),
        machine_memory_bytes: machine,
        containers: std::sync::Arc::new(containers),
        cgroups: std::sync::Arc::new(cgroups),
        probes: b.probes,
        self_stats: SelfStats {
            sample_duration_seconds: t.duration,
            sample_errors: st.errors_total.clone(),
            series_dropped_total: st.series_dropped_total,
            ebpf_drops: ebpf.drops,
            ebpf_slots_used: ebpf.slots_used,
            ebpf_slots_capacity: ebpf.slots_capacity,
            probe_runs: b.probe_runs.as_ref().map(|runs| runs.iter().map(|r| (r.probe, r.runs, r.run_time.as_secs_f64())).collect()),
        },
    }
}

/// Adds each cgroup's value into its parent's, deepest first, so every cgroup ends up with the
/// sum over its subtree. `parents` is in walk order, where a parent comes before its children.
fn sum_subtrees<T: Copy>(parents: &[Option<usize>], values: &mut [T], add: impl Fn(&mut T, &T)) {
    for i in (0..parents.len()).rev() {
        if let Some(p) = parents[i] {
            let child = values[i];
            add(&mut values[p], &child);
        }
    }
}

/// Seconds until the working set reaches the limit at the least-squares growth rate of the
/// recent samples; None unless it is growing (at least 3 samples over at least 2 seconds).
pub fn time_to_oom(hist: &VecDeque<(f64, u64)>, headroom: u64) -> Option<f64> {
    if hist.len() < 3 {
        return None;
    }
    let (t0, t1) = (hist.front()?.0, hist.back()?.0);
    if t1 - t0 < 2.0 {
        return None;
    }
    let n = hist.len() as f64;
    let mt = hist.iter().map(|(t, _)| t).sum::<f64>() / n;
    let my = hist.iter().map(|(_, y)| *y as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, y) in hist {
        sxy += (t - mt) * (*y as f64 - my);
        sxx += (t - mt) * (t - mt);
    }
    let slope = sxy / sxx; // bytes per second
    (slope > 0.0 && slope.is_finite()).then(|| headroom as f64 / slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_sums() {
        // root(0) -> a(1) -> b(2); root -> c(3)
        let parents = [None, Some(0), Some(1), Some(0)];
        let mut v = [1u64, 10, 100, 1000];
        sum_subtrees(&parents, &mut v, |p, c| *p += c);
        assert_eq!(v, [1111, 110, 100, 1000]);
    }

    fn delta(id: u64, parent: u64, mmaps: u64) -> crate::ledger::Deltas {
        let mut d = crate::ledger::Deltas::default();
        d.0.insert(id, crate::ledger::Delta { cgroup_id: id, parent_id: parent, counters: Counters { mmap_calls: mmaps, ..Default::default() } });
        d
    }

    fn mmaps(own: &HashMap<u64, Counters>, id: u64) -> u64 {
        own.get(&id).map(|c| c.mmap_calls).unwrap_or(0)
    }

    // root(1) -> pod(2) -> container(3)
    const WALK: &[(u64, Option<u64>)] = &[(1, None), (2, Some(1)), (3, Some(2))];

    #[test]
    fn removed_cgroup_counts_move_to_the_nearest_survivor() {
        let mut t = EbpfTotals::default();
        let own = t.update(&delta(3, 2, 5), WALK);
        assert_eq!(mmaps(&own, 3), 5);
        // The container is gone; the pod keeps its 5 and nothing is counted twice.
        let own = t.update(&delta(3, 2, 2), &WALK[..2]);
        assert_eq!((mmaps(&own, 2), mmaps(&own, 1)), (7, 0));
        let own = t.update(&crate::ledger::Deltas::default(), &WALK[..2]);
        assert_eq!(mmaps(&own, 2), 7);
        // Late counts of the removed container (a retired slot) still reach the pod.
        let own = t.update(&delta(3, 2, 1), &WALK[..2]);
        assert_eq!(mmaps(&own, 2), 8);
    }

    #[test]
    fn cgroup_created_and_removed_between_walks_keeps_its_counts() {
        let mut t = EbpfTotals::default();
        t.update(&crate::ledger::Deltas::default(), WALK);
        // Cgroup 9, a child of the container that no walk saw, did 4 mmaps.
        let own = t.update(&delta(9, 3, 4), WALK);
        assert_eq!(mmaps(&own, 3), 0, "waits: it may appear in the next walk");
        t.update(&crate::ledger::Deltas::default(), WALK);
        let own = t.update(&crate::ledger::Deltas::default(), WALK);
        assert_eq!(mmaps(&own, 3), 4, "then goes to its parent");
    }

    #[test]
    fn cgroup_created_just_after_a_walk_keeps_its_own_counts() {
        let mut t = EbpfTotals::default();
        t.update(&delta(9, 3, 4), WALK);
        let walk: Vec<(u64, Option<u64>)> = WALK.iter().copied().chain([(9, Some(3))]).collect();
        let own = t.update(&crate::ledger::Deltas::default(), &walk);
        assert_eq!((mmaps(&own, 9), mmaps(&own, 3)), (4, 0));
    }

    #[test]
    fn unknown_lineage_goes_to_the_root() {
        let mut t = EbpfTotals::default();
        t.update(&delta(50, 40, 3), WALK);
        t.update(&crate::ledger::Deltas::default(), WALK);
        let own = t.update(&crate::ledger::Deltas::default(), WALK);
        assert_eq!(mmaps(&own, 1), 3);
    }

    #[test]
    fn time_to_oom_needs_growth() {
        let grow: VecDeque<(f64, u64)> = (0..5).map(|i| (i as f64, 1000 + 100 * i as u64)).collect();
        assert_eq!(time_to_oom(&grow, 1000), Some(10.0));
        let flat: VecDeque<(f64, u64)> = (0..5).map(|i| (i as f64, 1000)).collect();
        assert_eq!(time_to_oom(&flat, 1000), None);
        let shrink: VecDeque<(f64, u64)> = (0..5).map(|i| (i as f64, 1000 - 10 * i as u64)).collect();
        assert_eq!(time_to_oom(&shrink, 1000), None);
        let short: VecDeque<(f64, u64)> = (0..2).map(|i| (i as f64, 1000 + 100 * i as u64)).collect();
        assert_eq!(time_to_oom(&short, 1000), None);
    }
}
