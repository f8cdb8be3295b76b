//! Least privilege, run for real: the daemon with exactly the capabilities the DaemonSet grants
//! (read from `deploy/kubernetes/daemonset.yaml`, everything else dropped with `setpriv`, no new
//! privileges), as root in a container would run it and as an unprivileged uid with ambient
//! capabilities; then without CAP_BPF, where it serves the cgroup and /proc series and names
//! the missing capability.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::util::{self, cgroup::TestCgroup, daemon::Daemon, programs};

const MIB: u64 = 1 << 20;
const NOBODY: &str = "65534";

/// The capabilities the DaemonSet adds (it drops all others), lower case, without `CAP_`.
fn daemonset_capabilities() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/daemonset.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut caps = Vec::new();
    let mut in_add = false;
    for line in text.lines() {
        let t = line.trim();
        if t == "add:" {
            in_add = true;
        } else if in_add && t.starts_with("- ") {
            let cap = t[2..].split('#').next().unwrap().trim().trim_matches('"');
            caps.push(cap.to_ascii_lowercase());
        } else if in_add {
            in_add = false;
        }
    }
    assert!(text.contains("drop: [\"ALL\"]"), "the DaemonSet drops every capability it does not add");
    assert!(!caps.is_empty(), "no capabilities found in {}", path.display());
    caps
}

fn set(caps: &[String]) -> String {
    std::iter::once("-all".to_string()).chain(caps.iter().map(|c| format!("+{c}"))).collect::<Vec<_>>().join(",")
}

/// `setpriv` arguments: uid 0 with only `caps` (as `runAsUser: 0` with `capabilities: {drop:
/// [ALL], add: caps}` and `allowPrivilegeEscalation: false`).
fn as_root_with(caps: &[String]) -> Vec<String> {
    let s = set(caps);
    ["setpriv", "--reuid", "0", "--regid", "0", "--clear-groups", "--bounding-set", &s, "--inh-caps", "-all", "--no-new-privs"]
        .map(String::from)
        .to_vec()
}

/// `setpriv` arguments: uid 65534 holding `caps` as ambient capabilities.
fn as_nobody_with(caps: &[String]) -> Vec<String> {
    let s = set(caps);
    [
        "setpriv",
        "--reuid",
        NOBODY,
        "--regid",
        NOBODY,
        "--clear-groups",
        "--bounding-set",
        &s,
        "--inh-caps",
        &s,
        "--ambient-caps",
        &s,
        "--no-new-privs",
    ]
    .map(String::from)
    .to_vec()
}

/// `memwatch check --json` (every probe this host can attach asked for), under `wrapper`:
/// each probe's (name, state, method).
fn probe_states(wrapper: &[String]) -> Vec<(String, String, String)> {
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(util::memwatch_bin());
            c
        }
        None => Command::new(util::memwatch_bin()),
    };
    let out = cmd.args(["check", "--json", "--syscall-tracepoints", "--ebpf-page-faults"]).stderr(Stdio::piped()).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check --json under {wrapper:?}: {e}; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().into(), p["state"].as_str().unwrap().into(), p["method"].as_str().unwrap_or("").into()))
        .collect()
}

