//! From what the collectors gathered to the per-container model: effective limits, working
//! set and headroom, sums over each cgroup's subtree, counters of removed cgroups folded into
//! their parents, which cgroups to export, and the predicted time to OOM.

use std::{
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
    /// The previous walk: id -> (parent id, the kernel's own counters for it).
    prev: HashMap<u64, (Option<u64>, Counters)>,
    /// Counters of removed descendants, folded into the nearest surviving ancestor.
    retired: HashMap<u64, Counters>,
    /// (monotonic seconds, working set) per cgroup id.
    history: HashMap<u64, VecDeque<(f64, u64)>>,
    errors_total: BTreeMap<(String, String), u64>,
    series_dropped_total: u64,
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
    let index: HashMap<u64, usize> = b.cgroups.iter().enumerate().map(|(i, c)| (c.id, i)).collect();

    // eBPF counters: fold removed cgroups into their nearest surviving ancestor, then sum
    // each cgroup's subtree, so a container's counters never go backwards.
    let subtree_ebpf: Option<Vec<Counters>> = b.ebpf.as_ref().map(|ebpf| {
        let kernel = |id: u64| ebpf.by_memcg.get(&id).copied().unwrap_or_default();
        let gone: Vec<u64> = st.prev.keys().copied().filter(|id| !index.contains_key(id)).collect();
        for id in gone {
            let (parent, last) = st.prev[&id];
            // Fresher numbers if the kernel still has it.
            let mut fold = ebpf.by_memcg.get(&id).copied().unwrap_or(last);
            if let Some(r) = st.retired.remove(&id) {
                fold.accumulate(&r);
            }
            let mut p = parent;
            while let Some(pid) = p {
                if index.contains_key(&pid) {
                    st.retired.entry(pid).or_default().accumulate(&fold);
                    break;
                }
                p = st.prev.get(&pid).and_then(|x| x.0);
            }
        }
        let mut sums: Vec<Counters> = b
            .cgroups
            .iter()
            .map(|c| {
                let mut own = kernel(c.id);
                if let Some(r) = st.retired.get(&c.id) {
                    own.accumulate(r);
                }
                own
            })
            .collect();
        sum_subtrees(&parents, &mut sums, |parent, child| parent.accumulate(child));
        st.prev = b
            .cgroups
            .iter()
            .map(|c| (c.id, (c.parent.map(|p| b.cgroups[p].id), kernel(c.id))))
            .collect();
        sums
    });
    st.retired.retain(|id, _| index.contains_key(id));

    // Processes over each subtree.
    let page = if b.page_size > 0 { b.page_size } else { 4096 };
    let mut procs = vec![(0u64, 0u64, 0u64); n]; // (count, vsz, rss)
    for (i, c) in b.cgroups.iter().enumerate() {
        for p in &c.procs {
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
    for (i, c) in b.cgroups.iter().enumerate() {
        if c.parent.is_none() {
            continue; // the root: node-level numbers are node_exporter's job
        }
        let ident = identity::classify(&c.path);
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
            .and_then(|id| b.names.containers.get(id).cloned())
            .or_else(|| {
                let (ns, pod) = b.names.pods.get(ident.pod_uid.as_ref()?)?.clone();
                Some((ns, pod, String::new()))
            })
            .unwrap_or_default();
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
                ebpf: b.proc_counters.get(&p.pid).copied(),
            })
            .collect();
        top.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
        top.truncate(10);
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
            container_id: ident.container_id.clone().unwrap_or_default(),
            kind: ident.kind,
            qos: ident.qos,
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
        cgroup_mode: b.mode.as_ref().map(|m| m.label()).unwrap_or("none"),
        machine_memory_bytes: machine,
        containers: std::sync::Arc::new(containers),
        cgroups: std::sync::Arc::new(cgroups),
        oom: Default::default(),
        probes: b.probes,
        self_stats: SelfStats {
            sample_duration_seconds: t.duration,
            sample_errors: st.errors_total.clone(),
            tracked_processes: ebpf.tracked_processes,
            series_dropped_total: st.series_dropped_total,
            ebpf_map_full_total: ebpf.map_full,
            ebpf_ring_full_total: ebpf.ring_full,
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
