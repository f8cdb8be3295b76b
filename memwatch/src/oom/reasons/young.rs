//! How much the samples can say: a container younger than a sample was seen only by the kernel.

use super::{Finding, ReasonKind, reason};
use crate::oom::event::{Event, Reason};

pub struct Young;

impl Finding for Young {
    fn find(&self, e: &Event, _: Option<u64>) -> Vec<Reason> {
        let Some(r) = e.recent.as_ref().filter(|r| r.younger_than_a_sample) else { return vec![] };
        let text = match r.first_seen_seconds_before {
            Some(s) => format!(
                "The container was first seen {s:.1} s before the kill, less than one sample earlier: the state at the kill comes from \
                 the kernel, not from samples."
            ),
            None => "The container was never sampled before the kill (it lived less than one sample): the state at the kill comes \
                     from the kernel, not from samples."
                .to_string(),
        };
        vec![reason(ReasonKind::Young, text)]
    }
}
