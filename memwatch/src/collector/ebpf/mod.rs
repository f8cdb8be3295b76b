//! The kernel side's counters: what each memory cgroup did since the last sample (from the
//! per-cgroup slots and the slots retired meanwhile), the kernel side's drop counters, and,
//! for `memwatch top`, per-process counters while they are switched on.

pub mod ledger;

use crate::collector::{CollectError, Collector, CollectorId, EbpfData, SampleInput, SnapshotBuilder};
use crate::{
    Roots,
    collector::ebpf::ledger::{Deltas, Ledger},
    probes::{Probes, maps::SlotRead},
};

pub struct Ebpf {
    probes: Probes,
    /// Also read each listed process's counters (one map lookup per process): for `top`.
    per_process: bool,
    ledger: Ledger,
    /// Reused between samples: a read of every used slot on every CPU.
    read: SlotRead,
}

impl Ebpf {
    pub fn new(mut probes: Probes, per_process: bool) -> Self {
        if per_process && let Err(e) = probes.set_per_process(true) {
            tracing::warn!("per-process counters unavailable: {e}");
        }
        Ebpf { probes, per_process, ledger: Ledger::new(), read: SlotRead::default() }
    }
}

/// The eBPF source when its programs could not be loaded: no counters, only each probe's
/// state (disabled, with the reason), for `memwatch_probe_attached` and `top`.
pub struct Unavailable(pub Vec<crate::probes::ProbeStatus>);

impl Collector for Unavailable {
    fn id(&self) -> CollectorId {
        CollectorId::Ebpf
    }

    fn collect(&mut self, _roots: &Roots, _: &SampleInput, out: &mut SnapshotBuilder) -> Result<(), CollectError> {
        out.probes = self.0.clone();
        Ok(())
    }
}

impl Collector for Ebpf {
    fn id(&self) -> CollectorId {
        CollectorId::Ebpf
    }

    fn collect(&mut self, roots: &Roots, input: &SampleInput, out: &mut SnapshotBuilder) -> Result<(), CollectError> {
        self.probes.apply_at_risk(&input.at_risk, std::time::Instant::now());
        out.probes = self.probes.status().to_vec();
        let mut deltas = Deltas::default();
        // Records first: a hand-over seen in the slots is then matched by its record, now or
        // at a later sample, whichever comes first (see `ledger`).
        let ledger = &mut self.ledger;
        self.probes.drain_retired(|r| ledger.retired(r, &mut deltas));
        self.probes.read_slots(&mut self.read)?;
        let mut used = 0u32;
        for (slot, cpu, s) in self.read.used() {
            self.ledger.reading(slot, cpu, s, &mut deltas);
            used = used.max(slot + 1);
        }
        self.ledger.end_reading();
        if self.per_process {
            for pid in out.cgroups.iter().flat_map(|c| c.procs.iter().map(|p| p.pid)).collect::<Vec<_>>() {
                // No entry: nothing counted since counting began, which is zero, not unknown.
                if let Ok(c) = self.probes.process(pid) {
                    out.proc_counters.insert(pid, c.unwrap_or_default());
                }
            }
        }
        if self.probes.stats_enabled(&roots.procfs) {
            out.probe_runs = Some(self.probes.run_stats());
        }
        out.ebpf = Some(EbpfData { deltas, drops: self.probes.drops(), slots_used: used, slots_capacity: self.probes.slot_capacity() });
        Ok(())
    }
}
