//! Reading what the kernel side aggregated: the per-cgroup slots (one batched syscall for all
//! of them), the slots retired since the last read, drop counters, and per-process counters
//! while they are switched on.

use std::{
    collections::HashMap,
    os::fd::{AsFd, AsRawFd},
};

use aya::maps::{Array, HashMap as BpfHashMap, Map, PerCpuArray};
use memwatch_common::{Counters, Retired, Slot, drop, switch};

use super::{ProbeError, Probes};

/// The kernel's internal "operation not supported" (not `libc::ENOTSUP`), which bpf() returns.
const ENOTSUPP: i32 = 524;

/// The slots of one read: `values[slot * cpus + cpu]`, for slots `0..len`.
#[derive(Debug, Default, Clone)]
pub struct SlotRead {
    pub cpus: usize,
    pub values: Vec<Slot>,
}

impl SlotRead {
    /// (slot index, cpu, value) for every slot that was ever used on its CPU.
    pub fn used(&self) -> impl Iterator<Item = (u32, u32, &Slot)> + '_ {
        let cpus = self.cpus.max(1);
        self.values.iter().enumerate().filter(|(_, s)| s.serial != 0).map(move |(i, s)| ((i / cpus) as u32, (i % cpus) as u32, s))
    }
}

/// A kind of event the kernel side could not record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropKind {
    ProcessMapFull,
    OomRingFull,
    NoSlot,
    RetiredRingFull,
    NoMemcg,
    ExecRingFull,
    StackMapFull,
    StackCountsFull,
}

impl DropKind {
    /// Every kind, in the order of their indexes in the kernel's array.
    pub const ALL: [DropKind; drop::COUNT as usize] = [
        DropKind::ProcessMapFull,
        DropKind::OomRingFull,
        DropKind::NoSlot,
        DropKind::RetiredRingFull,
        DropKind::NoMemcg,
        DropKind::ExecRingFull,
        DropKind::StackMapFull,
        DropKind::StackCountsFull,
    ];

    /// Its index in the kernel side's `DROPS` array ([`memwatch_common::drop`]).
    pub fn index(self) -> u32 {
        match self {
            DropKind::ProcessMapFull => drop::PROCESS_MAP_FULL,
            DropKind::OomRingFull => drop::OOM_RING_FULL,
            DropKind::NoSlot => drop::NO_SLOT,
            DropKind::RetiredRingFull => drop::RETIRED_RING_FULL,
            DropKind::NoMemcg => drop::NO_MEMCG,
            DropKind::ExecRingFull => drop::EXEC_RING_FULL,
            DropKind::StackMapFull => drop::STACK_MAP_FULL,
            DropKind::StackCountsFull => drop::STACK_COUNTS_FULL,
        }
    }

    /// The `kind` label of `memwatch_ebpf_drops_total`.
    pub fn label(self) -> &'static str {
        match self {
            DropKind::ProcessMapFull => "process_map_full",
            DropKind::OomRingFull => "oom_ring_full",
            DropKind::NoSlot => "no_slot",
            DropKind::RetiredRingFull => "retired_ring_full",
            DropKind::NoMemcg => "no_memcg",
            DropKind::ExecRingFull => "exec_ring_full",
            DropKind::StackMapFull => "stack_map_full",
            DropKind::StackCountsFull => "stack_counts_full",
        }
    }
}

/// Event counts the kernel side could not record, by kind, since the probes loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops([u64; drop::COUNT as usize]);

impl std::ops::Index<DropKind> for Drops {
    type Output = u64;
    fn index(&self, k: DropKind) -> &u64 {
        &self.0[k.index() as usize]
    }
}

impl Probes {
    fn map(&self, name: &'static str) -> Result<&Map, ProbeError> {
        self.ebpf.map(name).ok_or(ProbeError::Map { name, source: aya::maps::MapError::InvalidName { name: name.into() } })
    }

