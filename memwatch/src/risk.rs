//! "At risk of an OOM kill": the one definition memwatch has, its thresholds as named
//! constants and its words ([`describe`], [`Risk::describe`]). The warnings (`oom::warning`),
//! the fault-stack sampler ([`at_risk`]), `memwatch top` and the web view decide with it; the CLI
//! help and the docs read these constants, never copies of them.
//!
//! A container is at risk when one of these holds (and it has a limit of its own, not the
//! machine's):
//! - its headroom is under [`HEADROOM`] of its limit;
//! - its working set has grown steadily (after its start-up, through the last 30 s: see
//!   `crate::model::trend`), at that rate it reaches its limit within [`TIME_TO_OOM_SECONDS`],
//!   and its headroom is already under [`TIME_TO_OOM_HEADROOM`]: a start-up, a burst or a
//!   garbage collector's sawtooth is no trend, and a prediction made with most of the limit
//!   free is an extrapolation of more than the container has ever grown;
//! - its limit-hit counters rise (reclaim forced at the limit, throttling at `memory.high`)
//!   while its working set stays above [`LIMIT_HITS_WORKING_SET`] of its limit: it is
//!   reclaiming its own page cache to stay alive;
//! - for the sampler: it had an OOM kill in the last [`RECENT_KILL_SECONDS`], or its working
//!   set grows so steeply (start-up included) that it would reach its limit within
//!   [`STEEP_SECONDS`]: sampled early, the growth is sampled while it happens, not after.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::snapshot::{Container, Snapshot};

/// Headroom under this share of the limit puts a container at risk.
pub const HEADROOM: f64 = 0.2;
/// A time to OOM under this (seconds) puts a container at risk...
pub const TIME_TO_OOM_SECONDS: f64 = 600.0;
/// ...once its headroom is under this share of its limit.
pub const TIME_TO_OOM_HEADROOM: f64 = 0.5;
/// The sampler also counts a container whose raw growth would reach its limit within this
/// (seconds).
pub const STEEP_SECONDS: f64 = 120.0;
/// An OOM kill this recent (seconds) puts a container at risk (for the sampler).
pub const RECENT_KILL_SECONDS: f64 = 600.0;
/// Limit hits rising while the working set stays above this share of the limit put a
/// container at risk.
pub const LIMIT_HITS_WORKING_SET: f64 = 0.6;

/// Why a container is at risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Headroom under [`HEADROOM`] of the limit.
    Headroom,
    /// A time to OOM under [`TIME_TO_OOM_SECONDS`].
    TimeToOom,
    /// An OOM kill in the last [`RECENT_KILL_SECONDS`].
    RecentKill,
    /// Limit hits rising while the working set stays above [`LIMIT_HITS_WORKING_SET`] of the
    /// limit.
    LimitHits,
    /// Growing so steeply that the limit is under [`STEEP_SECONDS`] away (the sampler's only).
    Steep,
}

/// A share as a whole percentage: 0.2 → "20%".
fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// Seconds as minutes for people: 600 → "10 minutes".
fn minutes(secs: f64) -> String {
    let m = secs / 60.0;
    if m == 1.0 { "a minute".into() } else { format!("{m:.0} minutes") }
}

impl Risk {
    /// The condition in words with its threshold, as an event states it: "headroom under 20%
    /// of the limit".
    pub fn describe(self) -> String {
        match self {
            Risk::Headroom => format!("headroom under {} of the limit", percent(HEADROOM)),
            Risk::TimeToOom => format!("the limit under {} away at this rate", minutes(TIME_TO_OOM_SECONDS)),
            Risk::Steep => format!("growing steeply: the limit under {} away", minutes(STEEP_SECONDS)),
            Risk::RecentKill => format!("a kill in the last {}", minutes(RECENT_KILL_SECONDS)),
            Risk::LimitHits => format!("limit hits rising with the working set above {} of the limit", percent(LIMIT_HITS_WORKING_SET)),
        }
    }
}

/// The whole definition in one sentence's worth of words, for help texts and docs.
pub fn describe() -> String {
    format!(
        "headroom under {} of its limit; a steady growth (after its start-up, through the last 30 s) that reaches the limit within \
         {} once headroom is under {}; or limit hits rising while its working set stays above {} of its limit. The fault-stack \
         sampler also counts a container with an OOM kill in the last {}, or one growing so steeply that its limit is under {} away",
        percent(HEADROOM),
        minutes(TIME_TO_OOM_SECONDS),
        percent(TIME_TO_OOM_HEADROOM),
        percent(LIMIT_HITS_WORKING_SET),
        minutes(RECENT_KILL_SECONDS),
        minutes(STEEP_SECONDS)
    )
}

