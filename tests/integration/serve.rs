//! `memwatch serve` for real: the daemon as a process, real cgroups with limits, real
//! workloads, scraped over HTTP and checked against the kernel's own files; and a real
//! Prometheus server scraping it.
use std::{process::Command, time::Duration};

use crate::{
    golden::promtool_check,
    util::{
        self, Workload,
        cgroup::TestCgroup,
        daemon::{Daemon, free_port},
    },
};

const MIB: u64 = 1 << 20;

#[test]
fn metrics_match_the_kernel_and_the_workload() {
    util::require_root!();
    let cg = TestCgroup::new("e2e", 128 * MIB);
    let label = cg.label();
    // The syscall probes by fexit where the kernel allows it, else by their fallback.
    let d = Daemon::start(&["--interval", "200ms", "--syscall-tracepoints"]);
    let mut w = Workload::start(&["fill", "40"], Some(&cg));
    w.expect_line("ready");
    let pid = w.pid();

    // Each value equals what the kernel says (polled: the daemon samples every 200 ms).
    let eventually_eq = |name: &str, kind: Option<&str>, want: &dyn Fn() -> f64| {
        let mut last = None;
        d.wait_until(&format!("{name} to match the kernel (last {last:?})"), Duration::from_secs(5), || {
            let got = d.metrics().get(name, &label, kind);
            last = got;
            got == Some(want())
        });
    };
    let (anon, file, inactive) =
        if cg.v2 { ("anon", "file", "inactive_file") } else { ("total_rss", "total_cache", "total_inactive_file") };
    eventually_eq("memwatch_container_memory_limit_bytes", None, &|| (128 * MIB) as f64);
    eventually_eq("memwatch_container_memory_usage_bytes", None, &|| cg.usage() as f64);
    eventually_eq("memwatch_container_memory_working_set_bytes", None, &|| (cg.usage() - cg.stat(inactive)) as f64);
    eventually_eq("memwatch_container_memory_rss_bytes", None, &|| cg.stat(anon) as f64);
    eventually_eq("memwatch_container_memory_cache_bytes", None, &|| cg.stat(file) as f64);
    let pgmaj = if cg.v2 { "pgmajfault" } else { "total_pgmajfault" };
    eventually_eq("memwatch_container_major_page_faults_total", None, &|| cg.stat(pgmaj) as f64);
    // Page faults are the kernel's own count unless --ebpf-page-faults.
    let pgfault = if cg.v2 { "pgfault" } else { "total_pgfault" };
    eventually_eq("memwatch_container_page_faults_total", None, &|| cg.stat(pgfault) as f64);
    eventually_eq("memwatch_container_processes", None, &|| 1.0);
    eventually_eq("memwatch_container_oom_kills_total", None, &|| cg.oom_kills() as f64);
    let vsize = || -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit_once(')').unwrap().1.split_whitespace().nth(20).unwrap().parse().unwrap()
    };
    eventually_eq("memwatch_container_memory_vsz_bytes", None, &vsize);

    let m = d.metrics();
    let get = |name: &str, kind: Option<&str>| m.get(name, &label, kind).unwrap_or_else(|| panic!("{name} missing for {label}"));
    // The known amounts.
    assert!(get("memwatch_container_memory_rss_bytes", None) >= (40 * MIB) as f64);
    assert!(get("memwatch_container_memory_vsz_bytes", None) >= (40 * MIB) as f64);
    assert!(get("memwatch_container_page_faults_total", None) >= (40 * MIB / 4096) as f64);
    assert!(get("memwatch_container_mmap_bytes_total", Some("anon")) >= (40 * MIB) as f64);
    assert!(get("memwatch_container_mmap_calls_total", None) >= 1.0);
    assert!(m.get("memwatch_container_mmap_bytes_total", &label, Some("file")).is_some());
    assert!(m.get("memwatch_container_munmap_bytes_total", &label, None).is_some());
    assert!(m.get("memwatch_container_brk_bytes_total", &label, None).is_some());
    // Derived values.
    let (limit, ws) = (get("memwatch_container_memory_limit_bytes", None), get("memwatch_container_memory_working_set_bytes", None));
    assert_eq!(get("memwatch_container_memory_headroom_bytes", None), limit - ws);
    assert!((get("memwatch_container_memory_headroom_ratio", None) - (limit - ws) / limit).abs() < 1e-9);
    // v2-only series.
    assert_eq!(m.get("memwatch_container_memory_pressure_seconds_total", &label, Some("some")).is_some(), cg.v2);
    if cg.v2 {
        assert!(m.get("memwatch_container_memory_high_bytes", &label, None).is_none(), "memory.high is max");
    }
    // Self-metrics.
    for probe in ["mmap", "munmap", "brk", "mremap", "oom_mark_victim", "process_exit"] {
        let line = m
            .text
            .lines()
            .find(|l| l.starts_with(&format!("memwatch_probe_attached{{probe=\"{probe}\",method=\"")))
            .unwrap_or_else(|| panic!("{probe}"));
        assert!(line.ends_with("} 1"), "{line}");
    }
    assert!(!m.text.contains("memwatch_probe_attached{probe=\"page_fault_user\""), "a probe not asked for is absent");
    assert!(m.has_family("memwatch_build_info") && m.has_family("memwatch_ebpf_cgroup_slots"));
    // The daemon's own instrumentation: sample and scrape histograms, the process_* metrics.
    assert!(m.get_plain("memwatch_sample_duration_seconds_count", &[]).is_some_and(|n| n >= 1.0), "sample histogram");
    assert!(m.has_family("memwatch_scrape_duration_seconds_bucket"));
    let rss = m.get_plain("process_resident_memory_bytes", &[]).expect("process_resident_memory_bytes");
    assert!(rss > 1e6 && rss < 1e9, "{rss}");
    for family in ["process_cpu_seconds_total", "process_open_fds", "process_start_time_seconds"] {
        assert!(m.has_family(family), "{family}");
    }
    assert!(!m.has_family("memwatch_probe_runs_total"), "BPF statistics are off");
    promtool_check(&m.text);

    // A process that maps 8 MiB and exits: its counts stay in the container's totals.
    let before = get("memwatch_container_mmap_bytes_total", Some("anon"));
    let mut short = Workload::start(&["fill-exit", "8"], Some(&cg));
    short.expect_line("ready");
    assert!(short.child.wait().unwrap().success());
    let mut after = 0.0;
    d.wait_until("the exited process's mmaps", Duration::from_secs(5), || {
        after = d.metrics().get("memwatch_container_mmap_bytes_total", &label, Some("anon")).unwrap_or(0.0);
        after >= before + (8 * MIB) as f64
    });
    std::thread::sleep(Duration::from_millis(600));
    let m = d.metrics();
    let later = m.get("memwatch_container_mmap_bytes_total", &label, Some("anon")).unwrap();
    assert!(later >= after, "counter went backwards after the process exited: {after} -> {later}");
    assert!(m.get("memwatch_container_process_exits_total", &label, None).is_some_and(|n| n >= 1.0), "the exit is counted");
    assert!(m.get("memwatch_container_munmap_calls_total", &label, None).is_some_and(|n| n >= 1.0));
    for (name, kind) in [
        ("memwatch_container_brk_calls_total", None),
        ("memwatch_container_brk_shrink_bytes_total", None),
        ("memwatch_container_mremap_calls_total", None),
        ("memwatch_container_mremap_bytes_total", Some("grow")),
    ] {
        assert!(m.get(name, &label, kind).is_some(), "{name}");
    }

    // A burst of growth right after the container started is not a trend: no time to OOM for
    // it (the trend needs the main process past its start-up and 30 s of sustained growth;
    // model::trend's unit tests and the warning tests cover the prediction itself).
    let mut g = Workload::start(&["grow", "1024", "60"], Some(&cg));
    g.expect_line("ready");
    let ws = |m: &util::daemon::Metrics| m.get("memwatch_container_memory_working_set_bytes", &label, None).unwrap_or(0.0);
    let first = ws(&d.metrics());
    let until = std::time::Instant::now() + Duration::from_secs(6);
    let mut last = first;
    while std::time::Instant::now() < until {
        let m = d.metrics();
        assert!(
            m.get("memwatch_container_time_to_oom_seconds", &label, None).is_none(),
            "a time to OOM from a start-up burst:\n{}",
            m.text
        );
        last = ws(&m);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(last >= first + (30 * MIB) as f64, "the burst was seen: working set {first} -> {last}");
    drop(g);
    w.finish();
}

