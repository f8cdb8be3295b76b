//! mmap, munmap, brk and mremap: calls and bytes per memory cgroup.
//!
//! Preferred: fexit on the syscalls' own entry points (`__x64_sys_mmap`, …), which run only
//! for those syscalls. The arguments come from the `struct pt_regs` the entry point receives
//! and the result from its return value. Fallback, only when the operator allows it: the
//! `syscalls:sys_exit_*` tracepoints, with the arguments from `bpf_task_pt_regs` (5.15+).
//! Any `syscalls:` tracepoint puts every task on the slow syscall path, watched or not, which
//! is why it is not the default.
use aya_ebpf::{
    helpers::bpf_task_pt_regs,
    macros::{fexit, tracepoint},
    programs::{FExitContext, TracePointContext},
};
use memwatch_common::{BrkLast, walk};

use crate::state::{BRK_LAST, Direct, Mem, Probe, config, current_image, is_err, record, tgid, update};

const MAP_ANONYMOUS: u64 = 0x20;

#[inline(always)]
fn page_align(len: u64) -> u64 {
    let page = config!(page_size);
    (len + page - 1) & !(page - 1)
}

/// Syscall argument `n` (0-based) from `struct pt_regs` (a BTF pointer: direct loads).
#[inline(always)]
fn arg(regs: *const u8, n: usize) -> Option<u64> {
    let off = config!(regs_arg);
    Direct::load::<u64>(regs, off[n] as u32)
}

/// What a finished syscall did, counted into the current task's cgroup.
#[derive(Clone, Copy)]
enum Call {
    Mmap,
    Munmap,
    Brk,
    Mremap,
}

#[inline(always)]
fn count(call: Call, regs: *const u8, ret: i64) {
    if config!(walk) == walk::BTF {
        count_with::<Direct>(call, regs, ret);
    } else {
        count_with::<Probe>(call, regs, ret);
    }
}

#[inline(always)]
fn count_with<W: Mem>(call: Call, regs: *const u8, ret: i64) {
    match call {
        Call::Mmap => {
            let (Some(len), Some(flags)) = (arg(regs, 1), arg(regs, 3)) else { return };
            if is_err(ret) {
                return;
            }
            let (len, anon) = (page_align(len), flags & MAP_ANONYMOUS != 0);
            update::<W>(|c| {
                c.mmap_calls += 1;
                if anon {
                    c.mmap_anon_bytes += len;
                } else {
                    c.mmap_file_bytes += len;
                }
            });
        }
        Call::Munmap => {
            let Some(len) = arg(regs, 1) else { return };
            if ret != 0 {
                return;
            }
            let len = page_align(len);
            update::<W>(|c| {
                c.munmap_calls += 1;
                c.munmap_bytes += len;
            });
        }
        Call::Brk => {
            let Some(requested) = arg(regs, 0) else { return };
            brk::<W>(requested, ret as u64);
        }
        Call::Mremap => {
            let (Some(old), Some(new)) = (arg(regs, 1), arg(regs, 2)) else { return };
            if is_err(ret) {
                return;
            }
            let (old, new) = (page_align(old), page_align(new));
            update::<W>(|c| {
                c.mremap_calls += 1;
                if new > old {
                    c.mremap_grow_bytes += new - old;
                } else {
                    c.mremap_shrink_bytes += old - new;
                }
            });
        }
    }
}

/// brk returns the new break on success and the old one on failure; brk(0) asks for the
/// current break. Net growth is the sum of changes between breaks seen for this program image.
#[inline(always)]
fn brk<W: Mem>(requested: u64, now: u64) {
    if requested != 0 && requested != now {
        return; // refused
    }
    let tgid = tgid();
    let (mm, start_brk) = current_image::<W>();
    // First sight of this image (a forked child, an exec, a process older than memwatch): no
    // base to measure from, so this call only sets one.
    // SAFETY: a pointer to the map's value, valid while the program runs.
    let last = match BRK_LAST.get_ptr(tgid).map(|p| unsafe { *p }) {
        Some(b) if b.mm == mm && b.start_brk == start_brk => Some(b.brk),
        _ => None,
    };
    if last != Some(now) {
        let _ = BRK_LAST.insert(tgid, BrkLast { mm, start_brk, brk: now }, 0);
    }
    let last = last.unwrap_or(now);
    update::<W>(|c| {
        c.brk_calls += 1;
        if now >= last {
            c.brk_grow_bytes += now - last;
        } else {
            c.brk_shrink_bytes += last - now;
        }
    });
}

/// fexit on a syscall entry point `long __x64_sys_NAME(const struct pt_regs *regs)`: argument
/// 0 is the registers, slot 1 of the context the return value (readable since 5.5, unlike
/// `bpf_get_func_ret`, which needs 5.17).
#[inline(always)]
fn on_fexit(ctx: &FExitContext, call: Call) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    count(call, regs, ret);
    0
}

#[fexit]
pub(crate) fn fexit_mmap(ctx: FExitContext) -> i32 {
    on_fexit(&ctx, Call::Mmap)
}

#[fexit]
pub(crate) fn fexit_munmap(ctx: FExitContext) -> i32 {
    on_fexit(&ctx, Call::Munmap)
}

#[fexit]
pub(crate) fn fexit_brk(ctx: FExitContext) -> i32 {
    on_fexit(&ctx, Call::Brk)
}

#[fexit]
pub(crate) fn fexit_mremap(ctx: FExitContext) -> i32 {
    on_fexit(&ctx, Call::Mremap)
}

/// The fallback: `syscalls:sys_exit_NAME`, whose record has the return value at `ret_off`; the
/// arguments are still in the task's saved user registers.
#[inline(always)]
fn on_sys_exit(ctx: &TracePointContext, ret_off: u16, call: Call) -> u32 {
    let Some(ret) = record::<i64>(ctx, ret_off) else { return 0 };
    let task = Direct::current_task();
    // SAFETY: the current task's BTF pointer, as the helper wants.
    let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as *const u8;
    count(call, regs, ret);
    0
}

#[tracepoint]
pub(crate) fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    on_sys_exit(&ctx, config!(mmap_ret), Call::Mmap)
}

#[tracepoint]
pub(crate) fn sys_exit_munmap(ctx: TracePointContext) -> u32 {
    on_sys_exit(&ctx, config!(munmap_ret), Call::Munmap)
}

#[tracepoint]
pub(crate) fn sys_exit_brk(ctx: TracePointContext) -> u32 {
    on_sys_exit(&ctx, config!(brk_ret), Call::Brk)
}

#[tracepoint]
pub(crate) fn sys_exit_mremap(ctx: TracePointContext) -> u32 {
    on_sys_exit(&ctx, config!(mremap_ret), Call::Mremap)
}
