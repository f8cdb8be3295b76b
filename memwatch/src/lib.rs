//! memwatch: explains memory on Linux hosts and Kubernetes nodes from the kernel.
//!
//! The pipeline, one way, and the module for each stage:
//!
//! 1. kernel hooks (the `memwatch-ebpf` crate) count into per-cgroup slots and send OOM kills
//!    on a ring buffer; [`probes`] loads and attaches them ([`probes::PROBES`] lists them) and
//!    reads their maps; [`ledger`] turns slot readings into what each cgroup did since;
//! 2. [`collector`]s, one per source (cgroupfs, procfs, the kubelet's logs, eBPF), fill a
//!    [`collector::SnapshotBuilder`], reading files through the pure parsers in [`parse`]
//!    (roots as parameters: [`Roots`]; the host's setup: [`host`], [`tracefs`]);
//! 3. [`model`] turns that into the per-container [`snapshot::Snapshot`], in named passes;
//! 4. [`sampler`] runs collectors and model on a thread of its own and publishes each snapshot,
//!    and [`oom`] turns the ring buffer's records into explained, journaled events, published
//!    beside it as an [`oom::OomView`]; [`pipeline`] wires probes, sampler and OOM tracker, the
//!    same for `serve` and `top`;
//! 5. readers: [`render`] (the exposition, with [`selfmetrics`], memwatch's own
//!    instrumentation), [`http`] (`/metrics`, the JSON API), [`top`] (the terminal view), and
//!    the journal in [`oom::journal`].
pub mod allocator;
pub mod collector;
pub mod history;
pub mod host;
pub mod http;
pub mod layout;
pub mod ledger;
pub mod model;
pub mod oom;
pub mod parse;
pub mod pipeline;
pub mod probes;
pub mod render;
pub mod sampler;
pub mod selfmetrics;
pub mod server;
pub mod snapshot;
pub mod top;
pub mod trace;
pub mod tracefs;
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
