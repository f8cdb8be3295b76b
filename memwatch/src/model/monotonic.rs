//! Pass: counters read from the kernel's files never go backwards while their cgroup lives.
//! cgroup v1's hierarchical `total_*` counters sum only live descendants, so they drop when a
//! child is removed; the drop is carried as an offset, as Prometheus's counters expect.

use std::collections::{HashMap, HashSet};

/// Per cgroup id and counter: (last value read, offset added).
#[derive(Debug, Default)]
pub struct Monotonic(HashMap<(u64, &'static str), (u64, u64)>);

impl Monotonic {
    /// The counter `name` of cgroup `id` as exported: never below what was exported before.
    pub fn apply(&mut self, id: u64, name: &'static str, value: Option<u64>) -> Option<u64> {
        let v = value?;
        let (last, offset) = self.0.entry((id, name)).or_insert((v, 0));
        if v < *last {
            *offset += *last - v;
        }
        *last = v;
        Some(v + *offset)
    }

    /// Forgets cgroups that are gone.
    pub fn retain(&mut self, live: &HashSet<u64>) {
        self.0.retain(|(id, _), _| live.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_becomes_an_offset() {
        let mut m = Monotonic::default();
        assert_eq!(m.apply(1, "pgfault", Some(100)), Some(100));
        assert_eq!(m.apply(1, "pgfault", Some(150)), Some(150));
        // A child with 40 faults was removed: v1's total drops to 110; the export holds.
        assert_eq!(m.apply(1, "pgfault", Some(110)), Some(150));
        assert_eq!(m.apply(1, "pgfault", Some(115)), Some(155), "and grows with it again");
        assert_eq!(m.apply(1, "pgfault", None), None);
        assert_eq!(m.apply(2, "pgfault", Some(7)), Some(7), "per cgroup");
        m.retain(&HashSet::from([2]));
        assert_eq!(m.apply(1, "pgfault", Some(5)), Some(5), "a cgroup gone is forgotten");
    }
}
