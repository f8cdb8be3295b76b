//! The daemon's dealings with glibc's allocator, in one place: how it is set up, when it gives
//! freed memory back, and how much it holds.
//!
//! memwatch keeps the system allocator rather than a crate such as mimalloc or jemalloc: both
//! were measured in the churn test (tests/integration/hostile.rs) and started it at 38–71 MiB
//! RSS against glibc's 18 MiB. glibc needs two things instead: a fixed mmap
//! threshold ([`tune`]) and a trim now and then ([`give_back`]). Elsewhere than glibc (musl)
//! these do nothing.

/// Allocations at least this big are mapped on their own and unmapped when freed (glibc's own
/// starting value, 128 KiB).
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Sets the allocator up for a long-running daemon; call once, before any thread starts.
///
/// glibc raises its mmap threshold each time a mapped block is freed, up to 32 MiB, so after a
/// few samples the big short-lived buffers (a rendered `/metrics` of 1,000 containers, the
/// snapshot's vectors) are carved from the heap instead. Interleaved with long-lived data,
/// they leave holes that neither `free` nor `malloc_trim` can return: in the churn test
/// (1,000 cgroups a second for a minute) RSS grew 11–20% from 10 s in to the end with the
/// dynamic threshold; with it fixed, RSS peaks 4–11% above and ends below where it was.
/// Setting it also turns off that adjustment.
pub fn tune() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets the allocator's own parameters; called before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns the heap's free pages to the kernel: what glibc keeps inside its heaps after a big
/// transient use (loading parses the kernel's BTF, several MiB) or many small ones (cgroups
/// coming and going by the thousand). A walk of the free lists, well under a millisecond at
/// the daemon's size.
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes in use in glibc's heaps (small allocations) plus its mapped large ones; `None` with
/// another allocator.
pub fn in_use() -> Option<u64> {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads the allocator's own statistics.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(target_env = "gnu"))]
    {
        None
    }
}
