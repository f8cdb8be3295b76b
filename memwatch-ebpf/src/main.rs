//! memwatch's kernel programs: one module per hook family.
//!
//! Counters are aggregated here per memory cgroup, in a per-CPU array indexed by the cgroup's
//! memory css id (per process only while userspace asks); nothing is sent to userspace per
//! event except OOM kills and the rare hand-over of a slot (ring buffers). Tracepoint field
//! offsets, kernel struct offsets and `pt_regs` offsets are not compiled in: userspace reads
//! them from tracefs `format` files and BTF and writes them into `CONFIG` before loading. Each
//! probe has attach methods in order of preference (fexit, BTF tracepoint, tracepoint); userspace
//! loads the first this kernel accepts.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Atomic adds for the per-process counters (built with RUSTC_BOOTSTRAP=1, see toolchain notes).
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(target_arch = "bpf")]
mod exit;
#[cfg(target_arch = "bpf")]
mod faults;
#[cfg(target_arch = "bpf")]
mod mmap;
#[cfg(target_arch = "bpf")]
mod oom;
#[cfg(target_arch = "bpf")]
mod stacks;
#[cfg(target_arch = "bpf")]
mod state;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach this; it exists to satisfy `no_std`.
    loop {}
}

/// On the host this crate is an empty program, so `cargo build --workspace` stays harmless.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
