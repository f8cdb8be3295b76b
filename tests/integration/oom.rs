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

use serde_json::Value;

use crate::util::{self, Workload, cgroup::TestCgroup, daemon::Daemon};

const MIB: u64 = 1 << 20;

fn start(state: &Path) -> Daemon {
    Daemon::start(&["--interval", "500ms", "--state-dir", state.to_str().unwrap()])
}

/// Runs the hog in `cg` until the kernel kills it.
fn kill_once(cg: &TestCgroup) -> u32 {
    let mut hog = Workload::start(&["hog"], Some(cg));
    let pid = hog.pid();
    let status = hog.child.wait().unwrap();
    util::assert_killed(status, &format!("hog {pid}"));
    pid
}

#[test]
fn twenty_kills_in_five_cgroups_each_in_the_right_container() {
    if !util::require_root("twenty_kills_in_five_cgroups_each_in_the_right_container") {
        return;
    }
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
        let mut pids: Vec<u64> = evs.iter().map(|e| e["victim"]["pid"].as_u64().unwrap()).collect();
        pids.sort();
        let mut want: Vec<u64> = victims[i].iter().map(|p| *p as u64).collect();
        want.sort();
        assert_eq!(pids, want, "victims of {}", cg.label());
        for e in &evs {
            assert_eq!(e["source"], "probe");
            assert_eq!(e["cgroup_id"], cg.id());
            assert_eq!(e["constraint"], "cgroup");
            assert_eq!(e["constrained_by"], cg.label().as_str());
            assert_eq!(e["victim"]["comm"], "memwatch-worklo");
        }
        assert_eq!(cg.oom_kills(), 4, "the kernel's counter for {}", cg.label());
    }
    // The kernel's counters agree, so nothing is reported missed (after the grace period).
    thread::sleep(Duration::from_secs(3));
    let m = d.metrics();
    for cg in &cgs {
        assert!(d.events_in(cg).iter().all(|e| e["source"] == "probe"), "no missed kills in {}", cg.label());
        assert_eq!(m.get("memwatch_container_oom_kills_total", &cg.label(), None), Some(4.0));
        assert!(m.get("memwatch_container_last_oom_kill_timestamp_seconds", &cg.label(), None).is_some());
    }
    assert!(m.text.contains("memwatch_oom_kills_total{constraint=\"cgroup\"}"));
    eprintln!("20 kills in {took:?}");
}

#[test]
fn the_victim_is_named_not_the_process_that_triggered_the_kill() {
    if !util::require_root("the_victim_is_named_not_the_process_that_triggered_the_kill") {
        return;
    }
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
    assert_eq!(e["victim"]["pid"], large_pid, "{e:#}");
    assert_eq!(e["trigger"]["pid"], small_pid, "{e:#}");
    assert_eq!(e["cgroup_id"], cg.id());
    assert!(e["victim"]["rss_bytes"].as_u64().unwrap() >= 39 * MIB, "{e:#}");
    assert_eq!(e["before"]["limit_bytes"], 64 * MIB);
    assert!(e["before"]["working_set_bytes"].as_u64().unwrap() >= 40 * MIB, "{e:#}");
    let top: Vec<u64> = e["top_processes"].as_array().unwrap().iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    assert!(top.contains(&(large_pid as u64)), "largest processes before the kill: {top:?}");
    small.finish();
}

#[test]
fn the_journal_survives_a_restart() {
    if !util::require_root("the_journal_survives_a_restart") {
        return;
    }
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let cg = TestCgroup::new("restart", 32 * MIB);
    let (pid, seq) = {
        let d = start(state.path());
        let pid = kill_once(&cg);
        d.wait_until("the event", Duration::from_secs(5), || !d.events_in(&cg).is_empty());
        (pid, d.events_in(&cg)[0]["seq"].clone())
    };
    let d = start(state.path());
    let evs = d.events_in(&cg);
    assert_eq!(evs.len(), 1, "{evs:#?}");
    assert_eq!((evs[0]["victim"]["pid"].as_u64(), &evs[0]["seq"]), (Some(pid as u64), &seq));
    // The journal explains the kernel's count: nothing is reported missed.
    thread::sleep(Duration::from_secs(3));
    assert!(d.events_in(&cg).iter().all(|e| e["source"] == "probe"));
}

#[test]
fn a_kill_while_the_daemon_is_down_is_reported_as_missed() {
    if !util::require_root("a_kill_while_the_daemon_is_down_is_reported_as_missed") {
        return;
    }
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
    assert_eq!(evs[0]["source"], "kernel_counter");
    assert_eq!(evs[0]["count"], 1);
    assert!(evs[0]["victim"].is_null());
    let m = d.metrics();
    assert!(m.text.lines().any(|l| l.starts_with("memwatch_oom_kills_missed_by_probe_total ") && !l.ends_with(" 0")));
    assert_eq!(m.get("memwatch_container_oom_kills_total", &cg.label(), None), Some(1.0));
}

#[test]
fn a_garbled_journal_keeps_its_good_events() {
    if !util::require_root("a_garbled_journal_keeps_its_good_events") {
        return;
    }
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
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2], "the good events before the garbage");
    assert!(d.log().contains("truncated or garbled"), "a warning: {}", d.log());
    let kept = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(kept, format!("{}\n{}\n", good(1), good(2)), "the bad tail is cut off");
}

#[test]
fn memwatch_events_shows_a_kill_within_a_second() {
    if !util::require_root("memwatch_events_shows_a_kill_within_a_second") {
        return;
    }
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
        let e: Value = serde_json::from_str(&line).unwrap();
        if e["victim"]["pid"] == pid {
            break (at, e);
        }
    };
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(at.saturating_duration_since(died) < Duration::from_secs(1), "shown {:?} after the kill", at.saturating_duration_since(died));
    assert_eq!(line["cgroup"], cg.label().as_str());
    assert_eq!(line["constraint"], "cgroup");
    // The human form names the victim and the container.
    let out = Command::new(util::memwatch_bin()).args(["events", "--no-follow", "--url", &d.base]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("pid {pid} (memwatch-worklo)")) && text.contains(&cg.label()), "{text}");
}

use util::programs::gomem;

#[test]
fn go_programs_report_gomemlimit_and_nothing_else_from_their_environment() {
    if !util::require_root("go_programs_report_gomemlimit_and_nothing_else_from_their_environment") {
        return;
    }
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
    d.wait_until("the Go hog's kill", Duration::from_secs(5), || d.events_in(&cg).iter().any(|e| e["victim"]["pid"] == hog_pid));
    let e = d.events_in(&cg).into_iter().find(|e| e["victim"]["pid"] == hog_pid).unwrap();
    let go = e["go"].as_array().unwrap();
    let service = go.iter().find(|g| g["pid"] == svc.id()).unwrap_or_else(|| panic!("the Go service in {e:#}"));
    assert_eq!(service["gomemlimit"], "40MiB");
    assert_eq!(service["gogc"], "50");
    if let Some(victim) = go.iter().find(|g| g["pid"] == hog_pid) {
        assert!(victim["gomemlimit"].is_null(), "the hog had no GOMEMLIMIT: {victim}");
    }
    // Nothing else from the environment reaches the API or the journal.
    let (_, api) = d.get("/api/v1/events").unwrap();
    let journal = std::fs::read_to_string(state.path().join("oom-events.jsonl")).unwrap();
    assert!(!api.contains("hunter2") && !journal.contains("hunter2"));
    assert!(!api.contains("MEMWATCH_TEST_SECRET"));
    drop(svc.stdin.take());
    let _ = svc.wait();
}
