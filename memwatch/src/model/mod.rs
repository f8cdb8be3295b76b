//! From what the collectors gathered to the per-container model, as named passes over the
//! sample's cgroup [`tree::Tree`]: the kernel side's counts kept across samples ([`ebpf`]),
//! subtree sums ([`tree`]), effective limits ([`limits`]), kernel counters that never go back
//! ([`monotonic`]), which cgroups to export ([`filter`]), the time-to-OOM trend ([`trend`])
//! and the series guard ([`guard`]). [`build`] runs them in that order.

pub mod ebpf;
pub mod filter;
pub mod guard;
pub mod limits;
pub mod monotonic;
pub mod peak;
pub mod tree;
pub mod trend;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::SystemTime,
};

use memwatch_common::Counters;

pub use filter::{CgroupFilter, PathFilter};
pub use guard::SERIES_PER_CONTAINER;
use tree::Tree;

use crate::{
    collector::{CollectorId, ContainerNames, ErrorReason, KubeNames, RawCgroup, SnapshotBuilder},
    parse::identity,
    probes::ProbeId,
    runtime::{self, ProcessFacts, RuntimeId},
    snapshot::{CgroupInfo, Container, Process, RuntimeHeap, SelfStats, Snapshot},
};

#[derive(Debug, Clone)]
pub struct Options {
    pub filter: CgroupFilter,
    /// Which paths may be exported at all (`--cgroups.include`, `--cgroups.exclude`).
    pub paths: PathFilter,
    /// At most this many series for containers; the rest are dropped and counted.
    pub max_series: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { filter: CgroupFilter::Default, paths: PathFilter::default(), max_series: DEFAULT_MAX_SERIES }
    }
}

/// `--max-series` unless told otherwise.
pub const DEFAULT_MAX_SERIES: usize = 200_000;

/// The page size where the builder does not know it.
const FALLBACK_PAGE_SIZE: u64 = 4096;

/// The processes a container lists, at most (largest RSS first).
pub const TOP_PROCESSES: usize = 10;

/// What the model keeps between samples.
#[derive(Debug, Default)]
pub struct ModelState {
    ebpf: ebpf::EbpfTotals,
    trends: trend::Trends,
    peaks: peak::Peaks,
    monotonic: monotonic::Monotonic,
    /// Per cgroup id: its path, what the path says it is, and its container id.
    identity: HashMap<u64, (Arc<str>, identity::Identity, Arc<str>)>,
    errors_total: BTreeMap<(CollectorId, ErrorReason), u64>,
    series_dropped_total: u64,
}

/// When a sample was taken and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub wall: SystemTime,
    /// Monotonic seconds, for rates.
    pub mono: f64,
    pub duration: f64,
    /// Seconds since boot, for processes' ages (None: unknown, as in fixture trees).
    pub boot: Option<f64>,
}

/// Per cgroup (tree order) over its subtree: processes, their VSZ and their RSS.
fn process_sums(tree: &Tree, cgroups: &[RawCgroup], page: u64) -> Vec<(u64, u64, u64)> {
    let mut procs: Vec<(u64, u64, u64)> = cgroups
        .iter()
        .map(|c| c.procs.iter().fold((0, 0, 0), |(n, vsz, rss), p| (n + 1, vsz + p.vsize_bytes, rss + p.rss_pages * page)))
        .collect();
    tree.sum_subtrees(&mut procs, |p, c| {
        p.0 += c.0;
        p.1 += c.1;
        p.2 += c.2;
    });
    procs
}

/// A cgroup's own processes, largest RSS first, at most [`TOP_PROCESSES`].
fn top_processes(c: &RawCgroup, page: u64, counters: &HashMap<u32, Counters>) -> Vec<Process> {
    let mut top: Vec<Process> = c
        .procs
        .iter()
        .map(|p| Process {
            pid: p.pid,
            comm: p.comm.clone(),
            vsz_bytes: p.vsize_bytes,
            rss_bytes: p.rss_pages * page,
            faults: p.faults,
            ebpf: counters.get(&p.pid).copied(),
        })
        .collect();
    top.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
    top.truncate(TOP_PROCESSES);
    top
}

