//! Collectors: one per source, each filling its part of a [`SnapshotBuilder`]. A collector
//! that fails is counted with a reason and the sample goes on without it.

pub mod cgroupfs;
pub mod ebpf;
pub mod kubelet;
pub mod procfs;
pub mod runtimes;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use memwatch_common::Counters;
use thiserror::Error;

use crate::{
    Roots,
    host::CgroupMode,
    parse::{cgroup::Pressure, proc::ProcStat},
    probes::ProbeStatus,
    runtime::ProcessFacts,
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
    pub fn reason(&self) -> ErrorReason {
        match self {
            CollectError::Unsupported(_) => ErrorReason::Unsupported,
            CollectError::Read { .. } => ErrorReason::Read,
            CollectError::Ebpf(_) => ErrorReason::Ebpf,
        }
    }
}

/// Every collector. Declared in the order of their names, which is the order the exposition
/// lists their errors in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CollectorId {
    Cgroupfs,
    Ebpf,
    Kubelet,
    Procfs,
    Runtimes,
}

impl CollectorId {
    /// Its name: also its file name and the `collector` label on self-metrics.
    pub fn name(self) -> &'static str {
        match self {
            CollectorId::Cgroupfs => "cgroupfs",
            CollectorId::Ebpf => "ebpf",
            CollectorId::Kubelet => "kubelet",
            CollectorId::Procfs => "procfs",
            CollectorId::Runtimes => "runtimes",
        }
    }
}

/// Why an item was skipped while sampling (the `reason` label). In the order of their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorReason {
    /// The eBPF maps could not be read.
    Ebpf,
    /// A file was malformed.
    Parse,
    /// A file was unreadable.
    Read,
    /// The source is not on this host.
    Unsupported,
    /// A cgroup or process was removed between listing and reading: expected on a node where
    /// containers come and go, counted so that churn is visible.
    Vanished,
}

impl ErrorReason {
    pub fn label(self) -> &'static str {
        match self {
            ErrorReason::Ebpf => "ebpf",
            ErrorReason::Parse => "parse",
            ErrorReason::Read => "read",
            ErrorReason::Unsupported => "unsupported",
            ErrorReason::Vanished => "vanished",
        }
    }
}

/// What a sample is told by the stages after it, for this sample only. Data flows one way:
/// a later stage's word reaches a collector as this input, never through shared state.
#[derive(Debug, Default, Clone)]
pub struct SampleInput {
    /// Memory cgroups (by id) in which the OOM probe saw a kill since the last sample: their
    /// files that rarely change (the kill counter among them) are read now. A kill between two
    /// samples can leave usage where it was (a process that grew and died within one
    /// interval), so usage alone would not say the counter moved.
    pub oom_cgroups: HashSet<u64>,
    /// The memory cgroups at risk after the last sample (see [`crate::risk::risk`]), for the
    /// fault-stack sampler in at-risk mode.
    pub at_risk: HashSet<u64>,
}

pub trait Collector: Send {
    fn id(&self) -> CollectorId;
    fn collect(&mut self, roots: &Roots, input: &SampleInput, out: &mut SnapshotBuilder) -> Result<(), CollectError>;
}

/// What the memory files of one cgroup say. Cheap to clone (the collectors keep their last
/// reading and hand out clones every sample): the text and lists are shared.
#[derive(Debug, Clone)]
pub struct RawCgroup {
    /// Relative to the memory hierarchy's root; `/` for the root itself.
    pub path: Arc<str>,
    pub dir: Arc<Path>,
    pub id: u64,
    pub parent: Option<usize>,
    pub usage: u64,
    pub own_limit: Option<u64>,
    pub high: Option<u64>,
    pub anon: u64,
    pub file: u64,
    pub inactive_file: u64,
    /// shmem/tmpfs (part of `file`).
    pub shmem: u64,
    /// Kernel memory, where memory.stat says (v2).
    pub kernel: Option<u64>,
    pub major_faults: Option<u64>,
    /// Page faults, the kernel's own count (`pgfault` in memory.stat, `total_pgfault` on v1).
    pub page_faults: Option<u64>,
    pub swap: Option<u64>,
    pub oom_kills: Option<u64>,
    /// How often the cgroup's own limit was hit: `oom` in v2's memory.events, `memory.failcnt`
    /// on v1. Tells a cgroup-limit OOM from a machine-wide one.
    pub limit_events: Option<u64>,
    /// How often reclaim was forced at the limit (`max` in v2's memory.events, `memory.failcnt`
    /// on v1) and the cgroup throttled at `memory.high` (`high`, v2 only): pressing on its limit.
    pub limit_hits_max: Option<u64>,
    pub limit_hits_high: Option<u64>,
    /// The highest usage the kernel saw (v2 memory.peak, v1 memory.max_usage_in_bytes): a
    /// watermark, so read on the slow cadence it loses no spike between reads.
    pub peak: Option<u64>,
    pub pressure: Option<Pressure>,
    pub pids: Arc<[u32]>,
    /// True when `pids` was read in this sample (else it is the last slow read's).
    pub pids_fresh: bool,
    /// Filled by the procfs collector: its own processes.
    pub procs: Arc<[ProcStat]>,
    /// Filled by the runtimes collector: the facts of its processes of a known runtime (or with
    /// their malloc arenas read).
    pub runtimes: Arc<[ProcessFacts]>,
}

