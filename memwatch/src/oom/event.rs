//! One OOM kill as memwatch reports it, or a warning before one: the [`Event`] that the journal
//! stores, the API serves and `memwatch events` prints. Close to a leaf: it depends only on the
//! kinds of reasons ([`ReasonKind`]) and of risk ([`Risk`]).

use serde::{Deserialize, Serialize};

pub use super::reasons::ReasonKind;
use crate::runtime::ProcessFacts;
pub use crate::{
    risk::Risk,
    stacks::profile::{EventStacks, StackUse},
};

/// What an event says: a kill, or a container's warning before one and its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A kill (journal lines from before warnings existed are kills).
    #[default]
    OomKill,
    /// The container became at risk of an OOM kill.
    Warning,
    /// It is no longer at risk.
    Cleared,
}

impl EventKind {
    pub fn label(self) -> &'static str {
        match self {
            EventKind::OomKill => "oom_kill",
            EventKind::Warning => "warning",
            EventKind::Cleared => "cleared",
        }
    }
}

/// What a warning (or its `cleared`) says beyond the container's names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    /// The conditions that held (for `cleared`: none).
    pub risks: Vec<Risk>,
    /// The container's memory in the sample that raised or cleared it.
    pub state: MemState,
    /// The working set's growth, bytes a second, over the last minute (least squares), when it
    /// grows.
    #[serde(default)]
    pub growth_bytes_per_second: Option<f64>,
    /// At that rate, when the working set reaches the limit.
    #[serde(default)]
    pub time_to_limit_seconds: Option<f64>,
    /// Reclaim forced at the limit and throttling at `memory.high` in the last minute (v2
    /// memory.events `max` + `high`; v1 `memory.failcnt`).
    #[serde(default)]
    pub limit_hits_last_minute: u64,
    /// For `cleared`: the warning it ends, and how long that lasted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warned_for_seconds: Option<f64>,
    /// Seconds since an OOM kill in the container, when it is still at risk after one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_kill_seconds: Option<f64>,
    /// What its memory was, by part, in that sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Parts>,
}

/// A container's memory by part, as a sample read it (`memory.stat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parts {
    pub anon_bytes: u64,
    /// Page cache, shmem not included.
    pub file_bytes: u64,
    /// shmem and tmpfs files.
    pub shmem_bytes: u64,
    pub kernel_bytes: Option<u64>,
}

/// On a kill: the warning memwatch gave before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warned {
    pub seq: u64,
    pub seconds_before: f64,
    /// The warning's summary line.
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Seen by the `oom:mark_victim` probe.
    Probe,
    /// Counted by the kernel's per-cgroup counter but not seen by the probe (daemon down,
    /// buffer full): the victim is unknown.
    KernelCounter,
    /// A warning or its clearing: from the samples.
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// A cgroup's memory limit was reached (`constrained_by` names it).
    Cgroup,
    /// No cgroup was at its limit: the machine ran out.
    Machine,
    Unknown,
}

impl Constraint {
    pub const ALL: [Constraint; 3] = [Constraint::Cgroup, Constraint::Machine, Constraint::Unknown];

    /// Its wire name, also the `constraint` label.
    pub fn label(self) -> &'static str {
        match self {
            Constraint::Cgroup => "cgroup",
            Constraint::Machine => "machine",
            Constraint::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Victim {
    pub pid: u32,
    pub comm: String,
    pub vsz_bytes: Option<u64>,
    /// anon + file + shmem resident pages at the kill.
    pub rss_bytes: Option<u64>,
    pub anon_rss_bytes: Option<u64>,
    pub oom_score_adj: Option<i16>,
    /// Whether it was its container's main process (the container then stops and restarts)
    /// or a child of it (the container lives on); None: not known (it was gone before it
    /// could be looked at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<VictimRole>,
}

/// What the victim was to its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VictimRole {
    /// Its main process: pid 1 in its pid namespace, the one the container runtime started, or
    /// the one a runtime's init (tini, catatonit, dumb-init) started. The container stops.
    Main,
    /// A process the main one started. The container lives on.
    Child,
}

impl VictimRole {
    pub const ALL: [VictimRole; 2] = [VictimRole::Main, VictimRole::Child];

