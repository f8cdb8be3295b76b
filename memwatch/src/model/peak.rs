//! The highest non-reclaimable memory of each container over the last minute of samples: for
//! Prometheus, whose scrapes (every 15 to 60 s) would otherwise see only the sample at the
//! scrape, and lose a spike between two. A sliding maximum: a deque of the samples that can
//! still be the maximum (each lower than the one before it), so each sample is pushed and
//! popped once.

use std::collections::{HashMap, HashSet, VecDeque};

/// How far back the maximum reaches, in seconds: longer than any usual scrape interval.
pub const WINDOW_SECONDS: f64 = 60.0;

#[derive(Debug, Default)]
pub struct Peaks(HashMap<u64, VecDeque<(f64, u64)>>);

impl Peaks {
    /// Container `id` had `value` at monotonic time `t`: the highest over the last
    /// [`WINDOW_SECONDS`], this sample included.
    pub fn observe(&mut self, id: u64, t: f64, value: u64) -> u64 {
        let q = self.0.entry(id).or_default();
        while q.back().is_some_and(|(_, v)| *v <= value) {
            q.pop_back();
        }
        q.push_back((t, value));
        while q.front().is_some_and(|(at, _)| t - at > WINDOW_SECONDS) {
            q.pop_front();
        }
        q.front().map_or(value, |(_, v)| *v)
    }

    /// Forgets containers not in `live`.
    pub fn retain(&mut self, live: &HashSet<u64>) {
        self.0.retain(|id, _| live.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_is_kept_for_the_window_then_let_go() {
        let mut p = Peaks::default();
        assert_eq!(p.observe(1, 0.0, 10), 10);
        assert_eq!(p.observe(1, 1.0, 50), 50, "the spike");
        assert_eq!(p.observe(1, 2.0, 12), 50);
        assert_eq!(p.observe(1, 60.0, 11), 50, "still within the minute");
        assert_eq!(p.observe(1, 61.5, 11), 12, "the spike left the window; the next highest holds");
        assert_eq!(p.observe(1, 62.5, 9), 11);
        assert_eq!(p.observe(2, 62.5, 3), 3, "each container its own");
        assert!(p.0[&1].len() <= 3, "only the candidates are kept: {:?}", p.0[&1]);
        p.retain(&HashSet::from([2]));
        assert_eq!(p.observe(1, 63.0, 1), 1, "a forgotten container starts again");
    }
}
