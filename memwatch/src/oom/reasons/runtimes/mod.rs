//! The runtimes' advice, as one finding: what each runtime's settings meant for a kill or a
//! warning, in plain words with the number to set. The runtimes themselves (`crate::runtime`)
//! only recognise processes and read their facts; the advice, which speaks of kills, is here,
//! one file per runtime, each a pure function of an event's facts.

pub mod dotnet;
pub mod go;
pub mod jvm;
pub mod malloc;
pub mod node;

use super::Finding;
use crate::oom::event::{Event, Reason};

/// Each runtime's advice on its processes, then glibc's malloc's on every process whose arenas
/// were read. (Python has none of its own: it is said with glibc's arenas.)
pub struct Runtimes;

impl Finding for Runtimes {
    fn find(&self, e: &Event, limit: Option<u64>) -> Vec<Reason> {
        let mut out = go::advise(e, limit);
        out.extend(jvm::advise(e, limit));
        out.extend(node::advise(e, limit));
        out.extend(dotnet::advise(e, limit));
        out.extend(malloc::advise(e));
        out
    }
}
