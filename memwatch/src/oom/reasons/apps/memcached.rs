//! memcached's advice: its item memory (`-m`) against the container's limit, leaving room for
//! its hash table, connection buffers and the program; memcached then evicts the least recently
//! used items instead of being killed.

use super::{mib, of};
use crate::{
    apps::{AppFacts, AppId, memcached::MemcachedFacts},
    oom::{
        event::{Event, Reason},
        reasons::{ReasonKind, h, reason},
    },
};

/// -m's share of the limit, less [`OVERHEAD`]: the hash table (which doubles as items grow),
/// each connection's read and write buffers, the slab allocator's partly filled pages.
const SHARE: f64 = 0.75;
const OVERHEAD: u64 = 16 << 20;

/// The advice for the memcached servers of an event.
pub fn advise(e: &Event, limit: Option<u64>) -> Vec<Reason> {
    let Some(limit) = limit else { return vec![] };
    of(e, AppId::Memcached)
        .first()
        .and_then(|(p, a)| match a {
            AppFacts::Memcached(m) => one(&p.who(), m, limit),
            _ => None,
        })
        .into_iter()
        .collect()
}

/// The -m to set, in bytes (whole MiB, at least 8).
pub fn advised(limit: u64) -> u64 {
    (((limit as f64 * SHARE) as u64).saturating_sub(OVERHEAD) & !((1 << 20) - 1)).max(8 << 20)
}

fn one(who: &str, m: &MemcachedFacts, limit: u64) -> Option<Reason> {
    let want = advised(limit);
    (m.memory_limit_bytes as f64 > want as f64 * 1.15).then(|| {
        reason(
            ReasonKind::MemcachedMemoryLimit,
            format!(
                "{who} is memcached with -m {} (MiB of items), more than the {} limit leaves it: it keeps allocating item memory up to -m \
                 and never returns it, so the kernel kills it before it evicts; set -m {} ({:.0}% of the limit less {} for its hash table \
                 and connection buffers), and it evicts the least recently used items instead.",
                mib(m.memory_limit_bytes),
                h(limit),
                mib(want),
                SHARE * 100.0,
                h(OVERHEAD)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oom::reasons::tests::MIB;

    #[test]
    fn a_gigabyte_of_items_in_96_mib() {
        let m = MemcachedFacts { memory_limit_bytes: 1 << 30, max_connections: 1024 };
        let r = one("memcached (pid 4)", &m, 96 * MIB).unwrap();
        assert!(r.text.contains("-m 1024") && r.text.contains("set -m 56"), "{}", r.text);
        assert!(one("memcached (pid 4)", &MemcachedFacts { memory_limit_bytes: 56 * MIB, max_connections: 1024 }, 96 * MIB).is_none());
        assert_eq!(advised(16 * MIB), 8 * MIB, "never below 8 MiB");
    }
}
