//! `#[repr(C)]` types shared by memwatch's eBPF programs and its userspace daemon.
//!
//! Main types: [`Counters`] (what the kernel side aggregates), [`Slot`] (one memory cgroup's
//! counters on one CPU, in a per-CPU array indexed by the cgroup's memory css id), [`Retired`]
//! (a slot's last counts, sent when a new cgroup takes the slot over), [`Config`] (tracepoint
//! field offsets, kernel struct offsets and switches, written into the programs at load time)
//! and [`OomEvent`] (one record per OOM kill on the ring buffer). Every type has explicit
//! padding and a size assertion, so both sides agree on the layout; `aya::Pod` is implemented
//! behind the `user` feature.
#![no_std]

/// Marks a tracepoint field that this kernel's `format` file does not have.
pub const FIELD_ABSENT: u16 = u16::MAX;

/// Default capacity of the per-cgroup slot array: memory css ids below it are counted. The
/// kernel hands out the lowest free id, so ids stay below the number of memory cgroups that
/// exist at once (live and dying). Userspace may size it differently at load time.
pub const DEFAULT_SLOTS: u32 = 4096;
/// Capacity of the per-process map, used only while per-process counting is switched on.
pub const MAX_PROCESSES: u32 = 8192;
/// Size of the OOM event ring buffer in bytes (a power of two, a multiple of the page size).
pub const OOM_RING_BYTES: u32 = 64 * 1024;
/// Size of the ring buffer of process executions (one [`ExecEvent`] per exec).
pub const EXEC_RING_BYTES: u32 = 64 * 1024;
/// Size of the ring buffer for retired slots (a new cgroup took over a freed css id): it is
/// read once per sample, and holds about 3,600 records, enough for 1,000 cgroups created a
/// second, each taking slots on two CPUs (64 KiB dropped three of four there).
pub const RETIRED_RING_BYTES: u32 = 512 * 1024;

/// Counters aggregated in the kernel, per memory cgroup and CPU (and per process on demand).
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
    /// User page faults, counted per event only when the page-fault probe is switched on.
    pub page_faults: u64,
    /// Processes (thread groups) that exited; only meaningful per cgroup.
    pub exits: u64,
}
const _: () = assert!(core::mem::size_of::<Counters>() == 104);

/// Applies `$op` to every field of two [`Counters`], so a new field cannot be forgotten in one
/// of the arithmetic helpers below.
macro_rules! each_counter {
    ($a:ident, $b:ident, $op:ident) => {{
        $a.mmap_calls = $a.mmap_calls.$op($b.mmap_calls);
        $a.mmap_anon_bytes = $a.mmap_anon_bytes.$op($b.mmap_anon_bytes);
        $a.mmap_file_bytes = $a.mmap_file_bytes.$op($b.mmap_file_bytes);
        $a.munmap_calls = $a.munmap_calls.$op($b.munmap_calls);
        $a.munmap_bytes = $a.munmap_bytes.$op($b.munmap_bytes);
        $a.brk_calls = $a.brk_calls.$op($b.brk_calls);
        $a.brk_grow_bytes = $a.brk_grow_bytes.$op($b.brk_grow_bytes);
        $a.brk_shrink_bytes = $a.brk_shrink_bytes.$op($b.brk_shrink_bytes);
        $a.mremap_calls = $a.mremap_calls.$op($b.mremap_calls);
        $a.mremap_grow_bytes = $a.mremap_grow_bytes.$op($b.mremap_grow_bytes);
        $a.mremap_shrink_bytes = $a.mremap_shrink_bytes.$op($b.mremap_shrink_bytes);
        $a.page_faults = $a.page_faults.$op($b.page_faults);
        $a.exits = $a.exits.$op($b.exits);
    }};
}

impl Counters {
    /// Net growth of the program break.
    pub fn brk_net_bytes(&self) -> i64 {
        self.brk_grow_bytes.wrapping_sub(self.brk_shrink_bytes) as i64
    }

    /// Adds `other` into `self` (wrapping, as the kernel's counters do).
    pub fn accumulate(&mut self, other: &Counters) {
        each_counter!(self, other, wrapping_add);
    }

    /// `self - earlier`, field by field, as a delta between two readings of one counter set.
    /// A field that went backwards (a torn read) counts as no change.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut d = *self;
        each_counter!(d, earlier, saturating_sub);
        d
    }

    /// Field-wise maximum: the furthest either reading got.
    pub fn max(&self, other: &Counters) -> Counters {
        let mut m = *self;
        each_counter!(m, other, max);
        m
    }

    pub fn is_zero(&self) -> bool {
        *self == Counters::default()
    }
}

/// One memory cgroup's counters on one CPU: the value of the per-CPU slot array, whose index
/// is the cgroup's memory css id (`cgroup_subsys_state.id`, small and reused after a cgroup is
/// freed). `serial` (the css's `serial_nr`, never reused) tells whose counts a slot holds: when
/// another cgroup's task finds a foreign serial on its CPU, it retires the old counts (see
/// [`Retired`]) and takes the slot over.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// `serial_nr` of the owning css; 0 for a slot never used on this CPU.
    pub serial: u64,
    /// The owner's cgroup id: the kernfs id (directory inode) of its memory cgroup.
    pub cgroup_id: u64,
    /// The parent memory cgroup's id, 0 for the root: where the counts of a cgroup that was
    /// created and removed unseen by userspace belong.
    pub parent_id: u64,
    pub counters: Counters,
}
const _: () = assert!(core::mem::size_of::<Slot>() == 128);

