//! Who grew versus who died: the kernel kills the process it scores worst (the largest, by and
//! large), which need not be the one whose growth filled the container.

use super::{Finding, ReasonKind, h, reason};
use crate::oom::event::{Event, Reason};

pub struct GrowerNotVictim;

impl Finding for GrowerNotVictim {
    fn find(&self, e: &Event, _: Option<u64>) -> Vec<Reason> {
        let (Some(v), Some(r)) = (&e.victim, &e.recent) else { return vec![] };
        // The one growing now (its growth since the last look, not since it appeared).
        let Some(g) = r.processes.first().filter(|g| g.pid != v.pid && g.growing() > 0) else { return vec![] };
        // The victim itself grew about as much: it is not the bystander this is about.
        let victim_grew = r.processes.iter().find(|p| p.pid == v.pid).map_or(0, |p| p.growing());
        if victim_grew.saturating_mul(2) > g.growing() {
            return vec![];
        }
        let secs = r.window_seconds.max(1.0);
        let grew = match (g.from_rss_bytes, g.recent_delta_bytes, g.recent_seconds) {
            (Some(from), _, _) => format!("grew from {} to {} in the last {secs:.0} s", h(from), h(g.to_rss_bytes)),
            (None, Some(d), Some(s)) if d < g.to_rss_bytes as i64 => {
                format!("appeared in the last {secs:.0} s and grew by {} in the last {s:.0} s, to {}", h(d as u64), h(g.to_rss_bytes))
            }
            _ => format!("appeared in the last {secs:.0} s and reached {}", h(g.to_rss_bytes)),
        };
        let size = v.rss_bytes.map(|b| format!(", {}", h(b))).unwrap_or_default();
        vec![reason(
            ReasonKind::GrowerNotVictim,
            format!(
                "The kernel killed {} (pid {}{size}), the process it scored worst, which was not the one that grew: {} (pid {}) {grew}. \
                 Look at the one that grew; the one killed may be the largest, not the cause.",
                v.comm, v.pid, g.comm, g.pid
            ),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oom::event::{ProcessGrowth, Recent, tests::event};

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_grower_and_the_victim_in_one_sentence() {
        let mut e = event(1, 10);
        let v = e.victim.as_mut().unwrap();
        (v.pid, v.comm, v.rss_bytes) = (100, "steady".into(), Some(150 * MIB));
        let p = |pid, comm: &str, from, to| ProcessGrowth {
            pid,
            comm: comm.into(),
            from_rss_bytes: from,
            to_rss_bytes: to,
            delta_bytes: to as i64 - from.unwrap_or(0) as i64,
            recent_delta_bytes: None,
            recent_seconds: None,
        };
        e.recent = Some(Recent {
            window_seconds: 4.0,
            first_seen_seconds_before: Some(30.0),
            younger_than_a_sample: false,
            growth: vec![],
            processes: vec![p(200, "hog", None, 105 * MIB), p(100, "steady", Some(150 * MIB), 150 * MIB + 4096)],
        });
        let r = GrowerNotVictim.find(&e, None);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].text,
            "The kernel killed steady (pid 100, 150.0 MiB), the process it scored worst, which was not the one that grew: hog (pid 200) \
             appeared in the last 4 s and reached 105.0 MiB. Look at the one that grew; the one killed may be the largest, not the cause."
        );
        // The victim grew: nothing to say.
        e.recent.as_mut().unwrap().processes.swap(0, 1);
        e.recent.as_mut().unwrap().processes[0] = p(100, "steady", Some(10 * MIB), 150 * MIB);
        assert!(GrowerNotVictim.find(&e, None).is_empty());
    }

    /// The case seen in the field: `steady` allocated 150 MiB in its first second and held
    /// still; `grower` started 2 s later and grew 111 MiB in 3 s; the kernel killed `steady`.
    /// Both appeared within the window: only the growth since the last look tells them apart.
    #[test]
    fn a_young_victim_that_held_still_is_not_the_grower() {
        let mut e = event(1, 10);
        let v = e.victim.as_mut().unwrap();
        (v.pid, v.comm, v.rss_bytes) = (100, "steady".into(), Some(150 * MIB));
        let young = |pid, comm: &str, to: u64, recent: u64| ProcessGrowth {
            pid,
            comm: comm.into(),
            from_rss_bytes: None,
            to_rss_bytes: to,
            delta_bytes: to as i64,
            recent_delta_bytes: Some(recent as i64),
            recent_seconds: Some(4.0),
        };
        e.recent = Some(Recent {
            window_seconds: 7.0,
            first_seen_seconds_before: Some(60.0),
            younger_than_a_sample: false,
            growth: vec![],
            // As explain::recent ranks them: by their growth since the last look.
            processes: vec![young(200, "grower", 111 * MIB, 111 * MIB), young(100, "steady", 151 * MIB, MIB)],
        });
        let r = GrowerNotVictim.find(&e, None);
        assert_eq!(r.len(), 1, "{:?}", e.recent);
        assert!(
            r[0].text.contains("which was not the one that grew: grower (pid 200) appeared in the last 7 s and reached 111.0 MiB"),
            "{}",
            r[0].text
        );
    }
}
