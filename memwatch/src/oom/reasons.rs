//! Why a kill happened and what to change, in plain words and as data: derived from an
//! event's facts alone (a pure function, tested on hand-made events), so the journal, the API,
//! `memwatch events` and the log line all say the same thing.

use super::event::{Constraint, Event, GoProcess, Reason, Source};
use crate::units::{go_mib, human};

/// A part of the usage at the kill worth naming when it is at least this share of it.
const NOTABLE_SHARE: f64 = 0.25;
/// GOMEMLIMIT advice: this share of the container's limit, leaving room for memory outside
/// Go's heap (stacks, runtime metadata, cgo).
pub const GOMEMLIMIT_SHARE: f64 = 0.9;

fn reason(kind: &str, text: String) -> Reason {
    Reason { kind: kind.to_string(), text }
}

fn h(b: u64) -> String {
    human(b as f64)
}

/// The findings for one event, most telling first.
pub fn reasons(e: &Event) -> Vec<Reason> {
    let mut out = Vec::new();
    if e.source == Source::KernelCounter {
        out.push(reason(
            "missed",
            format!(
                "The kernel counted {} OOM kill(s) here that memwatch's probe did not see (the daemon was not running, or its buffer was \
                 full): who died and why is not known.",
                e.count
            ),
        ));
        return out;
    }
    let at = e.at_kill.as_ref();
    let limit = at.and_then(|a| a.limit_bytes).or_else(|| e.before.as_ref().map(|b| b.limit_bytes).filter(|l| *l > 0));
    // Which limit.
    match (e.constraint, e.constrained_by.as_deref()) {
        (Constraint::Cgroup, Some(by)) if by != e.cgroup && !e.cgroup.is_empty() => out.push(reason(
            "inherited_limit",
            format!(
                "The limit hit was not the container's own: its parent cgroup {by} was at its limit{} and the kill fell in this \
                 container. Every container under {by} shares that limit.",
                limit.map(|l| format!(" of {}", h(l))).unwrap_or_default()
            ),
        )),
        (Constraint::Cgroup, _) => out.push(reason(
            "limit",
            match (at, limit) {
                (Some(a), Some(l)) => format!("The container hit its memory limit: {} used of {} at the kill.", h(a.usage_bytes), h(l)),
                (_, Some(l)) => format!("The container hit its memory limit of {}.", h(l)),
                _ => "The container hit its memory limit.".to_string(),
            },
        )),
        (Constraint::Machine, _) => out.push(reason(
            "machine",
            "No cgroup was at its limit: the machine itself ran out of memory, and the kernel killed the process it scored worst, \
             wherever it was. Look at the node's total use, not this container's limit."
                .to_string(),
        )),
        (Constraint::Unknown, _) => {}
    }
    // What filled it.
    if let Some(a) = at {
        let usage = a.usage_bytes.max(1) as f64;
        let share = |v: Option<u64>| v.map_or(0.0, |v| v as f64 / usage);
        if share(a.anon_bytes) >= 0.5 {
            out.push(reason("anon_growth", anon_text(e, a.anon_bytes.unwrap_or(0))));
        }
        if share(a.shmem_bytes) >= NOTABLE_SHARE {
            out.push(reason(
                "shmem",
                format!(
                    "tmpfs and shared memory held {} of the {} used. Files written to a tmpfs (an emptyDir with medium Memory, \
                     /dev/shm) are charged to the container and stay until deleted: killing a process does not free them.",
                    h(a.shmem_bytes.unwrap_or(0)),
                    h(a.usage_bytes)
                ),
            ));
        }
        if share(a.file_bytes) >= NOTABLE_SHARE {
            out.push(reason(
                "page_cache",
                format!(
                    "Page cache held {} of the {} used and could not be reclaimed in time (dirty, or in active use): large writes \
                     or memory-mapped files count against the limit until written back.",
                    h(a.file_bytes.unwrap_or(0)),
                    h(a.usage_bytes)
                ),
            ));
        }
        if share(a.kernel_bytes) >= NOTABLE_SHARE {
            out.push(reason(
                "kernel",
                format!(
                    "Kernel memory charged to the container (slab, socket buffers, page tables, kernel stacks) was {} of the {} \
                     used: look for many sockets, files or threads.",
                    h(a.kernel_bytes.unwrap_or(0)),
                    h(a.usage_bytes)
                ),
            ));
        }
    } else if let Some(v) = &e.victim
        && let Some(anon) = v.anon_rss_bytes
        && anon > 0
    {
        out.push(reason("anon_growth", anon_text(e, anon)));
    }
    // Go.
    for g in &e.go {
        out.extend(go_reason(g, limit, e));
    }
    // How much the samples can say.
    if let Some(r) = &e.recent
        && r.younger_than_a_sample
    {
        out.push(reason(
            "young",
            match r.first_seen_seconds_before {
                Some(s) => format!(
                    "The container was first seen {s:.1} s before the kill, less than one sample earlier: the state at the kill comes \
                     from the kernel, not from samples."
                ),
                None => "The container was never sampled before the kill (it lived less than one sample): the state at the kill comes \
                         from the kernel, not from samples."
                    .to_string(),
            },
        ));
    }
    out
}

