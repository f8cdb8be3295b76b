//! A warning's own finding: why the container is at risk, how soon, and who grows; a
//! `cleared`'s: that it no longer is, and how long it was.

use super::{Finding, ReasonKind, h, reason};
use crate::{
    oom::event::{Event, EventKind, Reason},
    units::human_secs,
};

pub struct AtRisk;

impl Finding for AtRisk {
    fn find(&self, e: &Event, _: Option<u64>) -> Vec<Reason> {
        let Some(w) = &e.warning else { return vec![] };
        let s = &w.state;
        let share = if s.limit_bytes > 0 { 100.0 * s.headroom_bytes as f64 / s.limit_bytes as f64 } else { 0.0 };
        let state = format!("working set {} of the {} limit (headroom {share:.0}%)", h(s.working_set_bytes), h(s.limit_bytes));
        if e.kind == EventKind::Cleared {
            let lasted = w
                .warned_for_seconds
                .map(|d| format!("; warning {} lasted {}", w.warning_seq.unwrap_or(0), human_secs(d)))
                .unwrap_or_default();
            return vec![reason(ReasonKind::Cleared, format!("No longer at risk of an OOM kill: {state}{lasted}."))];
        }
        let mut text = format!("At risk of an OOM kill: {state}");
        if let (Some(rate), Some(t)) = (w.growth_bytes_per_second, w.time_to_limit_seconds) {
            text += &format!(", growing {}/s: at the limit in about {}", h(rate as u64), human_secs(t));
        }
        if w.limit_hits_last_minute > 0 {
            text += &format!("; {} limit hits in the last minute (reclaim forced at the limit)", w.limit_hits_last_minute);
        }
        let why: Vec<String> = w.risks.iter().map(|r| r.describe()).collect();
        if !why.is_empty() {
            text += &format!(" ({})", why.join("; "));
        }
        text.push('.');
        if let Some(g) = e.recent.as_ref().and_then(|r| r.processes.first().map(|g| (g, r.window_seconds.max(1.0)))) {
            let (g, secs) = g;
            text += &match g.from_rss_bytes {
                Some(from) => {
                    format!(" {} (pid {}) grew from {} to {} in the last {secs:.0} s.", g.comm, g.pid, h(from), h(g.to_rss_bytes))
                }
                None => format!(" {} (pid {}) appeared in the last {secs:.0} s and reached {}.", g.comm, g.pid, h(g.to_rss_bytes)),
            };
        }
        vec![reason(ReasonKind::AtRisk, text)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        oom::event::{MemState, ProcessGrowth, Recent, Warning, tests::event},
        risk::Risk,
    };

    const MIB: u64 = 1 << 20;

    fn warning(kind: EventKind) -> Event {
        let mut e = event(7, 10);
        e.kind = kind;
        e.victim = None;
        e.warning = Some(Warning {
            risks: vec![Risk::Headroom, Risk::TimeToOom],
            state: MemState { usage_bytes: 110 * MIB, working_set_bytes: 108 * MIB, limit_bytes: 128 * MIB, headroom_bytes: 20 * MIB },
            growth_bytes_per_second: Some(4.0 * MIB as f64),
            time_to_limit_seconds: Some(5.0),
            limit_hits_last_minute: 3,
            warning_seq: (kind == EventKind::Cleared).then_some(4),
            warned_for_seconds: (kind == EventKind::Cleared).then_some(150.0),
        });
        e.recent = Some(Recent {
            window_seconds: 30.0,
            first_seen_seconds_before: Some(60.0),
            younger_than_a_sample: false,
            growth: vec![],
            processes: vec![ProcessGrowth {
                pid: 42,
                comm: "grower".into(),
                from_rss_bytes: Some(10 * MIB),
                to_rss_bytes: 100 * MIB,
                delta_bytes: 90 * MIB as i64,
            }],
        });
        e
    }

    #[test]
    fn a_warning_says_how_close_how_soon_and_who_grows() {
        let r = AtRisk.find(&warning(EventKind::Warning), None);
        assert_eq!(r.len(), 1);
        let t = &r[0].text;
        assert!(t.starts_with("At risk of an OOM kill: working set 108.0 MiB of the 128.0 MiB limit (headroom 16%)"), "{t}");
        assert!(t.contains("growing 4.0 MiB/s: at the limit in about 5s"), "{t}");
        assert!(t.contains("3 limit hits in the last minute"), "{t}");
        assert!(t.contains("grower (pid 42) grew from 10.0 MiB to 100.0 MiB in the last 30 s."), "{t}");
    }

    #[test]
    fn a_cleared_says_how_long_the_warning_lasted() {
        let r = AtRisk.find(&warning(EventKind::Cleared), None);
        assert_eq!(r[0].kind, ReasonKind::Cleared);
        assert!(r[0].text.starts_with("No longer at risk of an OOM kill: working set 108.0 MiB"), "{}", r[0].text);
        assert!(r[0].text.ends_with("warning 4 lasted 2m30s."), "{}", r[0].text);
        assert!(AtRisk.find(&event(1, 10), None).is_empty(), "a kill has none");
    }
}
