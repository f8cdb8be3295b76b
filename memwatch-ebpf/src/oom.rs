//! OOM kills: one record per `oom:mark_victim` into a ring buffer. Fields beyond `pid` are
//! read only where this kernel's format has them (their offsets come from userspace).
use core::ffi::c_void;

use aya_ebpf::EbpfContext as _;
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, generated},
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use aya_log_ebpf::warn;
use memwatch_common::{OomEvent, drop, oom_present as has};

use memwatch_common::walk;

use crate::state::{
    Direct, Mem, OOM_EVENTS, OOM_VICTIMS, Probe, VICTIMS_PENDING, atomic_add, boot_ns, cgroup_v2_id, config, count_drop, current_css,
    current_memcg_id, record, task_memcg_id,
};

#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, off: u16) -> Option<T> {
    record(ctx, off)
}

/// The record in a ring buffer reservation, zeroed: built in place, since it is larger than
/// what the BPF stack may hold.
#[inline(always)]
fn zeroed(slot: &mut aya_ebpf::maps::ring_buf::RingBufEntry<OomEvent>) -> &mut OomEvent {
    let p = slot.as_mut_ptr();
    // SAFETY: `p` is the reservation's memory, sized for one OomEvent, which is plain data (all
    // zeros is a valid value); the reference lives no longer than the entry.
    unsafe {
        core::ptr::write_bytes(p, 0, 1);
        &mut *p
    }
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
    let e = zeroed(&mut slot);
    e.boot_ns = boot_ns();
    e.victim_pid = victim as u32;
    e.trigger_tgid = (pid_tgid >> 32) as u32;
    e.trigger_pid = pid_tgid as u32;
    e.trigger_cgroup_id = cgroup_v2_id();
    e.trigger_memcg_id = current_memcg_id();
    e.trigger_comm = bpf_get_current_comm().unwrap_or_default();
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
    if levels_at_kill(e) {
        present |= has::LEVELS;
        if config!(memcg_swap) != 0 {
            present |= has::SWAP;
        }
    }
    e.present = present;
    let at = e.boot_ns;
    if OOM_VICTIMS.insert(victim as u32, at, 0).is_ok()
        && let Some(n) = VICTIMS_PENDING.get_ptr_mut(0)
    {
        atomic_add(n, 1);
    }
    slot.submit(0);
    0
}

/// Copies a `T` from kernel address `base + off` into `dst`; the helper zeroes `dst` when the
/// read fails (a null or stale pointer), so nothing branches on the outcome. Branch-free matters
/// here: with a branch per read, the eight levels below give older verifiers (6.1) more paths
/// than their million-instruction budget.
#[inline(always)]
fn read_or_zero<T>(dst: &mut T, base: u64, off: u32) {
    // SAFETY: the helper writes at most size_of::<T>() bytes to `dst`, a valid exclusive
    // reference, and reads kernel memory fault-safely; any bit pattern of the plain integer
    // types used here is valid.
    unsafe {
        generated::bpf_probe_read_kernel(
            dst as *mut T as *mut c_void,
            size_of::<T>() as u32,
            base.wrapping_add(off as u64) as *const c_void,
        )
    };
}

/// The page counters of the current task's memory cgroup and its ancestors, now: in the kill's
/// context, the cgroup whose limit the charge hit is among them, at its limit. Helper reads
/// (the tracepoint's context has no BTF pointers); a few dozen of them, once per kill.
#[inline(always)]
fn levels_at_kill(e: &mut OomEvent) -> bool {
    let memory = config!(memcg_memory);
    if memory == 0 || config!(walk) == walk::NONE {
        return false;
    }
    let (swap, usage, max) = (config!(memcg_swap), config!(page_counter_usage), config!(page_counter_max));
    let (css_cgroup, cgroup_kn, kn_id, css_parent) = (config!(css_cgroup), config!(cgroup_kn), config!(kn_id), config!(css_parent));
    let Some(first) = current_css::<Probe>() else { return false };
    let mut css = first as u64;
    let mut n = 0u32;
    for level in e.levels.iter_mut() {
        // The css is the mem_cgroup's first member: the same address.
        let (mut cgroup, mut kn) = (0u64, 0u64);
        read_or_zero(&mut cgroup, css, css_cgroup);
        read_or_zero(&mut kn, cgroup, cgroup_kn);
        read_or_zero(&mut level.cgroup_id, kn, kn_id);
        read_or_zero(&mut level.usage_pages, css, memory + usage);
        read_or_zero(&mut level.max_pages, css, memory + max);
        if swap != 0 {
            read_or_zero(&mut level.swap_usage_pages, css, swap + usage);
            read_or_zero(&mut level.swap_max_pages, css, swap + max);
        }
        n += 1;
        let mut parent = 0u64;
        read_or_zero(&mut parent, css, css_parent);
        if parent == 0 {
            break;
        }
        css = parent;
    }
    e.nlevels = n;
    true
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
    let e = zeroed(&mut slot);
    e.kind = memwatch_common::OOM_KIND_VICTIM_TASK;
    e.boot_ns = boot_ns();
    e.victim_pid = pid as u32;
    e.victim_memcg_id = task_memcg_id(task);
    e.present = has::VICTIM_MEMCG;
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
    let e = zeroed(&mut slot);
    e.kind = memwatch_common::OOM_KIND_VICTIM_EXIT;
    e.boot_ns = boot_ns();
    e.victim_pid = pid;
    e.trigger_tgid = (pid_tgid >> 32) as u32;
    e.trigger_pid = pid_tgid as u32;
    e.trigger_cgroup_id = cgroup_v2_id();
    e.victim_memcg_id = current_memcg_id();
    e.present = has::VICTIM_MEMCG;
    e.victim_comm = bpf_get_current_comm().unwrap_or_default();
    slot.submit(0);
}