impl Default for RawCgroup {
    fn default() -> Self {
        RawCgroup {
            path: Arc::from("/"),
            dir: Arc::from(Path::new("")),
            id: 0,
            parent: None,
            usage: 0,
            own_limit: None,
            high: None,
            anon: 0,
            file: 0,
            inactive_file: 0,
            shmem: 0,
            kernel: None,
            major_faults: None,
            page_faults: None,
            swap: None,
            oom_kills: None,
            limit_events: None,
            limit_hits_max: None,
            limit_hits_high: None,
            peak: None,
            pressure: None,
            pids: Arc::from([]),
            pids_fresh: false,
            procs: Arc::from([]),
            runtimes: Arc::from([]),
        }
    }
}

/// (namespace, pod, container) of a Kubernetes container.
pub type ContainerNames = (Arc<str>, Arc<str>, Arc<str>);

/// Names the kubelet's log layout gives to container ids and pod uids.
#[derive(Debug, Clone, Default)]
pub struct KubeNames {
    /// container id -> (namespace, pod, container)
    pub containers: HashMap<String, ContainerNames>,
    /// pod uid -> (namespace, pod)
    pub pods: HashMap<String, (Arc<str>, Arc<str>)>,
}

#[derive(Debug, Clone, Default)]
pub struct EbpfData {
    /// What each memory cgroup (by id) did since the previous sample.
    pub deltas: crate::collector::ebpf::ledger::Deltas,
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
    pub names: Arc<KubeNames>,
    pub ebpf: Option<EbpfData>,
    /// Per-process kernel counters, only when the ebpf collector is asked for them.
    pub proc_counters: HashMap<u32, Counters>,
    pub probes: Vec<ProbeStatus>,
    /// Per probe, its programs' runs and run time, while the kernel keeps BPF statistics.
    pub probe_runs: Option<Vec<crate::probes::ProbeRuns>>,
    /// Per-item problems in this sample, by (collector, reason).
    pub errors: BTreeMap<(CollectorId, ErrorReason), u64>,
}

impl SnapshotBuilder {
    pub fn new(page_size: u64) -> Self {
        SnapshotBuilder { page_size, ..Default::default() }
    }

    pub fn error(&mut self, collector: CollectorId, reason: ErrorReason) {
        self.errors_n(collector, reason, 1);
    }

    pub fn errors_n(&mut self, collector: CollectorId, reason: ErrorReason, n: u64) {
        if n > 0 {
            *self.errors.entry((collector, reason)).or_default() += n;
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit, once: the cgroupfs
/// collector keeps two files open per cgroup. Failing is fine (it then reads by path).
pub(crate) fn raise_nofile_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit with a valid pointer to an initialised struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    });
}

/// The first read's size: a page, more than /proc/<pid>/stat or a small cgroup file holds.
const FIRST_READ: usize = 4096;

/// Reads a whole file into `buf` (reused across reads to spare allocations): open, one read
/// for the small files of /proc and cgroupfs (more only when a read fills the buffer), close.
/// Bytes that are not UTF-8 (a process may name itself anything) become U+FFFD.
pub(crate) fn read_into(path: &std::path::Path, buf: &mut String) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut bytes = std::mem::take(buf).into_bytes();
    bytes.clear();
    bytes.resize(FIRST_READ, 0);
    let mut len = 0;
    let result = loop {
        match file.read_at(&mut bytes[len..], len as u64) {
            Ok(n) => {
                len += n;
                if n == 0 || len < bytes.len() {
                    break Ok(());
                }
                bytes.resize(bytes.len() * 2, 0);
            }
            Err(e) => break Err(e),
        }
    };
    bytes.truncate(len);
    match String::from_utf8(bytes) {
        Ok(s) => {
            *buf = s;
            result
        }
        Err(e) => {
            *buf = String::from_utf8_lossy(e.as_bytes()).into_owned();
            result
        }
    }
}