    /// The `victim` label.
    pub fn label(self) -> &'static str {
        match self {
            VictimRole::Main => "main",
            VictimRole::Child => "child",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub pid: u32,
    pub comm: String,
}

/// The container's memory in the last sample before the kill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemState {
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
    pub limit_bytes: u64,
    pub headroom_bytes: u64,
}

/// A Go program in the container, and the only two variables read from its environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoProcess {
    pub pid: u32,
    pub comm: String,
    pub gomemlimit: Option<String>,
    pub gogc: Option<String>,
    /// GOMEMLIMIT in bytes as Go reads it; None when unset or unparsable (`off` is no limit).
    #[serde(default)]
    pub gomemlimit_bytes: Option<u64>,
    /// Whether the program set a limit in code (`debug.SetMemoryLimit`): always None, since
    /// only a debugger could read it from the process; said so in the explanation.
    #[serde(default)]
    pub limit_set_in_code: Option<bool>,
}

/// The memory cgroup whose limit the kill was about, read by the kernel side in the context of
/// the kill (usage, limit, swap) and from its memory.stat right after (the parts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtKill {
    /// The cgroup whose limit was hit; for a machine-wide OOM, the victim's container.
    pub cgroup: String,
    pub cgroup_id: u64,
    /// The page counter's usage at the kill.
    pub usage_bytes: u64,
    /// Its limit; None when it has none (a machine-wide OOM).
    pub limit_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    /// Anonymous memory: the usage at the kill less the other parts.
    pub anon_bytes: Option<u64>,
    /// Page cache, shmem not included.
    pub file_bytes: Option<u64>,
    /// shmem and tmpfs files.
    pub shmem_bytes: Option<u64>,
    /// Kernel memory (slab, stacks, page tables, socket buffers).
    pub kernel_bytes: Option<u64>,
    /// Parts this kernel or cgroup version does not give (never printed as zero).
    pub missing: Vec<String>,
    /// The parts come from memory.stat read this long after the kill (usage and limit are
    /// from the kill itself); file, shmem and kernel memory outlive the victim, anonymous
    /// memory is derived.
    pub parts_read_after_ms: Option<u64>,
}

/// A quantity whose growth before a kill is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrowthField {
    WorkingSet,
    Anon,
    /// Page cache, shmem included.
    File,
    Shmem,
}

/// How one quantity changed over the seconds before the kill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Growth {
    pub what: GrowthField,
    pub from_bytes: u64,
    pub to_bytes: u64,
    pub delta_bytes: i64,
}

/// A process's resident memory before and at the kill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessGrowth {
    pub pid: u32,
    pub comm: String,
    /// None when it was not among the largest processes then (or did not exist).
    pub from_rss_bytes: Option<u64>,
    pub to_rss_bytes: u64,
    pub delta_bytes: i64,
    /// Its growth since the last look at the container's processes a few seconds before the
    /// event (absent then: all of it), and how many seconds that look was before. A process that
    /// reached its size earlier and held it has none: it is not the one growing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_delta_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_seconds: Option<f64>,
}

impl ProcessGrowth {
    /// How much it is growing now: its growth since the last look, else over the window.
    pub fn growing(&self) -> i64 {
        self.recent_delta_bytes.unwrap_or(self.delta_bytes)
    }
}

/// What the container's recent history says about the kill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recent {
    /// How far back the comparison reaches (up to 30 s; less for a young container).
    pub window_seconds: f64,
    /// When memwatch first saw the container, in seconds before the kill; None when it was
    /// never sampled before the kill.
    pub first_seen_seconds_before: Option<f64>,
    /// True when the container was first seen less than one sample interval before the kill
    /// (or never): the sampled state says little, the state at the kill is the kernel's.
    pub younger_than_a_sample: bool,
    pub growth: Vec<Growth>,
    /// The processes that grew most, largest growth first.
    pub processes: Vec<ProcessGrowth>,
}

