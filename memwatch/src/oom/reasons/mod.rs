//! Why a kill happened and what to change, in plain words and as data: derived from an
//! event's facts alone (pure functions, tested on hand-made events), so the journal, the API,
//! `memwatch events` and the log line all say the same thing.
//!
//! Each [`Finding`] looks at one side of an event and gives its reasons; [`FINDINGS`] lists
//! them in the order an explanation gives them (most telling first): which limit
//! ([`limit`]), whether the whole container was killed at once ([`group`]), what filled the
//! memory ([`composition`], one table row per part), whether the process killed was the one
//! that grew ([`grower`]), which code faulted the memory in ([`stacks`]), what each runtime's settings meant ([`runtimes`]) and each data store's ([`apps`]), who survived ([`survivor`]), how much
//! the samples can say ([`young`]), and last the limit that would have held ([`holds`]). A kill only the kernel counted has one reason of its own
//! ([`missed`]).

pub mod apps;
pub mod at_risk;
pub mod composition;
pub mod group;
pub mod grower;
pub mod holds;
pub mod kind;
pub mod limit;
pub mod missed;
pub mod runtimes;
pub mod stacks;
pub mod survivor;
pub mod young;

pub use kind::{ReasonKind, Role};

use super::event::{Event, Reason, Source};

/// One side of an event, in plain words.
pub trait Finding: Sync {
    /// The reasons this finding gives for `e`, given the limit that was hit (when known).
    fn find(&self, e: &Event, limit: Option<u64>) -> Vec<Reason>;
}

/// Every finding for a kill the probe saw, in the order their reasons are given.
pub static FINDINGS: &[&dyn Finding] = &[
    &limit::WhichLimit,
    &group::OomGroup,
    &composition::Composition,
    &grower::GrowerNotVictim,
    &stacks::GrowthStack,
    &runtimes::Runtimes,
    &apps::Apps,
    &survivor::Survivor,
    &young::Young,
    &holds::LimitThatHolds,
];

/// Every finding for a warning (or its clearing), in order: why it is at risk, which code grew,
/// what its runtimes' and data stores' settings mean.
pub static WARNING_FINDINGS: &[&dyn Finding] = &[&at_risk::AtRisk, &stacks::GrowthStack, &runtimes::Runtimes, &apps::Apps];

/// The findings for a warning or a cleared event.
pub fn warning_reasons(e: &Event) -> Vec<Reason> {
    if e.kind == super::event::EventKind::Cleared {
        return at_risk::AtRisk.find(e, None);
    }
    let limit = e.warning.as_ref().map(|w| w.state.limit_bytes).filter(|l| *l > 0);
    WARNING_FINDINGS.iter().flat_map(|f| f.find(e, limit)).collect()
}

/// A reason of `kind` saying `text`.
pub fn reason(kind: ReasonKind, text: String) -> Reason {
    Reason { kind, text }
}

/// Bytes for people.
pub(crate) fn h(b: u64) -> String {
    crate::units::human(b as f64)
}

/// The limit the kill was about: the kernel's at the kill, else the last sample's.
pub fn limit_hit(e: &Event) -> Option<u64> {
    e.at_kill.as_ref().and_then(|a| a.limit_bytes).or_else(|| e.before.as_ref().map(|b| b.limit_bytes).filter(|l| *l > 0))
}

/// The findings for one event, most telling first.
pub fn reasons(e: &Event) -> Vec<Reason> {
    if e.source == Source::KernelCounter {
        return missed::Missed.find(e, None);
    }
    if !e.is_kill() {
        return warning_reasons(e);
    }
    let limit = limit_hit(e);
    FINDINGS.iter().flat_map(|f| f.find(e, limit)).collect()
}

