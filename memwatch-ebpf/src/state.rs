//! The maps and the helpers every hook family shares: finding the current task's memory
//! cgroup and its counter slot on this CPU, and reading the load-time configuration.
//!
//! The hot path is `slot::<W>()`: three or four loads from the current task to its memory css
//! (`task->cgroups->subsys[memory]`, then the css's `id` and `serial_nr`), and an index into a
//! per-CPU array, which the verifier inlines. No hash lookup, no helper call besides fetching
//! the current task. Resolving the cgroup per event costs less here than any per-task cache
//! would (a cache is itself a map lookup).
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_current_task_btf, bpf_get_smp_processor_id, bpf_probe_read_kernel},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use memwatch_common::{
    BrkLast, Config, Counters, DEFAULT_SLOTS, EXEC_RING_BYTES, MAX_PROCESSES, OOM_RING_BYTES, RETIRED_RING_BYTES, Retired, Slot, drop,
    switch, walk,
};

/// Offsets written by userspace at load time (read-only data, so the verifier sees constants).
#[unsafe(no_mangle)]
pub(crate) static CONFIG: Config = Config::empty();

/// Reads one field of [`CONFIG`]; volatile so the compiler does not fold the compiled-in value.
macro_rules! config {
    ($field:ident) => {{
        #[allow(unused_unsafe)]
        // SAFETY: CONFIG is a static, initialised before the program loads; reading it is
        // always valid.
        let v = unsafe { core::ptr::read_volatile(core::ptr::addr_of!($crate::state::CONFIG.$field)) };
        v
    }};
}
pub(crate) use config;

/// Per memory cgroup and CPU: counters, indexed by the cgroup's memory css id. Its size is set
/// by userspace at load time (`DEFAULT_SLOTS` unless told otherwise).
#[map]
pub(crate) static SLOTS: PerCpuArray<Slot> = PerCpuArray::with_max_entries(DEFAULT_SLOTS, 0);

/// Counts a slot held for a cgroup that has since been freed, when another cgroup takes the
/// slot over on this CPU.
#[map]
pub(crate) static RETIRED: RingBuf = RingBuf::with_byte_size(RETIRED_RING_BYTES, 0);

/// The highest slot index claimed on each CPU, so userspace reads only the used part.
#[map]
pub(crate) static HIGH_WATER: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Run-time switches set by userspace, indexed by [`switch`].
#[map]
pub(crate) static SWITCHES: Array<u32> = Array::with_max_entries(switch::COUNT, 0);

/// Per process (tgid), only while [`switch::PER_PROCESS`] is on: counters, shared by all CPUs
/// (updated with atomic adds). A plain hash, not an LRU: with more live processes than it
/// holds, the newcomers are not counted and each refused event is counted as a drop
/// (`process_map_full`), where an LRU would silently evict the counts of live processes. The
/// exit hook removes a process's entry; switching off clears the map.
#[map]
pub(crate) static PROCESSES: HashMap<u32, Counters> = HashMap::with_max_entries(MAX_PROCESSES, 0);

/// The last program break seen per tgid, to turn brk calls into net growth. An LRU: entries
/// of processes gone are evicted in time, and one of another program image (a reused pid, an
/// exec) is recognised by its `mm` and `start_brk` and not used.
#[map]
pub(crate) static BRK_LAST: LruHashMap<u32, BrkLast> = LruHashMap::with_max_entries(MAX_PROCESSES, 0);

/// OOM victims marked and not yet exited (may overcount if the victims map evicts): the exit
/// hook looks a dying thread up only while this is non-zero.
#[map]
pub(crate) static VICTIMS_PENDING: Array<u64> = Array::with_max_entries(1, 0);

/// Victims chosen by the OOM killer that have not exited yet: pid -> when chosen (boot ns).
#[map]
pub(crate) static OOM_VICTIMS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(memwatch_common::MAX_OOM_VICTIMS, 0);

/// One record per OOM kill, and one when its victim exits.
#[map]
pub(crate) static OOM_EVENTS: RingBuf = RingBuf::with_byte_size(OOM_RING_BYTES, 0);

/// One record per exec (the new program's tgid).
#[map]
pub(crate) static EXECS: RingBuf = RingBuf::with_byte_size(EXEC_RING_BYTES, 0);

/// Events the kernel side could not record, indexed by [`drop`].
#[map]
pub(crate) static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop::COUNT, 0);

#[inline(always)]
pub(crate) fn count_drop(kind: u32) {
    if let Some(p) = DROPS.get_ptr_mut(kind) {
        // SAFETY: a pointer to this CPU's value in the map, valid while the program runs.
        unsafe { *p += 1 };
    }
}

/// This CPU's number.
#[inline(always)]
pub(crate) fn cpu() -> u32 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_smp_processor_id() }
}

