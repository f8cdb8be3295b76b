//! User page faults, counted per process and per memory cgroup. This is the hottest hook:
//! one per-CPU map lookup for the process and one for its cgroup, no other work.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use crate::state::update;

#[tracepoint]
pub fn page_fault_user(_ctx: TracePointContext) -> u32 {
    update(|c| c.page_faults += 1);
    0
}
