//! Soak: the real daemon (release build) for a while against cgroup churn, busy containers and
//! steady scrapes, printing its RSS and CPU over time and the slope of RSS (least squares
//! over the second half, after tables have grown to the live set). Needs root; prints numbers,
//! asserts nothing.
//!
//! `cargo xtask soak [--minutes 10]`, or `cargo bench -p memwatch-tests --bench soak -- MINUTES`
//! after `cargo build --release --bins`.
use std::{
    fs,
    io::Read,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use memwatch::host;

/// Churn: cgroups created per second and how long each lives (about 1,000 alive at a time).
const CHURN_PER_SECOND: u64 = 200;
const CHURN_LIFETIME_MS: u64 = 5000;
/// Busy containers that live through the soak.
const BUSY: usize = 4;
/// Concurrent scrapers, each scraping `/metrics` once a second.
const SCRAPERS: usize = 4;
/// How often a row is printed.
const ROW_EVERY: Duration = Duration::from_secs(30);

/// Our cgroups and processes, removed and stopped when dropped (also on a panic).
struct Setup {
    dirs: Vec<PathBuf>,
    children: Vec<Child>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deepest first: the churner's leftovers, then our own directories.
        for d in self.dirs.iter().rev() {
            if let Ok(entries) = fs::read_dir(d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        let _ = fs::remove_dir(e.path());
                    }
                }
            }
            let _ = fs::remove_dir(d);
        }
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit_once(')').map(|r| r.1.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

mod common;
use common::{root_or_skip, rss_kib};

/// One GET of `/metrics` over a fresh connection: the whole answer (empty when none).
fn get_metrics(port: u16) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return Vec::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return Vec::new();
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

/// True when a scrape is answered with a 200.
fn scrape(port: u16) -> bool {
    get_metrics(port).starts_with(b"HTTP/1.1 200")
}

/// The daemon's own `memwatch_heap_in_use_bytes`, in MiB.
fn heap_mib(port: u16) -> f64 {
    let answer = get_metrics(port);
    String::from_utf8_lossy(&answer)
        .lines()
        .find_map(|l| l.strip_prefix("memwatch_heap_in_use_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(f64::NAN, |b| b / (1 << 20) as f64)
}

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}

fn main() {
    if !root_or_skip("create cgroups") {
        return;
    }
    let minutes: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10.0);
    let total = Duration::from_secs_f64(minutes * 60.0);
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release");
    let mode = host::cgroup_mode(Path::new("/sys/fs/cgroup"));
    let root = mode.memory_root().expect("a memory cgroup controller").to_path_buf();
    let limit_file = if mode.is_v2() { "memory.max" } else { "memory.limit_in_bytes" };
    let mut setup = Setup { dirs: Vec::new(), children: Vec::new() };

    let churn = root.join(format!("memwatch-soak-churn-{}", std::process::id()));
    fs::create_dir(&churn).unwrap();
    setup.dirs.push(churn.clone());
    if mode.is_v2() {
        fs::write(churn.join("cgroup.subtree_control"), "+memory").unwrap();
    }
    for i in 0..BUSY {
        let dir = root.join(format!("memwatch-soak-busy{i}-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(limit_file), (256u64 << 20).to_string()).unwrap();
        setup.dirs.push(dir.clone());
        let procs = dir.join("cgroup.procs");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > {} && exec {} breathe 512 100", procs.display(), target.join("memwatch-workload").display()))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        setup.children.push(child);
    }
    let state = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let daemon = Command::new(target.join("memwatch"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--interval", "1s", "--state-dir"])
        .arg(state.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("target/release/memwatch (cargo build --release --bins)");
    let pid = daemon.id();
    setup.children.push(daemon);
    let ready = Instant::now();
    while !scrape(port) {
        assert!(ready.elapsed() < Duration::from_secs(30), "the daemon did not answer");
        thread::sleep(Duration::from_millis(100));
    }
    let churner = Command::new(target.join("memwatch-workload"))
        .args(["churn", churn.to_str().unwrap()])
        .args([CHURN_PER_SECOND, total.as_secs() + 5, CHURN_LIFETIME_MS].map(|n| n.to_string()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    setup.children.push(churner);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let scrapers: Vec<_> = (0..SCRAPERS)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let counter = if scrape(port) { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(Duration::from_secs(1));
                }
            })
        })
        .collect();

    println!(
        "soak: {minutes} min; churn {CHURN_PER_SECOND} cgroups/s living {CHURN_LIFETIME_MS} ms; {BUSY} busy containers; {SCRAPERS} scrapers at 1/s"
    );
    println!("{:>8} {:>10} {:>10} {:>12} {:>10} {:>8}", "minutes", "RSS MiB", "heap MiB", "CPU % core", "scrapes", "failed");
    let started = Instant::now();
    let (mut xs, mut ys, mut heaps) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_then, mut at_then) = (cpu_seconds(pid), Instant::now());
    while started.elapsed() < total {
        thread::sleep(ROW_EVERY.min(total.saturating_sub(started.elapsed())).max(Duration::from_millis(100)));
        let (cpu, now) = (cpu_seconds(pid), Instant::now());
        let cpu_pct = 100.0 * (cpu - cpu_then) / now.duration_since(at_then).as_secs_f64();
        (cpu_then, at_then) = (cpu, now);
        let (t, rss) = (started.elapsed().as_secs_f64() / 60.0, rss_kib(pid).unwrap_or(0) as f64 / 1024.0);
        let heap = heap_mib(port);
        xs.push(t);
        ys.push(rss);
        heaps.push(heap);
        println!(
            "{t:>8.1} {rss:>10.1} {heap:>10.1} {cpu_pct:>12.2} {:>10} {:>8}",
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for s in scrapers {
        let _ = s.join();
    }
    let half = xs.len() / 2;
    println!(
        "RSS slope: {:+.3} MiB/min over the second half ({:+.3} MiB/min over the whole run); heap in use {:+.3} MiB/min over \
         the second half; scrapes {} ok, {} failed",
        slope(&xs[half..], &ys[half..]),
        slope(&xs, &ys),
        slope(&xs[half..], &heaps[half..]),
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}
