//! The highest non-reclaimable memory of each container over the last minute: for Prometheus,
//! whose scrapes (every 15 to 60 s) would otherwise see only the sample at the scrape, and lose
//! a spike between two. Each sample's non-reclaimable memory goes in, and so does what the
//! kernel's own watermark of usage (`memory.peak`, `memory.max_usage_in_bytes`) proves when it
//! rose since it was last read: a spike shorter than a sample, less the page cache there is
//! now. One series, not two: a series is about 130 bytes of labels a container. A sliding
//! maximum: a deque of the values that can still be the maximum (each lower than the one before
//! it), so each is pushed and popped once.

use std::collections::{HashMap, HashSet, VecDeque};

/// How far back the maximum reaches, in seconds: longer than any usual scrape interval.
pub const WINDOW_SECONDS: f64 = 60.0;

#[derive(Debug, Default)]
pub struct Peaks(HashMap<u64, Track>);

#[derive(Debug, Default)]
struct Track {
    window: VecDeque<(f64, u64)>,
    /// The kernel's watermark when last read.
    watermark: Option<u64>,
}

impl Peaks {
    /// Container `id` had `value` of non-reclaimable memory at monotonic time `t`, with the
    /// kernel's watermark of its usage `watermark` and `reclaimable` bytes of page cache now:
    /// the highest over the last [`WINDOW_SECONDS`], this sample included. A watermark seen
    /// for the first time, or risen, counts (less the page cache) as a value now.
    pub fn observe(&mut self, id: u64, t: f64, value: u64, watermark: Option<u64>, reclaimable: u64) -> u64 {
        let track = self.0.entry(id).or_default();
        let risen = watermark.filter(|w| track.watermark.is_none_or(|old| *w > old));
        track.watermark = watermark.or(track.watermark);
        let value = value.max(risen.map_or(0, |w| w.saturating_sub(reclaimable)));
        let q = &mut track.window;
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
        assert_eq!(p.observe(1, 0.0, 10, None, 0), 10);
        assert_eq!(p.observe(1, 1.0, 50, None, 0), 50, "the spike");
        assert_eq!(p.observe(1, 2.0, 12, None, 0), 50);
        assert_eq!(p.observe(1, 60.0, 11, None, 0), 50, "still within the minute");
        assert_eq!(p.observe(1, 61.5, 11, None, 0), 12, "the spike left the window; the next highest holds");
        assert_eq!(p.observe(1, 62.5, 9, None, 0), 11);
        assert_eq!(p.observe(2, 62.5, 3, None, 0), 3, "each container its own");
        assert!(p.0[&1].window.len() <= 3, "only the candidates are kept: {:?}", p.0[&1]);
        p.retain(&HashSet::from([2]));
        assert_eq!(p.observe(1, 63.0, 1, None, 0), 1, "a forgotten container starts again");
    }

    #[test]
    fn a_spike_no_sample_saw_counts_from_the_kernels_watermark_when_it_rises() {
        let mut p = Peaks::default();
        // First read: what the watermark proves (less the page cache) counts.
        assert_eq!(p.observe(1, 0.0, 40, Some(60), 10), 50);
        // Unchanged: nothing new; the window still holds it.
        assert_eq!(p.observe(1, 30.0, 40, Some(60), 5), 50);
        assert_eq!(p.observe(1, 61.0, 40, Some(60), 5), 40, "an old watermark is not a new spike");
        // Risen between two samples that saw 40: a spike of 140 less 10 of cache.
        assert_eq!(p.observe(1, 62.0, 40, Some(140), 10), 130);
        assert_eq!(p.observe(1, 63.0, 41, None, 10), 130, "a read without the file keeps the last watermark");
        assert_eq!(p.observe(1, 64.0, 41, Some(140), 10), 130);
    }
}
