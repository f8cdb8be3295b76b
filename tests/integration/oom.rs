//! OOM kills through the real daemon: every kill recorded in the right container, victims
//! that are not the trigger, a journal that survives restarts and garbage, kills that happen
//! while the daemon is down, `memwatch events`, and Go programs' GOMEMLIMIT.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use memwatch::oom::{Constraint, Event, Source};

use crate::util::{
    self, Workload,
    cgroup::TestCgroup,
    daemon::Daemon,
    oom::{MIB, kill_hog as kill_once, victim},
};

fn start(state: &Path) -> Daemon {
    util::oom::daemon(state, "500ms")
}

#[test]
fn twenty_kills_in_five_cgroups_each_in_the_right_container() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cgs: Vec<TestCgroup> = (0..5).map(|i| TestCgroup::new(&format!("kill{i}"), 32 * MIB)).collect();
    let started = Instant::now();
    // Four rounds; in each, the five cgroups' hogs run at once.
    let mut victims: Vec<Vec<u32>> = vec![vec![]; 5];
    for _ in 0..4 {
        let handles: Vec<_> = cgs.iter().map(|cg| Workload::start(&["hog"], Some(cg))).collect();
        for (i, mut h) in handles.into_iter().enumerate() {
            victims[i].push(h.pid());
            let st = h.child.wait().unwrap();
            util::assert_killed(st, "hog");
        }
    }
    let took = started.elapsed();
    d.wait_until("20 OOM events", Duration::from_secs(10), || cgs.iter().map(|cg| d.events_in(cg).len()).sum::<usize>() >= 20);
    for (i, cg) in cgs.iter().enumerate() {
        let evs = d.events_in(cg);
        assert_eq!(evs.len(), 4, "{}: {evs:#?}", cg.label());
        let mut pids: Vec<u32> = evs.iter().map(victim).collect();
        pids.sort();
        let mut want = victims[i].clone();
        want.sort();
        assert_eq!(pids, want, "victims of {}", cg.label());
        for e in &evs {
            assert_eq!(e.source, Source::Probe);
            assert_eq!(e.cgroup_id, cg.id());
            assert_eq!(e.constraint, Constraint::Cgroup);
            assert_eq!(e.constrained_by.as_deref(), Some(cg.label().as_str()));
            assert_eq!(e.victim.as_ref().unwrap().comm, "memwatch-worklo");
        }
        assert_eq!(cg.oom_kills(), 4, "the kernel's counter for {}", cg.label());
    }
    // The kernel's counters agree, so nothing is reported missed (after the grace period).
    thread::sleep(Duration::from_secs(3));
    let m = d.metrics();
    for cg in &cgs {
        assert!(d.events_in(cg).iter().all(|e| e.source == Source::Probe), "no missed kills in {}", cg.label());
        assert_eq!(m.get("memwatch_container_oom_kills_total", &cg.label(), None), Some(4.0));
        assert!(m.get("memwatch_container_last_oom_kill_timestamp_seconds", &cg.label(), None).is_some());
    }
    assert!(m.text.contains("memwatch_oom_kills_total{constraint=\"cgroup\"}"));
    eprintln!("20 kills in {took:?}");
}