/// Anonymous memory, who held it and how it grew.
fn anon_text(e: &Event, anon: u64) -> String {
    let mut s = format!("Anonymous memory (heap, stacks, private mappings) was {}", h(anon));
    if let Some(v) = &e.victim
        && let Some(rss) = v.anon_rss_bytes.or(v.rss_bytes)
        && rss > 0
    {
        s += &format!("; {} (pid {}) held {} of it at the kill", v.comm, v.pid, h(rss));
    }
    // Growth over the window, where there was one (a container never sampled has none).
    if let Some(r) = e.recent.as_ref().filter(|r| r.window_seconds >= 1.0) {
        let secs = r.window_seconds;
        if let Some(p) = r.processes.first().filter(|p| p.delta_bytes > 0) {
            s += &match p.from_rss_bytes {
                Some(from) => {
                    format!("; {} (pid {}) grew from {} to {} in the last {secs:.0} s", p.comm, p.pid, h(from), h(p.to_rss_bytes))
                }
                None => format!("; {} (pid {}) appeared in the last {secs:.0} s and reached {}", p.comm, p.pid, h(p.to_rss_bytes)),
            };
        } else if let Some(g) = r.growth.iter().find(|g| g.what == "anon" && g.delta_bytes > 0) {
            s += &format!("; it grew by {} in the last {secs:.0} s", h(g.delta_bytes as u64));
        }
    }
    s + "."
}

/// The Go runtime's view of the limit, for one Go program.
fn go_reason(g: &GoProcess, limit: Option<u64>, e: &Event) -> Option<Reason> {
    let who = format!("{} (pid {})", g.comm, g.pid);
    let in_code = "A limit set in code with debug.SetMemoryLimit cannot be seen from outside the process; if the program sets one, that \
                   one applies.";
    let gogc_off = g.gogc.as_deref() == Some("off");
    let limit = limit?;
    let advice = (limit as f64 * GOMEMLIMIT_SHARE) as u64;
    // Heap-driven: this program is the victim or holds most of the anonymous memory.
    let heap_driven = e.victim.as_ref().is_some_and(|v| v.pid == g.pid)
        || e.at_kill.as_ref().is_some_and(|a| a.anon_bytes.unwrap_or(0) as f64 >= 0.5 * a.usage_bytes as f64);
    match (g.gomemlimit.as_deref(), g.gomemlimit_bytes) {
        (None, _) | (Some(_), None) if heap_driven => Some(reason(
            "go_gomemlimit_unset",
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
            "go_gomemlimit_above_limit",
            format!(
                "{who} has GOMEMLIMIT={v}, above the container's {} limit: its GC aims for more memory than it may use; set \
                 GOMEMLIMIT≈{} ({:.0}% of the limit).",
                h(limit),
                go_mib(advice),
                GOMEMLIMIT_SHARE * 100.0
            ),
        )),
        (Some(v), Some(u64::MAX)) if heap_driven => Some(reason(
            "go_gomemlimit_unset",
            format!(
                "{who} has GOMEMLIMIT={v}: Go's GC does not know the {} limit; set GOMEMLIMIT≈{} ({:.0}% of the limit). {in_code}",
                h(limit),
                go_mib(advice),
                GOMEMLIMIT_SHARE * 100.0
            ),
        )),
        (Some(v), Some(b)) if b <= limit => Some(reason(
            "go_gomemlimit_set",
            format!(
                "{who} has GOMEMLIMIT={v} ({:.0}% of the limit): its GC works to stay under it, so either its live data outgrew the \
                 limit, or memory outside Go's heap (goroutine stacks, cgo, mmap, other processes) took the rest.",
                b as f64 * 100.0 / limit as f64
            ),
        )),
        _ if gogc_off => Some(reason("go_gogc_off", format!("{who} runs with GOGC=off and no memory limit: its heap only grows."))),
        _ => None,
    }
}

/// One or two sentences for a log line: what filled the memory (or which limit), and the advice
/// for Go or the limit's owner when there is one.
pub fn summary(reasons: &[Reason]) -> String {
    let filled = ["anon_growth", "shmem", "page_cache", "kernel"];
    let first = reasons.iter().find(|r| filled.contains(&r.kind.as_str())).or_else(|| reasons.first());
    let second = reasons
        .iter()
        .find(|r| Some(*r) != first && (r.kind.starts_with("go_") || ["inherited_limit", "machine", "missed"].contains(&r.kind.as_str())));
    first.into_iter().chain(second).map(|r| r.text.as_str()).collect::<Vec<_>>().join(" ")
}