impl ModelState {
    /// The identity of a cgroup (kind, QoS, container id): a cgroup's path does not change
    /// while it lives, so it is classified once.
    fn identity(&mut self, c: &RawCgroup) -> (identity::Identity, Arc<str>) {
        match self.identity.get(&c.id) {
            Some((path, ident, cid)) if Arc::ptr_eq(path, &c.path) || **path == *c.path => (ident.clone(), cid.clone()),
            _ => {
                let ident = identity::classify(&c.path);
                let cid: Arc<str> = ident.container_id.as_deref().map(Arc::from).unwrap_or_else(|| Arc::from(""));
                self.identity.insert(c.id, (c.path.clone(), ident.clone(), cid.clone()));
                (ident, cid)
            }
        }
    }
}

/// What one sample's passes give every container: the page size, the machine's memory, the
/// subtree sums and the effective limits, by cgroup index.
struct Passes<'a> {
    page: u64,
    machine: u64,
    /// Page faults are counted per event by the probe (else the kernel's own counter).
    fault_probe: bool,
    subtree_ebpf: Option<&'a [Counters]>,
    procs: &'a [(u64, u64, u64)],
    limit: &'a [Option<u64>],
    t: Timing,
    /// Clock ticks a second (processes' start times).
    ticks: u64,
}

/// The kernel side's counts: each cgroup's own, kept across samples, then over its subtree.
fn ebpf_subtrees(b: &SnapshotBuilder, st: &mut ModelState, tree: &Tree) -> Option<Vec<Counters>> {
    b.ebpf.as_ref().map(|ebpf| {
        let own = st.ebpf.update(&ebpf.deltas, &tree.links());
        let mut sums: Vec<Counters> = tree.ids.iter().map(|id| own.get(id).copied().unwrap_or_default()).collect();
        tree.sum_subtrees(&mut sums, |parent, child| parent.accumulate(child));
        sums
    })
}

/// (namespace, pod, container) from the kubelet's names: by container id, else the pod's.
fn kube_names(names: &KubeNames, ident: &identity::Identity) -> ContainerNames {
    let empty: Arc<str> = Arc::from("");
    ident
        .container_id
        .as_ref()
        .and_then(|id| names.containers.get(id.as_str()).cloned())
        .or_else(|| {
            let (ns, pod) = names.pods.get(ident.pod_uid.as_deref()?)?.clone();
            Some((ns, pod, empty.clone()))
        })
        .unwrap_or_else(|| (empty.clone(), empty.clone(), empty))
}

/// The exported container for cgroup `i`.
fn container(
    i: usize,
    c: &RawCgroup,
    ident: identity::Identity,
    container_id: Arc<str>,
    b: &SnapshotBuilder,
    st: &mut ModelState,
    p: &Passes<'_>,
) -> Container {
    let (namespace, pod, container) = kube_names(&b.names, &ident);
    let working_set = c.usage.saturating_sub(c.inactive_file);
    let (limit_bytes, limit_is_machine) = limits::or_machine(p.limit[i], p.machine);
    let headroom = limit_bytes.saturating_sub(working_set);
    // Page faults counted per event when that probe runs, else the kernel's own counter.
    let faults = if p.fault_probe { p.subtree_ebpf.map(|s| s[i].page_faults) } else { c.page_faults };
    // Its main process: its oldest own one.
    let main = c.procs.iter().min_by_key(|p| p.start_ticks).and_then(|m| {
        let boot = p.t.boot?;
        Some(trend::MainProcess { start_ticks: m.start_ticks, age_seconds: boot - m.start_ticks as f64 / p.ticks as f64 })
    });
    let trend = st.trends.observe(c.id, p.t.mono, working_set, headroom, main);
    // Usage less the page cache reclaim can free (file less shmem, from the last memory.stat):
    // anonymous, shmem and kernel memory, at every sample's usage.
    let reclaimable = c.file.saturating_sub(c.shmem);
    let nonreclaimable = c.usage.saturating_sub(reclaimable);
    let nonreclaimable_peak = st.peaks.observe(c.id, p.t.mono, nonreclaimable, c.peak, reclaimable);
    Container {
        cgroup: c.path.clone(),
        id: c.id,
        namespace,
        pod,
        container,
        container_id,
        kind: ident.kind,
        qos: ident.qos,
        usage_bytes: c.usage,
        working_set_bytes: working_set,
        rss_bytes: c.anon,
        cache_bytes: c.file,
        shmem_bytes: c.shmem,
        kernel_bytes: c.kernel,
        swap_bytes: c.swap,
        vsz_bytes: p.procs[i].1,
        process_rss_bytes: p.procs[i].2,
        limit_bytes,
        limit_is_machine,
        headroom_bytes: headroom,
        headroom_ratio: if limit_bytes > 0 { headroom as f64 / limit_bytes as f64 } else { 0.0 },
        high_bytes: c.high,
        major_page_faults: st.monotonic.apply(c.id, "pgmajfault", c.major_faults),
        page_faults: if p.fault_probe { faults } else { st.monotonic.apply(c.id, "pgfault", faults) },
        ebpf: p.subtree_ebpf.map(|s| s[i]),
        pressure: c.pressure,
        oom_kills: c.oom_kills,
        limit_hits_max: st.monotonic.apply(c.id, "limit_hits_max", c.limit_hits_max),
        limit_hits_high: st.monotonic.apply(c.id, "limit_hits_high", c.limit_hits_high),
        processes: p.procs[i].0,
        peak_bytes: c.peak,
        nonreclaimable_peak_bytes: nonreclaimable_peak,
        time_to_oom_seconds: trend.time_to_oom,
        growth_bytes_per_second: trend.raw_rate,
        top_processes: top_processes(c, p.page, &b.proc_counters),
        runtime_heaps: runtime_heaps(&c.runtimes, Some(limit_bytes).filter(|_| !limit_is_machine), p.machine),
        runtimes: c.runtimes.clone(),
    }
}

