//! The immutable result of one sample: what every reader (`/metrics`, the JSON API,
//! `memwatch top`) sees. Built by [`crate::model`], swapped in atomically by the sampler.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::SystemTime,
};

use memwatch_common::Counters;
use serde::Serialize;

use crate::{
    parse::{
        cgroup::Pressure,
        identity::{Kind, Qos},
    },
    probes::ProbeStatus,
    runtime::{ProcessFacts, RuntimeId},
};

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub taken_at: SystemTime,
    pub cgroup_mode: crate::host::CgroupVersion,
    pub machine_memory_bytes: u64,
    pub containers: Arc<Vec<Container>>,
    /// Every memory cgroup walked, exported or not, by id: for ancestry and OOM attribution.
    pub cgroups: Arc<HashMap<u64, CgroupInfo>>,
    pub probes: Vec<ProbeStatus>,
    pub self_stats: SelfStats,
}

impl Snapshot {
    pub fn probe_attached(&self, probe: crate::probes::ProbeId) -> bool {
        self.probes.iter().any(|p| p.id == probe && p.is_attached())
    }
}

#[derive(Debug, Clone, Default)]
pub struct CgroupInfo {
    pub path: Arc<str>,
    pub parent: Option<u64>,
    pub limit_events: Option<u64>,
}

impl Snapshot {
    /// The id of a cgroup followed by its ancestors' (the root last).
    pub fn ancestry(&self, id: u64) -> Vec<u64> {
        let mut chain = vec![id];
        let mut cur = self.cgroups.get(&id).and_then(|c| c.parent);
        while let Some(p) = cur {
            if chain.len() > 64 {
                break;
            }
            chain.push(p);
            cur = self.cgroups.get(&p).and_then(|c| c.parent);
        }
        chain
    }

    pub fn container(&self, id: u64) -> Option<&Container> {
        self.containers.iter().find(|c| c.id == id)
    }
}

#[derive(Debug, Clone, Default)]
pub struct SelfStats {
    pub sample_duration_seconds: f64,
    /// Cumulative, by (collector, reason).
    pub sample_errors: BTreeMap<(crate::collector::CollectorId, crate::collector::ErrorReason), u64>,
    pub series_dropped_total: u64,
    /// Events the kernel side could not record, by [`memwatch_common::drop`] index.
    pub ebpf_drops: crate::probes::maps::Drops,
    /// Per-cgroup slots in use in the kernel, and how many there are.
    pub ebpf_slots_used: u32,
    pub ebpf_slots_capacity: u32,
    /// Per probe: (runs, seconds spent), while the kernel keeps BPF run-time statistics.
    pub probe_runs: Option<Vec<(&'static str, u64, f64)>>,
}

/// One exported cgroup. Label fields are empty strings where they do not apply.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Container {
    /// Path relative to the memory hierarchy's root, e.g. `/kubepods.slice/...`.
    pub cgroup: Arc<str>,
    /// The cgroup's id (inode of its directory).
    pub id: u64,
    pub namespace: Arc<str>,
    pub pod: Arc<str>,
    pub container: Arc<str>,
    pub container_id: Arc<str>,
    pub kind: Kind,
    pub qos: Option<Qos>,
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
    pub rss_bytes: u64,
    pub cache_bytes: u64,
    /// shmem and tmpfs (part of `cache_bytes`, but not reclaimable without swap).
    #[serde(default)]
    pub shmem_bytes: u64,
    /// Kernel memory charged to it (v2).
    #[serde(default)]
    pub kernel_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    pub vsz_bytes: u64,
    /// Sum of the resident set sizes of its processes (shared pages counted in each).
    pub process_rss_bytes: u64,
    pub limit_bytes: u64,
    /// True when no cgroup in its ancestry sets a limit and `limit_bytes` is the machine's.
    pub limit_is_machine: bool,
    pub headroom_bytes: u64,
    pub headroom_ratio: f64,
    pub high_bytes: Option<u64>,
    pub major_page_faults: Option<u64>,
    /// Page faults over its subtree: counted per event by the eBPF probe when it runs, else
    /// the kernel's own counter from memory.stat.
    #[serde(default)]
    pub page_faults: Option<u64>,
    /// Kernel-side counters over its subtree, including exited processes and removed children.
    pub ebpf: Option<Counters>,
    pub pressure: Option<Pressure>,
    pub oom_kills: Option<u64>,
    /// Reclaim forced at the limit (`max`: v2 memory.events, v1 memory.failcnt) and
    /// throttling at memory.high (`high`, v2), the kernel's counters over the subtree (v2) or
    /// the cgroup (v1).
    #[serde(default)]
    pub limit_hits_max: Option<u64>,
    #[serde(default)]
    pub limit_hits_high: Option<u64>,
    pub processes: u64,
    /// The highest usage the kernel saw since the cgroup was made (v2 memory.peak, v1
    /// memory.max_usage_in_bytes), page cache included.
    #[serde(default)]
    pub peak_bytes: Option<u64>,
    /// The highest non-reclaimable memory (anonymous, shmem/tmpfs and kernel: what reclaim at
    /// the limit cannot free) over the samples of the last [`crate::model::peak::WINDOW_SECONDS`].
    #[serde(default)]
    pub nonreclaimable_peak_bytes: u64,
    /// Seconds until the limit at the working set's sustained growth (see
    /// `crate::model::trend`); None unless it grows so.
    pub time_to_oom_seconds: Option<f64>,
    /// The working set's growth over the last seconds, start-up included (bytes a second).
    #[serde(default)]
    pub growth_bytes_per_second: Option<f64>,
    /// Its own processes (not its children's), largest RSS first.
    pub top_processes: Vec<Process>,
    /// Its own processes of a known runtime, with their facts (shared with the collector's
    /// cache: a sample does not copy them).
    #[serde(default)]
    pub runtimes: Arc<[ProcessFacts]>,
    /// Per runtime present, its processes' heaps summed (where the runtime says).
    #[serde(default)]
    pub runtime_heaps: Vec<RuntimeHeap>,
}