/// The conditions under which a container is at risk of an OOM kill that hold for it, most
/// pressing first (`hits_rising`: its limit-hit counters rose since the sample before).
pub fn risks(c: &Container, hits_rising: bool) -> Vec<Risk> {
    let mut out = Vec::new();
    if c.limit_is_machine || c.limit_bytes == 0 {
        return out;
    }
    if c.headroom_ratio < HEADROOM {
        out.push(Risk::Headroom);
    }
    if c.time_to_oom_seconds.is_some_and(|t| t < TIME_TO_OOM_SECONDS) && c.headroom_ratio < TIME_TO_OOM_HEADROOM {
        out.push(Risk::TimeToOom);
    }
    if hits_rising && c.working_set_bytes as f64 >= LIMIT_HITS_WORKING_SET * c.limit_bytes as f64 {
        out.push(Risk::LimitHits);
    }
    out
}

/// Why the fault-stack sampler counts a container, if it does: [`risks`], an OOM kill in the
/// last [`RECENT_KILL_SECONDS`], or a steep growth.
pub fn risk(c: &Container, last_kill: Option<f64>, now: f64) -> Option<Risk> {
    if let Some(r) = risks(c, false).first() {
        return Some(*r);
    }
    if c.limit_is_machine || c.limit_bytes == 0 {
        return None;
    }
    if last_kill.is_some_and(|t| now - t < RECENT_KILL_SECONDS) {
        return Some(Risk::RecentKill);
    }
    if c.growth_bytes_per_second.is_some_and(|r| r > 0.0 && c.headroom_bytes as f64 / r < STEEP_SECONDS) {
        return Some(Risk::Steep);
    }
    None
}

/// The memory cgroups (ids) at risk in a snapshot, with the containers below them (a pod at
/// its limit faults in its containers' cgroups, where the kernel side counts), at most
/// [`memwatch_common::STACK_CGROUPS`], the most pressed first. Containers under a warning
/// (`warned`) are at risk until it clears.
pub fn at_risk(snap: &Snapshot, last_kill: &HashMap<u64, f64>, warned: impl Fn(u64) -> bool) -> HashSet<u64> {
    let now = crate::unix_seconds(snap.taken_at);
    let mut risky: Vec<&Container> =
        snap.containers.iter().filter(|c| warned(c.id) || risk(c, last_kill.get(&c.id).copied(), now).is_some()).collect();
    if risky.is_empty() {
        return HashSet::new();
    }
    risky.sort_by(|a, b| a.headroom_ratio.total_cmp(&b.headroom_ratio));
    let max = memwatch_common::STACK_CGROUPS as usize;
    let mut ids = HashSet::new();
    for r in risky {
        let prefix = format!("{}/", r.cgroup.trim_end_matches('/'));
        for c in std::iter::once(r).chain(snap.containers.iter().filter(|c| c.cgroup.starts_with(&prefix))) {
            if ids.len() < max {
                ids.insert(c.id);
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_carry_the_constants() {
        assert_eq!(Risk::Headroom.describe(), "headroom under 20% of the limit");
        assert_eq!(Risk::TimeToOom.describe(), "the limit under 10 minutes away at this rate");
        assert_eq!(Risk::LimitHits.describe(), "limit hits rising with the working set above 60% of the limit");
        assert!(describe().starts_with("headroom under 20% of its limit; a steady growth"), "{}", describe());
    }

    fn container(limit: u64, ws: u64) -> Container {
        let mut c = crate::snapshot::fixture::container(1, "/c");
        (c.limit_bytes, c.working_set_bytes, c.headroom_bytes) = (limit, ws, limit - ws);
        c.headroom_ratio = (limit - ws) as f64 / limit as f64;
        c
    }

    #[test]
    fn a_time_to_oom_counts_only_below_the_floor_and_steep_growth_only_for_the_sampler() {
        const MIB: u64 = 1 << 20;
        let mut roomy = container(512 * MIB, 13 * MIB);
        roomy.time_to_oom_seconds = Some(136.0);
        assert!(risks(&roomy, false).is_empty(), "a prediction with 98% of the limit free is no risk");
        let mut half = container(512 * MIB, 300 * MIB);
        half.time_to_oom_seconds = Some(136.0);
        assert_eq!(risks(&half, false), [Risk::TimeToOom]);
        let mut steep = container(512 * MIB, 13 * MIB);
        steep.growth_bytes_per_second = Some(8.0 * MIB as f64);
        assert!(risks(&steep, false).is_empty(), "no warning for a steep start");
        assert_eq!(risk(&steep, None, 0.0), Some(Risk::Steep), "but the sampler starts");
    }
}
