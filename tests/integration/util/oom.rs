//! What the OOM tests share: a daemon that journals, programs run until the kernel kills them,
//! and the event of a kill.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use memwatch::oom::{Event, event::ReasonKind};

use super::{Workload, cgroup::TestCgroup, daemon::Daemon};

pub(crate) const MIB: u64 = 1 << 20;

/// `memwatch serve` sampling every `interval`, journaling into `state`.
pub(crate) fn daemon(state: &Path, interval: &str) -> Daemon {
    Daemon::start(&["--interval", interval, "--state-dir", state.to_str().unwrap()])
}

/// Runs `cmd` in `cg` until the kernel kills it; returns its pid and how long it lived.
pub(crate) fn run_until_killed(mut cmd: Command, cg: &TestCgroup) -> (u32, Duration) {
    cmd.stdout(Stdio::null());
    cg.join_before_exec(&mut cmd);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start the program");
    let pid = child.id();
    let st = child.wait().unwrap();
    let lived = started.elapsed();
    super::assert_killed(st, &format!("{cmd:?}"));
    (pid, lived)
}

/// Runs the workload's hog in `cg` until the kernel kills it.
pub(crate) fn kill_hog(cg: &TestCgroup) -> u32 {
    let mut hog = Workload::start(&["hog"], Some(cg));
    let pid = hog.pid();
    let status = hog.child.wait().unwrap();
    super::assert_killed(status, &format!("hog {pid}"));
    pid
}

/// The victim's pid of an event (0 for kills only the kernel counted).
pub(crate) fn victim(e: &Event) -> u32 {
    e.victim.as_ref().map_or(0, |v| v.pid)
}

/// The probe's event for the kill of `pid` in `cg`, once the daemon has it.
pub(crate) fn event_for(d: &Daemon, cg: &TestCgroup, pid: u32) -> Event {
    d.wait_until("the kill's event", Duration::from_secs(10), || d.events_in(cg).iter().any(|e| victim(e) == pid));
    d.events_in(cg).into_iter().find(|e| victim(e) == pid).unwrap()
}

/// The text of the event's reason of `kind`, if it gives one.
pub(crate) fn reason(e: &Event, kind: ReasonKind) -> Option<&str> {
    e.explanation.iter().find(|r| r.kind == kind).map(|r| r.text.as_str())
}
