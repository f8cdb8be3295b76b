//! Turns successive readings of the kernel's per-cgroup slots into what each cgroup did since
//! the last reading. Pure: readings and retired records in, deltas out.
//!
//! A slot (one memory css id on one CPU) holds one cgroup's running totals until a new cgroup
//! that was given the same css id runs on that CPU; the kernel side then sends the old totals
//! on a ring buffer ([`Retired`]) and starts the slot from zero for the new owner. Owners are
//! told apart by the css `serial` (never reused). The ledger remembers the last totals seen per
//! (slot, cpu, owner), so every count is credited exactly once, whichever order a hand-over,
//! its record and a reading happen in.

use std::collections::HashMap;

use memwatch_common::{Counters, Retired, Slot};

/// What one cgroup did since the previous reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    /// Its memory cgroup's id (directory inode).
    pub cgroup_id: u64,
    /// Its parent's id (0 for the root), for cgroups userspace never saw.
    pub parent_id: u64,
    pub counters: Counters,
}

/// How many readings a hand-over may wait for its retired record before the ledger gives up
/// on it (the ring buffer was full: the kernel counted that drop). The record is on the ring
/// before the reading that shows the new owner ends, so the next reading has it; a few more
/// are slack. Kept short: under churn every lost record leaves an entry waiting.
const RETIRE_PATIENCE: u32 = 4;

#[derive(Debug, Default)]
pub struct Ledger {
    /// (slot, cpu) -> (owner serial, last totals seen).
    seen: HashMap<(u32, u32), (u64, Counters)>,
    /// Owners whose slot was taken over before their retired record arrived:
    /// (slot, cpu, serial) -> (last totals seen, readings waited).
    handed_over: HashMap<(u32, u32, u64), (Counters, u32)>,
}

impl Ledger {
    pub fn new() -> Self {
        Ledger::default()
    }

    /// Credits a retired slot's final totals beyond what was already seen.
    pub fn retired(&mut self, r: &Retired, out: &mut Deltas) {
        let key = (r.slot, r.cpu);
        let already = if let Some((last, _)) = self.handed_over.remove(&(r.slot, r.cpu, r.old.serial)) {
            last
        } else if self.seen.get(&key).is_some_and(|(serial, _)| *serial == r.old.serial) {
            // Read before the new owner's first reading: the slot now starts from zero.
            self.seen.remove(&key).map(|(_, c)| c).unwrap_or_default()
        } else {
            Counters::default()
        };
        out.add(&r.old, r.old.counters.since(&already));
    }

    /// Credits one slot's totals beyond what was already seen.
    pub fn reading(&mut self, slot: u32, cpu: u32, s: &Slot, out: &mut Deltas) {
        if s.serial == 0 {
            return;
        }
        let key = (slot, cpu);
        let before = match self.seen.get(&key) {
            Some((serial, c)) if *serial == s.serial => *c,
            Some((serial, c)) => {
                // Taken over: the old owner's tail arrives as a retired record.
                self.handed_over.insert((slot, cpu, *serial), (*c, 0));
                Counters::default()
            }
            None => Counters::default(),
        };
        out.add(s, s.counters.since(&before));
        // A torn read may show a field lower than before: keep the furthest seen.
        self.seen.insert(key, (s.serial, s.counters.max(&before)));
    }

    /// Ends one reading: forgets hand-overs whose record never came.
    pub fn end_reading(&mut self) {
        self.handed_over.retain(|_, (_, waited)| {
            *waited += 1;
            *waited <= RETIRE_PATIENCE
        });
    }

    /// Hand-overs still waiting for their record (for tests and self-metrics).
    pub fn pending_hand_overs(&self) -> usize {
        self.handed_over.len()
    }
}

/// Deltas of one reading, by cgroup id.
#[derive(Debug, Default, Clone)]
pub struct Deltas(pub HashMap<u64, Delta>);

impl Deltas {
    fn add(&mut self, owner: &Slot, c: Counters) {
        if c.is_zero() {
            return;
        }
        let d = self.0.entry(owner.cgroup_id).or_insert(Delta {
            cgroup_id: owner.cgroup_id,
            parent_id: owner.parent_id,
            counters: Counters::default(),
        });
        d.counters.accumulate(&c);
    }

