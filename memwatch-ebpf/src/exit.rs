//! Process lifetimes: count a process's exit in its cgroup, tell userspace when an OOM victim
//! dies (from its own context), and forget per-process state; tell userspace of each exec.
//!
//! The exec hook is not for counting: the remembered program break carries its image's
//! identity (see `memwatch_common::BrkLast`), and per-process counts simply continue across an
//! exec. It sends the new program's tgid, so userspace reads its Go settings while it lives.
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};
use memwatch_common::{ExecEvent, drop, switch, walk};

use crate::state::{Direct, EXECS, PROCESSES, Probe, VICTIMS_PENDING, config, count_drop, record, slot, switched_on, tgid};

/// `sched:sched_process_exec`: rare (once per program started), so one small record each.
#[tracepoint]
pub(crate) fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    match EXECS.reserve::<ExecEvent>(0) {
        Some(mut r) => {
            r.write(ExecEvent { tgid: tgid(), _pad: 0 });
            r.submit(0);
        }
        None => count_drop(drop::EXEC_RING_FULL),
    }
    0
}

#[tracepoint]
pub(crate) fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, pid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    // Most exits are not OOM victims: look the thread up only while some victim is pending.
    if VICTIMS_PENDING.get(0).is_some_and(|n| *n != 0) {
        crate::oom::victim_exit(pid);
    }
    // Older kernels lack `group_dead`: the group leader's exit stands for the process.
    let group_dead = record::<u8>(&ctx, config!(exit_group_dead)).map(|b| b != 0).unwrap_or(pid == tgid);
    if group_dead {
        let s = if config!(walk) == walk::BTF { slot::<Direct>() } else { slot::<Probe>() };
        if let Some(s) = s {
            s.counters.exits += 1;
        }
        if switched_on(switch::PER_PROCESS) {
            let _ = PROCESSES.remove(tgid);
        }
    }
    0
}
