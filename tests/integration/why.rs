//! Why did it die? Real kills in real cgroups, through the real daemon: the state at the kill
//! from the kernel, the explanation in plain words (anonymous growth by a named process,
//! tmpfs, Go's GOMEMLIMIT with a number), and a first install that stays quiet about kills
//! from before it.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use memwatch::oom::{Constraint, Source, event::GrowthField, event::ReasonKind};

use crate::util::{
    self,
    cgroup::TestCgroup,
    daemon::Daemon,
    oom::{MIB, event_for, reason, run_until_killed},
    programs,
};

fn start(state: &Path) -> Daemon {
    util::oom::daemon(state, "1s")
}

fn page() -> u64 {
    memwatch::host::page_size()
}

#[test]
fn a_c_program_killed_young_has_its_state_at_the_kill_from_the_kernel() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let limit = 32 * MIB;
    let cg = TestCgroup::new("young", limit);
    let mut cmd = Command::new(programs::memtest());
    cmd.arg("hog");
    let (pid, lived) = run_until_killed(cmd, &cg);
    eprintln!("the C hog lived {lived:?}");
    let e = event_for(&d, &cg, pid);
    let at = e.at_kill.as_ref().unwrap_or_else(|| panic!("no state at the kill: {e:#?}"));
    assert_eq!(at.cgroup, cg.label(), "{e:#?}");
    assert_eq!(at.limit_bytes, Some(limit), "{e:#?}");
    let usage = at.usage_bytes;
    assert!(usage <= limit && limit - usage <= 32 * page(), "usage at the kill {usage} is not within a few pages of {limit}");
    // Anonymous memory filled it, and the explanation says so and names the process.
    let anon = at.anon_bytes.expect("anon at the kill");
    assert!(anon >= limit / 2, "anon {anon} of {usage}: {e:#?}");
    let text = reason(&e, ReasonKind::AnonGrowth).unwrap_or_else(|| panic!("no anon_growth in {e:#?}"));
    assert!(text.contains(&format!("memtest (pid {pid})")), "{text}");
    assert_eq!(e.constraint, Constraint::Cgroup);
    let missing = &at.missing;
    assert!(!missing.iter().any(|m| m == "anon" || m == "file" || m == "shmem"), "{missing:?}");
    // What grew: anon, from the window's start (or from nothing, for a container never sampled)
    // to the kill.
    let recent = e.recent.as_ref().unwrap_or_else(|| panic!("no recent history: {e:#?}"));
    let grew = recent.growth.iter().find(|g| g.what == GrowthField::Anon).unwrap_or_else(|| panic!("no anon growth in {e:#?}"));
    assert_eq!(grew.to_bytes, anon, "{grew:?}");
    assert!(grew.delta_bytes >= (limit / 4) as i64, "{grew:?}");
    // A container this young was likely never sampled: when it was not, the event says so.
    if recent.first_seen_seconds_before.is_none() {
        assert!(recent.younger_than_a_sample);
        assert!(reason(&e, ReasonKind::Young).is_some(), "{e:#?}");
    }
    // `memwatch events` gives the state at the kill and a sentence of why.
    let out = Command::new(util::memwatch_bin()).args(["events", "--no-follow", "--url", &d.base]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().position(|l| l.contains(&format!("pid {pid} "))).unwrap_or_else(|| panic!("{text}"));
    assert!(text.lines().nth(line).unwrap().contains("at the kill:"), "{text}");
    assert!(text.lines().nth(line + 1).is_some_and(|l| l.contains("Anonymous memory")), "{text}");
    // And the log line carries the why.
    assert!(d.log().contains("why=\"Anonymous memory"), "{}", d.log());
}

