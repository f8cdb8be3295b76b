//! The replay: what each rule for a memory limit does to real workloads. Five workloads run in
//! real cgroups (a spiky batch job whose spikes fall between scrapes, a Go service's GC
//! sawtooth without GOMEMLIMIT, a JVM with a fixed -Xmx whose live data grows in its next
//! phase, a reader whose page cache is most of its working set, a slow leak) through a learning
//! phase under a roomy limit, watched by a release daemon and scraped every 15 s as Prometheus
//! would. Each rule then gives a limit, and the next phase runs under each limit: OOM kills,
//! and the memory reserved but unused (the limit less the phase's real peak, the kernel's).
//!
//! The rules, as their projects state them:
//! - memwatch: `memwatch recommend --remote` (memwatch/src/rightsize.rs), its runtime setting
//!   applied (GOMEMLIMIT);
//! - VPA's recommender: target = the peak of the working set per aggregation interval (24 h:
//!   one interval here), its 90th percentile, + 15% safety margin, at least 250 MiB
//!   (autoscaler's vertical-pod-autoscaler/pkg/recommender/logic: `targetMemoryPeaksPercentile
//!   = 0.9`, `safetyMarginFraction = 0.15`, `podMinMemoryMb = 250`); a pod with request = limit
//!   gets limit = target;
//! - KRR's simple strategy: request = limit = the maximum working set over the history + 15%
//!   (robusta-dev/krr, `SimpleStrategySettings.memory_buffer_percentage = 15`).
//!   VPA and KRR see what Prometheus scraped (the working set every 15 s); memwatch sees the
//!   kernel's peaks between samples.
//!
//! Needs root, Go and a JDK; prints a table, asserts nothing.
//! `cargo xtask bench rightsize` (or `cargo bench -p memwatch-tests --bench rightsize` after
//! `cargo build --release --bins`).
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod common;
use common::{release_memwatch, root_or_skip, workspace};

const MIB: u64 = 1 << 20;
const LEARN: Duration = Duration::from_secs(75);
const SCRAPE: Duration = Duration::from_secs(15);

/// A memory cgroup of the bench's own, removed when dropped.
struct Cg {
    dir: PathBuf,
    v2: bool,
    path: String,
}

