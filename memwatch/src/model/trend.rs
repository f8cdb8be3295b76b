//! Pass: each container's recent working set, its growth, and when it would reach its limit
//! at that rate: the time to OOM, counted only for a trend that tells.
//!
//! A start-up is not a trend: programs allocate what they need as they start (a JVM's heap, a
//! cache warming) and then hold still. So the time to OOM is computed only from samples taken
//! after the container's main process (its oldest) has lived [`STARTUP_SECONDS`], is reset when
//! that process changes (a restart inside the container), and only where the working set grew
//! through the last [`TREND_SPAN_SECONDS`] in each of its [`TREND_PARTS`] parts: a burst that
//! levelled off, or a garbage collector's sawtooth, does not count. The rate is the
//! least-squares slope of those samples over the last [`TREND_WINDOW_SECS`].
//!
//! Why these numbers: 30 s covers the start-up of the services measured here (a Prometheus,
//! a JVM, Node.js, PostgreSQL and Redis allocate what they keep within seconds to tens of
//! seconds) and is as long as two Prometheus scrapes; a leak of a few MiB a second toward a
//! limit of a few hundred MiB then still leaves tens of seconds between the warning and the
//! kill (the warning test measures it). Three parts of 10 s each tell a steady climb from a
//! step.
//!
//! The raw growth rate (over the last [`RAW_WINDOW_SECONDS`], start-up included) is kept too:
//! the fault-stack sampler starts early for a steep one, so that the growth is sampled while it
//! happens (see `crate::risk`).

use std::collections::{HashMap, HashSet, VecDeque};

/// How far back the working-set trend for time-to-OOM looks.
pub const TREND_WINDOW_SECS: f64 = 60.0;
/// The main process must have lived this long before its container's growth is a trend.
pub const STARTUP_SECONDS: f64 = 30.0;
/// A trend must have grown over at least this long...
pub const TREND_SPAN_SECONDS: f64 = 30.0;
/// ...in each of this many equal parts of it.
pub const TREND_PARTS: usize = 3;
/// The raw growth rate is the slope over this window.
pub const RAW_WINDOW_SECONDS: f64 = 10.0;

/// One sample: monotonic seconds, working set, and whether it came after the start-up.
#[derive(Debug, Clone, Copy)]
struct Point {
    t: f64,
    ws: u64,
    settled: bool,
}

#[derive(Debug, Default)]
struct Track {
    points: VecDeque<Point>,
    /// The main process (start time in clock ticks after boot), to tell a restart.
    main: Option<u64>,
}

/// The recent working set per cgroup id, over the last [`TREND_WINDOW_SECS`].
#[derive(Debug, Default)]
pub struct Trends(HashMap<u64, Track>);

/// What a container's recent working set says.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Trend {
    /// Bytes a second over the last [`RAW_WINDOW_SECONDS`], start-up included; None without
    /// enough samples.
    pub raw_rate: Option<f64>,
    /// Seconds until the limit at a sustained growth after start-up; None otherwise.
    pub time_to_oom: Option<f64>,
}

/// A container's main process as the trend sees it: its start time (ticks after boot) and its
/// age in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MainProcess {
    pub start_ticks: u64,
    pub age_seconds: f64,
}

impl Trends {
    /// Records a container's working set at `t` and returns its trend. `main`: its main
    /// process, when known (unknown: the container is taken to be past its start-up).
    pub fn observe(&mut self, id: u64, t: f64, working_set: u64, headroom: u64, main: Option<MainProcess>) -> Trend {
        let track = self.0.entry(id).or_default();
        if let Some(m) = main {
            if track.main.is_some_and(|old| old != m.start_ticks) {
                track.points.clear(); // restarted inside the container: a new start-up
            }
            track.main = Some(m.start_ticks);
        }
        let settled = main.is_none_or(|m| m.age_seconds >= STARTUP_SECONDS);
        track.points.push_back(Point { t, ws: working_set, settled });
        while track.points.front().is_some_and(|p| t - p.t > TREND_WINDOW_SECS) {
            track.points.pop_front();
        }
        let raw: Vec<(f64, u64)> = track.points.iter().filter(|p| t - p.t <= RAW_WINDOW_SECONDS).map(|p| (p.t, p.ws)).collect();
        let settled: Vec<(f64, u64)> = track.points.iter().filter(|p| p.settled).map(|p| (p.t, p.ws)).collect();
        Trend { raw_rate: slope(&raw, 2.0), time_to_oom: time_to_oom(&settled, headroom) }
    }

    /// Forgets containers no longer exported.
    pub fn retain(&mut self, live: &HashSet<u64>) {
        self.0.retain(|id, _| live.contains(id));
    }
}

