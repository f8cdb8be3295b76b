//! Sampling and rendering cost for 1,000 real memory cgroups, each with an idle process, against
//! a baseline measured in the same run: reading the same cgroup files with nothing else done.
//! Also the real daemon's CPU and RSS while it samples them every second. Needs root; prints
//! numbers, asserts nothing.
//!
//! `cargo bench -p memwatch-tests --bench sample` (after `cargo build --release --bins`).
//! With `MEMWATCH_BENCH_BASELINE=/path/to/an/older/memwatch`, the idle daemon's CPU is also
//! measured in pairs, that binary against this one, alternating (medians and their ratio):
//! how a change moves the daemon's cost, in one run on one machine.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use memwatch::{
    Roots,
    collector::SampleInput,
    expose::render::{self, Format},
    host,
    model::{CgroupFilter, Options},
    sampler::Sampler,
};

const N: usize = 1000;

struct Tree(PathBuf, Vec<std::process::Child>);
impl Drop for Tree {
    fn drop(&mut self) {
        for c in &mut self.1 {
            let _ = c.kill();
            let _ = c.wait();
        }
        for i in 0..N {
            let _ = fs::remove_dir(self.0.join(format!("c{i:04}")));
        }
        let _ = fs::remove_dir(&self.0);
    }
}

