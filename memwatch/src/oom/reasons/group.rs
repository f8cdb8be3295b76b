//! `memory.oom.group`: the kernel killed every process of the container at once, as one
//! incident (the kubelet sets it for containers on cgroup v2 from Kubernetes 1.28).

use super::{Finding, ReasonKind, reason};
use crate::oom::event::{Event, Reason};

pub struct OomGroup;

/// Processes named in the sentence, at most.
const NAMED: usize = 5;

impl Finding for OomGroup {
    fn find(&self, e: &Event, _: Option<u64>) -> Vec<Reason> {
        let Some(g) = e.group.as_ref().filter(|g| g.killed.len() > 1) else { return vec![] };
        let mut names: Vec<String> = g.killed.iter().take(NAMED).map(|v| format!("{} (pid {})", v.comm, v.pid)).collect();
        if g.killed.len() > NAMED {
            names.push(format!("and {} more", g.killed.len() - NAMED));
        }
        vec![reason(
            ReasonKind::OomGroup,
            format!(
                "memory.oom.group is set on {}: the kernel killed the whole container at once, {} processes ({}), not one process: one \
                 incident, whose cause is what filled the container.",
                g.cgroup,
                g.killed.len(),
                names.join(", ")
            ),
        )]
    }
}
