//! The last word of a kill: the limit that would have held it, by `memwatch recommend`'s rule
//! ([`crate::rightsize`]) applied to the kill alone: the need was above the limit it was killed
//! at, so at least 1.25 times that, and for a JVM with a fixed heap what its own configuration
//! takes; with the runtime setting for that limit. One kill is one point: `memwatch recommend`
//! weighs the container's history.

use super::{Finding, ReasonKind, h, reason};
use crate::{
    oom::event::{Constraint, Event, Reason},
    rightsize::{self, Evidence, Runtime},
};

pub struct LimitThatHolds;

impl Finding for LimitThatHolds {
    fn find(&self, e: &Event, limit: Option<u64>) -> Vec<Reason> {
        let (Some(limit), Constraint::Cgroup) = (limit, e.constraint) else { return vec![] };
        let Some(a) = &e.at_kill else { return vec![] };
        let runtime = rightsize::runtime_of(&e.runtimes, Some(limit), e.machine_memory_bytes.unwrap_or(limit));
        let own = a.usage_bytes.saturating_sub(a.file_bytes.unwrap_or(0));
        let evidence = Evidence {
            source: "this kill".into(),
            nonreclaimable: vec![(e.time, own)],
            kills: 1,
            kill_limit_bytes: Some(limit),
            limit_bytes: Some(limit),
            runtime,
            ..Evidence::default()
        };
        let r = rightsize::recommend(&evidence);
        let Some(holds) = r.limit_bytes else { return vec![] };
        let why = match runtime {
            Some(Runtime::Jvm { fixed: true, heap_max, .. }) if holds > (limit as f64 * rightsize::KILL_BUMP) as u64 + rightsize::ROUND => {
                format!("what its JVM's own configuration takes: a heap of up to {} by -Xmx, metaspace and the rest", h(heap_max))
            }
            _ => format!(
                "{} × the {} it was killed at, rounded up: its need was above that, by how much no sample can say",
                rightsize::KILL_BUMP,
                h(limit)
            ),
        };
        let setting = r.runtime_setting.map(|s| format!(", with {}={} to match", s.name, s.value)).unwrap_or_default();
        vec![reason(
            ReasonKind::LimitThatHolds,
            format!(
                "A limit of about {} would have held this ({why}){setting}, unless it kept growing; `memwatch recommend` weighs its whole \
                 history.",
                h(holds)
            ),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oom::event::tests::event;

    #[test]
    fn a_kill_at_its_limit_says_the_limit_that_would_have_held() {
        let mut e = event(1, 10);
        e.constraint = Constraint::Cgroup;
        let limit = 256 << 20;
        let t = &LimitThatHolds.find(&e, Some(limit));
        let Some(r) = t.first() else { return assert!(e.at_kill.is_none(), "an event with its state at the kill says one") };
        assert_eq!(r.kind, ReasonKind::LimitThatHolds);
        assert!(r.text.starts_with("A limit of about 320.0 MiB would have held this (1.25 × the 256.0 MiB it was killed at"), "{}", r.text);
        e.constraint = Constraint::Machine;
        assert!(LimitThatHolds.find(&e, Some(limit)).is_empty(), "not for a machine-wide OOM");
    }
}