/// Per runtime among a container's processes, their heaps summed, in runtime order.
fn runtime_heaps(procs: &[ProcessFacts], limit: Option<u64>, machine: u64) -> Vec<RuntimeHeap> {
    let mut by: std::collections::BTreeMap<RuntimeId, runtime::Heap> = std::collections::BTreeMap::new();
    for f in procs.iter().filter_map(|p| p.runtime.as_ref()) {
        by.entry(f.runtime()).or_default().add(&runtime::heap(f, limit, machine));
    }
    by.into_iter()
        .map(|(runtime, h)| RuntimeHeap {
            runtime,
            used_bytes: h.used,
            committed_bytes: h.committed,
            max_bytes: h.max,
            limit_bytes: h.limit,
        })
        .collect()
}

pub fn build(mut b: SnapshotBuilder, st: &mut ModelState, opts: &Options, t: Timing) -> Snapshot {
    let tree = Tree::new(&b.cgroups);
    let page = if b.page_size > 0 { b.page_size } else { FALLBACK_PAGE_SIZE };
    let machine = b.machine_memory.unwrap_or(0);
    let subtree_ebpf = ebpf_subtrees(&b, st, &tree);
    let procs = process_sums(&tree, &b.cgroups, page);
    let limit = limits::effective(&tree, &b.cgroups.iter().map(|c| c.own_limit).collect::<Vec<_>>());
    let passes = Passes {
        page,
        machine,
        fault_probe: b.probes.iter().any(|p| p.id == ProbeId::PageFaultUser && p.is_attached()),
        subtree_ebpf: subtree_ebpf.as_deref(),
        procs: &procs,
        limit: &limit,
        t,
        ticks: crate::host::clock_ticks(),
    };
    let mut containers = Vec::new();
    for (i, c) in b.cgroups.iter().enumerate() {
        if c.parent.is_none() {
            continue; // the root: node-level numbers are node_exporter's job
        }
        let (ident, container_id) = st.identity(c);
        if filter::exported(opts.filter, ident.kind, &c.path, c.own_limit) && opts.paths.allows(&c.path) {
            containers.push(container(i, c, ident, container_id, &b, st, &passes));
        }
    }
    let exported: HashSet<u64> = containers.iter().map(|c| c.id).collect();
    st.trends.retain(&exported);
    st.peaks.retain(&exported);
    st.monotonic.retain(&exported);
    st.identity.retain(|id, _| tree.index.contains_key(id));
    st.series_dropped_total += guard::apply(&mut containers, opts.max_series);
    for (k, v) in std::mem::take(&mut b.errors) {
        *st.errors_total.entry(k).or_default() += v;
    }
    snapshot(b, st, &tree, containers, machine, t)
}

