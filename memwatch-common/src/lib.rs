//! `#[repr(C)]` types shared by memwatch's eBPF programs and its userspace daemon.
//!
//! Main types: [`Counters`] (what the kernel side aggregates), [`ProcEntry`] (the value of the
//! per-process map), [`Config`] (tracepoint field offsets and kernel struct offsets, written
//! into the programs at load time) and [`OomEvent`] (one record per OOM kill on the ring
//! buffer). Every type has explicit padding and a size assertion, so both sides agree on the
//! layout; `aya::Pod` is implemented behind the `user` feature.
#![no_std]

/// Marks a tracepoint field that this kernel's `format` file does not have.
pub const FIELD_ABSENT: u16 = u16::MAX;

/// Capacity of the per-process map (an LRU: the oldest idle process is evicted when full).
pub const MAX_PROCESSES: u32 = 32_768;
/// Capacity of the per-cgroup map (an LRU; userspace also prunes cgroups that are gone).
pub const MAX_CGROUPS: u32 = 16_384;
/// Capacity of the map holding syscall arguments between `sys_enter` and `sys_exit`.
pub const MAX_PENDING: u32 = 16_384;
/// Size of the OOM event ring buffer in bytes (a power of two, a multiple of the page size).
pub const OOM_RING_BYTES: u32 = 64 * 1024;

/// Counters aggregated in the kernel, per process and per cgroup, per CPU.
///
/// Userspace sums the per-CPU values. Every field only grows, so a counter never goes back;
/// the net growth of the program break is `brk_grow_bytes - brk_shrink_bytes`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
pub struct Counters {
    pub mmap_calls: u64,
    /// Page-rounded length of successful anonymous mappings.
    pub mmap_anon_bytes: u64,
    /// Page-rounded length of successful file-backed mappings.
    pub mmap_file_bytes: u64,
    pub munmap_calls: u64,
    pub munmap_bytes: u64,
    pub brk_calls: u64,
    pub brk_grow_bytes: u64,
    pub brk_shrink_bytes: u64,
    pub mremap_calls: u64,
    pub mremap_grow_bytes: u64,
    pub mremap_shrink_bytes: u64,
    pub page_faults: u64,
    /// Processes (thread groups) that exited; only meaningful per cgroup.
    pub exits: u64,
}
const _: () = assert!(core::mem::size_of::<Counters>() == 104);

impl Counters {
    /// Net growth of the program break.
    pub fn brk_net_bytes(&self) -> i64 {
        self.brk_grow_bytes.wrapping_sub(self.brk_shrink_bytes) as i64
    }

    /// Adds `other` into `self` (wrapping, as the kernel's counters do).
    pub fn accumulate(&mut self, other: &Counters) {
        self.mmap_calls = self.mmap_calls.wrapping_add(other.mmap_calls);
        self.mmap_anon_bytes = self.mmap_anon_bytes.wrapping_add(other.mmap_anon_bytes);
        self.mmap_file_bytes = self.mmap_file_bytes.wrapping_add(other.mmap_file_bytes);
        self.munmap_calls = self.munmap_calls.wrapping_add(other.munmap_calls);
        self.munmap_bytes = self.munmap_bytes.wrapping_add(other.munmap_bytes);
        self.brk_calls = self.brk_calls.wrapping_add(other.brk_calls);
        self.brk_grow_bytes = self.brk_grow_bytes.wrapping_add(other.brk_grow_bytes);
        self.brk_shrink_bytes = self.brk_shrink_bytes.wrapping_add(other.brk_shrink_bytes);
        self.mremap_calls = self.mremap_calls.wrapping_add(other.mremap_calls);
        self.mremap_grow_bytes = self.mremap_grow_bytes.wrapping_add(other.mremap_grow_bytes);
        self.mremap_shrink_bytes = self
            .mremap_shrink_bytes
            .wrapping_add(other.mremap_shrink_bytes);
        self.page_faults = self.page_faults.wrapping_add(other.page_faults);
        self.exits = self.exits.wrapping_add(other.exits);
    }
}

/// Value of the per-process map (keyed by tgid), one per CPU.
///
/// The ids are filled the first time the process is seen on that CPU, so a CPU's slot may
/// carry zero ids while another's does not: userspace takes any non-zero one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcEntry {
    /// The cgroup v2 id (`bpf_get_current_cgroup_id`).
    pub cgroup_id: u64,
    /// The id (kernfs inode) of the process's memory cgroup, on v1 or v2; 0 when the kernel
    /// structures could not be resolved from BTF. Also the key of the per-cgroup map.
    pub memcg_id: u64,
    pub counters: Counters,
}

const _: () = assert!(core::mem::size_of::<ProcEntry>() == 120);