/// `--bpf-stats`: the kernel keeps run-time statistics while the daemon runs (and only then,
/// without writing the sysctl), and /metrics reports each probe's runs and run time.
#[test]
fn bpf_stats_report_each_probes_cost() {
    util::require_root!();
    let _serial = util::serial();
    let sysctl = || std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap().trim().to_string();
    assert_eq!(sysctl(), "0", "statistics are off before the test");
    let cg = TestCgroup::new("stats", 128 * MIB);
    let d = Daemon::start(&["--interval", "200ms", "--bpf-stats", "--ebpf-page-faults"]);
    d.wait_until("the probes to load", Duration::from_secs(10), || d.get("/readyz").is_ok_and(|(s, _)| s == 200));
    let mut w = Workload::start(&["fill", "16"], Some(&cg));
    w.expect_line("ready");
    let mut runs = 0.0;
    d.wait_until("page-fault runs", Duration::from_secs(5), || {
        let m = d.metrics();
        runs = m.get_plain("memwatch_probe_runs_total", &[("probe", "page_fault_user")]).unwrap_or(0.0);
        runs >= (16 * MIB / 4096) as f64
    });
    let m = d.metrics();
    let secs = m.get_plain("memwatch_probe_run_seconds_total", &[("probe", "page_fault_user")]).unwrap();
    let ns = secs * 1e9 / runs;
    assert!(ns > 1.0 && ns < 100_000.0, "{ns} ns per fault");
    promtool_check(&m.text);
    w.finish();
    assert_eq!(sysctl(), "0", "no sysctl was written");
    drop(d);
    // Gone with the daemon: a fresh probe's programs run uncounted.
    let probes = memwatch::probes::Probes::load(&memwatch::probes::LoadOptions::new(
        &memwatch::Roots::default(),
        memwatch::probes::ProbeOptions::all(),
    ))
    .unwrap();
    let mut w = Workload::start(&["fill", "8"], Some(&cg));
    w.expect_line("ready");
    let runs: u64 = probes.run_stats().iter().map(|r| r.runs).sum();
    assert_eq!(runs, 0, "statistics are off again once the daemon is gone");
    w.finish();
}

