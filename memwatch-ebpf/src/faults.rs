//! User page faults, counted per memory cgroup. Off unless asked for: the kernel keeps its own
//! per-cgroup fault counters (memory.stat `pgfault`), which cost nothing extra, and an empty
//! program on this hook already costs about 4.5% of a fault. When on, the body is the slot
//! update and nothing else, on a BTF tracepoint.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use memwatch_common::walk;

use crate::state::{Direct, Probe, config, slot};

#[btf_tracepoint(function = "page_fault_user")]
pub(crate) fn page_fault_user(_ctx: BtfTracePointContext) -> u32 {
    // Per cgroup only: a process's own faults are in /proc/<pid>/stat already.
    let s = if config!(walk) == walk::BTF { slot::<Direct>() } else { slot::<Probe>() };
    if let Some(s) = s {
        s.counters.page_faults += 1;
    }
    0
}

/// Does nothing: attached only by `memwatch check --bpf-stats` and the benchmark, to measure
/// what the hook itself costs on this kernel (the floor any program on it pays).
#[btf_tracepoint(function = "page_fault_user")]
pub(crate) fn page_fault_user_empty(_ctx: BtfTracePointContext) -> u32 {
    0
}
