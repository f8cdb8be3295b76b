//! Which code faults memory in: one user page fault in `stack_period` (a power of two), its
//! user stack, counted per memory cgroup, process and stack. On x86 a BTF tracepoint on
//! `page_fault_user` (sampling by a per-CPU tick); elsewhere the perf software page-fault
//! event, which samples by its own period. In at-risk mode only the memory cgroups userspace
//! lists in `STACK_CGROUPS` are counted (checked on sampled faults only: the hook's cost is one
//! per-CPU increment on the others). Userspace attaches the program only while a container is at
//! risk (or always, `--stacks always`) and drains the counts on its slow cadence.
//!
//! Where the leaf function has no frame of its own (glibc's `memset`, Go's
//! `memclrNoHeapPointers`), the frame-pointer unwinder starts from the caller's caller: the
//! word at the user stack pointer is then the lost return address, kept when it points into the
//! executable's text (userspace checks it further).
use aya_ebpf::{
    EbpfContext,
    bindings::BPF_F_USER_STACK,
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user},
    macros::{btf_tracepoint, map, perf_event},
    maps::{HashMap, PerCpuArray, StackTrace},
    programs::{BtfTracePointContext, PerfEventContext, tracing::StackIdContext},
};
use memwatch_common::{STACK_CGROUPS as MAX_CGROUPS, STACK_COUNTS as MAX_COUNTS, STACK_ENTRIES, StackKey, drop, switch, walk};

use crate::state::{Direct, Mem, Probe, atomic_add, config, count_drop, css_cgroup_id, current_css, switched_on, tgid};

/// Faults seen on each CPU (the tracepoint's sampling tick).
#[map]
static FAULT_TICKS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The memory cgroups (kernfs ids) counted in at-risk mode.
#[map]
pub(crate) static STACK_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(MAX_CGROUPS, 0);

/// Sampled user stacks, by id (sized by userspace: one entry when stacks are off).
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(STACK_ENTRIES, 0);

/// Sampled faults per (cgroup, process, stack, caller word). A plain hash: userspace takes the
/// entries out when it drains them; a full map refuses newcomers and counts the drop rather
/// than evicting counts not yet read.
#[map]
static STACK_COUNTS: HashMap<StackKey, u64> = HashMap::with_max_entries(MAX_COUNTS, 0);

#[btf_tracepoint(function = "page_fault_user")]
pub(crate) fn fault_stacks(ctx: BtfTracePointContext) -> u32 {
    let Some(tick) = FAULT_TICKS.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's value in the map, valid while the program runs.
    let n = unsafe {
        *tick += 1;
        *tick
    };
    if n & (config!(stack_period) as u64).wrapping_sub(1) != 0 {
        return 0;
    }
    let regs: *const u8 = ctx.arg(1);
    sample(&ctx, regs, false);
    0
}

/// The same where `page_fault_user` does not exist (arm64): the kernel samples by the event's
/// period, and the user registers are the context's first member.
#[perf_event]
pub(crate) fn fault_stacks_perf(ctx: PerfEventContext) -> u32 {
    let regs = ctx.as_ptr() as *const u8;
    sample(&ctx, regs, true);
    0
}

#[inline(always)]
fn sample<C: StackIdContext>(ctx: &C, regs: *const u8, user_regs: bool) {
    let css = if config!(walk) == walk::BTF { current_css::<Direct>() } else { current_css::<Probe>() };
    let Some(css) = css else { return };
    let cgroup_id = if config!(walk) == walk::BTF { css_cgroup_id::<Direct>(css) } else { css_cgroup_id::<Probe>(css) };
    if !switched_on(switch::STACKS_ALL) && STACK_CGROUPS.get_ptr(cgroup_id).is_none() {
        return;
    }
    let stack_id = match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
        Ok(id) => id as i32,
        Err(e) => {
            // -EEXIST: a hash collision with another stack; -ENOMEM/-EFAULT: full, or no stack.
            if e == -17 || e == -12 {
                count_drop(drop::STACK_MAP_FULL);
            }
            -1
        }
    };
    let key = StackKey { cgroup_id, caller: caller(regs, user_regs), tgid: tgid(), stack_id };
    match STACK_COUNTS.get_ptr_mut(key) {
        Some(c) => atomic_add(c, 1),
        None => {
            if STACK_COUNTS.insert(key, 1, 0).is_err() {
                count_drop(drop::STACK_COUNTS_FULL);
            }
        }
    }
}

/// The word at the user stack pointer, when it points into the executable's text; else 0.
#[inline(always)]
fn caller(regs: *const u8, user_regs: bool) -> u64 {
    let off = config!(regs_sp);
    if off == 0 || regs.is_null() {
        return 0;
    }
    // The saved registers: the tracepoint's `struct pt_regs`, or the perf event context's
    // `bpf_user_pt_regs_t` (the same layout for the stack pointer on x86-64 and arm64).
    let _ = user_regs;
    // SAFETY: reading 8 bytes of the registers saved at the fault; the helper fails cleanly.
    let sp: u64 = unsafe { bpf_probe_read_kernel(regs.add(off as usize) as *const u64) }.unwrap_or(0);
    if sp == 0 {
        return 0;
    }
    // SAFETY: a user address; the helper fails cleanly (a fault is not handled here).
    let word: u64 = unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0);
    let task = if config!(walk) == walk::BTF { Direct::current_task() } else { Probe::current_task() };
    let mm: Option<*const u8> = Probe::load(task, config!(task_mm));
    let Some(mm) = mm else { return 0 };
    let (start, end) =
        (Probe::load::<u64>(mm, config!(mm_start_code)).unwrap_or(0), Probe::load::<u64>(mm, config!(mm_end_code)).unwrap_or(0));
    if word >= start && word < end { word } else { 0 }
}