/// The daemon keeps its view of the hierarchy between samples; a cgroup made or removed after
/// it started shows up, and goes, within a couple of samples (inotify, not the periodic walk).
#[test]
fn cgroups_made_and_removed_while_running_come_and_go_quickly() {
    util::require_root!();
    let d = Daemon::start(&["--interval", "200ms"]);
    d.wait_until("the first sample", Duration::from_secs(10), || d.get("/readyz").is_ok_and(|(s, _)| s == 200));
    let cg = TestCgroup::new("late", 64 * MIB);
    let label = cg.label();
    let t = std::time::Instant::now();
    d.wait_until("the new cgroup's series", Duration::from_secs(3), || {
        d.metrics().get("memwatch_container_memory_limit_bytes", &label, None) == Some((64 * MIB) as f64)
    });
    eprintln!("appeared after {:?}", t.elapsed());
    let mut w = Workload::start(&["fill", "8"], Some(&cg));
    w.expect_line("ready");
    d.wait_until("its process", Duration::from_secs(3), || d.metrics().get("memwatch_container_processes", &label, None) == Some(1.0));
    drop(w);
    drop(cg);
    d.wait_until("its series to go", Duration::from_secs(3), || {
        d.metrics().get("memwatch_container_memory_limit_bytes", &label, None).is_none()
    });
}

