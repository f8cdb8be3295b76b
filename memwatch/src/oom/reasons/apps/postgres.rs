//! PostgreSQL's advice: which of its memory settings, multiplied by how many may use it at
//! once, exceeds what the container's limit leaves it (`work_mem` by connections and the hash
//! multiplier, `maintenance_work_mem` by autovacuum workers, `shared_buffers` alone), with
//! the number to set; and whether the process killed was a backend (the postmaster lives, ends
//! every session and runs crash recovery) or the postmaster (the server is down).

use super::of;
use crate::{
    apps::{AppFacts, AppId, postgres::PostgresFacts},
    oom::{
        event::{Event, Reason},
        reasons::{ReasonKind, h, reason},
    },
};

const MIB: u64 = 1 << 20;
/// shared_buffers above this share of the limit is too much: the backends' own memory, the
/// page cache PostgreSQL relies on and the server's processes need the rest.
const SHARED_BUFFERS_MAX: f64 = 0.40;
/// ... and PostgreSQL's own guidance for it: a quarter of the memory.
const SHARED_BUFFERS_SHARE: f64 = 0.25;
/// What the queries' memory may take together: three quarters of the limit, less the shared
/// buffers (the rest: each backend's own few MiB, the catalog caches, the page cache).
const QUERY_SHARE: f64 = 0.75;
/// PostgreSQL's least work_mem.
const WORK_MEM_MIN: u64 = 64 << 10;

/// The advice for the PostgreSQL servers of an event.
pub fn advise(e: &Event, limit: Option<u64>) -> Vec<Reason> {
    let all = of(e, AppId::Postgres);
    let Some((pm, AppFacts::Postgres(p))) = all.iter().find(|(p, _)| Some(p.pid) != e.victim.as_ref().map(|v| v.pid)).or(all.first())
    else {
        return vec![];
    };
    let mut out = vec![];
    if e.is_kill()
        && let Some(v) = &e.victim
    {
        if v.pid == pm.pid {
            out.push(reason(
                ReasonKind::PostgresPostmasterKilled,
                format!("{} was PostgreSQL's postmaster: the server is down with every session until it is started again.", pm.who()),
            ));
        } else if v.comm.starts_with("postgres") {
            out.push(reason(
                ReasonKind::PostgresBackendKilled,
                format!(
                    "{} (pid {}) was a PostgreSQL backend (one session's process); the postmaster, {}, lives on but ends every other \
                     session and runs crash recovery after a backend is killed.",
                    v.comm,
                    v.pid,
                    pm.who()
                ),
            ));
        }
    }
    if let Some(limit) = limit {
        out.extend(settings(p, limit));
    }
    out
}

/// A size as a PostgreSQL setting: `12MB`, else `640kB`.
pub fn setting(b: u64) -> String {
    if b >= MIB { format!("{}MB", b / MIB) } else { format!("{}kB", (b >> 10).max(64)) }
}

/// The work_mem that lets every connection run a hash at once within what the limit leaves.
pub fn advised_work_mem(p: &PostgresFacts, limit: u64) -> u64 {
    let shared = p.shared_buffers_bytes.min((limit as f64 * SHARED_BUFFERS_SHARE) as u64);
    let budget = ((limit as f64 * QUERY_SHARE) as u64).saturating_sub(shared);
    let per = budget as f64 / (p.max_connections.max(1) as f64 * p.hash_mem_multiplier.max(1.0));
    let b = (per as u64).max(WORK_MEM_MIN);
    if b >= MIB { b & !(MIB - 1) } else { b & !((1 << 10) - 1) }
}

