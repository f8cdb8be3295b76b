//! memwatch: explains memory on Linux hosts and Kubernetes nodes from the kernel.
//!
//! Data flows one way, and each stage is a module (a folder where it has parts), in layers
//! that only ever import downward (`cargo xtask lint` checks it; the list is
//! `xtask/src/layers.rs`, and CONTRIBUTING.md explains it), bottom to top:
//!
//! 1. [`parse`]: pure parsers for every file read; [`host`]: what this machine offers
//!    (cgroup mode, kernel, page size) and the cgroupfs and `/proc` lookups more than one stage
//!    makes (a cgroup's ancestry and effective limit, a process's facts);
//! 2. [`runtime`]: language runtimes recognised from outside, their facts, and the classes of
//!    a process's mappings ([`runtime::layout`]); it owns which environment variables may be
//!    read;
//! 3. [`probes`]: the kernel programs (the `memwatch-ebpf` crate) loaded and attached, their
//!    maps read ([`probes::PROBES`] lists them; [`probes::stacks`] is the fault-stack sampler's
//!    kernel side);
//! 4. [`collector`]: one collector per source (cgroupfs, procfs, the kubelet's logs, eBPF with
//!    its [`collector::ebpf::ledger`]) filling a [`collector::SnapshotBuilder`] (roots as
//!    parameters: [`Roots`]);
//! 5. [`snapshot`]: what readers see; [`model`] builds it in named passes;
//! 6. [`risk`]: the one definition of "at risk of an OOM kill";
//! 7. [`stacks`]: the fault stacks drained, resolved while processes live, named on a thread
//!    of their own, kept per container; [`history`]: each container's recent past;
//!    [`selfmetrics`]: memwatch's own instrumentation;
//! 8. [`oom`]: the kernel's kill records turned into explained, journaled events, and the
//!    warnings before them; it tells the next sample which cgroups had kills as an explicit
//!    input of the collectors, never a shared lock;
//! 9. [`sampler`] runs one sample step on a thread of its own and publishes each snapshot;
//!    [`pipeline`] wires probes, sampler and OOM stage, the same for `serve` and `top`;
//! 10. readers: [`expose`] (the exposition, the Perfetto trace) and [`explain`] (where a
//!     process's memory is); [`http`] (routes, and the server with its connection limits) and
//!     [`top`] (the terminal view). The binary's `cli` sits on top.
//!
//! Beside every layer: [`allocator`] (glibc's settings for a long-running daemon) and
//! [`units`] (quantities for people).
pub mod allocator;
pub mod apps;
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
pub mod rightsize;
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