#[test]
fn the_victim_is_named_not_the_process_that_triggered_the_kill() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("pair", 64 * MIB);
    let mut large = Workload::start(&["fill", "40"], Some(&cg));
    large.expect_line("ready");
    // Let a sample see the container before the kill: "before" numbers come from it.
    thread::sleep(Duration::from_millis(1200));
    let mut small = Workload::start(&["fill", "30"], Some(&cg));
    let (large_pid, small_pid) = (large.pid(), small.pid());
    let st = large.child.wait().unwrap();
    util::assert_killed(st, "the large process, the victim");
    small.expect_line("ready");
    d.wait_until("the kill's event", Duration::from_secs(5), || !d.events_in(&cg).is_empty());
    let e = &d.events_in(&cg)[0];
    assert_eq!(victim(e), large_pid, "{e:#?}");
    assert_eq!(e.trigger.as_ref().map(|t| t.pid), Some(small_pid), "{e:#?}");
    assert_eq!(e.cgroup_id, cg.id());
    assert!(e.victim.as_ref().unwrap().rss_bytes.unwrap() >= 39 * MIB, "{e:#?}");
    let before = e.before.as_ref().expect("the last sample before the kill");
    assert_eq!(before.limit_bytes, 64 * MIB);
    assert!(before.working_set_bytes >= 40 * MIB, "{e:#?}");
    let top: Vec<u32> = e.top_processes.iter().map(|p| p.pid).collect();
    assert!(top.contains(&large_pid), "largest processes before the kill: {top:?}");
    small.finish();
}

#[test]
fn the_journal_survives_a_restart() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let cg = TestCgroup::new("restart", 32 * MIB);
    let (pid, seq) = {
        let d = start(state.path());
        let pid = kill_once(&cg);
        d.wait_until("the event", Duration::from_secs(5), || !d.events_in(&cg).is_empty());
        (pid, d.events_in(&cg)[0].seq)
    };
    let d = start(state.path());
    let evs = d.events_in(&cg);
    assert_eq!(evs.len(), 1, "{evs:#?}");
    assert_eq!((victim(&evs[0]), evs[0].seq), (pid, seq));
    // The journal explains the kernel's count: nothing is reported missed.
    thread::sleep(Duration::from_secs(3));
    assert!(d.events_in(&cg).iter().all(|e| e.source == Source::Probe));
}

#[test]
fn a_kill_while_the_daemon_is_down_is_reported_as_missed() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let cg = TestCgroup::new("down", 32 * MIB);
    {
        let d = start(state.path());
        d.wait_until("the cgroup in a sample", Duration::from_secs(5), || {
            d.metrics().get("memwatch_container_oom_kills_total", &cg.label(), None) == Some(0.0)
        });
    }
    kill_once(&cg);
    assert_eq!(cg.oom_kills(), 1);
    let d = start(state.path());
    d.wait_until("a missed kill", Duration::from_secs(10), || !d.events_in(&cg).is_empty());
    let evs = d.events_in(&cg);
    assert_eq!(evs.len(), 1, "{evs:#?}");
    assert_eq!(evs[0].source, Source::KernelCounter);
    assert_eq!(evs[0].count, 1);
    assert!(evs[0].victim.is_none());
    let m = d.metrics();
    assert!(m.text.lines().any(|l| l.starts_with("memwatch_oom_kills_missed_by_probe_total ") && !l.ends_with(" 0")));
    assert_eq!(m.get("memwatch_container_oom_kills_total", &cg.label(), None), Some(1.0));
}

#[test]
fn a_garbled_journal_keeps_its_good_events() {
    util::require_root!();
    let state = tempfile::tempdir().unwrap();
    let journal = state.path().join("oom-events.jsonl");
    let good = |seq: u64| {
        format!(
            r#"{{"event":{{"seq":{seq},"time":1700000000.0,"source":"probe","count":1,"namespace":"","pod":"","container":"","container_id":"","cgroup":"/gone","cgroup_id":999999{seq},"cgroup_ids":[999999{seq}],"constraint":"cgroup","victim":{{"pid":4{seq},"comm":"old","vsz_bytes":null,"rss_bytes":null,"anon_rss_bytes":null,"oom_score_adj":null}}}}}}"#
        )
    };
    let text = format!("{}\n{}\n{{\"event\":{{\"seq\":3,\"tim\u{0}\u{7f}garbage\n{}\n{}", good(1), good(2), good(4), &good(5)[..40]);
    std::fs::write(&journal, text).unwrap();
    let d = start(state.path());
    let evs = d.events();
    let seqs: Vec<u64> = evs.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2], "the good events before the garbage");
    assert!(d.log().contains("truncated or garbled"), "a warning: {}", d.log());
    let kept = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(kept, format!("{}\n{}\n", good(1), good(2)), "the bad tail is cut off");
}

