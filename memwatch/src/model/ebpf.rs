//! Pass: the kernel side's counts, per cgroup, kept across samples. Counts of a cgroup that is
//! gone, or that no walk ever saw (made and removed between two samples), move to its nearest
//! ancestor that is still there, so no subtree total goes backwards while its cgroup lives.

use std::collections::{HashMap, HashSet};

use memwatch_common::Counters;

/// The kernel side's counts per cgroup since memwatch started, each cgroup's own (not its
/// subtree's). Counts of a cgroup that is gone, or that was never seen in a walk, move to its
/// nearest ancestor that is still there, so no subtree total ever goes backwards.
#[derive(Debug, Default)]
pub struct EbpfTotals {
    own: HashMap<u64, Counters>,
    /// Parent of every cgroup with counts or seen in the last walk: from walks, and from the
    /// kernel side for cgroups no walk saw.
    parent: HashMap<u64, u64>,
    /// Ids in the previous walk.
    walked: HashSet<u64>,
    /// Counted but not (yet) walked: how many samples it has waited to appear.
    waiting: HashMap<u64, u32>,
    /// Cgroups that left the walk recently (samples since): their late counts (a slot retired
    /// after they were gone) move to their ancestor at once.
    departed: HashMap<u64, u32>,
}

/// How long a departed cgroup is remembered as such.
const DEPARTED_MEMORY: u32 = 600;
/// The most departed cgroups remembered (the most recently gone): where a thousand cgroups
/// come and go a second, ten minutes of them would be 600,000 entries here and in `parent`.
/// Late counts of one forgotten wait [`UNSEEN_PATIENCE`] and go to its nearest known ancestor.
const DEPARTED_KEPT: usize = 16_384;

/// How many samples counts of an unknown cgroup wait for it to appear in a walk (it may have
/// been created just after the walk) before they move to its nearest known ancestor.
const UNSEEN_PATIENCE: u32 = 2;