/// One or two sentences for a log line: what filled the memory (else the first reason), and
/// beside it the first advice or scope that is not the container's own limit.
pub fn summary(reasons: &[Reason]) -> String {
    let first = reasons.iter().find(|r| r.kind.role() == Role::Filled).or_else(|| reasons.first());
    let second = reasons.iter().find(|r| Some(*r) != first && r.kind.is_telling());
    first.into_iter().chain(second).map(|r| r.text.as_str()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::oom::event::{AtKill, Constraint, Growth, GrowthField, ProcessGrowth, Recent, Victim, tests::event};

    pub(crate) const MIB: u64 = 1 << 20;

    pub(crate) fn at(usage: u64, limit: u64, anon: u64, file: u64, shmem: u64, kernel: u64) -> AtKill {
        AtKill {
            cgroup: "/c10".into(),
            cgroup_id: 10,
            usage_bytes: usage,
            limit_bytes: Some(limit),
            swap_bytes: None,
            anon_bytes: Some(anon),
            file_bytes: Some(file),
            shmem_bytes: Some(shmem),
            kernel_bytes: Some(kernel),
            missing: vec![],
            parts_read_after_ms: Some(3),
        }
    }

    pub(crate) fn kinds(r: &[Reason]) -> Vec<ReasonKind> {
        r.iter().map(|r| r.kind.clone()).collect()
    }

    use ReasonKind as K;

    #[test]
    fn anonymous_growth_by_a_named_process() {
        let mut e = event(1, 10);
        e.at_kill = Some(at(32 * MIB, 32 * MIB, 31 * MIB, 0, 0, MIB));
        e.recent = Some(Recent {
            window_seconds: 0.3,
            first_seen_seconds_before: None,
            younger_than_a_sample: true,
            growth: vec![Growth { what: GrowthField::Anon, from_bytes: 0, to_bytes: 31 * MIB, delta_bytes: 31 * MIB as i64 }],
            processes: vec![ProcessGrowth {
                pid: 101,
                comm: "hog".into(),
                from_rss_bytes: None,
                to_rss_bytes: 31 * MIB,
                delta_bytes: 31 * MIB as i64,
                recent_delta_bytes: None,
                recent_seconds: None,
            }],
        });
        let r = reasons(&e);
        assert_eq!(kinds(&r), [K::Limit, K::AnonGrowth, K::Young, K::LimitThatHolds]);
        assert!(r[3].text.starts_with("A limit of about 40.0 MiB would have held this"), "{}", r[3].text);
        assert!(r[0].text.contains("32.0 MiB used of 32.0 MiB"), "{}", r[0].text);
        assert!(r[1].text.contains("hog (pid 101)") && !r[1].text.contains("grew"), "no window, no growth: {}", r[1].text);
        assert!(r[2].text.contains("never sampled"));
        // Sampled 20 s before: the growth over the window is said.
        let recent = e.recent.as_mut().unwrap();
        (recent.window_seconds, recent.younger_than_a_sample) = (20.0, false);
        recent.processes[0].from_rss_bytes = Some(MIB);
        let r = reasons(&e);
        assert!(r[1].text.contains("hog (pid 101) grew from 1.0 MiB to 31.0 MiB in the last 20 s"), "{}", r[1].text);
    }

    #[test]
    fn tmpfs_page_cache_and_kernel_memory() {
        let mut e = event(1, 10);
        e.at_kill = Some(at(64 * MIB, 64 * MIB, 8 * MIB, 17 * MIB, 40 * MIB, 0));
        assert_eq!(kinds(&reasons(&e)), [K::Limit, K::Shmem, K::PageCache, K::LimitThatHolds]);
        e.at_kill = Some(at(64 * MIB, 64 * MIB, 10 * MIB, 0, 0, 50 * MIB));
        assert_eq!(kinds(&reasons(&e)), [K::Limit, K::Kernel, K::LimitThatHolds]);
    }

    #[test]
    fn inherited_limit_and_machine() {
        let mut e = event(1, 10);
        e.constrained_by = Some("/pod".into());
        let r = reasons(&e);
        assert_eq!(r[0].kind, K::InheritedLimit);
        assert!(r[0].text.contains("/pod"));
        e.constraint = Constraint::Machine;
        e.constrained_by = None;
        assert_eq!(reasons(&e)[0].kind, K::Machine);
    }

    #[test]
    fn the_summary_is_what_filled_it_and_the_advice() {
        let mut e = event(1, 10);
        e.at_kill = Some(at(64 * MIB, 64 * MIB, 60 * MIB, MIB, 0, MIB));
        e.go = vec![runtimes::go::tests::process(e.victim.as_ref().unwrap().pid, None)];
        let s = summary(&reasons(&e));
        assert!(s.starts_with("Anonymous memory"), "{s}");
        assert!(s.contains("set GOMEMLIMIT≈58MiB"), "{s}");
        assert_eq!(summary(&[]), "");
        // A kind from a newer release is neither what filled it nor advice.
        let newer = [reason(K::Other("newer".into()), "x".into()), reason(K::Machine, "m".into())];
        assert_eq!(summary(&newer), "x m");
    }

    #[test]
    fn without_at_kill_state_the_victim_says_what_it_can() {
        let mut e = event(1, 10);
        e.victim = Some(Victim {
            pid: 5,
            comm: "x".into(),
            vsz_bytes: None,
            rss_bytes: Some(3 * MIB),
            anon_rss_bytes: Some(3 * MIB),
            oom_score_adj: None,
            role: None,
        });
        let r = reasons(&e);
        assert_eq!(kinds(&r), [K::Limit, K::AnonGrowth]);
        let mut missed = event(1, 10);
        missed.source = Source::KernelCounter;
        assert_eq!(kinds(&reasons(&missed)), [K::Missed]);
    }
}