#[test]
fn memwatch_events_shows_a_kill_within_a_second() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("follow", 32 * MIB);
    let mut follower =
        Command::new(util::memwatch_bin()).args(["events", "--json", "--url", &d.base]).stdout(Stdio::piped()).spawn().unwrap();
    let lines = BufReader::new(follower.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, String)>();
    thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });
    thread::sleep(Duration::from_millis(500));
    let pid = kill_once(&cg);
    let died = Instant::now();
    let (at, line) = loop {
        let (at, line) = rx.recv_timeout(Duration::from_secs(5)).expect("an event line from memwatch events");
        let e: Event = serde_json::from_str(&line).unwrap_or_else(|err| panic!("memwatch events --json wrote no event ({err}): {line}"));
        if victim(&e) == pid {
            break (at, e);
        }
    };
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(at.saturating_duration_since(died) < Duration::from_secs(1), "shown {:?} after the kill", at.saturating_duration_since(died));
    assert_eq!(line.cgroup, cg.label());
    assert_eq!(line.constraint, Constraint::Cgroup);
    // The human form names the victim and the container.
    let out = Command::new(util::memwatch_bin()).args(["events", "--no-follow", "--url", &d.base]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("pid {pid} (memwatch-worklo)")) && text.contains(&cg.label()), "{text}");
}

use util::programs::gomem;

#[test]
fn go_programs_report_gomemlimit_and_nothing_else_from_their_environment() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("go", 48 * MIB);
    // A Go service with GOMEMLIMIT and a secret in its environment, and a Go hog without.
    let mut svc = Command::new(gomem());
    svc.arg("sleep")
        .env("GOMEMLIMIT", "40MiB")
        .env("GOGC", "50")
        .env("MEMWATCH_TEST_SECRET", "hunter2-do-not-leak")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    cg.join_before_exec(&mut svc);
    let mut svc = svc.spawn().unwrap();
    let mut ready = String::new();
    BufReader::new(svc.stdout.as_mut().unwrap()).read_line(&mut ready).unwrap();
    thread::sleep(Duration::from_millis(1200)); // a sample sees the service
    let mut hog = Command::new(gomem());
    hog.arg("hog").env_remove("GOMEMLIMIT").stdout(Stdio::null());
    cg.join_before_exec(&mut hog);
    let mut hog = hog.spawn().unwrap();
    let hog_pid = hog.id();
    let st = hog.wait().unwrap();
    util::assert_killed(st, "the Go hog");
    d.wait_until("the Go hog's kill", Duration::from_secs(5), || d.events_in(&cg).iter().any(|e| victim(e) == hog_pid));
    let e = d.events_in(&cg).into_iter().find(|e| victim(e) == hog_pid).unwrap();
    let service = e.go.iter().find(|g| g.pid == svc.id()).unwrap_or_else(|| panic!("the Go service in {e:#?}"));
    assert_eq!(service.gomemlimit.as_deref(), Some("40MiB"));
    assert_eq!(service.gogc.as_deref(), Some("50"));
    if let Some(v) = e.go.iter().find(|g| g.pid == hog_pid) {
        assert!(v.gomemlimit.is_none(), "the hog had no GOMEMLIMIT: {v:?}");
    }
    // Nothing else from the environment reaches the API or the journal.
    let (_, api) = d.get("/api/v1/events").unwrap();
    let journal = std::fs::read_to_string(state.path().join("oom-events.jsonl")).unwrap();
    assert!(!api.contains("hunter2") && !journal.contains("hunter2"));
    assert!(!api.contains("MEMWATCH_TEST_SECRET"));
    drop(svc.stdin.take());
    let _ = svc.wait();
}