    /// Reads every slot up to the highest one claimed so far, in one batched syscall
    /// (`BPF_MAP_LOOKUP_BATCH`, 5.6+; slot by slot where the kernel refuses it).
    pub fn read_slots(&self, out: &mut SlotRead) -> Result<(), ProbeError> {
        let hw: PerCpuArray<_, u32> =
            PerCpuArray::try_from(self.map("HIGH_WATER")?).map_err(|source| ProbeError::Map { name: "HIGH_WATER", source })?;
        let high = hw.get(&0, 0).map(|v| v.iter().copied().max().unwrap_or(0)).unwrap_or(0);
        let count = (high + 1).min(self.slots);
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| ProbeError::Syscall { name: "SLOTS", source: e })?;
        out.cpus = cpus;
        out.values.clear();
        out.values.resize(count as usize * cpus, Slot::default());
        let data = self.map("SLOTS")?;
        let Map::PerCpuArray(raw) = data else {
            return Err(ProbeError::Map { name: "SLOTS", source: aya::maps::MapError::InvalidName { name: "SLOTS".into() } });
        };
        match lookup_batch(raw.fd().as_fd().as_raw_fd(), count, &mut out.values) {
            Ok(()) => Ok(()),
            // EINVAL: a kernel before 5.6; 524 (ENOTSUPP): batching not offered for this map.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(ENOTSUPP) => {
                let arr: PerCpuArray<_, Slot> = PerCpuArray::try_from(data).map_err(|source| ProbeError::Map { name: "SLOTS", source })?;
                for i in 0..count {
                    let v = arr.get(&i, 0).map_err(|source| ProbeError::Map { name: "SLOTS", source })?;
                    for (cpu, s) in v.iter().enumerate().take(cpus) {
                        out.values[i as usize * cpus + cpu] = *s;
                    }
                }
                Ok(())
            }
            Err(source) => Err(ProbeError::Syscall { name: "SLOTS", source }),
        }
    }

    /// Hands every slot retired since the last call to `f`.
    pub fn drain_retired(&mut self, mut f: impl FnMut(&Retired)) {
        let Some(ring) = self.retired.as_mut() else { return };
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<Retired>() {
                // SAFETY: Retired is plain old data and the record holds at least its size.
                let r: Retired = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                f(&r);
            }
        }
    }

    /// Events the kernel side had to drop, summed over CPUs.
    pub fn drops(&self) -> Drops {
        let mut out = Drops::default();
        let Ok(arr) =
            self.map("DROPS").and_then(|d| PerCpuArray::<_, u64>::try_from(d).map_err(|source| ProbeError::Map { name: "DROPS", source }))
        else {
            return out;
        };
        for k in DropKind::ALL {
            out.0[k.index() as usize] = arr.get(&k.index(), 0).map(|v| v.iter().sum()).unwrap_or(0);
        }
        out
    }

    /// Turns per-process counting on or off (it costs a hash-map update per event while on).
    /// Turning it off forgets what was counted.
    pub fn set_per_process(&mut self, on: bool) -> Result<(), ProbeError> {
        let map = self
            .ebpf
            .map_mut("SWITCHES")
            .ok_or(ProbeError::Map { name: "SWITCHES", source: aya::maps::MapError::InvalidName { name: "SWITCHES".into() } })?;
        let mut arr: Array<_, u32> = Array::try_from(map).map_err(|source| ProbeError::Map { name: "SWITCHES", source })?;
        arr.set(switch::PER_PROCESS, u32::from(on), 0).map_err(|source| ProbeError::Map { name: "SWITCHES", source })?;
        if !on {
            let map = self
                .ebpf
                .map_mut("PROCESSES")
                .ok_or(ProbeError::Map { name: "PROCESSES", source: aya::maps::MapError::InvalidName { name: "PROCESSES".into() } })?;
            let mut procs: BpfHashMap<_, u32, Counters> =
                BpfHashMap::try_from(map).map_err(|source| ProbeError::Map { name: "PROCESSES", source })?;
            let keys: Vec<u32> = procs.keys().filter_map(Result::ok).collect();
            for k in keys {
                let _ = procs.remove(&k);
            }
        }
        Ok(())
    }

    /// One process's counters since per-process counting was switched on (or since its exec);
    /// None when it has not done anything counted.
    pub fn process(&self, tgid: u32) -> Result<Option<Counters>, ProbeError> {
        let map: BpfHashMap<_, u32, Counters> =
            BpfHashMap::try_from(self.map("PROCESSES")?).map_err(|source| ProbeError::Map { name: "PROCESSES", source })?;
        match map.get(&tgid, 0) {
            Ok(c) => Ok(Some(c)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(ProbeError::Map { name: "PROCESSES", source }),
        }
    }

    /// Every process with per-process counters. Entries that vanish mid-walk are skipped.
    pub fn processes(&self) -> Result<HashMap<u32, Counters>, ProbeError> {
        let map: BpfHashMap<_, u32, Counters> =
            BpfHashMap::try_from(self.map("PROCESSES")?).map_err(|source| ProbeError::Map { name: "PROCESSES", source })?;
        Ok(map.iter().filter_map(Result::ok).collect())
    }

    /// Counters per memory cgroup id, summed over CPUs, as the slots hold them now: for tests
    /// and tools that look once. The daemon follows slots over time with a
    /// [`crate::collector::ebpf::ledger::Ledger`] instead, which also keeps retired counts.
    pub fn cgroups_now(&self) -> Result<HashMap<u64, Counters>, ProbeError> {
        let mut read = SlotRead::default();
        self.read_slots(&mut read)?;
        let mut out: HashMap<u64, Counters> = HashMap::new();
        for (_, _, s) in read.used() {
            out.entry(s.cgroup_id).or_default().accumulate(&s.counters);
        }
        Ok(out)
    }
}

/// `BPF_MAP_LOOKUP_BATCH` over indices `0..count` of a per-CPU array whose values are
/// `values.len() / count` copies of `Slot` per index.
fn lookup_batch(fd: i32, count: u32, values: &mut [Slot]) -> std::io::Result<()> {
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    #[repr(C)]
    #[derive(Default)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    if count == 0 {
        return Ok(());
    }
    let mut keys = vec![0u32; count as usize];
    let mut out_batch = 0u32;
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: &mut out_batch as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count,
        map_fd: fd as u32,
        ..Default::default()
    };
    // SAFETY: the attr points at buffers sized for `count` keys and values, alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_BATCH, &mut attr as *mut BatchAttr, size_of::<BatchAttr>()) };
    // ENOENT: the end of the array was reached; `count` says how many were filled.
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    if attr.count != count {
        return Err(std::io::Error::other(format!("batch lookup filled {} of {count} slots", attr.count)));
    }
    Ok(())
}
