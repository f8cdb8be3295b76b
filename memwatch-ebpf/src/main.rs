//! memwatch's kernel programs: one module per hook family, all on tracepoints.
//!
//! Counters are aggregated here, per process (tgid) and per memory cgroup, in per-CPU LRU
//! maps; nothing is sent to userspace per event except OOM kills (a ring buffer). Tracepoint
//! field offsets and kernel struct offsets are not compiled in: userspace reads them from
//! tracefs `format` files and BTF and writes them into [`CONFIG`] before loading.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod exit;
#[cfg(target_arch = "bpf")]
mod faults;
#[cfg(target_arch = "bpf")]
mod mmap;
#[cfg(target_arch = "bpf")]
mod oom;
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