#[test]
fn a_go_program_without_gomemlimit_gets_the_advice_and_survives_with_it() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("gochurn", 64 * MIB);
    // 36 MiB live, 4 MiB buffers churned: with GOGC=100 the heap may reach twice the live data.
    let mut cmd = Command::new(programs::gomem());
    cmd.args(["churn", "36", "10"]).env_remove("GOMEMLIMIT").env_remove("GOGC");
    let (pid, lived) = run_until_killed(cmd, &cg);
    eprintln!("the Go program lived {lived:?}");
    let e = event_for(&d, &cg, pid);
    let advice = reason(&e, ReasonKind::GoGomemlimitUnset).unwrap_or_else(|| panic!("no GOMEMLIMIT advice in {e:#?}"));
    assert!(advice.contains("GOMEMLIMIT is unset: Go's GC does not know the 64.0 MiB limit"), "{advice}");
    assert!(advice.contains("set GOMEMLIMIT≈58MiB (90% of the limit)"), "{advice}");
    assert!(e.go.iter().any(|g| g.pid == pid && g.gomemlimit.is_none()), "{e:#?}");
    // The same program with the advice taken runs its full time under the same limit.
    let mut cmd = Command::new(programs::gomem());
    cmd.args(["churn", "36", "5"]).env("GOMEMLIMIT", "58MiB").env_remove("GOGC").stdout(Stdio::piped());
    cg.join_before_exec(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let st = child.wait().unwrap();
    let said: Vec<String> = lines.by_ref().map_while(Result::ok).collect();
    assert!(st.success(), "with GOMEMLIMIT=58MiB the program ended with {st} after saying {said:?}");
    assert_eq!(said.last().map(String::as_str), Some("survived"));
}

/// A tmpfs mounted by the test, unmounted when dropped (also on failure).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=128m", "memwatch-test"]).arg(dir.path()).status().unwrap();
        assert!(st.success(), "mount tmpfs");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn tmpfs_counted_against_the_limit_is_named() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let tmpfs = Tmpfs::mount();
    let cg = TestCgroup::new("tmpfs", 64 * MIB);
    let file = tmpfs.0.path().join("fill");
    let mut cmd = Command::new(programs::memtest());
    cmd.arg("tmpfs").arg(&file).arg("40");
    let (pid, _) = run_until_killed(cmd, &cg);
    let e = event_for(&d, &cg, pid);
    let shmem = e.at_kill.as_ref().and_then(|a| a.shmem_bytes).unwrap_or_else(|| panic!("no shmem at the kill: {e:#?}"));
    assert!(shmem >= 39 * MIB, "shmem {shmem}");
    let text = reason(&e, ReasonKind::Shmem).unwrap_or_else(|| panic!("no shmem reason in {e:#?}"));
    assert!(text.contains("tmpfs"), "{text}");
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn a_first_install_is_quiet_about_kills_from_before_it() {
    util::require_root!();
    let _serial = util::serial();
    let cg = TestCgroup::new("before", 32 * MIB);
    // Kills while no memwatch ever ran here.
    let mut cmd = Command::new(programs::memtest());
    cmd.arg("hog");
    run_until_killed(cmd, &cg);
    assert_eq!(cg.oom_kills(), 1);
    let state = tempfile::tempdir().unwrap();
    let missed = |d: &Daemon| {
        d.metrics().text.lines().find_map(|l| l.strip_prefix("memwatch_oom_kills_missed_by_probe_total ")?.parse::<f64>().ok())
    };
    {
        let d = start(state.path());
        d.wait_until("the cgroup in a sample", Duration::from_secs(5), || {
            d.metrics().get("memwatch_container_oom_kills_total", &cg.label(), None) == Some(1.0)
        });
        thread::sleep(Duration::from_secs(4)); // past the grace for records on their way
        assert!(d.events_in(&cg).is_empty(), "{:#?}", d.events_in(&cg));
        assert_eq!(missed(&d), Some(0.0));
        let log = d.log();
        assert!(!log.contains("missed by the probe"), "{log}");
        assert!(log.contains("before memwatch started"), "{log}");
    }
    // Once memwatch has run, a kill while it is down is reported as missed.
    let mut cmd = Command::new(programs::memtest());
    cmd.arg("hog");
    run_until_killed(cmd, &cg);
    let d = start(state.path());
    d.wait_until("a missed kill", Duration::from_secs(10), || !d.events_in(&cg).is_empty());
    let evs = d.events_in(&cg);
    assert_eq!((evs.len(), evs[0].source, evs[0].count), (1, Source::KernelCounter, 1), "{evs:#?}");
    assert_eq!(missed(&d), Some(1.0));
    assert_eq!(evs[0].explanation[0].kind, ReasonKind::Missed);
}
