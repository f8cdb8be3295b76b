//! The data stores' advice, as one finding: what each application's memory settings (read by
//! `crate::apps`) meant for a kill or a warning, with the setting to change and its number.
//! One file per application, each a pure function of an event's facts.

pub mod memcached;
pub mod mysql;
pub mod postgres;
pub mod redis;

use super::Finding;
use crate::{
    apps::{AppFacts, AppId},
    oom::event::{Event, Reason},
    runtime::ProcessFacts,
};

/// Each application's advice on its processes.
pub struct Apps;

impl Finding for Apps {
    fn find(&self, e: &Event, limit: Option<u64>) -> Vec<Reason> {
        let mut out = redis::advise(e, limit);
        out.extend(postgres::advise(e, limit));
        out.extend(mysql::advise(e, limit));
        out.extend(memcached::advise(e, limit));
        out
    }
}

/// The processes of an event that run `id`, with their settings; the victim first.
pub(crate) fn of(e: &Event, id: AppId) -> Vec<(&ProcessFacts, &AppFacts)> {
    let victim = e.victim.as_ref().map(|v| v.pid);
    let mut v: Vec<_> = e.runtimes.iter().filter_map(|p| p.app.as_ref().filter(|a| a.id() == id).map(|a| (p, a))).collect();
    v.sort_by_key(|(p, _)| Some(p.pid) != victim);
    v
}

/// Bytes as a whole number of MiB, for a setting (`56mb`, `56M`, `56MB`: the caller's unit).
pub(crate) fn mib(b: u64) -> u64 {
    b >> 20
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::oom::event::Victim;

    /// A process of an event running `app`.
    pub(crate) fn process(pid: u32, comm: &str, app: AppFacts) -> ProcessFacts {
        ProcessFacts { pid, comm: comm.into(), runtime: None, malloc: None, app: Some(app) }
    }

    /// An event's victim with only its pid and name known.
    pub(crate) fn victim(pid: u32, comm: &str) -> Victim {
        Victim { pid, comm: comm.into(), vsz_bytes: None, rss_bytes: None, anon_rss_bytes: None, oom_score_adj: None, role: None }
    }
}
