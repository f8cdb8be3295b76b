//! The kernel side's counters per memory cgroup, and forgetting cgroups that are gone so the
//! bounded map does not fill with the dead.

use std::collections::HashSet;

use super::{CollectError, Collector, EbpfData, SnapshotBuilder};
use crate::{Roots, probes::Probes};

pub struct Ebpf {
    probes: Probes,
    /// Ids in the kernel map that were not in the previous walk either.
    absent_before: HashSet<u64>,
}

impl Ebpf {
    pub fn new(probes: Probes) -> Self {
        Ebpf { probes, absent_before: HashSet::new() }
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
        let tracked_processes = self.probes.tracked_processes()?;
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
        out.ebpf = Some(EbpfData { by_memcg, tracked_processes, map_full, ring_full });
        Ok(())
    }
}
