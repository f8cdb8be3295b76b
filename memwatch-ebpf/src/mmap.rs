//! mmap, munmap, brk and mremap: calls and bytes per process and per memory cgroup.
//! Arguments are saved at `sys_enter_*` and counted at `sys_exit_*` only when the call
//! succeeded.
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};

use crate::state::{BRK_LAST, PENDING, Pending, config, is_err, tgid, update};

const MAP_ANONYMOUS: u64 = 0x20;

#[inline(always)]
fn page_align(len: u64) -> u64 {
    let page = config!(page_size);
    (len + page - 1) & !(page - 1)
}

#[inline(always)]
fn arg(ctx: &TracePointContext, off: u16) -> Option<u64> {
    unsafe { ctx.read_at::<u64>(off as usize) }.ok()
}

#[inline(always)]
fn save(a: u64, b: u64) {
    let _ = PENDING.insert(bpf_get_current_pid_tgid(), Pending { a, b }, 0);
}

/// The saved arguments and the return value, or None when there is nothing to count.
#[inline(always)]
fn take(ctx: &TracePointContext, ret_off: u16) -> Option<(Pending, i64)> {
    let key = bpf_get_current_pid_tgid();
    let saved = unsafe { *PENDING.get_ptr(key)? };
    let _ = PENDING.remove(key);
    let ret = unsafe { ctx.read_at::<i64>(ret_off as usize) }.ok()?;
    Some((saved, ret))
}

#[tracepoint]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    if let (Some(len), Some(flags)) = (arg(&ctx, config!(mmap_len)), arg(&ctx, config!(mmap_flags))) {
        save(page_align(len), flags);
    }
    0
}

#[tracepoint]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    if let Some((p, ret)) = take(&ctx, config!(mmap_ret)) {
        if !is_err(ret) {
            let (len, anon) = (p.a, p.b & MAP_ANONYMOUS != 0);
            update(|c| {
                c.mmap_calls += 1;
                if anon {
                    c.mmap_anon_bytes += len;
                } else {
                    c.mmap_file_bytes += len;
                }
            });
        }
    }
    0
}

#[tracepoint]
pub fn sys_enter_munmap(ctx: TracePointContext) -> u32 {
    if let Some(len) = arg(&ctx, config!(munmap_len)) {
        save(page_align(len), 0);
    }
    0
}

#[tracepoint]
pub fn sys_exit_munmap(ctx: TracePointContext) -> u32 {
    if let Some((p, ret)) = take(&ctx, config!(munmap_ret)) {
        if ret == 0 {
            update(|c| {
                c.munmap_calls += 1;
                c.munmap_bytes += p.a;
            });
        }
    }
    0
}

#[tracepoint]
pub fn sys_enter_brk(ctx: TracePointContext) -> u32 {
    if let Some(brk) = arg(&ctx, config!(brk_brk)) {
        save(brk, 0);
    }
    0
}

/// brk returns the new break on success and the old one on failure; brk(0) asks for the
/// current break. Net growth is the sum of changes between breaks we saw for this process.
#[tracepoint]
pub fn sys_exit_brk(ctx: TracePointContext) -> u32 {
    let Some((p, ret)) = take(&ctx, config!(brk_ret)) else { return 0 };
    let (requested, now) = (p.a, ret as u64);
    if requested != 0 && requested != now {
        return 0; // refused
    }
    let tgid = tgid();
    // First sight (a forked child, or a process older than memwatch): no base to measure
    // from, so this call only sets one.
    let last = BRK_LAST.get_ptr(tgid).map(|p| unsafe { *p }).unwrap_or(now);
    let _ = BRK_LAST.insert(tgid, now, 0);
    update(|c| {
        c.brk_calls += 1;
        if now >= last {
            c.brk_grow_bytes += now - last;
        } else {
            c.brk_shrink_bytes += last - now;
        }
    });
    0
}

#[tracepoint]
pub fn sys_enter_mremap(ctx: TracePointContext) -> u32 {
    if let (Some(old), Some(new)) = (arg(&ctx, config!(mremap_old_len)), arg(&ctx, config!(mremap_new_len))) {
        save(page_align(old), page_align(new));
    }
    0
}

#[tracepoint]
pub fn sys_exit_mremap(ctx: TracePointContext) -> u32 {
    if let Some((p, ret)) = take(&ctx, config!(mremap_ret)) {
        if !is_err(ret) {
            let (old, new) = (p.a, p.b);
            update(|c| {
                c.mremap_calls += 1;
                if new > old {
                    c.mremap_grow_bytes += new - old;
                } else {
                    c.mremap_shrink_bytes += old - new;
                }
            });
        }
    }
    0
}
