//! OOM kills: one record per `oom:mark_victim` into a ring buffer. Fields beyond `pid` are
//! read only where this kernel's format has them (their offsets come from userspace).
use aya_ebpf::EbpfContext as _;
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use aya_log_ebpf::warn;
use memwatch_common::{OomEvent, drop, oom_present as has};

use crate::state::{
    Direct, Mem, OOM_EVENTS, OOM_VICTIMS, VICTIMS_PENDING, atomic_add, boot_ns, cgroup_v2_id, config, count_drop, current_memcg_id, record,
    task_memcg_id,
};

#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, off: u16) -> Option<T> {
    record(ctx, off)
}

#[tracepoint]
pub(crate) fn mark_victim(ctx: TracePointContext) -> u32 {
    let Some(victim) = field::<i32>(&ctx, config!(oom_pid)) else { return 0 };
    let Some(mut slot) = OOM_EVENTS.reserve::<OomEvent>(0) else {
        count_drop(drop::OOM_RING_FULL);
        warn!(&ctx, "memwatch: OOM ring buffer full, kill of pid {} not recorded", victim);
        return 0;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let mut e = OomEvent {
        boot_ns: boot_ns(),
        victim_pid: victim as u32,
        trigger_tgid: (pid_tgid >> 32) as u32,
        trigger_pid: pid_tgid as u32,
        trigger_cgroup_id: cgroup_v2_id(),
        trigger_memcg_id: current_memcg_id(),
        trigger_comm: bpf_get_current_comm().unwrap_or_default(),
        ..OomEvent::default()
    };
    let mut present = 0u16;
    if let Some(loc) = field::<u32>(&ctx, config!(oom_comm)) {
        // __data_loc: low 16 bits are the offset in the record, high 16 bits the length.
        let (off, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
        let n = if len < 16 { len } else { 16 };
        if n > 0
            // SAFETY: at most 16 bytes at the string's offset in the record; the helper fails
            // cleanly on a bad address.
            && unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_buf((ctx.as_ptr() as *const u8).add(off), &mut e.victim_comm[..n]) }
                .is_ok()
        {
            present |= has::COMM;
        }
    }
    macro_rules! opt {
        ($cfg:ident, $dst:ident, $t:ty, $bit:expr) => {
            if let Some(v) = field::<$t>(&ctx, config!($cfg)) {
                e.$dst = v;
                present |= $bit;
            }
        };
    }
    opt!(oom_total_vm, total_vm_pages, u64, has::TOTAL_VM);
    opt!(oom_anon_rss, anon_rss_pages, u64, has::ANON_RSS);
    opt!(oom_file_rss, file_rss_pages, u64, has::FILE_RSS);
    opt!(oom_shmem_rss, shmem_rss_pages, u64, has::SHMEM_RSS);
    opt!(oom_uid, uid, u32, has::UID);
    opt!(oom_pgtables, pgtables_bytes, u64, has::PGTABLES);
    opt!(oom_score_adj, oom_score_adj, i16, has::SCORE_ADJ);
    e.present = present;
    if OOM_VICTIMS.insert(victim as u32, e.boot_ns, 0).is_ok()
        && let Some(n) = VICTIMS_PENDING.get_ptr_mut(0)
    {
        atomic_add(n, 1);
    }
    slot.write(e);
    slot.submit(0);
    0
}

/// Where `mark_victim` passes the victim task (Linux 6.8+), the victim's own memory cgroup at
/// the moment of the kill: a second, small record beside the tracepoint's. On older kernels the
/// argument is a pid, the verifier refuses this program, and the victim's exit says instead.
#[btf_tracepoint(function = "mark_victim")]
pub(crate) fn mark_victim_task(ctx: BtfTracePointContext) -> u32 {
    let task: *const u8 = ctx.arg(0);
    let Some(pid) = Direct::load::<i32>(task, config!(task_pid)) else { return 0 };
    let Some(mut slot) = OOM_EVENTS.reserve::<OomEvent>(0) else {
        count_drop(drop::OOM_RING_FULL);
        return 0;
    };
    slot.write(OomEvent {
        kind: memwatch_common::OOM_KIND_VICTIM_TASK,
        boot_ns: boot_ns(),
        victim_pid: pid as u32,
        victim_memcg_id: task_memcg_id(task),
        present: has::VICTIM_MEMCG,
        ..OomEvent::default()
    });
    slot.submit(0);
    0
}

/// Called from `sched_process_exit` for every exiting thread: if it is an OOM victim, say so
/// from its own context, where its memory cgroup is certain.
#[inline(always)]
pub(crate) fn victim_exit(pid: u32) {
    if OOM_VICTIMS.get_ptr(pid).is_none() {
        return;
    }
    if OOM_VICTIMS.remove(pid).is_ok()
        && let Some(n) = VICTIMS_PENDING.get_ptr_mut(0)
    {
        atomic_add(n, u64::MAX); // minus one
    }
    let Some(mut slot) = OOM_EVENTS.reserve::<OomEvent>(0) else {
        count_drop(drop::OOM_RING_FULL);
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let e = OomEvent {
        kind: memwatch_common::OOM_KIND_VICTIM_EXIT,
        boot_ns: boot_ns(),
        victim_pid: pid,
        trigger_tgid: (pid_tgid >> 32) as u32,
        trigger_pid: pid_tgid as u32,
        trigger_cgroup_id: cgroup_v2_id(),
        victim_memcg_id: current_memcg_id(),
        present: has::VICTIM_MEMCG,
        victim_comm: bpf_get_current_comm().unwrap_or_default(),
        ..OomEvent::default()
    };
    slot.write(e);
    slot.submit(0);
}
