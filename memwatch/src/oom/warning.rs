//! Warnings before a kill: when a container becomes at risk ([`crate::risk`], the one
//! definition the fault-stack sampler and `top` share), a `warning`; when it has left risk for a
//! while, a `cleared`.
//!
//! [`Warner`] decides when, from each sample alone (no I/O: it reads the counters the sample
//! already has, on the sample's cadence); the OOM stage builds the events (what grew, which
//! code, the runtimes' facts) and numbers them. Bounds, so a container hovering at a threshold
//! does not make a storm:
//! - hysteresis: a warning clears only once the container has been calm for [`CALM_FOR`]
//!   (headroom at least [`CLEAR_HEADROOM`], no time to OOM under [`CLEAR_TIME_TO_OOM`], no
//!   limit hits rising near the limit);
//! - per container: after a warning, none other for [`REWARN_AFTER`]; a container at risk
//!   again within it is under its earlier warning again, silently (a kill still names it);
//! - per node: at most [`MAX_PER_MINUTE`] warnings a minute; the rest are counted, not said.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::{
    risk::{Risk, risks},
    snapshot::{Container, Snapshot},
};

/// Calm this long (seconds) before a warning clears.
pub const CALM_FOR: f64 = 30.0;
/// Headroom a container must have again, as a share of its limit, to be calm.
pub const CLEAR_HEADROOM: f64 = 0.3;
/// A time to OOM under this (seconds) is not calm.
pub const CLEAR_TIME_TO_OOM: f64 = 1800.0;
/// After a warning, no other for the same container for this long (seconds).
pub const REWARN_AFTER: f64 = 600.0;
/// Warnings a minute on one node, at most.
pub const MAX_PER_MINUTE: usize = 60;
/// The window limit hits are reported over (seconds).
pub const HITS_WINDOW: f64 = 60.0;
/// A warning this soon (seconds) after a kill in its container says what the kill left.
pub const AFTER_KILL: f64 = 600.0;

/// What the OOM stage is to do after a sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Raise a warning for container `id` (`after_kill`: seconds since an OOM kill in it, when
    /// it is still at risk after one).
    Warn { id: u64, risks: Vec<Risk>, hits_last_minute: u64, after_kill: Option<f64> },
    /// Clear warning `seq` (raised at `since`, Unix seconds) of container `id`.
    Clear { id: u64, seq: u64, since: f64, hits_last_minute: u64 },
}

/// A warning in force, as readers see it (`top`, the sampler, the OOM event that follows).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveWarning {
    pub seq: u64,
    /// Unix seconds it was raised.
    pub time: f64,
    /// Its summary line.
    pub text: String,
}

#[derive(Debug, Default)]
struct Track {
    /// (Unix seconds, limit hits) where the count changed, from the last change at or before
    /// [`HITS_WINDOW`] ago.
    hits: VecDeque<(f64, u64)>,
    /// The warning in force; seq 0: one the node-wide bound kept quiet.
    active: Option<ActiveWarning>,
    /// The last warning raised (said or kept quiet), and whether its `cleared` was said.
    last: Option<(ActiveWarning, bool)>,
    calm_since: Option<f64>,
    /// The kernel's OOM kill counter in the sample before, and when it last rose.
    kills: Option<u64>,
    killed_at: Option<f64>,
    /// When the sample before was taken.
    seen_at: Option<f64>,
}

/// When containers become at risk and when they leave it.
#[derive(Debug, Default)]
pub struct Warner {
    tracks: HashMap<u64, Track>,
    /// When recent warnings were raised (the node-wide bound).
    raised: VecDeque<f64>,
    /// Warnings the node-wide bound kept quiet.
    pub suppressed: u64,
}

impl Track {
    /// Records the sample's counters; returns (rising since the sample before, hits over the
    /// window). A counter that went down is a new cgroup with an old id: it starts over.
    fn hits(&mut self, now: f64, total: Option<u64>) -> (bool, u64) {
        let Some(total) = total else { return (false, 0) };
        if self.hits.back().is_some_and(|(_, h)| *h > total) {
            self.hits.clear();
        }
        let rising = self.hits.back().is_some_and(|(_, h)| total > *h);
        // A point only where the count changed (an idle container keeps one).
        if self.hits.back().is_none_or(|(_, h)| *h != total) {
            self.hits.push_back((now, total));
        }
        while self.hits.len() > 1 && self.hits.get(1).is_some_and(|(t, _)| now - t >= HITS_WINDOW) {
            self.hits.pop_front();
        }
        (rising, total - self.hits.front().map_or(total, |(_, h)| *h))
    }
}

