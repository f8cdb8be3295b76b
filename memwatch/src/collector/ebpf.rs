//! The kernel side's counters per memory cgroup, and forgetting cgroups that are gone so the
//! bounded map does not fill with the dead.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use super::{CollectError, Collector, EbpfData, SnapshotBuilder};
use crate::{Roots, probes::Probes};

pub struct Ebpf {
    probes: Probes,
    /// Also read each listed process's counters (one map lookup per process): for `top`.
    per_process: bool,
    /// Ids in the kernel map that were not in the previous walk either.
    absent_before: HashSet<u64>,
    /// Counting the per-process map's keys costs a syscall per key: done at most every
    /// TRACKED_EVERY, the gauge it feeds does not need more.
    tracked: Option<(Instant, u64)>,
}

const TRACKED_EVERY: Duration = Duration::from_secs(10);

impl Ebpf {
    pub fn new(probes: Probes, per_process: bool) -> Self {
        Ebpf { probes, per_process, absent_before: HashSet::new(), tracked: None }
    }
}

impl Collector for Ebpf {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn collect(&mut self, _roots: &Roots, out: &mut SnapshotBuilder) -> Result<(), CollectError> {
        out.probes = self.probes.status().to_vec();
        let by_memcg = self.probes.cgroups()?;
        let (map_full, ring_full) = self.probes.drops();
        let tracked_processes = match self.tracked {
            Some((at, n)) if at.elapsed() < TRACKED_EVERY => n,
            _ => {
                let n = self.probes.tracked_processes()?;
                self.tracked = Some((Instant::now(), n));
                n
            }
        };
        // A cgroup missing from two walks in a row is gone (one miss may be a race with its
        // creation). The model has already folded its counters into its parent.
        if !out.cgroups.is_empty() {
            let present: HashSet<u64> = out.cgroups.iter().map(|c| c.id).collect();
            let absent: HashSet<u64> = by_memcg.keys().copied().filter(|id| !present.contains(id)).collect();
            for id in absent.intersection(&self.absent_before) {
                self.probes.forget_cgroup(*id);
            }
            self.absent_before = absent;
        }
        if self.per_process {
            for pid in out.cgroups.iter().flat_map(|c| c.procs.iter().map(|p| p.pid)).collect::<Vec<_>>() {
                // No entry: nothing happened since the probes loaded, which is zero, not unknown.
                if let Ok(s) = self.probes.process(pid) {
                    out.proc_counters.insert(pid, s.map(|s| s.counters).unwrap_or_default());
                }
            }
        }
        out.ebpf = Some(EbpfData { by_memcg, tracked_processes, map_full, ring_full });
        Ok(())
    }
}
