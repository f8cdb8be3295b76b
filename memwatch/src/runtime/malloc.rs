//! glibc's malloc, in any program that uses it (C, C++, Python, the JVM's native side): how
//! much of a process's resident memory its per-thread arenas hold, from the same `smaps`
//! classes `memwatch explain` uses. Read for the largest processes of containers near their
//! limit, on the slow cadence (smaps is costly to read). The advice is `MALLOC_ARENA_MAX`.

use serde::{Deserialize, Serialize};

use crate::runtime::layout::{Breakdown, Class};

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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
