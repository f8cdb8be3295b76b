//! Redis's (and Valkey's) advice: `maxmemory` against the container's limit, a share that
//! leaves room for what Redis holds beside its data (the allocator's fragmentation, client and
//! replication buffers) and, when it saves by forking, for the child's copy-on-write pages;
//! with the eviction policy that makes Redis evict or refuse writes instead of being killed.
//! A kill of the save's child is named as that.

use super::{mib, of};
use crate::{
    apps::{AppFacts, AppId, redis::RedisFacts},
    oom::{
        event::{Event, Reason},
        reasons::{ReasonKind, h, reason},
    },
};

/// maxmemory's share of the limit without persistence: a quarter left for the allocator's
/// fragmentation (jemalloc's is commonly 10–20% under churn) and client and replication
/// buffers.
pub const SHARE: f64 = 0.70;
/// ... and with it: a save's child may copy every page written while it runs, up to the whole
/// dataset again (Redis's own guidance is to leave as much free as the data).
pub const SHARE_FORKING: f64 = 0.45;

/// The advice for the Redis servers of an event.
pub fn advise(e: &Event, limit: Option<u64>) -> Vec<Reason> {
    let Some(limit) = limit else { return vec![] };
    let all = of(e, AppId::Redis);
    // The server's own facts: the one whose settings are known (a save's child carries only a
    // title).
    let Some((server, AppFacts::Redis(r))) = all.iter().find(|(_, a)| matches!(a, AppFacts::Redis(r) if r.settings_known)).or(all.first())
    else {
        return vec![];
    };
    let mut out = vec![];
    // A kill of a Redis process that is not the server: the child a save forked.
    if let Some(v) = &e.victim
        && v.pid != server.pid
        && v.comm.starts_with("redis") | v.comm.starts_with("valkey")
        && r.forks_to_save() != Some(false)
    {
        out.push(reason(
            ReasonKind::RedisForkOnSave,
            format!(
                "{} (pid {}) was the child {} forked to save (an RDB snapshot or an append-only rewrite): the pages written while it \
                 ran were copied, and the copy counted against the same limit.",
                v.comm,
                v.pid,
                r.name()
            ),
        ));
    }
    out.extend(one(&server.who(), r, limit));
    out
}

/// The maxmemory to set in a container limited to `limit`.
pub fn advised(r: &RedisFacts, limit: u64) -> u64 {
    let share = if r.forks_to_save() == Some(false) { SHARE } else { SHARE_FORKING };
    ((limit as f64 * share) as u64) & !((1 << 20) - 1)
}

fn one(who: &str, r: &RedisFacts, limit: u64) -> Option<Reason> {
    let want = advised(r, limit);
    let why = match r.forks_to_save() {
        Some(false) => {
            format!("{:.0}% of the {} limit: room for its allocator's fragmentation and client buffers", SHARE * 100.0, h(limit))
        }
        _ => format!(
            "{:.0}% of the {} limit: it saves by forking, and the child's copies of the pages written meanwhile count against the same \
             limit",
            SHARE_FORKING * 100.0,
            h(limit)
        ),
    };
    let policy = match r.maxmemory_policy.as_deref() {
        None | Some("noeviction") => {
            " with maxmemory-policy allkeys-lru where it is a cache (Redis then evicts keys) or noeviction where it is a store (writes then \
             fail with an OOM error instead of the kill)"
        }
        Some(_) => "",
    };
    let name = r.name();
    match r.maxmemory_bytes {
        None => Some(reason(
            ReasonKind::RedisMaxmemory,
            format!(
                "{who} is {name}, started before memwatch, so its maxmemory is not known from outside (CONFIG GET maxmemory tells); it \
                 should be about {}mb ({why}){policy}.",
                mib(want)
            ),
        )),
        Some(0) => Some(reason(
            ReasonKind::RedisMaxmemory,
            format!(
                "{who} is {name} with maxmemory unset: it has no limit of its own and grows until the kernel kills it; set \
                 maxmemory≈{}mb ({why}){policy}.",
                mib(want)
            ),
        )),
        Some(m) if m as f64 > want as f64 * 1.15 => Some(reason(
            ReasonKind::RedisMaxmemory,
            format!(
                "{who} is {name} with maxmemory {}, more than the container's limit leaves it; set maxmemory≈{}mb ({why}){policy}.",
                h(m),
                mib(want)
            ),
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        oom::{
            event::tests::event,
            reasons::{
                apps::tests::{process, victim},
                tests::MIB,
            },
        },
        runtime::ProcessFacts,
    };

    fn redis(pid: u32, r: RedisFacts) -> ProcessFacts {
        process(pid, "redis-server", AppFacts::Redis(r))
    }

    fn facts(max: u64, save: bool) -> RedisFacts {
        RedisFacts {
            server: "redis".into(),
            settings_known: true,
            maxmemory_bytes: Some(max),
            maxmemory_policy: Some("noeviction".into()),
            rdb_snapshots: Some(save),
            appendonly: Some(false),
            ..RedisFacts::default()
        }
    }

    #[test]
    fn unset_maxmemory_gets_a_share_by_persistence() {
        let mut e = event(1, 10);
        e.runtimes = vec![redis(e.victim.as_ref().unwrap().pid, facts(0, false))];
        let r = advise(&e, Some(96 * MIB));
        assert_eq!(r.len(), 1);
        assert!(r[0].text.contains("maxmemory≈67mb") && r[0].text.contains("allkeys-lru"), "{}", r[0].text);
        e.runtimes = vec![redis(e.victim.as_ref().unwrap().pid, facts(0, true))];
        assert!(advise(&e, Some(96 * MIB))[0].text.contains("maxmemory≈43mb"), "a fork leaves less");
        // Set and fitting: nothing to say; set above the limit: said.
        e.runtimes = vec![redis(1, facts(60 * MIB, false))];
        assert!(advise(&e, Some(96 * MIB)).is_empty());
        e.runtimes = vec![redis(1, facts(1 << 30, false))];
        assert!(advise(&e, Some(96 * MIB))[0].text.contains("maxmemory 1.0 GiB"));
    }

    #[test]
    fn the_save_s_child_killed_is_named() {
        let mut e = event(1, 10);
        e.victim = Some(victim(77, "redis-server"));
        let child = RedisFacts { server: "redis".into(), ..RedisFacts::default() };
        e.runtimes = vec![redis(77, child), redis(5, facts(0, true))];
        let r = advise(&e, Some(256 * MIB));
        assert_eq!(r[0].kind, ReasonKind::RedisForkOnSave, "{r:?}");
        assert!(r[1].text.contains("redis-server (pid 5)") && r[1].text.contains("saves by forking"), "{}", r[1].text);
    }
}