/// The least-squares slope (bytes a second) of at least 3 samples over at least `span`
/// seconds.
fn slope(hist: &[(f64, u64)], span: f64) -> Option<f64> {
    if hist.len() < 3 {
        return None;
    }
    let (t0, t1) = (hist.first()?.0, hist.last()?.0);
    if t1 - t0 < span {
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
    let s = sxy / sxx;
    s.is_finite().then_some(s)
}

/// Whether the working set grew in each of [`TREND_PARTS`] parts of the last
/// [`TREND_SPAN_SECONDS`] of `hist` (which must reach back that far).
fn sustained(hist: &[(f64, u64)]) -> bool {
    let Some(&(end, _)) = hist.last() else { return false };
    let start = end - TREND_SPAN_SECONDS;
    if hist.first().is_none_or(|(t, _)| *t > start + 0.5) {
        return false; // not that much history
    }
    let part = TREND_SPAN_SECONDS / TREND_PARTS as f64;
    (0..TREND_PARTS).all(|i| {
        let (a, b) = (start + i as f64 * part, start + (i + 1) as f64 * part);
        // The part's first and last samples; the part before's last one starts it where the
        // samples are sparse.
        let first = hist.iter().rev().find(|(t, _)| *t <= a + 0.5).or_else(|| hist.iter().find(|(t, _)| *t >= a));
        let last = hist.iter().rev().find(|(t, _)| *t <= b + 0.5);
        matches!((first, last), (Some(f), Some(l)) if l.0 > f.0 && l.1 > f.1)
    })
}

/// Seconds until the working set reaches the limit at the least-squares growth rate of the
/// samples, where that growth is [`sustained`]; None otherwise.
pub fn time_to_oom(hist: &[(f64, u64)], headroom: u64) -> Option<f64> {
    if !sustained(hist) {
        return None;
    }
    let rate = slope(hist, TREND_SPAN_SECONDS)?;
    (rate > 0.0).then(|| headroom as f64 / rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// One sample a second for `secs` seconds of `f(second)`.
    fn series(secs: u32, f: impl Fn(f64) -> u64) -> Vec<(f64, u64)> {
        (0..=secs).map(|i| (i as f64, f(i as f64))).collect()
    }

    #[test]
    fn a_steady_climb_over_the_span_has_a_time_to_oom() {
        let climb = series(40, |t| 100 * MIB + (t * MIB as f64) as u64);
        let t = time_to_oom(&climb, 100 * MIB).expect("a sustained climb");
        assert!((t - 100.0).abs() < 1.0, "{t}");
        assert_eq!(time_to_oom(&series(40, |_| 100 * MIB), 100 * MIB), None, "flat");
        assert_eq!(time_to_oom(&series(20, |t| (t as u64 + 1) * MIB), 100 * MIB), None, "20 s is not enough to tell");
    }

    #[test]
    fn a_burst_that_levelled_off_and_a_sawtooth_are_no_trend() {
        // 60 MiB in the first 8 s, then still.
        let burst = series(40, |t| if t < 8.0 { (t * 7.5) as u64 * MIB } else { 60 * MIB });
        assert_eq!(time_to_oom(&burst, 100 * MIB), None);
        // A collector's sawtooth: up 4 MiB/s for 5 s, then back down; the least-squares slope
        // of a window that ends on a rise is positive, but no part of the span grew.
        let saw = series(40, |t| 100 * MIB + ((t % 5.0) * 4.0) as u64 * MIB);
        assert!(slope(&saw[..39], 30.0).is_some_and(|s| s > 0.0), "the slope alone would call it growth");
        assert_eq!(time_to_oom(&saw[..39], 100 * MIB), None);
    }

    #[test]
    fn start_up_growth_is_no_trend_and_a_restart_starts_over() {
        let mut tr = Trends::default();
        let main = |age: f64| Some(MainProcess { start_ticks: 7, age_seconds: age });
        // Growing from its start: nothing until it has lived 30 s and grown 30 s more.
        for s in 0..55 {
            let t = tr.observe(1, s as f64, (10 + 2 * s) * MIB, 500 * MIB, main(s as f64));
            assert_eq!(t.time_to_oom, None, "at {s} s");
            if s >= 3 {
                assert!(t.raw_rate.is_some_and(|r| (r - 2.0 * MIB as f64).abs() < 1.0), "the raw rate counts the start-up");
            }
        }
        let t = tr.observe(1, 61.0, 132 * MIB, 500 * MIB, main(61.0));
        assert!(t.time_to_oom.is_some(), "grown through 30 s after the start-up");
        // The main process restarted: its history starts over.
        let t = tr.observe(1, 62.0, 134 * MIB, 500 * MIB, Some(MainProcess { start_ticks: 9, age_seconds: 40.0 }));
        assert_eq!(t.time_to_oom, None);
    }

    #[test]
    fn history_is_bounded_to_the_window() {
        let mut t = Trends::default();
        for i in 0..200 {
            t.observe(1, i as f64, 1000 + i, 10_000, None);
        }
        assert!(t.0[&1].points.len() <= TREND_WINDOW_SECS as usize + 1);
        t.retain(&HashSet::new());
        assert!(t.0.is_empty());
    }
}
