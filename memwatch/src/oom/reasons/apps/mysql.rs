//! MySQL's and MariaDB's advice: the InnoDB buffer pool (filled as data is read, and kept)
//! against the container's limit, and, where it fits, the connections' buffers together.

use super::{mib, of};
use crate::{
    apps::{AppFacts, AppId, mysql::MysqlFacts},
    oom::{
        event::{Event, Reason},
        reasons::{ReasonKind, h, reason},
    },
};

/// The buffer pool above this share of the limit is too much: the server's own memory
/// (dictionary, log buffer, threads) and the connections' buffers need the rest.
const POOL_MAX: f64 = 0.60;
/// ... and the share to set: half (MySQL's "up to 80% of the machine" is for dedicated hosts
/// of many GiB, where the rest is still large).
const POOL_SHARE: f64 = 0.50;

/// The advice for the MySQL and MariaDB servers of an event.
pub fn advise(e: &Event, limit: Option<u64>) -> Vec<Reason> {
    let Some(limit) = limit else { return vec![] };
    of(e, AppId::Mysql)
        .first()
        .and_then(|(p, a)| match a {
            AppFacts::Mysql(m) => one(&p.who(), m, limit),
            _ => None,
        })
        .into_iter()
        .collect()
}

/// The buffer pool to set in a container limited to `limit` (a whole number of 8 MiB).
pub fn advised_pool(limit: u64) -> u64 {
    ((limit as f64 * POOL_SHARE) as u64) & !((8 << 20) - 1)
}

fn one(who: &str, m: &MysqlFacts, limit: u64) -> Option<Reason> {
    let name = m.name();
    if m.innodb_buffer_pool_bytes as f64 > limit as f64 * POOL_MAX {
        return Some(reason(
            ReasonKind::MysqlBufferPool,
            format!(
                "{who} is {name} with innodb_buffer_pool_size {}, {:.0}% of the {} limit: the pool fills as data is read and is kept, so \
                 the server outgrows the container; set innodb_buffer_pool_size≈{}M ({:.0}% of the limit: the rest for the server itself \
                 and the connections' buffers).",
                h(m.innodb_buffer_pool_bytes),
                m.innodb_buffer_pool_bytes as f64 * 100.0 / limit as f64,
                h(limit),
                mib(advised_pool(limit)),
                POOL_SHARE * 100.0
            ),
        ));
    }
    let room = limit.saturating_sub(m.innodb_buffer_pool_bytes) / 2;
    let per = m.per_connection_bytes().max(1);
    let fits = room / per;
    (m.max_connections.saturating_mul(per) > limit.saturating_sub(m.innodb_buffer_pool_bytes) && fits < m.max_connections).then(|| {
        reason(
            ReasonKind::MysqlConnections,
            format!(
                "{who} is {name} allowing {} connections of up to {} each (sort, join and read buffers and a thread's stack): {} \
                 together, beside a buffer pool of {} in the {} limit; set max_connections≈{} (half of what the pool leaves), or smaller \
                 per-connection buffers.",
                m.max_connections,
                h(per),
                h(m.max_connections.saturating_mul(per)),
                h(m.innodb_buffer_pool_bytes),
                h(limit),
                fits.max(1)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{oom::reasons::tests::MIB, runtime::ProcessFacts};

    #[test]
    fn a_pool_larger_than_the_limit_then_the_connections() {
        let m = MysqlFacts { innodb_buffer_pool_bytes: 1 << 30, ..MysqlFacts::defaults("mariadb") };
        let r = one("mariadbd (pid 3)", &m, 256 * MIB).unwrap();
        assert_eq!(r.kind, ReasonKind::MysqlBufferPool);
        assert!(r.text.contains("innodb_buffer_pool_size≈128M") && r.text.contains("MariaDB"), "{}", r.text);
        let m = MysqlFacts { innodb_buffer_pool_bytes: 128 * MIB, ..MysqlFacts::defaults("mariadb") };
        let r = one("mariadbd (pid 3)", &m, 256 * MIB).unwrap();
        assert_eq!(r.kind, ReasonKind::MysqlConnections, "151 × 3 MiB beside 128 MiB in 256 MiB");
        assert!(r.text.contains("max_connections≈21"), "{}", r.text);
        assert!(one("mariadbd (pid 3)", &m, 4 << 30).is_none(), "roomy");
        let mut e = crate::oom::event::tests::event(1, 10);
        e.runtimes = vec![ProcessFacts { pid: 3, comm: "mariadbd".into(), runtime: None, malloc: None, app: Some(AppFacts::Mysql(m)) }];
        assert_eq!(advise(&e, Some(256 * MIB)).len(), 1);
    }
}