/// One finding, in plain words and as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub kind: ReasonKind,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    /// Unix seconds.
    pub time: f64,
    #[serde(default)]
    pub kind: EventKind,
    pub source: Source,
    /// Kills this event stands for: 1 from the probe; N for kills only the kernel counted.
    pub count: u64,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub container_id: String,
    pub cgroup: String,
    pub cgroup_id: u64,
    /// The cgroup's id and its ancestors', for reconciling with hierarchical counters.
    pub cgroup_ids: Vec<u64>,
    pub constraint: Constraint,
    #[serde(default)]
    pub constrained_by: Option<String>,
    #[serde(default)]
    pub victim: Option<Victim>,
    #[serde(default)]
    pub trigger: Option<Trigger>,
    #[serde(default)]
    pub before: Option<MemState>,
    #[serde(default)]
    pub top_processes: Vec<ProcessInfo>,
    #[serde(default)]
    pub go: Vec<GoProcess>,
    /// Every process of a known runtime (Go among them) or with its malloc arenas read: the
    /// victim's as read at the kill, the others' as last read.
    #[serde(default)]
    pub runtimes: Vec<ProcessFacts>,
    /// The machine's memory, where the sample before knew it (runtimes size themselves from it).
    #[serde(default)]
    pub machine_memory_bytes: Option<u64>,
    /// When the kernel killed the whole container at once (`memory.oom.group`): every process
    /// it killed in that incident, the victim among them; `count` is their number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupKill>,
    #[serde(default)]
    pub at_kill: Option<AtKill>,
    #[serde(default)]
    pub recent: Option<Recent>,
    /// Where memory was faulted in before the kill, when the fault-stack sampler ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<EventStacks>,
    #[serde(default)]
    pub explanation: Vec<Reason>,
    /// A warning's (or cleared's) own facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<Warning>,
    /// A kill's: the warning that came before it, while it was still in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warned: Option<Warned>,
}

impl Event {
    /// An event of `kind` from `source` at `time` (Unix seconds) about the cgroup `cgroup_id`
    /// (`cgroup_ids`: it and its ancestors), with no fact yet: what each kind fills in.
    pub fn empty(time: f64, kind: EventKind, source: Source, cgroup_id: u64, cgroup_ids: Vec<u64>) -> Event {
        Event {
            seq: 0,
            time,
            kind,
            source,
            count: 0,
            namespace: String::new(),
            pod: String::new(),
            container: String::new(),
            container_id: String::new(),
            cgroup: String::new(),
            cgroup_id,
            cgroup_ids,
            constraint: Constraint::Unknown,
            constrained_by: None,
            victim: None,
            trigger: None,
            before: None,
            top_processes: vec![],
            go: vec![],
            runtimes: vec![],
            machine_memory_bytes: None,
            group: None,
            at_kill: None,
            recent: None,
            stacks: None,
            explanation: vec![],
            warning: None,
            warned: None,
        }
    }

    /// A kill (counted), not a warning.
    pub fn is_kill(&self) -> bool {
        self.kind == EventKind::OomKill
    }
}

/// The kills of one incident in a cgroup with `memory.oom.group` set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupKill {
    /// The cgroup whose `memory.oom.group` is set.
    pub cgroup: String,
    pub killed: Vec<Victim>,
}

/// A process in the killed container, as the event shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub comm: String,
    pub vsz_bytes: u64,
    pub rss_bytes: u64,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A probe event in cgroup `cgroup_id` (a child of the root, id 1).
    pub(crate) fn event(seq: u64, cgroup_id: u64) -> Event {
        Event {
            seq,
            count: 1,
            cgroup: format!("/c{cgroup_id}"),
            constraint: Constraint::Cgroup,
            constrained_by: Some(format!("/c{cgroup_id}")),
            victim: Some(Victim {
                pid: 100 + seq as u32,
                comm: "hog".into(),
                vsz_bytes: None,
                rss_bytes: Some(1),
                anon_rss_bytes: None,
                oom_score_adj: None,
                role: None,
            }),
            ..Event::empty(1_700_000_000.0 + seq as f64, EventKind::OomKill, Source::Probe, cgroup_id, vec![cgroup_id, 1])
        }
    }

    #[test]
    fn journal_lines_from_before_keep_parsing() {
        // A line as the previous release wrote it: processes carried `ebpf` and no `faults`.
        let old = r#"{"seq":3,"time":1.0,"source":"probe","count":1,"namespace":"","pod":"","container":"","container_id":"","cgroup":"/a","cgroup_id":7,"cgroup_ids":[7,1],"constraint":"machine","victim":{"pid":9,"comm":"x","vsz_bytes":1,"rss_bytes":2,"anon_rss_bytes":null,"oom_score_adj":null},"top_processes":[{"pid":9,"comm":"x","vsz_bytes":1,"rss_bytes":2,"ebpf":{"mmap_calls":1}}]}"#;
        let e: Event = serde_json::from_str(old).unwrap();
        assert_eq!((e.seq, e.top_processes[0].pid, e.constraint), (3, 9, Constraint::Machine));
    }
}
