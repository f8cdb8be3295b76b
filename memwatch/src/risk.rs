//! "At risk of an OOM kill": the one definition memwatch has, its thresholds as named
//! constants and its words ([`describe`], [`Risk::describe`]). The warnings (`oom::warning`),
//! the fault-stack sampler ([`at_risk`]), `memwatch top` and the web view decide with it; the CLI
//! help and the docs read these constants, never copies of them.
//!
//! A container is at risk when one of these holds (and it has a limit of its own, not the
//! machine's):
//! - its headroom is under [`HEADROOM`] of its limit;
//! - at its working set's growth over the last minute it reaches its limit within
//!   [`TIME_TO_OOM_SECONDS`];
//! - its limit-hit counters rise (reclaim forced at the limit, throttling at `memory.high`)
//!   while its working set stays above [`LIMIT_HITS_WORKING_SET`] of its limit: it is
//!   reclaiming its own page cache to stay alive;
//! - for the sampler: it had an OOM kill in the last [`RECENT_KILL_SECONDS`].

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::snapshot::{Container, Snapshot};

/// Headroom under this share of the limit puts a container at risk.
pub const HEADROOM: f64 = 0.2;
/// A time to OOM under this (seconds) puts a container at risk.
pub const TIME_TO_OOM_SECONDS: f64 = 600.0;
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
            Risk::RecentKill => format!("a kill in the last {}", minutes(RECENT_KILL_SECONDS)),
            Risk::LimitHits => format!("limit hits rising with the working set above {} of the limit", percent(LIMIT_HITS_WORKING_SET)),
        }
    }
}

/// The whole definition in one sentence's worth of words, for help texts and docs.
pub fn describe() -> String {
    format!(
        "headroom under {} of its limit, a time to OOM under {}, limit hits rising while its working set stays above {} of its \
         limit, or an OOM kill in the last {}",
        percent(HEADROOM),
        minutes(TIME_TO_OOM_SECONDS),
        percent(LIMIT_HITS_WORKING_SET),
        minutes(RECENT_KILL_SECONDS)
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
    if c.time_to_oom_seconds.is_some_and(|t| t < TIME_TO_OOM_SECONDS) {
        out.push(Risk::TimeToOom);
    }
    if hits_rising && c.working_set_bytes as f64 >= LIMIT_HITS_WORKING_SET * c.limit_bytes as f64 {
        out.push(Risk::LimitHits);
    }
    out
}

/// Why a container is at risk, if it is: [`risks`], or an OOM kill in the last
/// [`RECENT_KILL_SECONDS`].
pub fn risk(c: &Container, last_kill: Option<f64>, now: f64) -> Option<Risk> {
    if let Some(r) = risks(c, false).first() {
        return Some(*r);
    }
    if last_kill.is_some_and(|t| now - t < RECENT_KILL_SECONDS) && !c.limit_is_machine && c.limit_bytes > 0 {
        return Some(Risk::RecentKill);
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
        assert!(describe().starts_with("headroom under 20% of its limit, a time to OOM under 10 minutes"), "{}", describe());
    }
}