    pub fn get(&self, cgroup_id: u64) -> Option<&Counters> {
        self.0.get(&cgroup_id).map(|d| &d.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(serial: u64, cgroup: u64, mmaps: u64) -> Slot {
        Slot { serial, cgroup_id: cgroup, parent_id: 1, counters: Counters { mmap_calls: mmaps, ..Default::default() } }
    }

    fn mmaps(d: &Deltas, cgroup: u64) -> u64 {
        d.get(cgroup).map(|c| c.mmap_calls).unwrap_or(0)
    }

    /// Runs readings and records in order; returns the total credited per cgroup.
    fn total(steps: &[Step]) -> HashMap<u64, u64> {
        let mut l = Ledger::new();
        let mut totals: HashMap<u64, u64> = HashMap::new();
        for step in steps {
            let mut d = Deltas::default();
            match step {
                Step::Read(s) => l.reading(5, 0, s, &mut d),
                Step::Retire(s) => l.retired(&Retired { slot: 5, cpu: 0, old: *s }, &mut d),
            }
            for (id, delta) in d.0 {
                *totals.entry(id).or_default() += delta.counters.mmap_calls;
            }
            l.end_reading();
        }
        totals
    }

    enum Step {
        Read(Slot),
        Retire(Slot),
    }
    use Step::*;

    #[test]
    fn deltas_between_readings() {
        let mut l = Ledger::new();
        let mut d = Deltas::default();
        l.reading(3, 1, &slot(7, 100, 5), &mut d);
        assert_eq!(mmaps(&d, 100), 5);
        let mut d = Deltas::default();
        l.reading(3, 1, &slot(7, 100, 5), &mut d);
        assert!(d.0.is_empty(), "nothing new");
        let mut d = Deltas::default();
        l.reading(3, 1, &slot(7, 100, 9), &mut d);
        assert_eq!(mmaps(&d, 100), 4);
        assert_eq!(d.0[&100].parent_id, 1);
    }

    #[test]
    fn hand_over_then_record() {
        // A read at 3, A counts to 10 and is retired, B counts 2, then B is read, then A's record.
        let t = total(&[Read(slot(7, 100, 3)), Read(slot(8, 200, 2)), Retire(slot(7, 100, 10))]);
        assert_eq!((t[&100], t[&200]), (10, 2));
    }

    #[test]
    fn record_then_hand_over() {
        let t = total(&[Read(slot(7, 100, 3)), Retire(slot(7, 100, 10)), Read(slot(8, 200, 2))]);
        assert_eq!((t[&100], t[&200]), (10, 2));
    }

    #[test]
    fn owner_never_read_still_counts() {
        // A cgroup created and freed between two readings: only its record tells.
        let t = total(&[Retire(slot(7, 100, 4)), Read(slot(8, 200, 1))]);
        assert_eq!((t[&100], t[&200]), (4, 1));
    }

    #[test]
    fn several_hand_overs_on_one_slot() {
        let t =
            total(&[Read(slot(7, 100, 1)), Read(slot(8, 200, 2)), Retire(slot(8, 200, 5)), Retire(slot(7, 100, 3)), Read(slot(9, 300, 1))]);
        assert_eq!((t[&100], t[&200], t[&300]), (3, 5, 1));
    }

    #[test]
    fn torn_read_never_counts_twice() {
        // A reading that shows less than before (torn against a hand-over) counts nothing, and
        // the next one counts only what is really new.
        let t = total(&[Read(slot(7, 100, 6)), Read(slot(7, 100, 4)), Read(slot(7, 100, 8))]);
        assert_eq!(t[&100], 8);
    }

    #[test]
    fn lost_records_are_forgotten() {
        let mut l = Ledger::new();
        let mut d = Deltas::default();
        l.reading(5, 0, &slot(7, 100, 1), &mut d);
        l.reading(5, 0, &slot(8, 200, 1), &mut d);
        assert_eq!(l.pending_hand_overs(), 1);
        for _ in 0..=RETIRE_PATIENCE {
            l.end_reading();
        }
        assert_eq!(l.pending_hand_overs(), 0);
    }

    #[test]
    fn per_cpu_slots_add_up() {
        let mut l = Ledger::new();
        let mut d = Deltas::default();
        l.reading(5, 0, &slot(7, 100, 2), &mut d);
        l.reading(5, 1, &slot(7, 100, 3), &mut d);
        assert_eq!(mmaps(&d, 100), 5);
    }
}