fn settings(p: &PostgresFacts, limit: u64) -> Vec<Reason> {
    let mut out = vec![];
    let lim = h(limit);
    if p.shared_buffers_bytes as f64 > limit as f64 * SHARED_BUFFERS_MAX {
        out.push(reason(
            ReasonKind::PostgresSharedBuffers,
            format!(
                "PostgreSQL's shared_buffers is {}, {:.0}% of the {lim} limit: shared memory charged to the container as it is used, \
                 leaving too little for the backends; set shared_buffers≈{} ({:.0}% of the limit, PostgreSQL's own guidance).",
                h(p.shared_buffers_bytes),
                p.shared_buffers_bytes as f64 * 100.0 / limit as f64,
                setting((limit as f64 * SHARED_BUFFERS_SHARE) as u64),
                SHARED_BUFFERS_SHARE * 100.0
            ),
        ));
    }
    let all_queries = p.per_node_bytes().saturating_mul(p.max_connections);
    let room =
        ((limit as f64 * QUERY_SHARE) as u64).saturating_sub(p.shared_buffers_bytes.min((limit as f64 * SHARED_BUFFERS_SHARE) as u64));
    if all_queries > limit {
        let want = advised_work_mem(p, limit);
        let one = if p.per_node_bytes() > room {
            format!("a single sort or hash may take {}, more than the container has", h(p.per_node_bytes()))
        } else {
            format!("{} connections each running a hash may take {} together", p.max_connections, h(all_queries))
        };
        out.push(reason(
            ReasonKind::PostgresWorkMem,
            format!(
                "PostgreSQL's work_mem is {} per sort or hash of each query (×{} for hashes), with up to {} connections: {one}, against \
                 the {lim} limit; set work_mem≈{} (what {:.0}% of the limit less shared_buffers gives each connection's hash), and a \
                 query needing more spills to disk instead of the backend being killed (or lower max_connections, behind a pooler).",
                h(p.work_mem_bytes),
                p.hash_mem_multiplier,
                p.max_connections,
                setting(want),
                QUERY_SHARE * 100.0,
            ),
        ));
    }
    // One index build takes all of maintenance_work_mem; autovacuum's workers only what their
    // tables need, up to it each: named when one build alone outgrows what the queries have.
    let maintenance = p.maintenance_work_mem_bytes.saturating_mul(p.autovacuum_max_workers.max(1));
    if p.maintenance_work_mem_bytes > room {
        let want = (room / 2).max(MIB);
        out.push(reason(
            ReasonKind::PostgresMaintenanceWorkMem,
            format!(
                "PostgreSQL's maintenance_work_mem is {}, for each of up to {} autovacuum workers and each index build: {} together, \
                 and one index build alone takes more than the {lim} limit leaves; set maintenance_work_mem≈{} (or autovacuum_work_mem for the \
                 workers).",
                h(p.maintenance_work_mem_bytes),
                p.autovacuum_max_workers,
                h(maintenance),
                setting(want & !(MIB - 1)),
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        oom::{
            event::tests::event,
            reasons::{apps::tests::process, tests::MIB},
        },
        runtime::ProcessFacts,
    };

    fn pm(pid: u32, p: PostgresFacts) -> ProcessFacts {
        process(pid, "postgres", AppFacts::Postgres(p))
    }

    fn victim(pid: u32) -> crate::oom::event::Victim {
        super::super::tests::victim(pid, "postgres")
    }

    #[test]
    fn a_backend_killed_by_a_2gb_work_mem() {
        let mut e = event(1, 10);
        e.victim = Some(victim(200));
        let p = PostgresFacts { work_mem_bytes: 2 << 30, shared_buffers_bytes: 32 * MIB, ..PostgresFacts::default() };
        e.runtimes = vec![pm(100, p)];
        let r = advise(&e, Some(192 * MIB));
        let kinds: Vec<_> = r.iter().map(|r| r.kind.clone()).collect();
        assert_eq!(kinds, [ReasonKind::PostgresBackendKilled, ReasonKind::PostgresWorkMem], "{r:?}");
        assert!(r[0].text.contains("postgres (pid 100)") && r[0].text.contains("crash recovery"), "{}", r[0].text);
        // (192 × 0.75 − 32) MiB over 100 connections' hashes at ×2: 0.56 MiB, 573 kB.
        assert!(r[1].text.contains("a single sort or hash may take 4.0 GiB") && r[1].text.contains("work_mem≈573kB"), "{}", r[1].text);
    }

    #[test]
    fn defaults_in_a_roomy_limit_say_nothing_and_shared_buffers_too_large_is_named() {
        let mut e = event(1, 10);
        e.victim = Some(victim(100));
        e.runtimes = vec![pm(100, PostgresFacts::default())];
        let r = advise(&e, Some(4 << 30));
        assert_eq!(r.len(), 1, "only the postmaster's kill: {r:?}");
        assert_eq!(r[0].kind, ReasonKind::PostgresPostmasterKilled);
        let r = advise(&e, Some(192 * MIB));
        assert!(r.iter().any(|r| r.kind == ReasonKind::PostgresSharedBuffers && r.text.contains("shared_buffers≈48MB")), "{r:?}");
        assert_eq!(setting(600 << 10), "600kB");
        assert_eq!(setting(8 * MIB), "8MB");
    }
}
