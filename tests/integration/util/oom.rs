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

/// How long a program run until killed may take before the test gives up on it.
const KILL_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `cmd` in `cg` until the kernel kills it; returns its pid and how long it lived. Fails
/// (and kills it) when no kill came within [`KILL_DEADLINE`].
pub(crate) fn run_until_killed(mut cmd: Command, cg: &TestCgroup) -> (u32, Duration) {
    cmd.stdout(Stdio::null());
    run_until_killed_as_is(cmd, cg)
}

/// The same, keeping what the program wrote to stdout.
pub(crate) fn run_until_killed_output(mut cmd: Command, cg: &TestCgroup) -> (u32, Duration, String) {
    let out = tempfile::tempfile().unwrap();
    cmd.stdout(out.try_clone().unwrap());
    let (pid, lived) = run_until_killed_as_is(cmd, cg);
    let mut text = String::new();
    let mut out = out;
    std::io::Seek::rewind(&mut out).unwrap();
    std::io::Read::read_to_string(&mut out, &mut text).unwrap();
    (pid, lived, text)
}

fn run_until_killed_as_is(mut cmd: Command, cg: &TestCgroup) -> (u32, Duration) {
    cg.join_before_exec(&mut cmd);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start the program");
    let pid = child.id();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > KILL_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} was not killed within {KILL_DEADLINE:?} (usage {} of the limit)", cg.usage());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lived = started.elapsed();
    super::assert_killed(st, &format!("{cmd:?}"));
    (pid, lived)
}

/// Runs a program once outside any test cgroup, so the pages of its executable and libraries
/// are in the page cache, charged to memwatch's own cgroup rather than to a test's: a program
/// run at a test cgroup's limit then cannot thrash on re-reading its own code (the kernel would
/// reclaim those pages from the test cgroup and fault them back, without end).
pub(crate) fn warm(mut cmd: Command) {
    let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
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
