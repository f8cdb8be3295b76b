//! Collectors: one per source, each filling its part of a [`SnapshotBuilder`]. A collector
//! that fails is counted with a reason and the sample goes on without it.

pub mod cgroupfs;
pub mod ebpf;
pub mod kubelet;
pub mod procfs;

use std::{collections::{BTreeMap, HashMap}, io, path::PathBuf};

use memwatch_common::Counters;
use thiserror::Error;

use crate::{
    Roots,
    host::CgroupMode,
    parse::{cgroup::Pressure, proc::ProcStat},
    probes::ProbeStatus,
};

#[derive(Debug, Error)]
pub enum CollectError {
    /// This host lacks the source (no memory controller, no probes): not a failure.
    #[error("unsupported here: {0}")]
    Unsupported(String),
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("eBPF maps: {0}")]
    Ebpf(#[from] crate::probes::ProbeError),
}

impl CollectError {
    pub fn reason(&self) -> &'static str {
        match self {
            CollectError::Unsupported(_) => "unsupported",
            CollectError::Read { .. } => "read",
            CollectError::Ebpf(_) => "ebpf",
        }
    }
}

pub trait Collector: Send {
    /// Also the `collector` label on self-metrics.
    fn name(&self) -> &'static str;
    fn collect(&mut self, roots: &Roots, out: &mut SnapshotBuilder) -> Result<(), CollectError>;
}

/// What the memory files of one cgroup say.
#[derive(Debug, Clone, Default)]
pub struct RawCgroup {
    /// Relative to the memory hierarchy's root; `/` for the root itself.
    pub path: String,
    pub dir: PathBuf,
    pub id: u64,
    pub parent: Option<usize>,
    pub usage: u64,
    pub own_limit: Option<u64>,
    pub high: Option<u64>,
    pub anon: u64,
    pub file: u64,
    pub inactive_file: u64,
    pub major_faults: Option<u64>,
    /// Page faults, the kernel's own count (`pgfault` in memory.stat, `total_pgfault` on v1).
    pub page_faults: Option<u64>,
    pub swap: Option<u64>,
    pub oom_kills: Option<u64>,
    /// How often the cgroup's own limit was hit: `oom` in v2's memory.events, `memory.failcnt`
    /// on v1. Tells a cgroup-limit OOM from a machine-wide one.
    pub limit_events: Option<u64>,
    pub pressure: Option<Pressure>,
    pub pids: Vec<u32>,
    /// Filled by the procfs collector: its own processes.
    pub procs: Vec<ProcStat>,
}

/// Names the kubelet's log layout gives to container ids and pod uids.
#[derive(Debug, Clone, Default)]
pub struct KubeNames {
    /// container id -> (namespace, pod, container)
    pub containers: HashMap<String, (String, String, String)>,
    /// pod uid -> (namespace, pod)
    pub pods: HashMap<String, (String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct EbpfData {
    /// What each memory cgroup (by id) did since the previous sample.
    pub deltas: crate::ledger::Deltas,
    /// Events the kernel side could not record, by kind, since the probes loaded.
    pub drops: crate::probes::maps::Drops,
    /// Slots in use (the highest css id seen, plus one) and the array's capacity.
    pub slots_used: u32,
    pub slots_capacity: u32,
}

/// Everything one sample gathered, before the model derives the snapshot from it.
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    pub mode: Option<CgroupMode>,
    /// In walk order: a parent always comes before its children.
    pub cgroups: Vec<RawCgroup>,
    pub machine_memory: Option<u64>,
    pub page_size: u64,
    pub names: KubeNames,
    pub ebpf: Option<EbpfData>,
    /// Per-process kernel counters, only when the ebpf collector is asked for them.
    pub proc_counters: HashMap<u32, Counters>,
    pub probes: Vec<ProbeStatus>,
    /// Per probe, its programs' runs and run time, while the kernel keeps BPF statistics.
    pub probe_runs: Option<Vec<crate::probes::ProbeRuns>>,
    /// Per-item problems in this sample, by (collector, reason).
    pub errors: BTreeMap<(String, String), u64>,
}

impl SnapshotBuilder {
    pub fn new(page_size: u64) -> Self {
        SnapshotBuilder { page_size, ..Default::default() }
    }

    pub fn error(&mut self, collector: &str, reason: &str) {
        *self.errors.entry((collector.to_string(), reason.to_string())).or_default() += 1;
    }
}

/// Reads a whole file into `buf` (reused across reads to spare allocations).
pub(crate) fn read_into(path: &std::path::Path, buf: &mut String) -> io::Result<()> {
    use io::Read;
    buf.clear();
    std::fs::File::open(path)?.read_to_string(buf).map(|_| ())
}