/// CLOCK_BOOTTIME now, in ns.
#[inline(always)]
pub(crate) fn boot_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_boot_ns() }
}

/// The current task's cgroup v2 id.
#[inline(always)]
pub(crate) fn cgroup_v2_id() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { aya_ebpf::helpers::bpf_get_current_cgroup_id() }
}

#[inline(always)]
pub(crate) fn tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// How to read kernel memory: by direct loads through BTF pointers, or with a helper call.
/// Either is safe for any address: the verifier makes direct loads through BTF pointers
/// fault-safe (a bad address reads as zero), and the helper fails cleanly.
pub(crate) trait Mem {
    fn current_task() -> *const u8;
    /// Loads the `T` at `base + off`; None when the load faults (or `base` is null).
    fn load<T: Copy>(base: *const u8, off: u32) -> Option<T>;
}

/// Direct loads through pointers typed by BTF (`bpf_get_current_task_btf`, 5.11+). The
/// verifier turns them into fault-safe loads; each costs a few ns.
pub(crate) struct Direct;
impl Mem for Direct {
    #[inline(always)]
    fn current_task() -> *const u8 {
        // SAFETY: a helper without arguments; the result is only read through `load`.
        unsafe { bpf_get_current_task_btf() as *const u8 }
    }
    #[inline(always)]
    fn load<T: Copy>(base: *const u8, off: u32) -> Option<T> {
        if base.is_null() {
            return None;
        }
        // SAFETY: `base` is a BTF-typed kernel pointer; the verifier checks the offset against
        // the type and turns the load into a fault-safe one.
        Some(unsafe { core::ptr::read(base.add(off as usize) as *const T) })
    }
}

/// `bpf_probe_read_kernel` at each step (~35 ns each): kernels without `get_current_task_btf`.
pub(crate) struct Probe;
impl Mem for Probe {
    #[inline(always)]
    fn current_task() -> *const u8 {
        // SAFETY: a helper without arguments; the result is only read through `load`.
        unsafe { bpf_get_current_task() as *const u8 }
    }
    #[inline(always)]
    fn load<T: Copy>(base: *const u8, off: u32) -> Option<T> {
        if base.is_null() {
            return None;
        }
        // SAFETY: the helper copies from kernel memory and fails cleanly on a bad address.
        unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const T) }.ok()
    }
}

/// The current task's program image: (its `mm`, the `mm`'s `start_brk`); zeros for a kernel
/// thread.
#[inline(always)]
pub(crate) fn current_image<W: Mem>() -> (u64, u64) {
    let mm: Option<*const u8> = W::load(W::current_task(), config!(task_mm));
    match mm {
        Some(mm) => (mm as u64, W::load::<u64>(mm, config!(mm_start_brk)).unwrap_or(0)),
        None => (0, 0),
    }
}

/// Adds `v` to a shared `u64` with an atomic add (BPF_XADD): the BPF target has no
/// `AtomicU64::fetch_add` in `core`.
#[inline(always)]
pub(crate) fn atomic_add(dst: *mut u64, v: u64) {
    // SAFETY: `dst` points into a map value, valid while the program runs; the add is atomic.
    // SAFETY: `dst` points into a map value, valid while the program runs; the add is atomic.
    unsafe { core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(dst, v) };
}

/// Reads a field of a classic tracepoint's record; None when this kernel's format lacks it.
/// (A helper read: the verifier allows direct context loads only at offsets compiled in, and
/// these offsets come from the format at load time.)
#[inline(always)]
pub(crate) fn record<T: Copy>(ctx: &aya_ebpf::programs::TracePointContext, off: u16) -> Option<T> {
    if off == memwatch_common::FIELD_ABSENT {
        return None;
    }
    // SAFETY: the offset is this kernel's, from the tracepoint's format; the helper read fails
    // cleanly outside the record.
    unsafe { ctx.read_at::<T>(off as usize) }.ok()
}

/// A task's memory css (`task->cgroups->subsys[memory_cgrp_id]`).
#[inline(always)]
fn task_css<W: Mem>(task: *const u8) -> Option<*const u8> {
    let css_set: *const u8 = W::load(task, config!(task_cgroups))?;
    W::load(css_set, config!(css_set_memcg))
}

/// The current task's memory css.
#[inline(always)]
pub(crate) fn current_css<W: Mem>() -> Option<*const u8> {
    task_css::<W>(W::current_task())
}

/// The id of a task's memory cgroup, from a BTF pointer to it; 0 when unresolved.
#[inline(always)]
pub(crate) fn task_memcg_id(task: *const u8) -> u64 {
    task_css::<Direct>(task).map(css_cgroup_id::<Direct>).unwrap_or(0)
}