/// How many times its live heap a Go heap may reach before a collection, for a GOGC value.
fn gogc_factor(gogc: Option<&str>) -> String {
    let pct: f64 = gogc.and_then(|v| v.parse().ok()).unwrap_or(100.0);
    let f = 1.0 + pct / 100.0;
    if f.fract() == 0.0 { format!("{f:.0}") } else { format!("{f:.1}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oom::event::{AtKill, Growth, ProcessGrowth, Recent, Victim, tests::event};

    const MIB: u64 = 1 << 20;

    fn at(usage: u64, limit: u64, anon: u64, file: u64, shmem: u64, kernel: u64) -> AtKill {
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

    fn go(pid: u32, limit: Option<&str>) -> GoProcess {
        GoProcess {
            pid,
            comm: "gomem".into(),
            gomemlimit: limit.map(String::from),
            gogc: None,
            gomemlimit_bytes: limit.and_then(crate::units::go_byte_count),
            limit_set_in_code: None,
        }
    }

    fn kinds(r: &[Reason]) -> Vec<&str> {
        r.iter().map(|r| r.kind.as_str()).collect()
    }

    #[test]
    fn anonymous_growth_by_a_named_process() {
        let mut e = event(1, 10);
        e.at_kill = Some(at(32 * MIB, 32 * MIB, 31 * MIB, 0, 0, MIB));
        e.recent = Some(Recent {
            window_seconds: 0.3,
            first_seen_seconds_before: None,
            younger_than_a_sample: true,
            growth: vec![Growth { what: "anon".into(), from_bytes: 0, to_bytes: 31 * MIB, delta_bytes: 31 * MIB as i64 }],
            processes: vec![ProcessGrowth {
                pid: 101,
                comm: "hog".into(),
                from_rss_bytes: None,
                to_rss_bytes: 31 * MIB,
                delta_bytes: 31 * MIB as i64,
            }],
        });
        let r = reasons(&e);
        assert_eq!(kinds(&r), ["limit", "anon_growth", "young"]);
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
        assert_eq!(kinds(&reasons(&e)), ["limit", "shmem", "page_cache"]);
        e.at_kill = Some(at(64 * MIB, 64 * MIB, 10 * MIB, 0, 0, 50 * MIB));
        assert_eq!(kinds(&reasons(&e)), ["limit", "kernel"]);
    }

    #[test]
    fn inherited_limit_and_machine() {
        let mut e = event(1, 10);
        e.constrained_by = Some("/pod".into());
        let r = reasons(&e);
        assert_eq!(r[0].kind, "inherited_limit");
        assert!(r[0].text.contains("/pod"));
        e.constraint = Constraint::Machine;
        e.constrained_by = None;
        assert_eq!(reasons(&e)[0].kind, "machine");
    }

    #[test]
    fn go_advice_with_a_number() {
        let mut e = event(1, 10);
        e.at_kill = Some(at(64 * MIB, 64 * MIB, 60 * MIB, MIB, 0, MIB));
        let victim = e.victim.as_ref().unwrap().pid;
        e.go = vec![go(victim, None)];
        let r = reasons(&e);
        let g = r.iter().find(|r| r.kind == "go_gomemlimit_unset").expect("advice");
        assert!(g.text.contains("GOMEMLIMIT is unset: Go's GC does not know the 64.0 MiB limit"), "{}", g.text);
        assert!(g.text.contains("set GOMEMLIMIT≈58MiB (90% of the limit)"), "{}", g.text);
        assert!(g.text.contains("2 times its live data"), "{}", g.text);
        assert!(g.text.contains("debug.SetMemoryLimit"));
        // Above the limit.
        e.go = vec![go(victim, Some("100MiB"))];
        let r = reasons(&e);
        let g = r.iter().find(|r| r.kind == "go_gomemlimit_above_limit").expect("called out");
        assert!(g.text.contains("GOMEMLIMIT=100MiB, above the container's 64.0 MiB limit"), "{}", g.text);
        // Set and sensible.
        e.go = vec![go(victim, Some("58MiB"))];
        assert!(kinds(&reasons(&e)).contains(&"go_gomemlimit_set"));
        // Unparsable: Go ignores it.
        e.go = vec![go(victim, Some("58MB"))];
        let r = reasons(&e);
        assert!(r.iter().any(|r| r.kind == "go_gomemlimit_unset" && r.text.contains("which Go rejects")));
    }

    #[test]
    fn the_summary_is_what_filled_it_and_the_advice() {
        let mut e = event(1, 10);
        e.at_kill = Some(at(64 * MIB, 64 * MIB, 60 * MIB, MIB, 0, MIB));
        e.go = vec![go(e.victim.as_ref().unwrap().pid, None)];
        let s = summary(&reasons(&e));
        assert!(s.starts_with("Anonymous memory"), "{s}");
        assert!(s.contains("set GOMEMLIMIT≈58MiB"), "{s}");
        assert_eq!(summary(&[]), "");
    }

    #[test]
    fn a_go_bystander_gets_no_heap_advice() {
        let mut e = event(1, 10);
        e.at_kill = Some(at(64 * MIB, 64 * MIB, 10 * MIB, 0, 50 * MIB, 0));
        e.go = vec![go(999, None)];
        assert!(!kinds(&reasons(&e)).contains(&"go_gomemlimit_unset"));
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
        });
        let r = reasons(&e);
        assert_eq!(kinds(&r), ["limit", "anon_growth"]);
        let mut missed = event(1, 10);
        missed.source = Source::KernelCounter;
        assert_eq!(kinds(&reasons(&missed)), ["missed"]);
    }
}