/// The snapshot of the exported containers, every cgroup walked, and memwatch's own figures.
fn snapshot(b: SnapshotBuilder, st: &ModelState, tree: &Tree, containers: Vec<Container>, machine: u64, t: Timing) -> Snapshot {
    let ebpf = b.ebpf.unwrap_or_default();
    let cgroups = b
        .cgroups
        .iter()
        .map(|c| (c.id, CgroupInfo { path: c.path.clone(), parent: c.parent.map(|p| tree.ids[p]), limit_events: c.limit_events }))
        .collect();
    Snapshot {
        taken_at: t.wall,
        cgroup_mode: b.mode.as_ref().map(|m| m.version()).unwrap_or_default(),
        machine_memory_bytes: machine,
        containers: Arc::new(containers),
        cgroups: Arc::new(cgroups),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::collector::EbpfData;

    fn raw(id: u64, path: &str, parent: Option<usize>, limit: Option<u64>) -> RawCgroup {
        RawCgroup { id, path: Arc::from(path), dir: Arc::from(Path::new(path)), parent, own_limit: limit, usage: 10, ..Default::default() }
    }

    fn sample(cgroups: Vec<RawCgroup>, mmaps: &[(u64, u64, u64)], st: &mut ModelState, mono: f64) -> Snapshot {
        let mut deltas = crate::collector::ebpf::ledger::Deltas::default();
        for (id, parent, n) in mmaps {
            deltas.0.insert(
                *id,
                crate::collector::ebpf::ledger::Delta {
                    cgroup_id: *id,
                    parent_id: *parent,
                    counters: Counters { mmap_calls: *n, ..Default::default() },
                },
            );
        }
        let b = SnapshotBuilder {
            cgroups,
            machine_memory: Some(1000),
            page_size: 4096,
            ebpf: Some(EbpfData { deltas, ..Default::default() }),
            ..Default::default()
        };
        build(
            b,
            st,
            &Options { filter: CgroupFilter::All, ..Options::default() },
            Timing { wall: SystemTime::UNIX_EPOCH, mono, duration: 0.0, boot: None },
        )
    }

    fn mmaps(s: &Snapshot, id: u64) -> u64 {
        s.container(id).and_then(|c| c.ebpf).map(|e| e.mmap_calls).unwrap_or(0)
    }

    #[test]
    fn counters_never_go_backwards_while_a_container_lives() {
        // root(1) -> pod(2) -> app(3), sidecar(4); the sidecar goes, then a job comes and goes
        // between two samples.
        let mut st = ModelState::default();
        let full = || {
            vec![
                raw(1, "/", None, None),
                raw(2, "/pod", Some(0), Some(500)),
                raw(3, "/pod/app", Some(1), None),
                raw(4, "/pod/side", Some(1), None),
            ]
        };
        let s = sample(full(), &[(3, 2, 5), (4, 2, 7)], &mut st, 0.0);
        assert_eq!((mmaps(&s, 2), mmaps(&s, 3), mmaps(&s, 4)), (12, 5, 7));
        assert_eq!(s.container(3).unwrap().limit_bytes, 500, "the pod's limit");
        let mut fewer = full();
        fewer.pop();
        let s = sample(fewer.clone(), &[(4, 2, 1)], &mut st, 1.0);
        assert_eq!(mmaps(&s, 2), 13, "the removed sidecar's counts (and its last ones) stay in the pod");
        // A job (9) under the app, never walked, did 3 mmaps.
        let s = sample(fewer.clone(), &[(9, 3, 3)], &mut st, 2.0);
        let s2 = sample(fewer.clone(), &[], &mut st, 3.0);
        let s3 = sample(fewer, &[], &mut st, 4.0);
        for (a, b) in [(&s, &s2), (&s2, &s3)] {
            assert!(mmaps(b, 2) >= mmaps(a, 2) && mmaps(b, 3) >= mmaps(a, 3), "never backwards");
        }
        assert_eq!((mmaps(&s3, 3), mmaps(&s3, 2)), (8, 16), "the job's counts reached its parent");
    }
}
