//! `memwatch trace` and `/api/v1/trace` through the real daemon: the file is a well-formed
//! Chrome trace, the OOM kill is an instant at the kill's time, and the counters agree with the
//! JSON API's values at the same sample.
use std::{process::Command, time::Duration};

use serde_json::Value;

use crate::util::{self, Workload, cgroup::TestCgroup, daemon::Daemon, programs};

const MIB: u64 = 1 << 20;

/// The value of counter track `name` of process `pid` in force at `ts` (µs).
fn counter_at(evs: &[Value], pid: u64, name: &str, ts: f64) -> Option<u64> {
    evs.iter()
        .filter(|e| e["ph"] == "C" && e["pid"] == pid && e["name"] == name && e["ts"].as_f64().unwrap() <= ts)
        .max_by(|a, b| a["ts"].as_f64().unwrap().total_cmp(&b["ts"].as_f64().unwrap()))
        .and_then(|e| e["args"][name].as_u64())
}

#[test]
fn a_trace_of_a_container_and_its_kill() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = Daemon::start(&["--interval", "500ms", "--state-dir", state.path().to_str().unwrap()]);
    let cg = TestCgroup::new("trace", 64 * MIB);
    let mut resident = Workload::start(&["fill", "8"], Some(&cg));
    resident.expect_line("ready");
    d.wait_until("the container in a sample", Duration::from_secs(5), || {
        d.metrics().get("memwatch_container_memory_working_set_bytes", &cg.label(), None).is_some_and(|v| v >= (8 * MIB) as f64)
    });
    let mut cmd = Command::new(programs::memtest());
    cmd.arg("hog").stdout(std::process::Stdio::null());
    cg.join_before_exec(&mut cmd);
    let st = cmd.spawn().unwrap().wait().unwrap();
    util::assert_killed(st, "the hog");
    d.wait_until("the kill's event", Duration::from_secs(10), || {
        let (_, body) = d.get("/api/v1/events?kind=oom_kill").unwrap();
        body.contains(&cg.label())
    });
    std::thread::sleep(Duration::from_secs(1)); // a sample after the kill
    let (_, body) = d.get("/api/v1/containers").unwrap();
    let api: Value = serde_json::from_str(&body).unwrap();
    let taken_at = api["taken_at"].as_f64().unwrap();
    let ours = api["containers"].as_array().unwrap().iter().find(|c| c["cgroup"] == cg.label().as_str()).unwrap().clone();
    let (_, body) = d.get("/api/v1/events?kind=oom_kill").unwrap();
    let kill = serde_json::from_str::<Value>(&body).unwrap()["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["cgroup"] == cg.label().as_str())
        .unwrap()
        .clone();

    let file = state.path().join("trace.json");
    let out = Command::new(util::memwatch_bin())
        .args(["trace", "--remote", &d.base, "--since", "5m", "--container", &cg.label(), "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let trace: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).expect("the trace is JSON");
    let evs = trace["traceEvents"].as_array().expect("traceEvents");
    // Well formed for the trace event format.
    for e in evs {
        let ph = e["ph"].as_str().unwrap_or_else(|| panic!("no ph: {e}"));
        assert!(["M", "C", "i"].contains(&ph), "{e}");
        assert!(e["name"].is_string() && e["pid"].is_u64() && e["tid"].is_u64() && e["args"].is_object(), "{e}");
        if ph != "M" {
            assert!(e["ts"].as_f64().is_some_and(|t| t > 1e15), "ts in µs since the epoch: {e}");
        }
    }
    // One container, named through metadata.
    let names: Vec<&Value> = evs.iter().filter(|e| e["ph"] == "M" && e["name"] == "process_name").collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(names[0]["args"]["name"], cg.label().as_str());
    let pid = names[0]["pid"].as_u64().unwrap();
    // The kill, an instant at its time with its facts.
    let instant =
        evs.iter().find(|e| e["ph"] == "i" && e["name"].as_str().is_some_and(|n| n.starts_with("OOM kill"))).expect("the OOM kill");
    assert_eq!(instant["pid"], pid);
    assert_eq!(instant["ts"].as_f64().unwrap(), (kill["time"].as_f64().unwrap() * 1e6).round());
    assert_eq!(instant["args"]["victim"]["pid"], kill["victim"]["pid"]);
    assert_eq!(instant["args"]["at_kill"]["limit_bytes"], 64 * MIB);
    // Counters agree with the API at the same sample.
    let at = (taken_at * 1e6).round();
    for (track, field) in
        [("working_set_bytes", "working_set_bytes"), ("rss_bytes", "rss_bytes"), ("limit_bytes", "limit_bytes"), ("vsz_bytes", "vsz_bytes")]
    {
        assert_eq!(counter_at(evs, pid, track, at), ours[field].as_u64(), "{track} at {taken_at}");
    }
    assert!(evs.iter().any(|e| e["ph"] == "C" && e["name"] == "page_faults_per_second"), "rates too");
    // A bad query is a clear 400.
    let (status, body) = d.get("/api/v1/trace?since=soon").unwrap();
    assert_eq!(status, 400, "{body}");
    resident.finish();
}