#[test]
fn http_api_health_negotiation_and_unknown_paths() {
    util::require_root!();
    let cg = TestCgroup::new("api", 64 * MIB);
    let d = Daemon::start(&["--interval", "200ms"]);
    let label = cg.label();
    d.wait_until("the test cgroup in the API", Duration::from_secs(5), || {
        d.get("/api/v1/containers").map(|(_, b)| b.contains(&label)).unwrap_or(false)
    });
    let (status, body) = d.get("/api/v1/containers").unwrap();
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let c = json["containers"].as_array().unwrap().iter().find(|c| c["cgroup"] == label.as_str()).unwrap();
    assert_eq!(c["limit_bytes"], 64 * MIB);
    assert_eq!(d.get("/healthz").unwrap(), (200, "ok\n".to_string()));
    assert_eq!(d.get("/readyz").unwrap().0, 200);
    assert_eq!(d.get("/nope").unwrap().0, 404);
    assert_eq!(d.get("/metrics/extra").unwrap().0, 404);
    let (status, ct, body) =
        d.get_with("/metrics", Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")).unwrap();
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(body.ends_with("# EOF\n"));
    let (_, ct, body) = d.get_with("/metrics", Some("text/plain")).unwrap();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(!body.contains("# EOF"));
}

#[test]
fn bad_flags_and_busy_port_fail_clearly() {
    let run = |args: &[&str]| Command::new(util::memwatch_bin()).args(args).output().unwrap();
    let out = run(&["serve", "--interval", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["serve", "--cgroups", "some"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["serve", "--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = run(&["serve", "--no-ebpf", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on") && err.contains(&addr), "{err}");
}

#[test]
fn a_real_prometheus_scrapes_headroom() {
    util::require_root!();
    let cg = TestCgroup::new("prom", 96 * MIB);
    let d = Daemon::start(&["--interval", "500ms"]);
    let mut w = Workload::start(&["fill", "32"], Some(&cg));
    w.expect_line("ready");
    let prom = Prometheus::start(d.base.trim_start_matches("http://"));
    let query = format!("memwatch_container_memory_headroom_bytes{{cgroup=\"{}\"}}", cg.label());
    let mut value = None;
    d.wait_until("Prometheus to return the headroom", Duration::from_secs(40), || {
        value = prom.query(&query);
        value.is_some()
    });
    let headroom = value.unwrap();
    // 96 MiB limit, at least 32 MiB in use by the workload.
    assert!(headroom > 0.0 && headroom <= (64 * MIB) as f64, "headroom {headroom}");
    assert!(headroom >= (40 * MIB) as f64, "headroom {headroom}: only the 32 MiB workload and a little more runs there");
    w.finish();
}

/// Debian's Prometheus server on loopback, with a temporary config and data directory.
pub(crate) struct Prometheus {
    child: std::process::Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub(crate) fn start(target: &str) -> Prometheus {
        Prometheus::start_jobs(&format!("  - job_name: memwatch\n    static_configs:\n      - targets: ['{target}']\n"))
    }

    /// A Prometheus scraping every second with `jobs` (YAML list items under `scrape_configs:`).
    pub(crate) fn start_jobs(jobs: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}")).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian's package; scripts/setup.sh installs it)");
        Prometheus { child, base: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    /// The whole reply of an instant query (`status`, `data` or `error`).
    pub(crate) fn raw_query(&self, q: &str) -> serde_json::Value {
        match ureq::get(&format!("{}/api/v1/query", self.base)).query("query", q).timeout(Duration::from_secs(5)).call() {
            Ok(r) => r.into_json().unwrap_or_default(),
            Err(ureq::Error::Status(_, r)) => r.into_json().unwrap_or_default(),
            Err(e) => serde_json::json!({ "status": "unreachable", "error": e.to_string() }),
        }
    }

    /// Each active target's job, health and last error (`/api/v1/targets`).
    pub(crate) fn targets(&self) -> Vec<(String, String, String)> {
        let Ok(r) = ureq::get(&format!("{}/api/v1/targets", self.base)).timeout(Duration::from_secs(5)).call() else { return vec![] };
        let v: serde_json::Value = r.into_json().unwrap_or_default();
        v["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                (t["labels"]["job"].as_str().unwrap_or_default().to_string(), s("health"), s("lastError"))
            })
            .collect()
    }

    /// The first value of an instant query, if it returned any.
    pub(crate) fn query(&self, q: &str) -> Option<f64> {
        let resp = ureq::get(&format!("{}/api/v1/query", self.base)).query("query", q).timeout(Duration::from_secs(5)).call().ok()?;
        let json: serde_json::Value = resp.into_json().ok()?;
        json["data"]["result"].as_array()?.first()?["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cgroup pressing on its limit with page cache the kernel reclaims there (a file written
/// through it, four times the limit), never killed: the kernel counts each time it hit the
/// limit (v1 `memory.failcnt`, v2 `memory.events` `max`) and memwatch exports that count.
#[test]
fn limit_hits_are_counted_for_a_cgroup_reclaiming_at_its_limit() {
    util::require_root!();
    let d = Daemon::start(&["--interval", "500ms"]);
    let cg = TestCgroup::new("limit-hits", 32 * MIB);
    let label = cg.label();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = dir.path().join("cache");
    let mut dd = Command::new("dd");
    dd.args(["if=/dev/zero", "bs=1M", "count=128", "conv=fsync"]).arg(format!("of={}", file.display())).stderr(std::process::Stdio::null());
    cg.join_before_exec(&mut dd);
    assert!(dd.status().unwrap().success(), "dd was not killed: page cache is reclaimed at the limit");
    let kernel = |key: &str| -> u64 {
        if cg.v2 {
            cg.read("memory.events").lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok()).unwrap()
        } else {
            cg.read("memory.failcnt").trim().parse().unwrap()
        }
    };
    let hits = kernel("max ");
    assert!(hits > 0, "the kernel counted limit hits");
    assert_eq!(if cg.v2 { kernel("oom_kill ") } else { 0 }, 0);
    d.wait_until("memwatch's count to catch up", Duration::from_secs(10), || {
        d.metrics().get("memwatch_container_memory_limit_hits_total", &label, Some("max")) == Some(kernel("max ") as f64)
    });
    let m = d.metrics();
    eprintln!("limit hits: kernel {hits}, memwatch {:?}", m.get("memwatch_container_memory_limit_hits_total", &label, Some("max")));
    // v1 has no memory.high; v2 counts throttling there (0 without memory.high set).
    assert_eq!(m.get("memwatch_container_memory_limit_hits_total", &label, Some("high")).is_some(), cg.v2);
}

/// A spike shorter than a sample (from the kernel's watermark) and one of a few seconds are in
/// the non-reclaimable peak after they were freed, for a scrape that comes after them.
#[test]
fn a_spike_between_samples_is_kept_by_the_peaks() {
    util::require_root!();
    let cg = TestCgroup::new("peak", 256 * MIB);
    let label = cg.label();
    let d = Daemon::start(&["--interval", "2s", "--cgroups.include", &label]);
    // 96 MiB touched and freed within about 100 ms, then 48 MiB held for 3 s and freed; then idle.
    let mut c = Command::new("python3");
    c.args([
        "-c",
        "import time\nb = bytearray(96 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\ndel b\ntime.sleep(1)\n\
         b = bytearray(48 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\ntime.sleep(3)\ndel b\ntime.sleep(20)",
    ]);
    cg.join_before_exec(&mut c);
    let mut child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(6));
    d.wait_until("a sample after the spikes", Duration::from_secs(10), || {
        d.metrics().get("memwatch_container_memory_usage_bytes", &label, None).is_some_and(|u| u < 24.0 * MIB as f64)
    });
    let m = d.metrics();
    let kernel = cg.read(if cg.v2 { "memory.peak" } else { "memory.max_usage_in_bytes" }).trim().parse::<f64>().unwrap();
    let nonreclaimable = m.get("memwatch_container_memory_nonreclaimable_peak_bytes", &label, None).unwrap();
    let usage = m.get("memwatch_container_memory_usage_bytes", &label, None).unwrap();
    eprintln!(
        "kernel's peak {:.1} MiB, non-reclaimable peak {:.1} MiB, usage now {:.1} MiB",
        kernel / MIB as f64,
        nonreclaimable / MIB as f64,
        usage / MIB as f64
    );
    assert!(kernel >= 96.0 * MIB as f64, "the kernel saw the 100 ms spike");
    assert!(nonreclaimable >= 92.0 * MIB as f64, "the 100 ms spike is in the non-reclaimable peak, from the kernel's watermark");
    assert!(nonreclaimable <= kernel + MIB as f64, "no more than the kernel saw: {nonreclaimable} vs {kernel}");
    // The API keeps the kernel's own figure.
    let (_, body) = d.get("/api/v1/containers").unwrap();
    assert!(body.contains("\"peak_bytes\":"), "{body}");
    let _ = child.kill();
    let _ = child.wait();
}
