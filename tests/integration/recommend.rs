//! `memwatch recommend` against a real daemon watching a real cgroup, and against a real
//! Prometheus scraping that daemon: a workload whose spikes last less than a sample gets a
//! limit above them (the kernel's peak saw them), and that limit holds the same workload run
//! again; a patch for `kubectl patch` and JSON.
use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    serve::Prometheus,
    util::{self, cgroup::TestCgroup, daemon::Daemon},
};

const MIB: u64 = 1 << 20;

/// 40 MiB held, and every 2 s 80 MiB more for about 150 ms: spikes between 1 s samples.
fn spiky(cg: &TestCgroup, rounds: u32) -> Child {
    let mut c = Command::new("python3");
    c.args([
        "-c",
        &format!(
            "import time\nb = bytearray(40 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n\
             for _ in range({rounds}):\n    time.sleep(2)\n    s = bytearray(80 << 20)\n    for i in range(0, len(s), 4096): s[i] = 1\n    time.sleep(0.15)\n    del s\ntime.sleep(600)"
        ),
    ]);
    cg.join_before_exec(&mut c);
    c.stdout(Stdio::null()).spawn().unwrap()
}

fn recommend(args: &[&str]) -> serde_json::Value {
    let out = Command::new(util::memwatch_bin()).arg("recommend").args(args).args(["--output", "json"]).output().unwrap();
    assert!(out.status.success(), "memwatch recommend {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_spiky_workload_gets_a_limit_above_its_spikes_from_the_daemon_and_from_prometheus_and_it_holds() {
    util::require_root!();
    let cg = TestCgroup::new("recommend", 512 * MIB);
    let label = cg.label();
    let d = Daemon::start(&["--interval", "1s", "--cgroups.include", &label]);
    let prom = Prometheus::start(d.base.trim_start_matches("http://"));
    let mut w = spiky(&cg, 5);
    d.wait_until("Prometheus to hold a spike", Duration::from_secs(40), || {
        prom.query(&format!("memwatch_container_memory_nonreclaimable_peak_bytes{{cgroup=\"{label}\"}}"))
            .is_some_and(|p| p >= (110 * MIB) as f64)
    });
    std::thread::sleep(Duration::from_secs(10));
    let kernel_peak: u64 = cg.read(if cg.v2 { "memory.peak" } else { "memory.max_usage_in_bytes" }).trim().parse().unwrap();

    let check = |v: &serde_json::Value, from: &str| -> u64 {
        let lines = v.as_array().unwrap();
        assert_eq!(lines.len(), 1, "{from}: {v:#}");
        let r = &lines[0]["recommendation"];
        assert_eq!(lines[0]["name"], label.as_str(), "{from}");
        let limit = r["limit_bytes"].as_u64().unwrap_or_else(|| panic!("{from}: no limit: {v:#}"));
        let request = r["request_bytes"].as_u64().unwrap();
        eprintln!(
            "{from}: request {} MiB, limit {} MiB; kernel's peak {} MiB; {}",
            request / MIB,
            limit / MIB,
            kernel_peak / MIB,
            r["evidence"]
        );
        assert!(limit as f64 >= 1.1 * (kernel_peak - 8 * MIB) as f64, "{from}: the limit is above the spikes no sample saw: {v:#}");
        assert!(limit <= 256 * MIB, "{from}: not the 512 MiB it has: {v:#}");
        assert!(request <= limit && request >= 40 * MIB, "{from}: {v:#}");
        assert!(r["evidence"].as_str().unwrap().contains("non-reclaimable peak"), "{from}: {v:#}");
        limit
    };
    let from_daemon = check(&recommend(&["--remote", &d.base]), "--remote");
    let from_prometheus = check(&recommend(&["--prometheus", &prom.base, "--window", "10m"]), "--prometheus");
    let _ = w.kill();
    let _ = w.wait();

    // The same workload under the recommended limit: no kill.
    let limit = from_daemon.min(from_prometheus);
    let again = TestCgroup::new("recommend-again", limit);
    let mut w = spiky(&again, 5);
    std::thread::sleep(Duration::from_secs(13));
    assert!(w.try_wait().unwrap().is_none(), "killed under the recommended {} MiB", limit / MIB);
    assert_eq!(again.oom_kills(), 0);
    let _ = w.kill();
    let _ = w.wait();

    // A patch to apply; a cgroup outside Kubernetes gets the limit to set instead.
    let out = Command::new(util::memwatch_bin()).args(["recommend", "--remote", &d.base, "--output", "yaml"]).output().unwrap();
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains(&format!("not a Kubernetes pod's: set the cgroup's memory limit to {}Mi", from_daemon / MIB)), "{yaml}");
    // No daemon there: a clear error.
    let out = Command::new(util::memwatch_bin()).args(["recommend", "--prometheus", "http://127.0.0.1:9"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cannot reach Prometheus at http://127.0.0.1:9"));
}