/// `bin serve` on every cgroup, on a free loopback port, past its first 5 s (start-up and the
/// first full reads).
fn serve(bin: &Path) -> std::process::Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(bin)
        .args(["serve", "--cgroups", "all", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    child
}

/// The idle daemon's CPU (share of a core over 30 s, after 5 s of start-up), `baseline` and
/// `ours` alternating, four runs each: each run's figure, the medians and their ratio.
fn paired_idle(baseline: &Path, ours: &Path, containers: usize) {
    let run = |bin: &Path| -> (f64, u64) {
        let mut child = serve(bin);
        let (c0, t0) = (cpu_seconds(child.id()), Instant::now());
        std::thread::sleep(Duration::from_secs(30));
        let cpu = (cpu_seconds(child.id()) - c0) / t0.elapsed().as_secs_f64();
        let rss = rss_kib(child.id()).expect("the daemon's VmRSS");
        let _ = child.kill();
        let _ = child.wait();
        (cpu * 100.0, rss)
    };
    let (mut a, mut b, mut rss_a, mut rss_b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..4 {
        let (cpu, rss) = run(baseline);
        a.push(cpu);
        rss_a.push(rss);
        let (cpu, rss) = run(ours);
        b.push(cpu);
        rss_b.push(rss);
    }
    println!("daemon idle, paired: RSS KiB baseline {rss_a:?}, this build {rss_b:?}");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    println!("daemon idle, {containers}+ cgroups, paired: baseline {a:.2?} % of a core, this build {b:.2?}");
    let (ma, mb) = (median(&mut a), median(&mut b));
    println!("daemon idle, paired medians: baseline {ma:.2}%, this build {mb:.2}% of one core (ratio {:.2})", mb / ma);
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

mod common;
use common::{root_or_skip, rss_kib};

fn main() {
    if !root_or_skip("create cgroups") {
        return;
    }
    let mode = host::cgroup_mode(Path::new("/sys/fs/cgroup"));
    let root = mode.memory_root().unwrap().join(format!("memwatch-bench-{}", std::process::id()));
    fs::create_dir(&root).unwrap();
    let mut tree = Tree(root.clone(), Vec::new());
    let limit_file = if mode.is_v2() { "memory.max" } else { "memory.limit_in_bytes" };
    for i in 0..N {
        let d = root.join(format!("c{i:04}"));
        fs::create_dir(&d).unwrap();
        fs::write(d.join(limit_file), format!("{}", (64 + i as u64) << 20)).unwrap();
        // An idle process in each, as containers have.
        let procs = d.join("cgroup.procs");
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > {} && exec sleep 3600", procs.display()))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        tree.1.push(child);
    }
    std::thread::sleep(Duration::from_secs(1));
    let files: Vec<PathBuf> = (0..N)
        .flat_map(|i| {
            let d = root.join(format!("c{i:04}"));
            let names: &[&str] = if mode.is_v2() {
                &[
                    "memory.current",
                    "memory.max",
                    "memory.high",
                    "memory.stat",
                    "memory.events",
                    "memory.pressure",
                    "memory.swap.current",
                    "cgroup.procs",
                ]
            } else {
                &[
                    "memory.usage_in_bytes",
                    "memory.limit_in_bytes",
                    "memory.memsw.usage_in_bytes",
                    "memory.stat",
                    "memory.oom_control",
                    "cgroup.procs",
                ]
            };
            names.iter().map(move |n| d.join(n)).collect::<Vec<_>>()
        })
        .collect();

    let rounds = 20;
    let t = Instant::now();
    for _ in 0..rounds {
        for f in &files {
            let _ = std::hint::black_box(fs::read(f));
        }
    }
    let baseline = t.elapsed().as_secs_f64() / rounds as f64;

    let mut s = Sampler::new(
        Roots::default(),
        Sampler::default_collectors(None, false, Duration::from_secs(10)),
        Options { filter: CgroupFilter::All, ..Options::default() },
    );
    let t = Instant::now();
    let _ = s.sample(&SampleInput::default());
    let first = t.elapsed().as_secs_f64();
    // Samples one second apart for 20 s: two slow periods, so the slow reads are in the mean.
    let (mut spent, mut snap) = (0.0, s.sample(&SampleInput::default()));
    for _ in 0..rounds {
        std::thread::sleep(Duration::from_secs(1));
        let t = Instant::now();
        snap = s.sample(&SampleInput::default());
        spent += t.elapsed().as_secs_f64();
    }
    let sample = spent / rounds as f64;
    let containers = snap.containers.len();
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        bytes = render::render(&snap, &Default::default(), Format::Text).len();
    }
    let rendering = t.elapsed().as_secs_f64() / rounds as f64;

    println!("cgroup mode: {}; {containers} containers exported ({N} made by the bench)", mode.label());
    println!("baseline, reading the same {} cgroup files: {:.2} ms", files.len(), baseline * 1e3);
    println!("memwatch first sample (walk, open, read everything): {:.2} ms = {:.2}x baseline", first * 1e3, first / baseline);
    println!(
        "memwatch sample at 1 s (usage each time, the rest every 10 s), mean of {rounds}: {:.2} ms = {:.3}x baseline",
        sample * 1e3,
        sample / baseline
    );
    println!("render /metrics: {:.2} ms for {containers} containers ({} KiB)", rendering * 1e3, bytes / 1024);
    // The two series for long windows (the kernel's peak, the non-reclaimable peak): their
    // share of the exposition.
    let text = render::render(&snap, &Default::default(), Format::Text);
    let peaks: usize = text
        .lines()
        .filter(|l| {
            ["memwatch_container_memory_peak_bytes", "memwatch_container_memory_nonreclaimable_peak_bytes"].iter().any(|f| l.contains(f))
        })
        .map(|l| l.len() + 1)
        .sum();
    println!(
        "the peak series: {} KiB of the {} KiB exposition ({:.1}% of it; {:.1}% added to what it was without them)",
        peaks / 1024,
        text.len() / 1024,
        100.0 * peaks as f64 / text.len() as f64,
        100.0 * peaks as f64 / (text.len() - peaks) as f64
    );

    // The real daemon, with its eBPF probes, sampling every second: its CPU over a minute with
    // the containers idle, then with each one's usage changing every second (busy).
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/memwatch");
    if !bin.exists() {
        println!("daemon: {} not built (cargo build --release --bins)", bin.display());
        return;
    }
    // Past its start-up and first full reads, then a minute: several slow periods (10 s).
    let mut child = serve(&bin);
    let measure = |pid: u32, what: &str| {
        let (c0, t0) = (cpu_seconds(pid), Instant::now());
        std::thread::sleep(Duration::from_secs(60));
        let cpu = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64();
        println!(
            "daemon, 1 s interval, {containers}+ cgroups, {what}: {:.2}% of one core over 60 s, RSS {} KiB",
            cpu * 100.0,
            rss_kib(pid).expect("the daemon's VmRSS")
        );
    };
    measure(child.id(), "idle (a sleeping process in each)");
    if let Some(baseline) = std::env::var_os("MEMWATCH_BENCH_BASELINE") {
        let _ = child.kill();
        let _ = child.wait();
        paired_idle(Path::new(&baseline), &bin, containers);
        child = serve(&bin);
    }
    // JVMs: in each cgroup, a stand-in for a JVM (the workload as a file named `java`, holding
    // a performance-data file recorded from OpenJDK 17), whose figures are read again every
    // slow period: what runtime facts cost the daemon.
    let workload = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/memwatch-workload");
    let standin_dir = tempfile::tempdir().unwrap();
    let standin = standin_dir.path().join("java");
    fs::copy(&workload, &standin).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hsperfdata/openjdk-17-g1.hsperfdata");
    let mut jvms = Vec::new();
    for i in 0..N {
        let procs = root.join(format!("c{i:04}")).join("cgroup.procs");
        let c = Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > {} && exec \"$0\" -Xmx256m jvm-standin \"$1\"", procs.display()))
            .arg(&standin)
            .arg(&fixture)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        jvms.push(c);
    }
    std::thread::sleep(Duration::from_secs(15));
    measure(child.id(), "idle, a JVM stand-in in each (its performance data read every 10 s)");
    for mut c in jvms {
        drop(c.stdin.take());
        let _ = c.wait();
    }
    // Busy: in each cgroup, a process whose usage changes every second.
    for i in 0..N {
        let procs = root.join(format!("c{i:04}")).join("cgroup.procs");
        let c = Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > {} && exec \"$0\" breathe 256 1000", procs.display()))
            .arg(&workload)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        tree.1.push(c);
    }
    std::thread::sleep(Duration::from_secs(12));
    measure(child.id(), "busy (usage changing every second in each)");
    let _ = child.kill();
    let _ = child.wait();
    drop(tree);
}