#[test]
fn the_daemonsets_capabilities_are_enough() {
    util::require_root!();
    let _serial = util::serial();
    let caps = daemonset_capabilities();
    // Every probe attaches as it does with full root, by the same method: as root with only
    // the DaemonSet's capabilities, and as nobody with them as ambient capabilities.
    let full = probe_states(&[]);
    assert!(full.iter().any(|p| p.1 == "attached"), "{full:?}");
    assert_eq!(probe_states(&as_root_with(&caps)), full, "with {caps:?} as root");
    assert_eq!(probe_states(&as_nobody_with(&caps)), full, "with {caps:?} as uid {NOBODY}");

    // The daemon with only those: an OOM kill of another user's Go program is recorded with its
    // state at the kill, and its environment's GOGC read (CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH).
    let state = tempfile::tempdir().unwrap();
    let flags = ["--syscall-tracepoints", "--ebpf-page-faults", "--interval", "1s", "--cgroups", "all", "--state-dir"];
    let args: Vec<&str> = flags.into_iter().chain([state.path().to_str().unwrap()]).collect();
    let d = Daemon::start_under(&as_root_with(&caps), &args);
    let cg = TestCgroup::new("leastpriv", 64 * MIB);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(programs::gomem())
        .args(["churn", "36", "10"])
        .env_remove("GOMEMLIMIT")
        .env("GOGC", "150")
        .stdout(Stdio::null());
    cg.join_before_exec(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    util::assert_killed(child.wait().unwrap(), "the Go program as nobody");
    let label = cg.label();
    let events = || -> Vec<Value> {
        let (_, body) = d.get("/api/v1/events").unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        v["events"].as_array().unwrap().iter().filter(|e| e["cgroup"] == label.as_str()).cloned().collect()
    };
    d.wait_until("the kill's event", Duration::from_secs(10), || events().iter().any(|e| e["victim"]["pid"] == pid));
    let e = events().into_iter().find(|e| e["victim"]["pid"] == pid).unwrap();
    assert_eq!(e["source"], "probe", "{e:#}");
    assert_eq!(e["at_kill"]["limit_bytes"], 64 * MIB, "{e:#}");
    let go = e["go"].as_array().unwrap().iter().find(|g| g["pid"] == pid).unwrap_or_else(|| panic!("the Go program is known: {e:#}"));
    assert_eq!(go["gogc"], "150", "{e:#}");
    assert!(go["gomemlimit"].is_null(), "{e:#}");
    // The series, and every probe reported as it attached.
    d.wait_until("the test cgroup's series", Duration::from_secs(5), || {
        d.metrics().get("memwatch_container_memory_limit_bytes", &label, None).is_some()
    });
    let m = d.metrics();
    assert_eq!(m.get("memwatch_container_memory_limit_bytes", &label, None), Some((64 * MIB) as f64));
    assert_eq!(m.get("memwatch_container_oom_kills_total", &label, None), Some(1.0));
    for (name, st, _) in full.iter().filter(|p| p.1 != "off") {
        let v = m.get_plain("memwatch_probe_attached", &[("probe", name)]);
        if st == "standby" {
            // The fault-stack sampler waits for a container at risk; the kill above makes one,
            // for a while: either state may hold at the scrape.
            assert!(v == Some(0.0) || v == Some(1.0), "{name}: {v:?}");
        } else {
            assert_eq!(v, Some(if st == "attached" { 1.0 } else { 0.0 }), "{name}");
        }
    }
    assert!(!d.log().contains("ERROR"), "{}", d.log());
}

#[test]
fn without_cap_bpf_the_cgroup_series_are_served_and_the_capability_named() {
    util::require_root!();
    let _serial = util::serial();
    let caps: Vec<String> = daemonset_capabilities().into_iter().filter(|c| c != "bpf").collect();
    let state = tempfile::tempdir().unwrap();
    let cg = TestCgroup::new("nobpf", 48 * MIB);
    let d =
        Daemon::start_under(&as_root_with(&caps), &["--interval", "1s", "--cgroups", "all", "--state-dir", state.path().to_str().unwrap()]);
    let label = cg.label();
    d.wait_until("the test cgroup's series", Duration::from_secs(5), || {
        d.metrics().get("memwatch_container_memory_limit_bytes", &label, None).is_some()
    });
    let m = d.metrics();
    assert_eq!(m.get("memwatch_container_memory_limit_bytes", &label, None), Some((48 * MIB) as f64));
    assert!(m.get("memwatch_container_memory_usage_bytes", &label, None).is_some());
    // Each default probe says 0, and the log names what is missing.
    for probe in ["oom_mark_victim", "process_exec", "process_exit"] {
        assert_eq!(m.get_plain("memwatch_probe_attached", &[("probe", probe)]), Some(0.0), "{probe}");
    }
    assert!(d.log().contains("needs CAP_BPF"), "{}", d.log());
    assert_eq!(d.get("/healthz").unwrap().0, 200);
}

/// `memwatch explain --json PID` under `wrapper`.
fn explain_as(wrapper: &[String], pid: u32) -> Value {
    let (first, rest) = wrapper.split_first().unwrap();
    let out = Command::new(first).args(rest).arg(util::memwatch_bin()).args(["explain", "--json", &pid.to_string()]).output().unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("explain under {wrapper:?}: {e}; {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn each_of_the_daemonsets_capabilities_is_needed() {
    util::require_root!();
    let _serial = util::serial();
    let caps = daemonset_capabilities();
    let without = |cap: &str| -> Vec<String> {
        assert!(caps.iter().any(|c| c == cap), "{cap} in {caps:?}");
        caps.iter().filter(|c| *c != cap).cloned().collect()
    };
    // CAP_PERFMON: tracing programs do not load without it, and the reason says so.
    let states = {
        let w = as_root_with(&without("perfmon"));
        let out = Command::new(&w[0]).args(&w[1..]).arg(util::memwatch_bin()).args(["check", "--json"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["probes"].as_array().unwrap().clone()
    };
    let oom = states.iter().find(|p| p["name"] == "oom_mark_victim").unwrap();
    assert_eq!(oom["state"], "disabled", "{oom}");
    assert!(oom["reason"].as_str().unwrap().starts_with("needs CAP_PERFMON"), "{oom}");
    // CAP_BPF: nothing loads (see the test above for the daemon).
    let w = as_root_with(&without("bpf"));
    let out = Command::new(&w[0]).args(&w[1..]).arg(util::memwatch_bin()).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs CAP_BPF"), "{}", String::from_utf8_lossy(&out.stderr));
    // CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: another user's Go program and its GOGC are seen
    // with both, and not without either.
    let mut child = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(programs::gomem())
        .arg("sleep")
        .env("GOGC", "150")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(300));
    let all = explain_as(&as_root_with(&caps), pid);
    assert_eq!(all["go"]["gogc"], "150", "{all:#}");
    for cap in ["sys_ptrace", "dac_read_search"] {
        let v = explain_as(&as_root_with(&without(cap)), pid);
        assert!(v["go"].is_null(), "without {cap} the environment of another user's process is closed: {v:#}");
    }
    drop(child.stdin.take());
    let _ = child.wait();
}

/// With the kernel's BPF statistics already on (the sysctl `deploy/README.md` tells operators to
/// set for the cost panels), `memwatch check` under exactly the DaemonSet's capabilities exits as
/// it does with them off, and reports each probe's cost: it uses what is on and asks for nothing
/// more (turning statistics on itself needs CAP_SYS_ADMIN, which the DaemonSet does not grant).
#[test]
fn check_with_the_statistics_sysctl_on_exits_as_with_it_off() {
    util::require_root!();
    let _serial = util::serial();
    let sysctl = Path::new("/proc/sys/kernel/bpf_stats_enabled");
    let was = std::fs::read_to_string(sysctl).unwrap();
    struct Restore<'a>(&'a Path, String);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0, &self.1);
        }
    }
    let _restore = Restore(sysctl, was);
    let wrapper = as_root_with(&daemonset_capabilities());
    let check = || {
        // Something for the probes to see while check measures: programs starting and exiting.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = Command::new("true").status();
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let out = Command::new(&wrapper[0])
            .args(&wrapper[1..])
            .arg(util::memwatch_bin())
            .args(["check", "--json", "--syscall-tracepoints", "--bpf-stats-window", "1s"])
            .output()
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        busy.join().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), v, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    std::fs::write(sysctl, "0").unwrap();
    let (off, off_json, off_err) = check();
    std::fs::write(sysctl, "1").unwrap();
    let (on, on_json, on_err) = check();
    assert_eq!(on, off, "exit with the sysctl on: {on_err}\nand off: {off_err}");
    assert!(off_json["costs"].is_null(), "no costs measured with statistics off: {off_json}");
    let costs = on_json["costs"].as_array().unwrap_or_else(|| panic!("costs with the sysctl on: {on_json} {on_err}"));
    assert!(costs.iter().any(|c| c["events"].as_u64().is_some_and(|n| n > 0)), "some probe ran while measured: {costs:?}");
    assert_eq!(std::fs::read_to_string(sysctl).unwrap().trim(), "1", "check left the sysctl as it found it");
}
