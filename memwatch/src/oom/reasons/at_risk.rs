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
        match w.after_kill_seconds {
            Some(after) => text += &format!(" {}", still_held(e, after)),
            None => text += &tmpfs_held(e),
        }
        vec![reason(ReasonKind::AtRisk, text)]
    }
}

/// Before any kill, when tmpfs holds most of the working set: no kill will free it, which the
/// person reading the warning needs to know before the kernel picks a victim.
fn tmpfs_held(e: &Event) -> String {
    let w = e.warning.as_ref().expect("a warning's");
    let ws = w.state.working_set_bytes.max(1);
    match &w.parts {
        Some(p) if p.shmem_bytes as f64 >= 0.5 * ws as f64 => format!(
            " tmpfs and shared memory hold {} ({:.0}% of its working set): files in a tmpfs stay charged to the container until they \
             are deleted, and killing a process does not free them.",
            h(p.shmem_bytes),
            100.0 * p.shmem_bytes as f64 / ws as f64
        ),
        _ => String::new(),
    }
}

/// After a kill, what still holds the container's memory: the kill freed its victim's
/// anonymous memory, and what is left is what no kill frees.
fn still_held(e: &Event, after: f64) -> String {
    let w = e.warning.as_ref().expect("a warning's");
    let ws = w.state.working_set_bytes.max(1);
    let killed = format!("It was OOM-killed {} ago and is still at risk:", human_secs(after));
    let Some(p) = &w.parts else { return format!("{killed} the kill did not free enough.") };
    let share = |b: u64| 100.0 * b as f64 / ws as f64;
    if p.shmem_bytes as f64 >= 0.25 * ws as f64 {
        return format!(
            "{killed} tmpfs and shared memory hold {} ({:.0}% of its working set). Files in a tmpfs (/dev/shm, an emptyDir with \
             medium Memory) outlive the processes that wrote them and stay charged to the container until they are deleted: no kill \
             frees them, so the next process to allocate is killed too; delete the files, or size the tmpfs below the limit.",
            h(p.shmem_bytes),
            share(p.shmem_bytes)
        );
    }
    let grower = e.top_processes.first().map(|t| format!(", {} (pid {}) holding {}", t.comm, t.pid, h(t.rss_bytes))).unwrap_or_default();
    if p.anon_bytes >= p.file_bytes {
        return format!(
            "{killed} anonymous memory, {} ({:.0}% of its working set), is held by processes still running{grower}.",
            h(p.anon_bytes),
            share(p.anon_bytes)
        );
    }
    format!(
        "{killed} page cache holds {} ({:.0}% of its working set): the kernel reclaims it as the container needs memory, unless it is \
         in active use.",
        h(p.file_bytes),
        share(p.file_bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        oom::event::{MemState, Parts, ProcessGrowth, Recent, Warning, tests::event},
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
            after_kill_seconds: None,
            parts: Some(Parts { anon_bytes: 100 * MIB, file_bytes: 6 * MIB, shmem_bytes: 2 * MIB, kernel_bytes: None }),
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
                recent_delta_bytes: None,
                recent_seconds: None,
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
    fn a_warning_after_a_kill_says_what_still_holds_the_memory() {
        let mut e = warning(EventKind::Warning);
        let w = e.warning.as_mut().unwrap();
        w.after_kill_seconds = Some(12.0);
        w.parts = Some(Parts { anon_bytes: 2 * MIB, file_bytes: MIB, shmem_bytes: 104 * MIB, kernel_bytes: None });
        let t = &AtRisk.find(&e, None)[0].text;
        assert!(t.contains("It was OOM-killed 12s ago and is still at risk: tmpfs and shared memory hold 104.0 MiB (96%"), "{t}");
        assert!(t.contains("no kill frees them"), "{t}");
    }

    #[test]
    fn a_warning_where_tmpfs_holds_most_says_no_kill_frees_it() {
        let mut e = warning(EventKind::Warning);
        let t = &AtRisk.find(&e, None)[0].text;
        assert!(!t.contains("tmpfs"), "anonymous memory holds this one: {t}");
        e.warning.as_mut().unwrap().parts =
            Some(Parts { anon_bytes: 2 * MIB, file_bytes: MIB, shmem_bytes: 100 * MIB, kernel_bytes: None });
        let t = &AtRisk.find(&e, None)[0].text;
        assert!(t.contains("tmpfs and shared memory hold 100.0 MiB (93% of its working set)"), "{t}");
        assert!(!t.contains("OOM-killed"), "{t}");
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
