//! memwatch: explains memory on Linux hosts and Kubernetes nodes from the kernel.
//!
//! Data flows one way, and each stage is a module (a folder where it has parts):
//!
//! 1. **kernel hooks** (the `memwatch-ebpf` crate) count into per-cgroup slots and send OOM
//!    kills and execs on ring buffers; [`probes`] loads and attaches them ([`probes::PROBES`]
//!    lists them; [`probes::tracefs`] finds the tracepoint formats) and reads their maps;
//! 2. **the host**: [`host`] says what this machine offers (cgroup mode, kernel, page size) and
//!    reads the cgroupfs and `/proc` facts that more than one stage needs (a cgroup's ancestry,
//!    a process's facts), below every stage that reads the machine; [`parse`] holds the pure
//!    parsers for every file read, and [`runtime`] recognises language runtimes from outside
//!    and owns which environment variables may ever be read;
//! 3. **collectors**, one per source ([`collector`]: cgroupfs, procfs, the kubelet's logs,
//!    eBPF with its [`collector::ebpf::ledger`]), fill a [`collector::SnapshotBuilder`]
//!    (roots as parameters: [`Roots`]);
//! 4. **the model** ([`model`]) turns that into the per-container [`snapshot::Snapshot`], in
//!    named passes;
//! 5. **sampling**: [`sampler`] runs one sample step (collectors, model, the OOM stage) on a
//!    thread of its own and publishes each snapshot; [`oom`] turns the ring buffer's records
//!    into explained, journaled events, published beside it as an [`oom::OomView`], and tells
//!    the next sample which cgroups had kills (an input of the collectors, never a shared
//!    lock); [`history`] keeps each container's recent past; [`pipeline`] wires probes,
//!    sampler and OOM stage, the same for `serve` and `top`; [`stacks`] drains the
//!    fault-stack sampler on the slow cadence, resolves its addresses while the processes live
//!    and names them on a thread of its own, for OOM events, profiles and `top`;
//! 6. **readers**: [`expose`] (the exposition and memwatch's own instrumentation), [`http`]
//!    (routes, and the server with its connection limits), [`expose::trace`] (Perfetto),
//!    [`top`] (the terminal view), [`explain`] (where a process's memory is), and the journal
//!    in [`oom::journal`].
//!
//! Beside the pipeline: [`allocator`] (glibc's settings for a long-running daemon) and
//! [`units`] (quantities for people).
pub mod allocator;
pub mod collector;
pub mod explain;
pub mod expose;
pub mod history;
pub mod host;
pub mod http;
pub mod model;
pub mod oom;
pub mod parse;
pub mod pipeline;
pub mod probes;
pub mod risk;
pub mod runtime;
pub mod sampler;
pub mod selfmetrics;
pub mod snapshot;
pub mod stacks;
pub mod top;
pub mod units;

use std::{
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

/// Unix time in seconds (0 for times before the epoch).
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Unix seconds as an RFC 3339 UTC time, to the second.
pub fn rfc3339(unix: f64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs_f64(unix.max(0.0))).to_string()
}

/// Filesystem roots. Never global: passed to whatever reads the kernel's files.
#[derive(Debug, Clone)]
pub struct Roots {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub cgroupfs: PathBuf,
    /// Tracefs, when not to be found (or mounted) under `sysfs`.
    pub tracefs: Option<PathBuf>,
    /// The kubelet's log directory (holding `pods/` and `containers/`).
    pub kubelet_logs: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
            cgroupfs: "/sys/fs/cgroup".into(),
            tracefs: None,
            kubelet_logs: "/var/log".into(),
        }
    }
}

impl Roots {
    pub fn load_options(&self, probes: probes::ProbeOptions) -> probes::LoadOptions<'_> {
        probes::LoadOptions { sysfs: &self.sysfs, procfs: &self.procfs, tracefs: self.tracefs.as_deref(), probes }
    }
}
