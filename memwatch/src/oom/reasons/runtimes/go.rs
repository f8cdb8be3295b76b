//! Go's advice on a kill or a warning: GOMEMLIMIT against the container's limit, from the
//! settings `crate::runtime::go` read from each Go program's environment.

use crate::{
    oom::{
        event::{Event, GoProcess, Reason},
        reasons::{ReasonKind, h, reason},
    },
    runtime::go::{GOMEMLIMIT_SHARE, Settings, units},
};
use units::go_mib;

/// Go's advice for every Go program of an event.
pub fn advise(e: &Event, limit: Option<u64>) -> Vec<Reason> {
    e.go.iter().filter_map(|g| one(g, limit, e)).collect()
}

/// An event's record of a Go program from its settings.
pub fn process(pid: u32, comm: &str, s: Settings) -> GoProcess {
    GoProcess {
        pid,
        comm: comm.to_string(),
        gomemlimit_bytes: s.gomemlimit.as_deref().and_then(units::go_byte_count),
        gomemlimit: s.gomemlimit,
        gogc: s.gogc,
        limit_set_in_code: None,
    }
}

/// The Go runtime's view of the limit, for one Go program.
fn one(g: &GoProcess, limit: Option<u64>, e: &Event) -> Option<Reason> {
    let who = format!("{} (pid {})", g.comm, g.pid);
    let in_code = "A limit set in code with debug.SetMemoryLimit cannot be seen from outside the process; if the program sets one, that \
                   one applies.";
    let gogc_off = g.gogc.as_deref() == Some("off");
    let limit = limit?;
    let advice = (limit as f64 * GOMEMLIMIT_SHARE) as u64;
    // Heap-driven: this program is the victim or holds most of the anonymous memory.
    // (Before a kill, in a warning: this program is the one growing most.)
    let heap_driven = e.victim.as_ref().is_some_and(|v| v.pid == g.pid)
        || e.at_kill.as_ref().is_some_and(|a| a.anon_bytes.unwrap_or(0) as f64 >= 0.5 * a.usage_bytes as f64)
        || (!e.is_kill() && e.recent.as_ref().and_then(|r| r.processes.first()).is_some_and(|p| p.pid == g.pid));
    match (g.gomemlimit.as_deref(), g.gomemlimit_bytes) {
        (None, _) | (Some(_), None) if heap_driven => Some(reason(
            ReasonKind::GoGomemlimitUnset,
            format!(
                "{who} is a Go program and GOMEMLIMIT is {}: Go's GC does not know the {} limit{}; set GOMEMLIMIT≈{} ({:.0}% of the \
                 limit). {in_code}",
                match g.gomemlimit.as_deref() {
                    None => "unset".to_string(),
                    Some(v) => format!("{v:?}, which Go rejects"),
                },
                h(limit),
                if gogc_off {
                    " and GOGC=off turns the collector off".to_string()
                } else {
                    format!(
                        ", so with GOGC={} the heap may grow to {} times its live data before a collection",
                        g.gogc.as_deref().unwrap_or("100"),
                        gogc_factor(g.gogc.as_deref())
                    )
                },
                go_mib(advice),
                GOMEMLIMIT_SHARE * 100.0
            ),
        )),
        (Some(v), Some(b)) if b != u64::MAX && b > limit => Some(reason(
            ReasonKind::GoGomemlimitAboveLimit,
            format!(
                "{who} has GOMEMLIMIT={v}, above the container's {} limit: its GC aims for more memory than it may use; set \
                 GOMEMLIMIT≈{} ({:.0}% of the limit).",
                h(limit),
                go_mib(advice),
                GOMEMLIMIT_SHARE * 100.0
            ),
        )),
        (Some(v), Some(u64::MAX)) if heap_driven => Some(reason(
            ReasonKind::GoGomemlimitUnset,
            format!(
                "{who} has GOMEMLIMIT={v}: Go's GC does not know the {} limit; set GOMEMLIMIT≈{} ({:.0}% of the limit). {in_code}",
                h(limit),
                go_mib(advice),
                GOMEMLIMIT_SHARE * 100.0
            ),
        )),
        (Some(v), Some(b)) if b <= limit => Some(reason(
            ReasonKind::GoGomemlimitSet,
            format!(
                "{who} has GOMEMLIMIT={v} ({:.0}% of the limit): its GC works to stay under it, so either its live data outgrew the \
                 limit, or memory outside Go's heap (goroutine stacks, cgo, mmap, other processes) took the rest.",
                b as f64 * 100.0 / limit as f64
            ),
        )),
        _ if gogc_off => Some(reason(ReasonKind::GoGogcOff, format!("{who} runs with GOGC=off and no memory limit: its heap only grows."))),
        _ => None,
    }
}

/// How many times its live heap a Go heap may reach before a collection, for a GOGC value.
fn gogc_factor(gogc: Option<&str>) -> String {
    let pct: f64 = gogc.and_then(|v| v.parse().ok()).unwrap_or(100.0);
    let f = 1.0 + pct / 100.0;
    if f.fract() == 0.0 { format!("{f:.0}") } else { format!("{f:.1}") }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::oom::{
        event::tests::event,
        reasons::{
            reasons,
            tests::{MIB, at, kinds},
        },
    };

    /// A Go program's record in an event, with GOMEMLIMIT `limit`.
    pub(crate) fn process(pid: u32, limit: Option<&str>) -> GoProcess {
        super::process(pid, "gomem", Settings { gomemlimit: limit.map(String::from), gogc: None })
    }

    #[test]
    fn advice_with_a_number() {
        let mut e = event(1, 10);
        e.at_kill = Some(at(64 * MIB, 64 * MIB, 60 * MIB, MIB, 0, MIB));
        let victim = e.victim.as_ref().unwrap().pid;
        e.go = vec![process(victim, None)];
        let r = reasons(&e);
        let g = r.iter().find(|r| r.kind == ReasonKind::GoGomemlimitUnset).expect("advice");
        assert!(g.text.contains("GOMEMLIMIT is unset: Go's GC does not know the 64.0 MiB limit"), "{}", g.text);
        assert!(g.text.contains("set GOMEMLIMIT≈58MiB (90% of the limit)"), "{}", g.text);
        assert!(g.text.contains("2 times its live data"), "{}", g.text);
        assert!(g.text.contains("debug.SetMemoryLimit"));
        // Above the limit.
        e.go = vec![process(victim, Some("100MiB"))];
        let r = reasons(&e);
        let g = r.iter().find(|r| r.kind == ReasonKind::GoGomemlimitAboveLimit).expect("called out");
        assert!(g.text.contains("GOMEMLIMIT=100MiB, above the container's 64.0 MiB limit"), "{}", g.text);
        // Set and sensible.
        e.go = vec![process(victim, Some("58MiB"))];
        assert!(kinds(&reasons(&e)).contains(&ReasonKind::GoGomemlimitSet));
        // Unparsable: Go ignores it.
        e.go = vec![process(victim, Some("58MB"))];
        let r = reasons(&e);
        assert!(r.iter().any(|r| r.kind == ReasonKind::GoGomemlimitUnset && r.text.contains("which Go rejects")));
    }

    #[test]
    fn a_go_bystander_gets_no_heap_advice() {
        let mut e = event(1, 10);
        e.at_kill = Some(at(64 * MIB, 64 * MIB, 10 * MIB, 0, 50 * MIB, 0));
        e.go = vec![process(999, None)];
        assert!(!kinds(&reasons(&e)).contains(&ReasonKind::GoGomemlimitUnset));
    }
}
