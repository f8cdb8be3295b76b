//! The maps and the small helpers every hook family shares: finding the current process's
//! and its memory cgroup's counter slots, and reading the load-time configuration.
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel},
    macros::map,
    maps::{LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use memwatch_common::{
    Config, Counters, MAX_CGROUPS, MAX_OOM_VICTIMS, MAX_PENDING, MAX_PROCESSES, OOM_RING_BYTES,
    ProcEntry,
};

/// Offsets written by userspace at load time (read-only data, so the verifier sees constants).
#[unsafe(no_mangle)]
pub(crate) static CONFIG: Config = Config::empty();

/// Reads one field of [`CONFIG`]; volatile so the compiler does not fold the compiled-in value.
macro_rules! config {
    ($field:ident) => {
        {
            #[allow(unused_unsafe)]
            let v = unsafe { core::ptr::read_volatile(core::ptr::addr_of!($crate::state::CONFIG.$field)) };
            v
        }
    };
}
pub(crate) use config;

/// Per process (tgid): ids and counters, per CPU.
#[map]
pub static PROC_STATS: LruPerCpuHashMap<u32, ProcEntry> =
    LruPerCpuHashMap::with_max_entries(MAX_PROCESSES, 0);

/// Per memory cgroup (its kernfs id; the v2 cgroup id when the memcg walk is off): counters,
/// per CPU. These never go backwards while the cgroup lives, whatever its processes do.
#[map]
pub static CGROUP_STATS: LruPerCpuHashMap<u64, Counters> =
    LruPerCpuHashMap::with_max_entries(MAX_CGROUPS, 0);

/// Syscall arguments saved at `sys_enter` for `sys_exit`, keyed by pid_tgid (one per thread).
#[map]
pub static PENDING: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(MAX_PENDING, 0);

/// The last program break seen per tgid, to turn brk calls into net growth.
#[map]
pub static BRK_LAST: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_PROCESSES, 0);

/// Victims chosen by the OOM killer that have not exited yet: pid -> when chosen (boot ns).
#[map]
pub static OOM_VICTIMS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_OOM_VICTIMS, 0);

/// One record per OOM kill, and one when its victim exits.
#[map]
pub static OOM_EVENTS: RingBuf = RingBuf::with_byte_size(OOM_RING_BYTES, 0);

/// Internal error counters, index by [`Drop`]: map inserts that failed, ring buffer full.
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_KINDS, 0);

pub const DROP_KINDS: u32 = 2;
#[repr(u32)]
pub enum Drop {
    MapFull = 0,
    RingFull = 1,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    pub a: u64,
    pub b: u64,
}

#[inline(always)]
pub fn count_drop(kind: Drop) {
    if let Some(p) = DROPS.get_ptr_mut(kind as u32) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// The id of the current task's memory cgroup: task->cgroups->subsys[memory]->cgroup->kn->id,
/// with offsets from BTF. Falls back to the v2 cgroup id when the walk is off or fails.
#[inline(always)]
pub fn current_memcg_id() -> u64 {
    if config!(memcg_ok) != 0 {
        if let Some(id) = unsafe { walk_memcg() } {
            return id;
        }
    }
    unsafe { bpf_get_current_cgroup_id() }
}

#[inline(always)]
unsafe fn walk_memcg() -> Option<u64> {
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let css_set: *const u8 =
            bpf_probe_read_kernel(task.add(config!(task_cgroups) as usize).cast()).ok()?;
        let css: *const u8 =
            bpf_probe_read_kernel(css_set.add(config!(css_set_memcg) as usize).cast()).ok()?;
        let cgroup: *const u8 =
            bpf_probe_read_kernel(css.add(config!(css_cgroup) as usize).cast()).ok()?;
        let kn: *const u8 =
            bpf_probe_read_kernel(cgroup.add(config!(cgroup_kn) as usize).cast()).ok()?;
        let id: u64 = bpf_probe_read_kernel(kn.add(config!(kn_id) as usize).cast()).ok()?;
        (id != 0).then_some(id)
    }
}

/// This CPU's slot for the current process, created (with its ids) on first sight.
#[inline(always)]
pub fn proc_entry(tgid: u32) -> Option<&'static mut ProcEntry> {
    if let Some(p) = PROC_STATS.get_ptr_mut(tgid) {
        let e = unsafe { &mut *p };
        if e.memcg_id == 0 {
            // The element exists but this CPU's slot is fresh: fill its ids.
            e.memcg_id = current_memcg_id();
            e.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        }
        return Some(e);
    }
    let init = ProcEntry {
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        memcg_id: current_memcg_id(),
        counters: Counters::default(),
    };
    if PROC_STATS.insert(tgid, init, 0).is_err() {
        count_drop(Drop::MapFull);
        return None;
    }
    PROC_STATS.get_ptr_mut(tgid).map(|p| unsafe { &mut *p })
}

/// This CPU's slot for a memory cgroup, created on first sight.
#[inline(always)]
pub fn cgroup_entry(memcg_id: u64) -> Option<&'static mut Counters> {
    if let Some(p) = CGROUP_STATS.get_ptr_mut(memcg_id) {
        return Some(unsafe { &mut *p });
    }
    if CGROUP_STATS.insert(memcg_id, Counters::default(), 0).is_err() {
        count_drop(Drop::MapFull);
        return None;
    }
    CGROUP_STATS.get_ptr_mut(memcg_id).map(|p| unsafe { &mut *p })
}

/// Applies `f` to the current process's counters and to its memory cgroup's.
#[inline(always)]
pub fn update(f: impl Fn(&mut Counters)) {
    let Some(e) = proc_entry(tgid()) else { return };
    f(&mut e.counters);
    if let Some(cg) = cgroup_entry(e.memcg_id) {
        f(cg);
    }
}

/// A syscall's return value is an error when it is in [-4095, -1].
#[inline(always)]
pub fn is_err(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}