/// The kernfs id of a css's cgroup: the inode of its directory, which userspace sees.
#[inline(always)]
pub(crate) fn css_cgroup_id<W: Mem>(css: *const u8) -> u64 {
    let cgroup: Option<*const u8> = W::load(css, config!(css_cgroup));
    let kn: Option<*const u8> = cgroup.and_then(|c| W::load(c, config!(cgroup_kn)));
    kn.and_then(|k| W::load::<u64>(k, config!(kn_id))).unwrap_or(0)
}

/// The id (kernfs inode) of the current task's memory cgroup; 0 when it cannot be resolved.
/// For rare events (OOM kills, exits): always by helper reads, which work in every program type.
#[inline(always)]
pub(crate) fn current_memcg_id() -> u64 {
    if config!(walk) == walk::NONE {
        return 0;
    }
    current_css::<Probe>().map(css_cgroup_id::<Probe>).unwrap_or(0)
}

/// This CPU's counter slot for the current task's memory cgroup.
#[inline(always)]
pub(crate) fn slot<W: Mem>() -> Option<&'static mut Slot> {
    let Some(css) = current_css::<W>() else {
        count_drop(drop::NO_MEMCG);
        return None;
    };
    let (id, serial) = (W::load::<i32>(css, config!(css_id))?, W::load::<u64>(css, config!(css_serial))?);
    let Some(p) = SLOTS.get_ptr_mut(id as u32) else {
        count_drop(drop::NO_SLOT);
        return None;
    };
    // SAFETY: a pointer to this CPU's value in the map, valid while the program runs.
    let s = unsafe { &mut *p };
    if s.serial != serial {
        claim::<W>(s, id as u32, serial, css);
    }
    Some(s)
}

/// A slot last used on this CPU by another cgroup (the css id was freed and handed out again),
/// or never used: send the old owner's counts to userspace, then take the slot over. Rare:
/// once per CPU for each new cgroup that reuses an id.
#[inline(never)]
fn claim<W: Mem>(s: &mut Slot, id: u32, serial: u64, css: *const u8) {
    if s.serial != 0 && !s.counters.is_zero() {
        match RETIRED.reserve::<Retired>(0) {
            Some(mut r) => {
                r.write(Retired { slot: id, cpu: cpu(), old: *s });
                r.submit(0);
            }
            None => count_drop(drop::RETIRED_RING_FULL),
        }
    }
    let parent: Option<*const u8> = W::load(css, config!(css_parent));
    *s = Slot {
        serial,
        cgroup_id: css_cgroup_id::<W>(css),
        parent_id: parent.map(|p| css_cgroup_id::<W>(p)).unwrap_or(0),
        counters: Counters::default(),
    };
    if let Some(hw) = HIGH_WATER.get_ptr_mut(0) {
        // SAFETY: a pointer to this CPU's value in the map, valid while the program runs.
        unsafe {
            if *hw < id {
                *hw = id;
            }
        }
    }
}

/// The switch at `index` (0 when unset).
#[inline(always)]
pub(crate) fn switched_on(index: u32) -> bool {
    SWITCHES.get(index).is_some_and(|v| *v != 0)
}

/// Applies `f` to the current task's cgroup slot, and to its process's counters while
/// per-process counting is on.
#[inline(always)]
pub(crate) fn update<W: Mem>(f: impl Fn(&mut Counters)) {
    if let Some(s) = slot::<W>() {
        f(&mut s.counters);
    }
    if switched_on(switch::PER_PROCESS) {
        update_process(f);
    }
}

/// Per-process counters are shared by CPUs: `f` is applied to a zeroed copy and the result
/// added with atomic adds.
#[inline(always)]
fn update_process(f: impl Fn(&mut Counters)) {
    let tgid = tgid();
    let p = match PROCESSES.get_ptr_mut(tgid) {
        Some(p) => p,
        None => {
            if PROCESSES.insert(tgid, Counters::default(), 0).is_err() {
                count_drop(drop::PROCESS_MAP_FULL);
                return;
            }
            match PROCESSES.get_ptr_mut(tgid) {
                Some(p) => p,
                None => return,
            }
        }
    };
    let mut d = Counters::default();
    f(&mut d);
    let words = core::mem::size_of::<Counters>() / 8;
    let (src, dst) = (&d as *const Counters as *const u64, p as *mut u64);
    for i in 0..words {
        // SAFETY: `i` stays within the `Counters` behind `src`, read as its u64 words.
        let v = unsafe { *src.add(i) };
        if v != 0 {
            // SAFETY: `i` stays within the map value's `Counters`, as above.
            atomic_add(unsafe { dst.add(i) }, v);
        }
    }
}

/// A syscall's return value is an error when it is in [-4095, -1].
#[inline(always)]
pub(crate) fn is_err(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}