impl EbpfTotals {
    /// Takes one sample's deltas and walk (id, parent id; the root has no parent); returns each
    /// walked cgroup's own total.
    pub fn update(&mut self, deltas: &crate::collector::ebpf::ledger::Deltas, walk: &[(u64, Option<u64>)]) -> HashMap<u64, Counters> {
        for d in deltas.0.values() {
            self.own.entry(d.cgroup_id).or_default().accumulate(&d.counters);
            if d.parent_id != 0 && d.parent_id != d.cgroup_id {
                self.parent.entry(d.cgroup_id).or_insert(d.parent_id);
            }
        }
        let root = walk.iter().find(|(_, p)| p.is_none()).map(|(id, _)| *id);
        let walked: HashSet<u64> = walk.iter().map(|(id, _)| *id).collect();
        for (id, parent) in walk {
            if let Some(p) = parent {
                self.parent.insert(*id, *p);
            }
        }
        for id in self.walked.iter().filter(|id| !walked.contains(id)) {
            self.departed.insert(*id, 0);
        }
        self.departed.retain(|id, age| {
            *age += 1;
            *age <= DEPARTED_MEMORY && !walked.contains(id)
        });
        if self.departed.len() > DEPARTED_KEPT {
            let mut ages: Vec<u32> = self.departed.values().copied().collect();
            let excess = ages.len() - DEPARTED_KEPT;
            // Oldest first: the age of the oldest one kept; it and those older go (a few more
            // than the excess where ages tie).
            let (_, cut, _) = ages.select_nth_unstable_by(excess, |a, b| b.cmp(a));
            let cut = *cut;
            self.departed.retain(|_, age| *age < cut);
            self.departed.shrink_to(DEPARTED_KEPT * 2);
        }
        let strays: Vec<u64> = self.own.keys().copied().filter(|id| !walked.contains(id)).collect();
        for id in strays {
            let gone = self.departed.contains_key(&id);
            let waited = self.waiting.entry(id).or_default();
            *waited += 1;
            if !gone && *waited <= UNSEEN_PATIENCE {
                continue;
            }
            self.waiting.remove(&id);
            // The nearest ancestor in this walk, else the root.
            let mut target = root;
            let mut cur = self.parent.get(&id).copied();
            for _ in 0..64 {
                let Some(p) = cur else { break };
                if walked.contains(&p) {
                    target = Some(p);
                    break;
                }
                cur = self.parent.get(&p).copied();
            }
            if let (Some(t), Some(c)) = (target, self.own.remove(&id)) {
                self.own.entry(t).or_default().accumulate(&c);
            }
        }
        self.waiting.retain(|id, _| self.own.contains_key(id));
        // Keep parent links only where they may still be needed.
        self.parent.retain(|id, _| walked.contains(id) || self.own.contains_key(id) || self.departed.contains_key(id));
        self.walked = walked;
        walk.iter().map(|(id, _)| (*id, self.own.get(id).copied().unwrap_or_default())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departed_cgroups_are_remembered_up_to_a_bound() {
        let mut t = EbpfTotals::default();
        let none = crate::collector::ebpf::ledger::Deltas::default();
        // Waves of cgroups that appear in one walk and are gone from the next.
        let wave = 5000u64;
        for w in 0..8u64 {
            let mut walk: Vec<(u64, Option<u64>)> = vec![(1, None)];
            walk.extend((0..wave).map(|i| (10 + w * wave + i, Some(1))));
            t.update(&none, &walk);
            t.update(&none, &[(1, None)]);
            assert!(t.departed.len() <= DEPARTED_KEPT, "{} departed remembered", t.departed.len());
        }
        assert!(t.departed.len() >= DEPARTED_KEPT - wave as usize, "the most recent are kept");
        let newest = 10 + 7 * wave;
        assert!(t.departed.contains_key(&newest), "the last wave is remembered");
        assert!(!t.departed.contains_key(&10), "the first wave is forgotten");
        assert!(t.parent.len() <= DEPARTED_KEPT + 1, "and so are their parent links");
    }

    fn delta(id: u64, parent: u64, mmaps: u64) -> crate::collector::ebpf::ledger::Deltas {
        let mut d = crate::collector::ebpf::ledger::Deltas::default();
        d.0.insert(
            id,
            crate::collector::ebpf::ledger::Delta {
                cgroup_id: id,
                parent_id: parent,
                counters: Counters { mmap_calls: mmaps, ..Default::default() },
            },
        );
        d
    }

    fn mmaps(own: &HashMap<u64, Counters>, id: u64) -> u64 {
        own.get(&id).map(|c| c.mmap_calls).unwrap_or(0)
    }

    // root(1) -> pod(2) -> container(3)
    const WALK: &[(u64, Option<u64>)] = &[(1, None), (2, Some(1)), (3, Some(2))];

    #[test]
    fn removed_cgroup_counts_move_to_the_nearest_survivor() {
        let mut t = EbpfTotals::default();
        let own = t.update(&delta(3, 2, 5), WALK);
        assert_eq!(mmaps(&own, 3), 5);
        // The container is gone; the pod keeps its 5 and nothing is counted twice.
        let own = t.update(&delta(3, 2, 2), &WALK[..2]);
        assert_eq!((mmaps(&own, 2), mmaps(&own, 1)), (7, 0));
        let own = t.update(&crate::collector::ebpf::ledger::Deltas::default(), &WALK[..2]);
        assert_eq!(mmaps(&own, 2), 7);
        // Late counts of the removed container (a retired slot) still reach the pod.
        let own = t.update(&delta(3, 2, 1), &WALK[..2]);
        assert_eq!(mmaps(&own, 2), 8);
    }

    #[test]
    fn cgroup_created_and_removed_between_walks_keeps_its_counts() {
        let mut t = EbpfTotals::default();
        t.update(&crate::collector::ebpf::ledger::Deltas::default(), WALK);
        // Cgroup 9, a child of the container that no walk saw, did 4 mmaps.
        let own = t.update(&delta(9, 3, 4), WALK);
        assert_eq!(mmaps(&own, 3), 0, "waits: it may appear in the next walk");
        t.update(&crate::collector::ebpf::ledger::Deltas::default(), WALK);
        let own = t.update(&crate::collector::ebpf::ledger::Deltas::default(), WALK);
        assert_eq!(mmaps(&own, 3), 4, "then goes to its parent");
    }

    #[test]
    fn cgroup_created_just_after_a_walk_keeps_its_own_counts() {
        let mut t = EbpfTotals::default();
        t.update(&delta(9, 3, 4), WALK);
        let walk: Vec<(u64, Option<u64>)> = WALK.iter().copied().chain([(9, Some(3))]).collect();
        let own = t.update(&crate::collector::ebpf::ledger::Deltas::default(), &walk);
        assert_eq!((mmaps(&own, 9), mmaps(&own, 3)), (4, 0));
    }

    #[test]
    fn unknown_lineage_goes_to_the_root() {
        let mut t = EbpfTotals::default();
        t.update(&delta(50, 40, 3), WALK);
        t.update(&crate::collector::ebpf::ledger::Deltas::default(), WALK);
        let own = t.update(&crate::collector::ebpf::ledger::Deltas::default(), WALK);
        assert_eq!(mmaps(&own, 1), 3);
    }
}
