//! Kills only the kernel's counter saw: who died and why is not known.

use super::{Finding, ReasonKind, reason};
use crate::oom::event::{Event, Reason};

pub struct Missed;

impl Finding for Missed {
    fn find(&self, e: &Event, _: Option<u64>) -> Vec<Reason> {
        vec![reason(
            ReasonKind::Missed,
            format!(
                "The kernel counted {} OOM kill(s) here that memwatch's probe did not see (the daemon was not running, or its buffer was \
                 full): who died and why is not known.",
                e.count
            ),
        )]
    }
}