/// A slot's final counts on one CPU, sent on a ring buffer when another cgroup takes it over,
/// so the old owner's last counts are never lost.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retired {
    pub slot: u32,
    pub cpu: u32,
    pub old: Slot,
}
const _: () = assert!(core::mem::size_of::<Retired>() == 136);

/// How the programs find the current task's memory cgroup.
pub mod walk {
    /// No usable BTF offsets: per-cgroup counting is off.
    pub const NONE: u32 = 0;
    /// `bpf_probe_read_kernel` at each step (kernels before 5.11).
    pub const PROBE_READ: u32 = 1;
    /// Direct loads through `bpf_get_current_task_btf()` (5.11+): a few ns a step.
    pub const BTF: u32 = 2;
}

/// Index of each switch in the `SWITCHES` array, which userspace may change at run time.
pub mod switch {
    /// Non-zero while per-process counters are wanted (`memwatch top`'s detail view).
    pub const PER_PROCESS: u32 = 0;
    /// Non-zero: the fault-stack sampler counts every memory cgroup (`--stacks always`); zero:
    /// only those in `STACK_CGROUPS` (the containers at risk).
    pub const STACKS_ALL: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// Index of each counter in the `DROPS` per-CPU array: events the kernel side could not record.
pub mod drop {
    /// The per-process map was full.
    pub const PROCESS_MAP_FULL: u32 = 0;
    /// The OOM ring buffer was full.
    pub const OOM_RING_FULL: u32 = 1;
    /// A memory css id at or beyond the slot array's capacity.
    pub const NO_SLOT: u32 = 2;
    /// The retired-slot ring buffer was full: an old owner's last counts were lost.
    pub const RETIRED_RING_FULL: u32 = 3;
    /// The memory cgroup of a task could not be resolved.
    pub const NO_MEMCG: u32 = 4;
    /// The exec ring buffer was full: a program started unseen (its Go settings are read at
    /// the next sample, if it lives that long).
    pub const EXEC_RING_FULL: u32 = 5;
    /// A sampled fault's stack could not be stored (the stack map was full).
    pub const STACK_MAP_FULL: u32 = 6;
    /// A sampled fault's count could not be stored (the counts map was full: a plain hash,
    /// so live counts are never evicted).
    pub const STACK_COUNTS_FULL: u32 = 7;
    pub const COUNT: u32 = 8;
}

/// Load-time configuration: where each tracepoint field lives on this kernel, where the
/// syscall arguments sit in `struct pt_regs`, and how to walk from a task to its memory cgroup.
/// Written by userspace into the programs' read-only data, so the verifier sees constants and
/// prunes the branches this kernel does not take.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    // syscalls:sys_exit_* `ret` (byte offsets in the tracepoint record; fallback only)
    pub mmap_ret: u16,
    pub munmap_ret: u16,
    pub brk_ret: u16,
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
    /// Byte offsets in `struct pt_regs` of a syscall's first five arguments (x86-64: di, si,
    /// dx, r10, r8), as the syscall wrappers and `bpf_task_pt_regs` see them.
    pub regs_arg: [u16; 5],
    pub _pad0: u16,
    // task_struct -> cgroups -> subsys[memory] -> {id, serial_nr, cgroup -> kn -> id, parent}
    // (byte offsets, from BTF)
    pub task_cgroups: u32,
    pub css_set_memcg: u32,
    pub css_id: u32,
    pub css_serial: u32,
    pub css_cgroup: u32,
    pub css_parent: u32,
    pub cgroup_kn: u32,
    pub kn_id: u32,
    /// One of [`walk`].
    pub walk: u32,
    // task_struct -> mm -> start_brk: which program image a remembered break belongs to
    pub task_mm: u32,
    pub mm_start_brk: u32,
    /// task_struct -> pid
    pub task_pid: u32,
    // mem_cgroup (its css at offset 0) -> memory / swap-or-memsw page counters -> usage, max;
    // `memcg_memory` is 0 where BTF does not say (no at-kill state is recorded then)
    pub memcg_memory: u32,
    pub memcg_swap: u32,
    pub page_counter_usage: u32,
    pub page_counter_max: u32,
    /// The page size, for rounding mapping lengths as the kernel does.
    pub page_size: u64,
    /// The fault-stack sampler takes one user page fault in this many (a power of two).
    pub stack_period: u32,
    /// Byte offset of the user stack pointer in `struct pt_regs` (0: not known, no caller
    /// word is read).
    pub regs_sp: u32,
    /// mm_struct -> start_code, end_code: the executable's text, for telling a return address
    /// (the word at the stack pointer of a frameless leaf) from data.
    pub mm_start_code: u32,
    pub mm_end_code: u32,
}
const _: () = assert!(core::mem::size_of::<Config>() == 128);