/// Load-time configuration: where each tracepoint field lives on this kernel, and how to walk
/// from a task to its memory cgroup. Written by userspace into the programs' read-only data.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    // syscalls:sys_enter_* / sys_exit_* (byte offsets in the tracepoint record)
    pub mmap_len: u16,
    pub mmap_flags: u16,
    pub mmap_ret: u16,
    pub munmap_len: u16,
    pub munmap_ret: u16,
    pub brk_brk: u16,
    pub brk_ret: u16,
    pub mremap_old_len: u16,
    pub mremap_new_len: u16,
    pub mremap_ret: u16,
    // oom:mark_victim; FIELD_ABSENT where this kernel lacks the field
    pub oom_pid: u16,
    pub oom_comm: u16,
    pub oom_total_vm: u16,
    pub oom_anon_rss: u16,
    pub oom_file_rss: u16,
    pub oom_shmem_rss: u16,
    pub oom_uid: u16,
    pub oom_pgtables: u16,
    pub oom_score_adj: u16,
    // sched:sched_process_exit; FIELD_ABSENT on kernels without `group_dead`
    pub exit_group_dead: u16,
    // task_struct -> cgroups -> subsys[memory] -> cgroup -> kn -> id (byte offsets, from BTF)
    pub task_cgroups: u32,
    pub css_set_memcg: u32,
    pub css_cgroup: u32,
    pub cgroup_kn: u32,
    pub kn_id: u32,
    /// Non-zero when the offsets above are valid.
    pub memcg_ok: u32,
    /// The page size, for rounding mapping lengths as the kernel does.
    pub page_size: u64,
}
const _: () = assert!(core::mem::size_of::<Config>() == 72);

impl Config {
    /// Every field absent, memcg walk off: what the programs see if userspace wrote nothing.
    pub const fn empty() -> Self {
        Config {
            mmap_len: FIELD_ABSENT,
            mmap_flags: FIELD_ABSENT,
            mmap_ret: FIELD_ABSENT,
            munmap_len: FIELD_ABSENT,
            munmap_ret: FIELD_ABSENT,
            brk_brk: FIELD_ABSENT,
            brk_ret: FIELD_ABSENT,
            mremap_old_len: FIELD_ABSENT,
            mremap_new_len: FIELD_ABSENT,
            mremap_ret: FIELD_ABSENT,
            oom_pid: FIELD_ABSENT,
            oom_comm: FIELD_ABSENT,
            oom_total_vm: FIELD_ABSENT,
            oom_anon_rss: FIELD_ABSENT,
            oom_file_rss: FIELD_ABSENT,
            oom_shmem_rss: FIELD_ABSENT,
            oom_uid: FIELD_ABSENT,
            oom_pgtables: FIELD_ABSENT,
            oom_score_adj: FIELD_ABSENT,
            exit_group_dead: FIELD_ABSENT,
            task_cgroups: 0,
            css_set_memcg: 0,
            css_cgroup: 0,
            cgroup_kn: 0,
            kn_id: 0,
            memcg_ok: 0,
            page_size: 4096,
        }
    }
}

/// Bits of [`OomEvent::present`]: which optional fields the kernel's format offered.
pub mod oom_present {
    pub const COMM: u16 = 1 << 0;
    pub const TOTAL_VM: u16 = 1 << 1;
    pub const ANON_RSS: u16 = 1 << 2;
    pub const FILE_RSS: u16 = 1 << 3;
    pub const SHMEM_RSS: u16 = 1 << 4;
    pub const UID: u16 = 1 << 5;
    pub const PGTABLES: u16 = 1 << 6;
    pub const SCORE_ADJ: u16 = 1 << 7;
    /// `victim_memcg_id` was found in the per-process map on the CPU that saw the kill.
    pub const VICTIM_MEMCG: u16 = 1 << 8;
}

pub const OOM_KIND_MARK: u32 = 0;
pub const OOM_KIND_VICTIM_EXIT: u32 = 1;
/// Capacity of the map of OOM victims not yet exited.
pub const MAX_OOM_VICTIMS: u32 = 1024;

/// One OOM kill, as seen by `oom:mark_victim`. "Trigger" is the task running when the
/// kernel chose the victim: not necessarily the victim, nor in the victim's cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomEvent {
    /// `bpf_ktime_get_boot_ns`: CLOCK_BOOTTIME, so userspace can turn it into wall time.
    pub boot_ns: u64,
    /// Sizes in the tracepoint's units: KiB where its print format says `kB` (Linux 6.x),
    /// pages before; `pgtables_bytes` likewise (named for the kernel's field).
    pub total_vm_pages: u64,
    pub anon_rss_pages: u64,
    pub file_rss_pages: u64,
    pub shmem_rss_pages: u64,
    pub pgtables_bytes: u64,
    pub trigger_cgroup_id: u64,
    pub trigger_memcg_id: u64,
    pub victim_memcg_id: u64,
    pub victim_pid: u32,
    pub trigger_tgid: u32,
    pub trigger_pid: u32,
    pub uid: u32,
    pub oom_score_adj: i16,
    /// Bits from [`oom_present`].
    pub present: u16,
    /// [`OOM_KIND_MARK`] from `oom:mark_victim`, or [`OOM_KIND_VICTIM_EXIT`] when the victim
    /// exits: then the record is in the victim's own context and `victim_memcg_id` and
    /// `victim_cgroup_id` (in `trigger_cgroup_id`'s place) are the victim's for certain.
    pub kind: u32,
    pub victim_comm: [u8; 16],
    pub trigger_comm: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<OomEvent>() == 128);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers with explicit padding; any bit pattern is valid.
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::ProcEntry {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::OomEvent {}
}
