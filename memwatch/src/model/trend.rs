//! Pass: each container's recent working set, and when it would reach its limit at that rate.

use std::collections::{HashMap, HashSet, VecDeque};

/// How far back the working-set trend for time-to-OOM looks.
pub const TREND_WINDOW_SECS: f64 = 60.0;

/// (monotonic seconds, working set) per cgroup id, over the last [`TREND_WINDOW_SECS`].
#[derive(Debug, Default)]
pub struct Trends(HashMap<u64, VecDeque<(f64, u64)>>);

impl Trends {
    /// Records a container's working set at `t` and returns its predicted time to OOM.
    pub fn observe(&mut self, id: u64, t: f64, working_set: u64, headroom: u64) -> Option<f64> {
        let hist = self.0.entry(id).or_default();
        hist.push_back((t, working_set));
        while hist.front().is_some_and(|(ts, _)| t - ts > TREND_WINDOW_SECS) {
            hist.pop_front();
        }
        time_to_oom(hist, headroom)
    }

    /// Forgets containers no longer exported.
    pub fn retain(&mut self, live: &HashSet<u64>) {
        self.0.retain(|id, _| live.contains(id));
    }
}

/// Seconds until the working set reaches the limit at the least-squares growth rate of the
/// recent samples; None unless it is growing (at least 3 samples over at least 2 seconds).
pub fn time_to_oom(hist: &VecDeque<(f64, u64)>, headroom: u64) -> Option<f64> {
    if hist.len() < 3 {
        return None;
    }
    let (t0, t1) = (hist.front()?.0, hist.back()?.0);
    if t1 - t0 < 2.0 {
        return None;
    }
    let n = hist.len() as f64;
    let mt = hist.iter().map(|(t, _)| t).sum::<f64>() / n;
    let my = hist.iter().map(|(_, y)| *y as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, y) in hist {
        sxy += (t - mt) * (*y as f64 - my);
        sxx += (t - mt) * (t - mt);
    }
    let slope = sxy / sxx; // bytes per second
    (slope > 0.0 && slope.is_finite()).then(|| headroom as f64 / slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_to_oom_needs_growth() {
        let grow: VecDeque<(f64, u64)> = (0..5).map(|i| (i as f64, 1000 + 100 * i as u64)).collect();
        assert_eq!(time_to_oom(&grow, 1000), Some(10.0));
        let flat: VecDeque<(f64, u64)> = (0..5).map(|i| (i as f64, 1000)).collect();
        assert_eq!(time_to_oom(&flat, 1000), None);
        let shrink: VecDeque<(f64, u64)> = (0..5).map(|i| (i as f64, 1000 - 10 * i as u64)).collect();
        assert_eq!(time_to_oom(&shrink, 1000), None);
        let short: VecDeque<(f64, u64)> = (0..2).map(|i| (i as f64, 1000 + 100 * i as u64)).collect();
        assert_eq!(time_to_oom(&short, 1000), None);
    }

    #[test]
    fn history_is_bounded_to_the_window() {
        let mut t = Trends::default();
        for i in 0..200 {
            t.observe(1, i as f64, 1000 + i, 10_000);
        }
        assert!(t.0[&1].len() <= TREND_WINDOW_SECS as usize + 1);
        t.retain(&HashSet::new());
        assert!(t.0.is_empty());
    }
}
