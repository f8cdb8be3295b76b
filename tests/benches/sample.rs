//! Sampling and rendering cost for 1,000 real memory cgroups, against a baseline measured in
//! the same run: reading the same cgroup files with nothing else done. Also the real daemon's
//! CPU and RSS while it samples them every second. Needs root; prints numbers, asserts nothing.
//!
//! `cargo bench -p memwatch-tests --bench sample` (after `cargo build --release --bins`)
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use memwatch::{
    Roots, host,
    model::{CgroupFilter, Options},
    render::{self, Format},
    sampler::Sampler,
};

const N: usize = 1000;

struct Tree(PathBuf);
impl Drop for Tree {
    fn drop(&mut self) {
        for i in 0..N {
            let _ = fs::remove_dir(self.0.join(format!("c{i:04}")));
        }
        let _ = fs::remove_dir(&self.0);
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rss_kib(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").parse().unwrap()
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipping: needs root to create cgroups");
        return;
    }
    let mode = host::cgroup_mode(Path::new("/sys/fs/cgroup"));
    let root = mode.memory_root().unwrap().join(format!("memwatch-bench-{}", std::process::id()));
    fs::create_dir(&root).unwrap();
    let tree = Tree(root.clone());
    let limit_file = if mode.is_v2() { "memory.max" } else { "memory.limit_in_bytes" };
    for i in 0..N {
        let d = root.join(format!("c{i:04}"));
        fs::create_dir(&d).unwrap();
        fs::write(d.join(limit_file), format!("{}", (64 + i as u64) << 20)).unwrap();
    }
    let files: Vec<PathBuf> = (0..N)
        .flat_map(|i| {
            let d = root.join(format!("c{i:04}"));
            let names: &[&str] = if mode.is_v2() {
                &["memory.current", "memory.max", "memory.high", "memory.stat", "memory.events", "memory.pressure", "memory.swap.current", "cgroup.procs"]
            } else {
                &["memory.usage_in_bytes", "memory.limit_in_bytes", "memory.memsw.usage_in_bytes", "memory.stat", "memory.oom_control", "cgroup.procs"]
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

    let mut s = Sampler::new(Roots::default(), Sampler::default_collectors(None, false), Options { filter: CgroupFilter::All, ..Options::default() });
    let _ = s.sample();
    let t = Instant::now();
    let mut snap = s.sample();
    for _ in 1..rounds {
        snap = s.sample();
    }
    let sample = t.elapsed().as_secs_f64() / rounds as f64;
    let containers = snap.containers.len();
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        bytes = render::render(&snap, Format::Text).len();
    }
    let rendering = t.elapsed().as_secs_f64() / rounds as f64;

    println!("cgroup mode: {}; {containers} containers exported ({N} made by the bench)", mode.label());
    println!("baseline, reading the same {} cgroup files: {:.2} ms", files.len(), baseline * 1e3);
    println!("memwatch sample (cgroupfs+procfs+kubelet, no eBPF): {:.2} ms = {:.2}x baseline", sample * 1e3, sample / baseline);
    println!("render /metrics: {:.2} ms for {containers} containers ({} KiB)", rendering * 1e3, bytes / 1024);

    // The real daemon, with its eBPF probes, sampling every second for 10 s.
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/memwatch");
    if !bin.exists() {
        println!("daemon: {} not built (cargo build --release --bins)", bin.display());
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(&bin)
        .args(["serve", "--cgroups", "all", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (c0, t0) = (cpu_seconds(child.id()), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let cpu = (cpu_seconds(child.id()) - c0) / t0.elapsed().as_secs_f64();
    println!("daemon, 1 s interval, {containers}+ cgroups: {:.2}% of one core, RSS {} KiB", cpu * 100.0, rss_kib(child.id()));
    let _ = child.kill();
    let _ = child.wait();
    drop(tree);
}
