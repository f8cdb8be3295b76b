//! Process lifecycle: forget a process's state when its thread group dies (counting the exit
//! in its cgroup), and start its counters afresh at exec.
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};
use memwatch_common::FIELD_ABSENT;

use crate::state::{BRK_LAST, PENDING, PROC_STATS, cgroup_entry, config, proc_entry};

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, pid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    let _ = PENDING.remove(pid_tgid);
    crate::oom::victim_exit(pid);
    let off = config!(exit_group_dead);
    let group_dead = if off == FIELD_ABSENT {
        // Older kernels: the group leader's exit stands for the process.
        pid == tgid
    } else {
        unsafe { ctx.read_at::<u8>(off as usize) }.map(|b| b != 0).unwrap_or(pid == tgid)
    };
    if group_dead {
        if let Some(e) = proc_entry(tgid) {
            if let Some(cg) = cgroup_entry(e.memcg_id) {
                cg.exits += 1;
            }
        }
        let _ = PROC_STATS.remove(tgid);
        let _ = BRK_LAST.remove(tgid);
    }
    0
}

/// A new program image: the old break is meaningless, and the process may have been moved
/// to its container's cgroup just before exec, so its ids are looked up again.
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = PROC_STATS.remove(tgid);
    let _ = BRK_LAST.remove(tgid);
    0
}
