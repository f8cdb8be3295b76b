//! Who survived a kill: whether the victim was its container's main process (the container stops
//! and is restarted: Kubernetes reports OOMKilled) or a child of it (the container lives on, and
//! nothing outside it may notice), from what `/proc` said of it at the kill.

use super::{Finding, ReasonKind, reason};
use crate::oom::event::{Event, Reason, VictimRole};

pub struct Survivor;

impl Finding for Survivor {
    fn find(&self, e: &Event, _: Option<u64>) -> Vec<Reason> {
        let Some(v) = &e.victim else { return vec![] };
        match v.role {
            Some(VictimRole::Main) => vec![reason(
                ReasonKind::MainProcessKilled,
                format!(
                    "{} (pid {}) was the container's main process: the container stops with it and is restarted (Kubernetes reports \
                     OOMKilled and counts a restart).",
                    v.comm, v.pid
                ),
            )],
            Some(VictimRole::Child) => vec![reason(
                ReasonKind::ChildKilled,
                format!(
                    "{} (pid {}) was a child of the container's main process, which lives on: the container keeps running, and \
                     Kubernetes reports no OOM kill and no restart for it. What the main process does about a child killed under it \
                     is its own (a database may reset every session).",
                    v.comm, v.pid
                ),
            )],
            None => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oom::event::tests::event;

    #[test]
    fn main_or_child_and_so_whether_the_container_restarts() {
        let mut e = event(1, 10);
        assert!(Survivor.find(&e, None).is_empty(), "unknown: nothing said");
        e.victim.as_mut().unwrap().role = Some(VictimRole::Child);
        let r = Survivor.find(&e, None);
        assert_eq!(r[0].kind, ReasonKind::ChildKilled);
        assert!(r[0].text.starts_with("hog (pid 101) was a child of the container's main process, which lives on"), "{}", r[0].text);
        e.victim.as_mut().unwrap().role = Some(VictimRole::Main);
        assert!(Survivor.find(&e, None)[0].text.contains("is restarted (Kubernetes reports OOMKilled"));
    }
}
