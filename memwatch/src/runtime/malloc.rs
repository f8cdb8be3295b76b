//! glibc's malloc, in any program that uses it (C, C++, Python, the JVM's native side): how
//! much of a process's resident memory its per-thread arenas hold, from the same `smaps`
//! classes `memwatch explain` uses. Read for the largest processes of containers near their
//! limit, on the slow cadence (smaps is costly to read). The advice is `MALLOC_ARENA_MAX`.

use serde::{Deserialize, Serialize};

use super::{Facts, ProcessFacts};
use crate::{
    explain::layout::{Breakdown, Class},
    oom::{
        event::{Event, Reason},
        reasons::{ReasonKind, h, reason},
    },
};

/// glibc's arena size on 64-bit.
const ARENA: u64 = 64 << 20;
/// Arenas holding at least this share of a process's resident memory, and at least
/// [`NOTABLE_BYTES`], are worth the advice.
const NOTABLE_SHARE: f64 = 0.25;
const NOTABLE_BYTES: u64 = 16 << 20;

/// A process's malloc arenas, at a reading.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MallocFacts {
    /// Per-thread arenas (64 MiB reserved each; the main arena is the brk heap).
    pub arenas: u64,
    /// Their resident memory.
    pub arena_rss_bytes: u64,
    /// The process's resident memory then.
    pub rss_bytes: u64,
    /// `MALLOC_ARENA_MAX`, when set.
    pub arena_max: Option<String>,
}

impl MallocFacts {
    /// From a process's breakdown by class.
    pub fn of(b: &Breakdown, arena_max: Option<String>) -> MallocFacts {
        let arenas = b.classes.iter().find(|c| c.class == Class::GlibcMallocArenas);
        MallocFacts {
            arenas: arenas.map_or(0, |c| c.vsz_bytes / ARENA),
            arena_rss_bytes: arenas.map_or(0, |c| c.rss_bytes),
            rss_bytes: b.rss_bytes,
            arena_max,
        }
    }

    fn arena_max(&self) -> Option<u64> {
        self.arena_max.as_deref()?.trim().parse().ok()
    }

    /// Whether its arenas hold a notable share and more than two of them are allowed.
    pub fn notable(&self) -> bool {
        self.arena_rss_bytes >= NOTABLE_BYTES
            && self.arena_rss_bytes as f64 >= NOTABLE_SHARE * self.rss_bytes as f64
            && self.arena_max().is_none_or(|m| m > 2)
            && self.arenas > 2
    }
}

/// The arena advice for the processes of an event whose arenas held a notable share.
pub fn advise(e: &Event) -> Vec<Reason> {
    e.runtimes.iter().filter(|p| p.malloc.as_ref().is_some_and(MallocFacts::notable)).map(advice).take(1).collect()
}

fn advice(p: &ProcessFacts) -> Reason {
    let m = p.malloc.as_ref().expect("filtered");
    let python = matches!(p.runtime, Some(Facts::Python(_)));
    reason(
        ReasonKind::GlibcArenas,
        format!(
            "glibc's per-thread malloc arenas held {} of the {} resident in {} ({} arenas, 64 MiB reserved each): glibc gives threads \
             that malloc at once arenas of their own, and memory freed in one is not reused by another; set MALLOC_ARENA_MAX=2 (all \
             threads then share two arenas, at a small cost in lock contention).{}",
            h(m.arena_rss_bytes),
            h(m.rss_bytes),
            p.who(),
            m.arenas,
            if python { " Python has no heap limit of its own: nothing in the interpreter stops this growth." } else { "" }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oom::event::tests::event;

    const MIB: u64 = 1 << 20;

    #[test]
    fn notable_arenas_get_the_advice() {
        let facts = |arena_rss, rss, max: Option<&str>| MallocFacts {
            arenas: 8,
            arena_rss_bytes: arena_rss,
            rss_bytes: rss,
            arena_max: max.map(String::from),
        };
        assert!(facts(200 * MIB, 300 * MIB, None).notable());
        assert!(!facts(200 * MIB, 300 * MIB, Some("2")).notable(), "already limited");
        assert!(facts(200 * MIB, 300 * MIB, Some("8")).notable());
        assert!(!facts(10 * MIB, 12 * MIB, None).notable(), "too little to matter");
        assert!(!facts(40 * MIB, 400 * MIB, None).notable(), "a small share");
        let mut e = event(1, 10);
        e.runtimes = vec![ProcessFacts {
            pid: 5,
            comm: "python3".into(),
            runtime: Some(Facts::Python(super::super::python::PythonFacts { version: Some("3.11".into()) })),
            malloc: Some(facts(200 * MIB, 300 * MIB, None)),
        }];
        let r = advise(&e);
        assert_eq!(r.len(), 1);
        assert!(r[0].text.contains("MALLOC_ARENA_MAX=2") && r[0].text.contains("python3 (pid 5)"), "{}", r[0].text);
        assert!(r[0].text.contains("Python has no heap limit"), "{}", r[0].text);
    }
}
