//! Warnings before a kill, on the real kernel: a container growing toward its limit is warned
//! once, in time, naming who grows, and its kill names the warning; one hovering at the
//! threshold gets one warning and one cleared, not a storm.
use std::{process::Command, time::Duration};

use memwatch::oom::{Event, EventKind};
use serde_json::Value;

use crate::util::{self, Workload, cgroup::TestCgroup, daemon::Daemon};

const MIB: u64 = 1 << 20;

fn start(state: &std::path::Path) -> Daemon {
    Daemon::start(&["--interval", "500ms", "--state-dir", state.to_str().unwrap()])
}

fn of_kind<'a>(events: &'a [Event], cg: &TestCgroup, kind: EventKind) -> Vec<&'a Event> {
    events.iter().filter(|e| e.cgroup == cg.label() && e.kind == kind).collect()
}

#[test]
fn a_container_growing_slowly_is_warned_once_before_its_kill_and_the_kill_names_the_warning() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("warned", 256 * MIB);
    // 250 KiB every 100 ms: about 2.5 MiB/s, killed some 100 s after it starts. Its start-up
    // (the first 30 s) is no trend; a growth sustained through 30 s after it is, once half the
    // limit is used.
    let mut w = Workload::start(&["grow", "250", "1000"], Some(&cg));
    w.expect_line("ready");
    let pid = w.pid();
    let st = w.child.wait().unwrap();
    util::assert_killed(st, "the slow grower");
    d.wait_until("the kill's event", Duration::from_secs(10), || !d.events_in(&cg).is_empty());
    let all = d.all_events();
    let kill = d.events_in(&cg).into_iter().find(|e| e.victim.as_ref().is_some_and(|v| v.pid == pid)).expect("the kill's event");
    let warnings: Vec<&Event> = of_kind(&all, &cg, EventKind::Warning).into_iter().filter(|e| e.time <= kill.time).collect();
    assert_eq!(warnings.len(), 1, "exactly one warning before the kill: {warnings:#?}");
    let warning = warnings[0];
    let facts = warning.warning.as_ref().expect("a warning's facts");
    // Its expected time to the limit, against the time it really took.
    let predicted = facts.time_to_limit_seconds.expect("a time to the limit");
    let real = kill.time - warning.time;
    eprintln!("warned {real:.1} s before the kill, predicting {predicted:.1} s; risks {:?}", facts.risks);
    assert!(real > 0.0 && predicted / real <= 2.0 && real / predicted <= 2.0, "predicted {predicted:.1} s, took {real:.1} s");
    assert!(real >= 20.0, "warned only {real:.1} s before the kill");
    assert!(facts.growth_bytes_per_second.is_some_and(|g| g > MIB as f64 && g < 16.0 * MIB as f64), "{facts:?}");
    assert_eq!(facts.state.limit_bytes, 256 * MIB);
    // It names the process that grows.
    let grower = warning.recent.as_ref().and_then(|r| r.processes.first()).unwrap_or_else(|| panic!("who grew: {warning:#?}"));
    assert_eq!(grower.pid, pid, "{warning:#?}");
    let text = &warning.explanation.first().expect("a reason").text;
    assert!(text.starts_with("At risk of an OOM kill") && text.contains(&format!("(pid {pid})")), "{text}");
    // The story links: the kill names the warning, and how long before.
    let warned = kill.warned.as_ref().unwrap_or_else(|| panic!("the kill names its warning: {kill:#?}"));
    assert_eq!(warned.seq, warning.seq);
    assert!((warned.seconds_before - real).abs() < 0.01, "{warned:?}");
    // Still in force after the kill (not calm for 30 s yet): exported with when it was raised.
    let raised = d.metrics().get("memwatch_container_memory_warning_timestamp_seconds", &cg.label(), None);
    assert!(raised.is_some_and(|t| (t - warning.time).abs() < 0.01), "{raised:?} vs {}", warning.time);
    // One log line each.
    let log = d.log();
    assert!(log.contains("memory warning: at risk of an OOM kill") && log.contains(&format!("warned_seq={}", warning.seq)), "{log}");

    // The JSON as served: valid, with its kind; paging by `since` and `after` across kinds.
    let (_, body) = d.get("/api/v1/events").unwrap();
    let v: Value = serde_json::from_str(&body).expect("valid JSON");
    let served = v["events"].as_array().unwrap().iter().find(|e| e["seq"] == warning.seq).unwrap().clone();
    assert_eq!(served["kind"], "warning", "{served:#}");
    assert_eq!(served["warning"]["state"]["limit_bytes"], 256 * MIB, "{served:#}");
    let seqs = |q: &str| -> Vec<u64> { d.events_of(q).iter().filter(|e| e.cgroup == cg.label()).map(|e| e.seq).collect() };
    assert_eq!(seqs(&format!("?after={}", warning.seq - 1)), [warning.seq, kill.seq], "the warning, then the kill");
    assert_eq!(seqs(&format!("?after={}", warning.seq)), [kill.seq]);
    assert_eq!(seqs(&format!("?since={}", warning.time)), [warning.seq, kill.seq]);
    assert_eq!(seqs(&format!("?since={}", warning.time + 0.001)), [kill.seq]);
    assert_eq!(seqs("?kind=warning"), [warning.seq]);
    assert_eq!(seqs("?kind=oom_kill,warning"), [warning.seq, kill.seq]);
    let (status, body) = d.get("/api/v1/events?kind=nonsense").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown event kind \"nonsense\""), "{body}");
    // `memwatch events` tells the story in order.
    let out = Command::new(util::memwatch_bin()).args(["events", "--no-follow", "--url", &d.base]).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    eprintln!("{printed}");
    let at = |what: &str| printed.find(what).unwrap_or_else(|| panic!("{what:?} in {printed}"));
    assert!(at("WARNING: at risk of an OOM kill") < at("OOM kill in"), "{printed}");
    assert!(printed.contains(&format!("before (event {})", warning.seq)), "{printed}");
}

#[test]
fn a_container_hovering_at_the_threshold_gets_one_warning_and_one_cleared() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("hover", 100 * MIB);
    // Its working set crosses 80% of the limit (headroom 20%) both ways every 2.5 s for a
    // minute, never down to the 30% headroom that calms a warning; then it frees it all.
    let mut w = Workload::start(&["hover", "68", "86", "2500", "60"], Some(&cg));
    w.expect_line("ready");
    w.expect_line("calm");
    let hovered = d.all_events();
    let warnings = of_kind(&hovered, &cg, EventKind::Warning);
    assert_eq!(warnings.len(), 1, "one warning over a minute at the threshold: {warnings:#?}");
    assert!(of_kind(&hovered, &cg, EventKind::Cleared).is_empty(), "no cleared while it hovers");
    // Calm for 30 s: cleared, once.
    d.wait_until("the cleared event", Duration::from_secs(60), || !of_kind(&d.all_events(), &cg, EventKind::Cleared).is_empty());
    let all = d.all_events();
    let cleared = of_kind(&all, &cg, EventKind::Cleared);
    assert_eq!((of_kind(&all, &cg, EventKind::Warning).len(), cleared.len()), (1, 1), "{all:#?}");
    let facts = cleared[0].warning.as_ref().unwrap();
    assert_eq!(facts.warning_seq, Some(warnings[0].seq));
    assert!(facts.warned_for_seconds.is_some_and(|s| s >= 60.0), "{facts:?}");
    assert!(cleared[0].explanation[0].text.starts_with("No longer at risk"), "{:?}", cleared[0].explanation);
    w.finish();
}
