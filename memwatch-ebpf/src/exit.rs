//! Process lifecycle: count a process's exit in its cgroup and forget its state when its
//! thread group dies; start its per-process state afresh at exec.
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};
use memwatch_common::{FIELD_ABSENT, switch, walk};

use crate::state::{BRK_LAST, Direct, PROCESSES, Probe, config, slot, switched_on};

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, pid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    crate::oom::victim_exit(pid);
    let off = config!(exit_group_dead);
    let group_dead = if off == FIELD_ABSENT {
        // Older kernels: the group leader's exit stands for the process.
        pid == tgid
    } else {
        unsafe { ctx.read_at::<u8>(off as usize) }.map(|b| b != 0).unwrap_or(pid == tgid)
    };
    if group_dead {
        let s = if config!(walk) == walk::BTF { slot::<Direct>() } else { slot::<Probe>() };
        if let Some(s) = s {
            s.counters.exits += 1;
        }
        if switched_on(switch::PER_PROCESS) {
            let _ = PROCESSES.remove(tgid);
        }
        let _ = BRK_LAST.remove(tgid);
    }
    0
}

/// A new program image: the old break is meaningless, and per-process counts start again.
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if switched_on(switch::PER_PROCESS) {
        let _ = PROCESSES.remove(tgid);
    }
    let _ = BRK_LAST.remove(tgid);
    0
}