/// A runtime's heap in a container: its processes' summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RuntimeHeap {
    pub runtime: RuntimeId,
    pub used_bytes: Option<u64>,
    pub committed_bytes: Option<u64>,
    pub max_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
}

impl Container {
    /// How people see it named (`memwatch top`, traces, `memwatch explain`):
    /// `namespace/pod/container` for Kubernetes (`(pause)` for a pod's sandbox, which has no
    /// container name), else its cgroup path.
    pub fn display_name(&self) -> Arc<str> {
        if self.pod.is_empty() {
            self.cgroup.clone()
        } else {
            let name = if self.container.is_empty() { "(pause)" } else { &self.container };
            Arc::from(format!("{}/{}/{name}", self.namespace, self.pod))
        }
    }

    /// Whether `want` names this container (see [`names`]).
    pub fn is_named(&self, want: &str) -> bool {
        names(want, &self.display_name(), &self.cgroup)
    }
}

/// Whether `want` names the container called `name` at `cgroup`: its whole name, a prefix of it
/// that ends where a `/` follows (a pod's containers, a namespace's), or its cgroup path.
pub fn names(want: &str, name: &str, cgroup: &str) -> bool {
    name == want || cgroup == want || name.strip_prefix(want).is_some_and(|rest| rest.starts_with('/'))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Process {
    pub pid: u32,
    pub comm: Arc<str>,
    pub vsz_bytes: u64,
    pub rss_bytes: u64,
    /// Page faults since it started, minor and major (`/proc/<pid>/stat`).
    #[serde(default)]
    pub faults: u64,
    /// The kernel side's counters for this process, when asked for (`memwatch top`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebpf: Option<memwatch_common::Counters>,
}

/// Small snapshots for unit tests.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    /// A container at `path` with id `id`, a limit of 1000 bytes, 90 used.
    pub(crate) fn container(id: u64, path: &str) -> Container {
        serde_json::from_value(serde_json::json!({
            "cgroup": path, "id": id, "namespace": "", "pod": "", "container": "", "container_id": "",
            "kind": "other", "qos": null, "usage_bytes": 100, "working_set_bytes": 90, "rss_bytes": 80, "cache_bytes": 10,
            "swap_bytes": null, "vsz_bytes": 1000, "process_rss_bytes": 80, "limit_bytes": 1000, "limit_is_machine": false,
            "headroom_bytes": 910, "headroom_ratio": 0.91, "high_bytes": null, "major_page_faults": null,
            "ebpf": null, "pressure": null, "oom_kills": null, "processes": 1, "time_to_oom_seconds": null, "top_processes": [],
            "nonreclaimable_peak_bytes": 80
        }))
        .expect("a valid container")
    }

    /// A snapshot taken at Unix time `t` of these containers, each a child of the root (id 1).
    pub(crate) fn snapshot(t: f64, containers: Vec<Container>) -> Snapshot {
        let mut cgroups: HashMap<u64, CgroupInfo> =
            containers.iter().map(|c| (c.id, CgroupInfo { path: c.cgroup.clone(), parent: Some(1), limit_events: Some(0) })).collect();
        cgroups.insert(1, CgroupInfo { path: Arc::from("/"), parent: None, limit_events: None });
        Snapshot {
            taken_at: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(t),
            cgroup_mode: crate::host::CgroupVersion::V2,
            machine_memory_bytes: 1 << 30,
            containers: Arc::new(containers),
            cgroups: Arc::new(cgroups),
            probes: vec![],
            self_stats: SelfStats::default(),
        }
    }
}
