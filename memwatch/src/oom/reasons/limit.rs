//! Which limit the kill hit: the container's own, an ancestor's, or none (the machine's).

use super::{Finding, ReasonKind, h, reason};
use crate::oom::event::{Constraint, Event, Reason};

pub struct WhichLimit;

impl Finding for WhichLimit {
    fn find(&self, e: &Event, limit: Option<u64>) -> Vec<Reason> {
        let r = match (e.constraint, e.constrained_by.as_deref()) {
            (Constraint::Cgroup, Some(by)) if by != e.cgroup && !e.cgroup.is_empty() => reason(
                ReasonKind::InheritedLimit,
                format!(
                    "The limit hit was not the container's own: its parent cgroup {by} was at its limit{} and the kill fell in this \
                     container. Every container under {by} shares that limit.",
                    limit.map(|l| format!(" of {}", h(l))).unwrap_or_default()
                ),
            ),
            (Constraint::Cgroup, _) => reason(
                ReasonKind::Limit,
                match (&e.at_kill, limit) {
                    (Some(a), Some(l)) => {
                        format!("The container hit its memory limit: {} used of {} at the kill.", h(a.usage_bytes), h(l))
                    }
                    (_, Some(l)) => format!("The container hit its memory limit of {}.", h(l)),
                    _ => "The container hit its memory limit.".to_string(),
                },
            ),
            (Constraint::Machine, _) => reason(
                ReasonKind::Machine,
                "No cgroup was at its limit: the machine itself ran out of memory, and the kernel killed the process it scored worst, \
                 wherever it was. Look at the node's total use, not this container's limit."
                    .to_string(),
            ),
            (Constraint::Unknown, _) => return vec![],
        };
        vec![r]
    }
}