fn calm(c: &Container, now_risks: &[Risk]) -> bool {
    now_risks.is_empty() && c.headroom_ratio >= CLEAR_HEADROOM && c.time_to_oom_seconds.is_none_or(|t| t >= CLEAR_TIME_TO_OOM)
}

impl Warner {
    /// One sample at `now` (Unix seconds): the warnings to raise and clear. `last_kill`: the
    /// time of the last kill the probe saw per cgroup id.
    pub fn observe(&mut self, snap: &Snapshot, now: f64, last_kill: &HashMap<u64, f64>) -> Vec<Transition> {
        let mut live = HashSet::with_capacity(snap.containers.len());
        let mut found: Vec<(u64, Vec<Risk>, u64)> = Vec::new();
        let mut out = Vec::new();
        for c in snap.containers.iter() {
            live.insert(c.id);
            if c.limit_is_machine || c.limit_bytes == 0 {
                continue;
            }
            let t = self.tracks.entry(c.id).or_default();
            let total = match (c.limit_hits_max, c.limit_hits_high) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
            };
            let (rising, hits) = t.hits(now, total);
            // A kill in this sample (the kernel's counter rose, or is seen for the first time with
            // kills on it, or the probe saw one since the sample before): its own event says
            // what happened; no warning now.
            let rose = matches!((t.kills, c.oom_kills), (Some(before), Some(after)) if after > before);
            let first_with_kills = t.kills.is_none() && c.oom_kills.is_some_and(|k| k > 0);
            let probe = last_kill.get(&c.id).copied().filter(|k| t.seen_at.is_none_or(|s| *k > s) && now - k < AFTER_KILL);
            let killed_now = rose || first_with_kills || probe.is_some();
            if rose || probe.is_some() {
                t.killed_at = Some(probe.unwrap_or(now));
            }
            t.kills = c.oom_kills.or(t.kills);
            t.seen_at = Some(now);
            let r = risks(c, rising);
            match &t.active {
                Some(_) => {
                    if calm(c, &r) {
                        let since = *t.calm_since.get_or_insert(now);
                        if now - since >= CALM_FOR {
                            let w = t.active.take().expect("just matched");
                            t.calm_since = None;
                            let said = t.last.as_ref().is_some_and(|(l, said)| l.seq == w.seq && *said);
                            if w.seq != 0 && !said {
                                out.push(Transition::Clear { id: c.id, seq: w.seq, since: w.time, hits_last_minute: hits });
                            }
                            if let Some((_, said)) = t.last.as_mut() {
                                *said = true;
                            }
                        }
                    } else {
                        t.calm_since = None;
                    }
                }
                None if !r.is_empty() && !killed_now => {
                    // At risk again soon after a warning: under that one again, silently.
                    if let Some((last, _)) = t.last.as_ref().filter(|(l, _)| now - l.time < REWARN_AFTER) {
                        t.active = Some(last.clone());
                        t.calm_since = None;
                    } else {
                        found.push((c.id, r, hits));
                    }
                }
                None => {}
            }
        }
        self.tracks.retain(|id, _| live.contains(id));
        // A pod's limit seen from its containers too: warn for the deepest container whose
        // limit it is (it names the container), not again for each ancestor with that limit.
        let limits: HashMap<u64, u64> = found.iter().filter_map(|(id, _, _)| snap.container(*id).map(|c| (*id, c.limit_bytes))).collect();
        let mut covered = HashSet::new();
        for (id, _, _) in &found {
            for a in snap.ancestry(*id).into_iter().skip(1) {
                if limits.get(&a).is_some_and(|l| Some(l) == limits.get(id)) {
                    covered.insert(a);
                }
            }
        }
        while self.raised.front().is_some_and(|t| now - t >= 60.0) {
            self.raised.pop_front();
        }
        for (id, r, hits) in found.into_iter().filter(|(id, _, _)| !covered.contains(id)) {
            let t = self.tracks.get_mut(&id).expect("tracked above");
            if self.raised.len() >= MAX_PER_MINUTE {
                self.suppressed += 1;
                let quiet = ActiveWarning { seq: 0, time: now, text: String::new() };
                t.last = Some((quiet.clone(), false));
                t.active = Some(quiet);
                continue;
            }
            self.raised.push_back(now);
            // In force from now; numbered once recorded ([`Warner::raised`]).
            let pending = ActiveWarning { seq: 0, time: now, text: String::new() };
            t.last = Some((pending.clone(), false));
            t.active = Some(pending);
            let after_kill = last_kill.get(&id).copied().or(t.killed_at).map(|k| now - k).filter(|s| *s < AFTER_KILL);
            out.push(Transition::Warn { id, risks: r, hits_last_minute: hits, after_kill });
        }
        out
    }

    /// The warning raised for `id` was recorded as event `seq`, saying `text`.
    pub fn recorded(&mut self, id: u64, seq: u64, text: String) {
        if let Some(t) = self.tracks.get_mut(&id) {
            for w in t.active.iter_mut().chain(t.last.iter_mut().map(|(l, _)| l)) {
                w.seq = seq;
                w.text = text.clone();
            }
        }
    }

    /// The newest warning in force for any of `ids` (a kill's cgroup and its ancestors), raised
    /// by `time`.
    pub fn in_force(&self, ids: &[u64], time: f64) -> Option<&ActiveWarning> {
        ids.iter()
            .filter_map(|id| self.tracks.get(id)?.active.as_ref())
            .filter(|w| w.seq != 0 && w.time <= time)
            .max_by(|a, b| a.time.total_cmp(&b.time))
    }

    /// The warnings in force (said ones: not those the node-wide bound kept quiet), by
    /// container id.
    pub fn active(&self) -> HashMap<u64, ActiveWarning> {
        self.tracks.iter().filter_map(|(id, t)| t.active.clone().filter(|w| w.seq != 0).map(|w| (*id, w))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixture::{container, snapshot};

    const MIB: u64 = 1 << 20;

    /// Container 10 at `ws` MiB of a 100 MiB limit, with `hits` limit hits and a time to OOM.
    fn snap_with(ws: u64, tto: Option<f64>, hits: Option<u64>) -> Snapshot {
        let mut c = container(10, "/c10");
        c.limit_bytes = 100 * MIB;
        c.working_set_bytes = ws * MIB;
        c.usage_bytes = ws * MIB;
        c.headroom_bytes = (100 - ws) * MIB;
        c.headroom_ratio = (100 - ws) as f64 / 100.0;
        c.limit_is_machine = false;
        c.time_to_oom_seconds = tto;
        c.limit_hits_max = hits;
        snapshot(0.0, vec![c])
    }

    /// Runs samples one a second from t=0; the transitions of each.
    fn run(w: &mut Warner, samples: impl IntoIterator<Item = Snapshot>) -> Vec<(f64, Transition)> {
        let mut out = vec![];
        for (i, s) in samples.into_iter().enumerate() {
            for t in w.observe(&s, i as f64, &HashMap::new()) {
                if let Transition::Warn { id, .. } = &t {
                    w.recorded(*id, 100 + i as u64, format!("warning at {i}"));
                }
                out.push((i as f64, t));
            }
        }
        out
    }

    #[test]
    fn a_container_that_becomes_at_risk_is_warned_at_once_and_cleared_after_calm() {
        let mut w = Warner::default();
        let samples = (0..3)
            .map(|_| snap_with(50, None, None))
            .chain((0..5).map(|_| snap_with(85, None, None)))
            .chain((0..40).map(|_| snap_with(40, None, None)));
        let t = run(&mut w, samples);
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(
            t[0],
            (3.0, Transition::Warn { id: 10, risks: vec![Risk::Headroom], hits_last_minute: 0, after_kill: None }),
            "within the sample"
        );
        assert!(matches!(t[1], (38.0, Transition::Clear { id: 10, seq: 103, since: 3.0, .. })), "{t:?}");
        assert!(w.active().is_empty());
    }

    #[test]
    fn no_warning_in_the_sample_of_a_kill_and_one_after_it_says_so() {
        let mut w = Warner::default();
        let at = |ws: u64, kills: u64| {
            let mut s = snap_with(ws, None, None);
            std::sync::Arc::make_mut(&mut s.containers)[0].oom_kills = Some(kills);
            s
        };
        // At risk in the very sample that carries a kill: no warning then.
        let t = run(&mut w, [at(50, 0), at(95, 1)]);
        assert!(t.is_empty(), "{t:?}");
        // Still at risk a sample later (what the kill did not free): warned, saying so.
        let t = w.observe(&at(95, 1), 2.0, &HashMap::new());
        assert_eq!(t, [Transition::Warn { id: 10, risks: vec![Risk::Headroom], hits_last_minute: 0, after_kill: Some(1.0) }]);
    }

    #[test]
    fn hovering_at_the_threshold_gives_one_warning_and_one_cleared() {
        let mut w = Warner::default();
        // 78% / 83% of the limit, alternating every 3 s for two minutes, then well below.
        let hover = (0..120).map(|i| snap_with(if (i / 3) % 2 == 0 { 83 } else { 78 }, None, None));
        let t = run(&mut w, hover.chain((0..40).map(|_| snap_with(30, None, None))));
        let warns = t.iter().filter(|(_, t)| matches!(t, Transition::Warn { .. })).count();
        let clears = t.iter().filter(|(_, t)| matches!(t, Transition::Clear { .. })).count();
        assert_eq!((warns, clears), (1, 1), "{t:?}");
        // And back at risk within REWARN_AFTER: under the same warning again, nothing said.
        let t = run(&mut w, (0..5).map(|_| snap_with(90, None, None)));
        assert!(t.is_empty(), "{t:?}");
        assert_eq!(w.active()[&10].seq, 100, "the earlier warning is in force again");
    }

    #[test]
    fn a_short_time_to_oom_warns_and_a_long_one_is_not_calm() {
        let mut w = Warner::default();
        // With most of its limit free a prediction is no risk (crate::risk's floor).
        assert!(run(&mut w, [snap_with(30, Some(120.0), None)]).is_empty());
        let t = run(&mut w, [snap_with(60, Some(120.0), None)]);
        assert_eq!(t[0].1, Transition::Warn { id: 10, risks: vec![Risk::TimeToOom], hits_last_minute: 0, after_kill: None });
        // 20 minutes to OOM: no longer at risk, but not calm either.
        let t = run(&mut w, (0..60).map(|_| snap_with(60, Some(1200.0), None)));
        assert!(t.is_empty(), "{t:?}");
    }

    #[test]
    fn limit_hits_rising_near_the_limit_warn_and_are_counted_over_a_minute() {
        let mut w = Warner::default();
        // Working set at 70% (headroom 30%: not at risk by headroom), hits rising.
        let t = run(&mut w, [snap_with(70, None, Some(5)), snap_with(70, None, Some(5)), snap_with(70, None, Some(9))]);
        assert_eq!(t, [(2.0, Transition::Warn { id: 10, risks: vec![Risk::LimitHits], hits_last_minute: 4, after_kill: None })]);
        // Hits rising with a small working set (page cache reclaimed at the limit) are not risk.
        let mut w = Warner::default();
        assert!(run(&mut w, [snap_with(20, None, Some(5)), snap_with(20, None, Some(50))]).is_empty());
    }

    #[test]
    fn the_node_wide_bound_keeps_a_storm_quiet_and_counts_it() {
        let mut w = Warner::default();
        let mut cs = vec![];
        for id in 0..(MAX_PER_MINUTE as u64 + 25) {
            let mut c = container(1000 + id, &format!("/c{id}"));
            c.limit_bytes = 100 * MIB;
            c.headroom_ratio = 0.05;
            c.limit_is_machine = false;
            cs.push(c);
        }
        let t = w.observe(&snapshot(0.0, cs.clone()), 0.0, &HashMap::new());
        assert_eq!((t.len(), w.suppressed), (MAX_PER_MINUTE, 25));
        assert!(w.observe(&snapshot(1.0, cs), 1.0, &HashMap::new()).is_empty(), "none again the next sample");
    }

    #[test]
    fn a_pods_limit_is_warned_for_the_container_not_again_for_the_pod() {
        let mut w = Warner::default();
        let mut pod = container(20, "/pod");
        let mut ctr = container(21, "/pod/ctr");
        for c in [&mut pod, &mut ctr] {
            c.limit_bytes = 100 * MIB;
            c.headroom_ratio = 0.1;
            c.limit_is_machine = false;
        }
        let mut s = snapshot(0.0, vec![pod, ctr]);
        std::sync::Arc::make_mut(&mut s.cgroups).get_mut(&21).unwrap().parent = Some(20);
        let t = w.observe(&s, 0.0, &HashMap::new());
        assert_eq!(t.len(), 1, "{t:?}");
        assert!(matches!(t[0], Transition::Warn { id: 21, .. }));
    }

    #[test]
    fn a_container_gone_is_forgotten() {
        let mut w = Warner::default();
        run(&mut w, [snap_with(90, None, None)]);
        assert_eq!(w.active().len(), 1);
        w.observe(&snapshot(5.0, vec![]), 5.0, &HashMap::new());
        assert!(w.active().is_empty() && w.tracks.is_empty());
    }
}