impl Cg {
    fn new(name: &str, limit: u64) -> Cg {
        let mode = memwatch::host::cgroup_mode(Path::new("/sys/fs/cgroup"));
        let root = mode.memory_root().expect("a memory controller").to_path_buf();
        let leaf = format!("memwatch-bench-rs-{name}-{}", std::process::id());
        let dir = root.join(&leaf);
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir).unwrap();
        let cg = Cg { dir, v2: mode.is_v2(), path: format!("/{leaf}") };
        fs::write(cg.dir.join(if cg.v2 { "memory.max" } else { "memory.limit_in_bytes" }), limit.to_string()).unwrap();
        if cg.v2 {
            let _ = fs::write(cg.dir.join("memory.swap.max"), "0");
        }
        cg
    }

    fn read(&self, file: &str) -> String {
        fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    fn peak(&self) -> u64 {
        self.read(if self.v2 { "memory.peak" } else { "memory.max_usage_in_bytes" }).trim().parse().unwrap_or(0)
    }

    fn kills(&self) -> u64 {
        let f = if self.v2 { "memory.events" } else { "memory.oom_control" };
        self.read(f).lines().find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok()).unwrap_or(0)
    }

    fn spawn(&self, mut c: Command) -> Child {
        let procs = self.dir.join("cgroup.procs");
        // SAFETY: the closure only writes to a file and returns; it runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, move || fs::write(&procs, "0"));
        }
        c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        for _ in 0..50 {
            let procs = self.read("cgroup.procs");
            for p in procs.split_whitespace() {
                let _ = Command::new("kill").args(["-9", p]).status();
            }
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A runtime setting as an environment variable: (name, value).
type Setting = (String, String);

/// A workload's command for a run, with a rule's runtime setting.
type Phase = dyn Fn(&str, Option<&Setting>) -> Command;

/// What memwatch recommended for a workload: its limit (none for a leak), its runtime
/// setting, and what it said.
type Ours = (Option<u64>, Option<Setting>, String);

/// A workload: its command for a run (`learn`, the learning phase, or the next phase under a
/// rule's limit: `memwatch`, `vpa`, `krr`), with the runtime setting of a rule's
/// recommendation where it applies.
struct Workload {
    name: &'static str,
    what: &'static str,
    command: Box<Phase>,
    next_secs: u64,
}

fn python(script: String) -> Command {
    let mut c = Command::new("python3");
    c.args(["-c", &script]);
    c
}

fn workloads(gomem: PathBuf, classes: PathBuf, file: PathBuf) -> Vec<Workload> {
    vec![
        Workload {
            name: "spiky batch",
            what: "60 MiB, and every 10 s a 250 ms spike of 100 MiB more",
            command: Box::new(|run, _| {
                let learn = run == "learn";
                let secs = if learn { 90 } else { 60 };
                python(format!(
                    "import time\nb = bytearray(60 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nend = time.time() + {secs}\n\
                     while time.time() < end:\n    time.sleep(10)\n    s = bytearray(100 << 20)\n    for i in range(0, len(s), 4096): s[i] = 1\n    time.sleep(0.25)\n    del s\n"
                ))
            }),
            next_secs: 60,
        },
        Workload {
            name: "Go GC sawtooth",
            what: "a Go program keeping 60 MiB live, churning 4 MiB buffers, GOGC=100, no GOMEMLIMIT",
            command: Box::new(move |run, setting| {
                let learn = run == "learn";
                let mut c = Command::new(&gomem);
                c.args(["churn", "60", if learn { "90" } else { "60" }]);
                if let Some((k, v)) = setting {
                    c.env(k, v);
                }
                c
            }),
            next_secs: 60,
        },
        Workload {
            name: "JVM, fixed -Xmx",
            what: "java -Xmx256m: 40 MiB live while learning, 200 MiB (still within its heap) in the next phase",
            command: Box::new(move |run, _| {
                let learn = run == "learn";
                let mut c = Command::new("java");
                c.args(["-Xmx256m", "-XX:+UseSerialGC", "-cp"]).arg(&classes).args([
                    "Grow",
                    "churn",
                    if learn { "40" } else { "200" },
                    if learn { "90" } else { "60" },
                ]);
                c
            }),
            next_secs: 60,
        },
        Workload {
            name: "page-cache reader",
            what: "30 MiB of its own, reading a 300 MiB file over and over (its pages charged to it: evicted from the cache first)",
            command: Box::new(move |run, _| {
                let secs = if run == "learn" { 90 } else { 60 };
                // A file of each run's own, so that runs side by side do not share cached pages.
                let file = file.with_extension(run);
                python(format!(
                    "import os, time\nb = bytearray(30 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n\
                     fd = os.open({f:?}, os.O_RDONLY)\nos.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\nos.close(fd)\n\
                     end = time.time() + {secs}\n\
                     while time.time() < end:\n    with open({f:?}, 'rb') as f:\n        while f.read(1 << 20): pass\n    time.sleep(0.5)\n",
                    f = file.display().to_string()
                ))
            }),
            next_secs: 60,
        },
        Workload {
            name: "slow leak",
            what: "40 MiB, growing 1 MiB a second",
            command: Box::new(|run, _| {
                let secs = if run == "learn" { 90 } else { 150 };
                python(format!(
                    "import time\nk = [bytearray(40 << 20)]\nfor i in range(0, len(k[0]), 4096): k[0][i] = 1\nend = time.time() + {secs}\n\
                     while time.time() < end:\n    b = bytearray(1 << 20)\n    for i in range(0, len(b), 4096): b[i] = 1\n    k.append(b)\n    time.sleep(1)\n"
                ))
            }),
            next_secs: 150,
        },
    ]
}

fn round4(b: f64) -> u64 {
    (b.max(0.0) as u64).div_ceil(4 * MIB) * 4 * MIB
}

/// VPA's recommender with one aggregation interval: the 90th percentile of the peaks (one
/// peak: the highest scraped working set) + 15%, at least 250 MiB.
fn vpa(scraped: &[u64]) -> u64 {
    let peak = scraped.iter().copied().max().unwrap_or(0);
    round4((peak as f64 * 1.15).max(250.0 * MIB as f64))
}

/// KRR's simple strategy: the highest scraped working set + 15%.
fn krr(scraped: &[u64]) -> u64 {
    round4(scraped.iter().copied().max().unwrap_or(0) as f64 * 1.15)
}

fn working_sets(base: &str) -> HashMap<String, u64> {
    let body = ureq::get(&format!("{base}/metrics")).call().expect("a scrape").into_string().unwrap();
    body.lines()
        .filter(|l| l.starts_with("memwatch_container_memory_working_set_bytes{"))
        .filter_map(|l| {
            let cg = l.split("cgroup=\"").nth(1)?.split('"').next()?.to_string();
            Some((cg, l.rsplit(' ').next()?.parse::<f64>().ok()? as u64))
        })
        .collect()
}

fn main() {
    if !root_or_skip("create cgroups") {
        return;
    }
    let bin = release_memwatch();
    let tmp = tempfile::tempdir_in(workspace().join("target")).unwrap();
    // The programs: Debian's Go and JDK build them here.
    let gomem = tmp.path().join("gomem");
    let st = Command::new("go")
        .args(["build", "-o"])
        .arg(&gomem)
        .arg(".")
        .current_dir(workspace().join("tests/go/gomem"))
        .env("GOCACHE", tmp.path().join("gocache"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .status()
        .expect("go");
    assert!(st.success(), "go build");
    let classes = tmp.path().join("classes");
    fs::create_dir_all(&classes).unwrap();
    assert!(Command::new("javac").arg("-d").arg(&classes).arg(workspace().join("tests/java/Grow.java")).status().unwrap().success());
    let file = tmp.path().join("data");
    for run in ["learn", "memwatch", "vpa", "krr"] {
        fs::write(file.with_extension(run), vec![7u8; 300 << 20]).unwrap();
    }
    let ws = workloads(gomem, classes, file);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let state = tempfile::tempdir().unwrap();
    let mut daemon = Command::new(&bin)
        .args(["serve", "--no-ebpf", "--cgroups.include", "/memwatch-bench-rs-.*", "--listen", &addr, "--listen.api", &addr])
        .arg("--state-dir")
        .arg(state.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    std::thread::sleep(Duration::from_secs(3));

    // Learning: every workload at once, each under a roomy 2 GiB limit; scraped every 15 s.
    println!("rightsize: learning for {} s, scraped every {} s", LEARN.as_secs(), SCRAPE.as_secs());
    let learning: Vec<(Cg, Child)> = ws
        .iter()
        .enumerate()
        .map(|(k, w)| {
            let cg = Cg::new(&format!("learn{k}"), 2048 * MIB);
            let child = cg.spawn((w.command)("learn", None));
            (cg, child)
        })
        .collect();
    let mut scraped: Vec<Vec<u64>> = vec![vec![]; ws.len()];
    let started = Instant::now();
    while started.elapsed() < LEARN {
        std::thread::sleep(SCRAPE);
        let now = working_sets(&base);
        for (k, (cg, _)) in learning.iter().enumerate() {
            if let Some(v) = now.get(&cg.path) {
                scraped[k].push(*v);
            }
        }
    }
    let recs: serde_json::Value = ureq::get(&format!("{base}/api/v1/recommendations")).call().unwrap().into_json().unwrap();
    let learned_peaks: Vec<u64> = learning.iter().map(|(cg, _)| cg.peak()).collect();
    drop(learning);
    let _ = daemon.kill();
    let _ = daemon.wait();

    // Each rule's limit.
    let ours: Vec<Ours> = ws
        .iter()
        .enumerate()
        .map(|(k, _)| {
            let path = format!("/memwatch-bench-rs-learn{k}-{}", std::process::id());
            let e = recs["containers"].as_array().unwrap().iter().find(|c| c["cgroup"] == path.as_str()).expect("a recommendation");
            let r = &e["recommendation"];
            let setting = r["runtime_setting"]
                .as_object()
                .map(|s| (s["name"].as_str().unwrap().to_string(), s["value"].as_str().unwrap().to_string()));
            let said = if r["leak_bytes_per_hour"].is_number() {
                r["notes"][0].as_str().unwrap_or("").to_string()
            } else {
                r["evidence"].as_str().unwrap_or("").to_string()
            };
            (r["limit_bytes"].as_u64(), setting, said)
        })
        .collect();

    // The next phase under each limit, all at once.
    struct Run {
        w: usize,
        rule: &'static str,
        limit: u64,
        cg: Cg,
        child: Child,
    }
    let mut runs = vec![];
    for (k, w) in ws.iter().enumerate() {
        let limits = [("memwatch", ours[k].0), ("VPA", Some(vpa(&scraped[k]))), ("KRR", Some(krr(&scraped[k])))];
        for (rule, limit) in limits {
            let Some(limit) = limit else { continue };
            let cg = Cg::new(&format!("next{k}-{}", rule.to_lowercase()), limit);
            let setting = if rule == "memwatch" { ours[k].1.as_ref() } else { None };
            let child = cg.spawn((w.command)(&rule.to_lowercase(), setting));
            runs.push(Run { w: k, rule, limit, cg, child });
        }
    }
    let longest = ws.iter().map(|w| w.next_secs).max().unwrap_or(60);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(longest + 30) && runs.iter_mut().any(|r| r.child.try_wait().unwrap().is_none()) {
        std::thread::sleep(Duration::from_secs(1));
    }

    println!("\n| workload | rule | limit | OOM kills | peak in the next phase | reserved, unused |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut totals: HashMap<&str, (u64, u64, u64, u64)> = HashMap::new();
    for (k, w) in ws.iter().enumerate() {
        if ours[k].0.is_none() {
            println!("| {} | memwatch | none: {} | – | – | – |", w.name, ours[k].2);
        }
        for r in runs.iter_mut().filter(|r| r.w == k) {
            let _ = r.child.kill();
            let _ = r.child.wait();
            let (kills, peak) = (r.cg.kills(), r.cg.peak());
            let unused = if kills == 0 { r.limit.saturating_sub(peak) } else { 0 };
            let t = totals.entry(r.rule).or_default();
            t.0 += kills;
            if kills == 0 {
                t.1 += unused;
                t.3 += r.limit;
            }
            t.2 += u64::from(kills > 0);
            let setting = if r.rule == "memwatch" {
                ours[k].1.as_ref().map(|(k, v)| format!(" ({k}={v})")).unwrap_or_default()
            } else {
                String::new()
            };
            println!(
                "| {} | {} | {} MiB{setting} | {kills} | {} MiB | {} |",
                w.name,
                r.rule,
                r.limit / MIB,
                peak / MIB,
                if kills == 0 { format!("{} MiB", unused / MIB) } else { "killed".into() }
            );
        }
    }
    println!();
    for rule in ["memwatch", "VPA", "KRR"] {
        let (kills, unused, killed, limits) = totals.get(rule).copied().unwrap_or_default();
        println!(
            "rightsize: {rule}: {kills} OOM kills in {killed} workloads; where not killed, limits of {} MiB in all, {} MiB of them unused",
            limits / MIB,
            unused / MIB
        );
    }
    for (k, w) in ws.iter().enumerate() {
        println!(
            "rightsize: {}: {}; learning peak {} MiB, scraped working set max {} MiB; memwatch: {}",
            w.name,
            w.what,
            learned_peaks[k] / MIB,
            scraped[k].iter().max().copied().unwrap_or(0) / MIB,
            ours[k].2
        );
    }
}