impl Config {
    /// Every field absent, no memcg walk: what the programs see if userspace wrote nothing.
    pub const fn empty() -> Self {
        Config {
            mmap_ret: FIELD_ABSENT,
            munmap_ret: FIELD_ABSENT,
            brk_ret: FIELD_ABSENT,
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
            regs_arg: [0; 5],
            _pad0: 0,
            task_cgroups: 0,
            css_set_memcg: 0,
            css_id: 0,
            css_serial: 0,
            css_cgroup: 0,
            css_parent: 0,
            cgroup_kn: 0,
            kn_id: 0,
            walk: walk::NONE,
            task_mm: 0,
            mm_start_brk: 0,
            task_pid: 0,
            memcg_memory: 0,
            memcg_swap: 0,
            page_counter_usage: 0,
            page_counter_max: 0,
            page_size: 4096,
            stack_period: 64,
            regs_sp: 0,
            mm_start_code: 0,
            mm_end_code: 0,
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
    /// `victim_memcg_id` is the victim's own memory cgroup.
    pub const VICTIM_MEMCG: u16 = 1 << 8;
    /// `levels` holds the trigger's memory cgroup and its ancestors' page counters at the kill.
    pub const LEVELS: u16 = 1 << 9;
    /// The levels' second page counter (`swap`/`memsw`) was read.
    pub const SWAP: u16 = 1 << 10;
}

/// How many memory cgroups, from the trigger's up, an OOM record carries the state of.
pub const OOM_LEVELS: usize = 8;

/// One memory cgroup's page counters at the moment of an OOM kill, read by the kernel side in
/// the kill's context. In pages.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemcgLevel {
    /// The kernfs id (directory inode) of the cgroup.
    pub cgroup_id: u64,
    pub usage_pages: u64,
    pub max_pages: u64,
    /// The second page counter: `swap` on cgroup v2, `memsw` (memory + swap) on v1.
    pub swap_usage_pages: u64,
    pub swap_max_pages: u64,
}
const _: () = assert!(core::mem::size_of::<MemcgLevel>() == 40);

pub const OOM_KIND_MARK: u32 = 0;
pub const OOM_KIND_VICTIM_EXIT: u32 = 1;
/// From the BTF tracepoint on `mark_victim` where the kernel passes the victim task itself
/// (Linux 6.8+): `victim_pid` and `victim_memcg_id`, the victim's own memory cgroup at the kill.
pub const OOM_KIND_VICTIM_TASK: u32 = 2;
/// The last program break seen for a process (the value of the per-tgid `BRK_LAST` map), with
/// what identifies its program image: a forked child or an exec gets a new `mm`, and exec a new
/// (randomised) `start_brk`, so a remembered break from another image is never used as a base.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrkLast {
    pub mm: u64,
    pub start_brk: u64,
    pub brk: u64,
}
const _: () = assert!(core::mem::size_of::<BrkLast>() == 24);

/// A process that has just executed a new program, so userspace reads what it needs of it
/// (is it Go, its GOMEMLIMIT and GOGC) while it is alive: a program killed 100 ms after it
/// started is never sampled, and its `/proc` entry is gone by the time its kill is read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecEvent {
    pub tgid: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 8);

/// Capacity of the fault-stack sampler's stack map (distinct user stacks).
pub const STACK_ENTRIES: u32 = 8192;
/// Frames kept per sampled stack (the kernel's maximum is 127).
pub const STACK_DEPTH: u32 = 64;
/// Capacity of the map of sampled-fault counts (a plain hash: entries are taken out when
/// userspace drains it, on the slow cadence).
pub const STACK_COUNTS: u32 = 16384;
/// Memory cgroups the at-risk sampler may watch at once.
pub const STACK_CGROUPS: u32 = 256;

/// What a sampled fault is counted under: the faulting task's memory cgroup, its process, its
/// user stack and, where the top frame's caller was lost (a frameless leaf), the word at the
/// user stack pointer when it points into the executable's text.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StackKey {
    /// The kernfs id of the memory cgroup.
    pub cgroup_id: u64,
    /// The word at the stack pointer, or 0.
    pub caller: u64,
    pub tgid: u32,
    /// In the stack map; negative: no user stack could be taken.
    pub stack_id: i32,
}
const _: () = assert!(core::mem::size_of::<StackKey>() == 24);

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
    /// How many of `levels` are filled (with [`oom_present::LEVELS`]).
    pub nlevels: u32,
    pub _pad: u32,
    /// The trigger's memory cgroup first, then each ancestor up to the root: the cgroup whose
    /// limit was hit is the deepest one at its limit (none for a machine-wide OOM).
    pub levels: [MemcgLevel; OOM_LEVELS],
}
const _: () = assert!(core::mem::size_of::<OomEvent>() == 128 + 8 + 40 * OOM_LEVELS);

#[cfg(feature = "user")]
mod pod {
    // SAFETY (each): plain `#[repr(C)]` integers with explicit padding and a size assertion;
    // any bit pattern is a valid value.
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Slot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Retired {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OomEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExecEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StackKey {}
}
