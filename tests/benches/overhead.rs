//! What memwatch's kernel hooks cost the processes they watch, side by side in one run.
//!
//! Configurations, alternated round by round (the order rotates each round): nothing attached;
//! `memwatch serve` as shipped (its fault-stack sampler on standby: nothing is at risk); memwatch
//! with each opt-in probe and with the sampler always on; an empty program on the
//! page-fault hook (the floor any program there pays); and bpftrace (Debian's) counting the
//! same events per cgroup, the peer. Workloads, each in a cgroup of its own and pinned to one
//! CPU: a page-fault storm (4 KiB faults), an mmap/munmap storm, and a getppid loop (a syscall
//! memwatch does not watch, which exposes any tax on every syscall). Prints medians and the
//! slowdown against nothing attached; then, with the kernel's BPF statistics on for that pass
//! only, each program's ns per event. Needs root; prints numbers, asserts nothing.
//!
//! `cargo bench -p memwatch-tests --bench overhead` (after `cargo build --release --bins`).
//! Environment: `MEMWATCH_BENCH_ROUNDS` (default 7); `MEMWATCH_BENCH_QUICK=1` for small
//! workloads; `MEMWATCH_BENCH_EXTRA="name=/path/to/memwatch [args]"` adds another memwatch build
//! (e.g. an older one, to measure before and after a change).
use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use memwatch::{
    Roots, host,
    probes::{ProbeOptions, Probes},
};

const WORKLOADS: [&str; 3] = ["fault storm", "mmap+munmap storm", "getppid loop"];
const UNITS: [&str; 3] = ["ns/fault", "ns/pair", "ns/call"];

mod common;
use common::{release_memwatch, root_or_skip, workspace};

/// A configuration: what is attached while the workloads run.
#[derive(Clone)]
enum Setup {
    Nothing,
    Memwatch {
        bin: PathBuf,
        args: Vec<String>,
    },
    /// The empty program on `page_fault_user`, loaded by this process.
    EmptyFault,
    Bpftrace,
}

struct Config {
    name: String,
    setup: Setup,
}

/// What a configuration holds while attached; dropping it detaches.
enum Running {
    None,
    Child(Child),
    /// Held only to keep its programs attached.
    #[allow(dead_code)]
    Probes(Box<Probes>),
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Running::Child(c) = self {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// bpftrace counting the events memwatch counts, per cgroup, as a user would write it.
const BPFTRACE: &str = r#"
tracepoint:exceptions:page_fault_user { @faults[cgroup] = count(); }
tracepoint:syscalls:sys_exit_mmap /args->ret >= 0/ { @mmap[cgroup] = count(); }
tracepoint:syscalls:sys_exit_munmap /args->ret == 0/ { @munmap[cgroup] = count(); }
tracepoint:syscalls:sys_exit_brk { @brk[cgroup] = count(); }
tracepoint:syscalls:sys_exit_mremap { @mremap[cgroup] = count(); }
"#;

fn start(setup: &Setup) -> Running {
    match setup {
        Setup::Nothing => Running::None,
        Setup::EmptyFault => {
            let mut p = Probes::load(&memwatch::probes::LoadOptions::new(&Roots::default(), ProbeOptions::default())).expect("load probes");
            p.attach_empty_fault_program().expect("attach the empty program");
            Running::Probes(Box::new(p))
        }
        Setup::Memwatch { bin, args } => {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let state = std::env::temp_dir().join(format!("memwatch-bench-state-{}", std::process::id()));
            let child = Command::new(bin)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--state-dir", state.to_str().unwrap()])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
            let running = Running::Child(child);
            let deadline = Instant::now() + Duration::from_secs(30);
            let url = format!("http://127.0.0.1:{port}/readyz");
            while !ureq::get(&url).call().is_ok_and(|r| r.status() == 200) {
                assert!(Instant::now() < deadline, "memwatch did not become ready");
                thread::sleep(Duration::from_millis(100));
            }
            running
        }
        Setup::Bpftrace => {
            let mut child = Command::new("bpftrace")
                .args(["-e", BPFTRACE])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("bpftrace (scripts/setup.sh installs it)");
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            // "Attaching N probes..." comes once every probe is attached.
            while out.read_line(&mut line).unwrap_or(0) > 0 && !line.starts_with("Attaching") {
                line.clear();
            }
            thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
            thread::sleep(Duration::from_millis(500));
            Running::Child(child)
        }
    }
}

/// The benchmark's cgroup: the workloads run in it, as they would in a container.
struct BenchCgroup(PathBuf);

impl BenchCgroup {
    fn new() -> Self {
        let mode = host::cgroup_mode(Path::new("/sys/fs/cgroup"));
        let root = mode.memory_root().expect("a memory cgroup hierarchy").to_path_buf();
        let path = root.join(format!("memwatch-bench-overhead-{}", std::process::id()));
        fs::create_dir(&path).unwrap();
        let limit = if mode.is_v2() { "memory.max" } else { "memory.limit_in_bytes" };
        fs::write(path.join(limit), (2u64 << 30).to_string()).unwrap();
        BenchCgroup(path)
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if fs::remove_dir(&self.0).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

struct Sizes {
    fault_mib: u64,
    fault_rounds: u64,
    mmaps: u64,
    getppids: u64,
}

/// Runs one workload in the cgroup, pinned to the last CPU; returns its ns per operation.
fn run_workload(cg: &BenchCgroup, w: usize, sizes: &Sizes) -> f64 {
    let bin = workspace().join("target/release/memwatch-workload");
    let cpu = (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) - 1).to_string();
    let args: Vec<String> = match w {
        0 => vec!["bench-faults".into(), sizes.fault_mib.to_string(), sizes.fault_rounds.to_string()],
        1 => vec!["bench-mmap".into(), sizes.mmaps.to_string()],
        _ => vec!["bench-getppid".into(), sizes.getppids.to_string()],
    };
    let procs = cg.0.join("cgroup.procs");
    let script = format!("echo $$ > {} && exec taskset -c {cpu} \"$0\" \"$@\"", procs.display());
    let out = Command::new("sh").arg("-c").arg(script).arg(&bin).args(&args).output().expect("run the workload");
    assert!(out.status.success(), "{}: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("ns per operation")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Every BPF program loaded on the host: id -> (name, runs, run time in ns).
fn programs() -> HashMap<u32, (String, u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| (p.id(), (p.name_as_str().unwrap_or("?").to_string(), p.run_count(), p.run_time().as_nanos() as u64)))
        .collect()
}

fn main() {
    if !root_or_skip("load BPF programs and create cgroups") {
        return;
    }
    let memwatch = release_memwatch();
    let rounds: usize = std::env::var("MEMWATCH_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let quick = std::env::var_os("MEMWATCH_BENCH_QUICK").is_some();
    let sizes = if quick {
        Sizes { fault_mib: 64, fault_rounds: 4, mmaps: 50_000, getppids: 1_000_000 }
    } else {
        // 5 GiB of faults in 8 MiB rounds (small enough to reuse warm pages, big enough to
        // leave the per-CPU page lists), 300,000 mmap pairs, 5,000,000 getppid calls.
        Sizes { fault_mib: 8, fault_rounds: 640, mmaps: 300_000, getppids: 5_000_000 }
    };
    let mw = |args: &[&str]| Setup::Memwatch { bin: memwatch.clone(), args: args.iter().map(|s| s.to_string()).collect() };
    let mut configs = vec![
        Config { name: "nothing".into(), setup: Setup::Nothing },
        Config { name: "memwatch".into(), setup: mw(&[]) },
        Config { name: "memwatch --ebpf-page-faults".into(), setup: mw(&["--ebpf-page-faults"]) },
        Config { name: "memwatch --syscall-tracepoints".into(), setup: mw(&["--syscall-tracepoints"]) },
        Config { name: "memwatch --stacks always".into(), setup: mw(&["--stacks", "always"]) },
        Config { name: "empty fault program".into(), setup: Setup::EmptyFault },
    ];
    let have_bpftrace = Command::new("bpftrace").arg("--version").output().is_ok_and(|o| o.status.success());
    if have_bpftrace {
        configs.push(Config { name: "bpftrace".into(), setup: Setup::Bpftrace });
    } else {
        println!("bpftrace not installed (scripts/setup.sh installs it): no peer row");
    }
    if let Ok(extra) = std::env::var("MEMWATCH_BENCH_EXTRA") {
        let (name, cmd) = extra.split_once('=').expect("MEMWATCH_BENCH_EXTRA=name=/path/to/memwatch [args]");
        let mut parts = cmd.split_whitespace();
        let bin = PathBuf::from(parts.next().expect("a binary"));
        configs.push(Config { name: name.into(), setup: Setup::Memwatch { bin, args: parts.map(String::from).collect() } });
    }
    let cg = BenchCgroup::new();
    let kernel = host::kernel_release(Path::new("/proc")).unwrap_or_default();
    println!("memwatch overhead benchmark: kernel {kernel}, {rounds} rounds, configurations alternated");
    println!(
        "workloads: {} MiB x {} of 4 KiB faults; {} x (mmap 64 KiB + munmap); {} x getppid; pinned to one CPU, in a cgroup; each the median over its batches",
        sizes.fault_mib, sizes.fault_rounds, sizes.mmaps, sizes.getppids
    );

    // Warm-up: the first runs after boot or a build pay for cold page allocators and caches.
    for w in 0..3 {
        run_workload(&cg, w, &sizes);
    }

    // Wall clock, BPF statistics off.
    let mut results: Vec<[Vec<f64>; 3]> = configs.iter().map(|_| Default::default()).collect();
    let started = Instant::now();
    for round in 0..rounds {
        for k in 0..configs.len() {
            let i = (k + round) % configs.len();
            let running = start(&configs[i].setup);
            for (w, r) in results[i].iter_mut().enumerate() {
                r.push(run_workload(&cg, w, &sizes));
            }
            drop(running);
        }
        eprintln!("round {}/{rounds} done after {:.0} s", round + 1, started.elapsed().as_secs_f64());
    }
    let medians: Vec<[f64; 3]> = results.iter_mut().map(|r| [median(&mut r[0]), median(&mut r[1]), median(&mut r[2])]).collect();

    println!();
    println!("medians of {rounds} runs each (slowdown against nothing attached)");
    print!("{:<34}", "configuration");
    for (w, u) in WORKLOADS.iter().zip(UNITS) {
        print!("{:>26}", format!("{w} ({u})"));
    }
    println!();
    for (c, m) in configs.iter().zip(&medians) {
        print!("{:<34}", c.name);
        for w in 0..3 {
            let cell = if c.name == "nothing" {
                format!("{:.1}", m[w])
            } else {
                format!("{:.1} ({:+.1}%)", m[w], (m[w] / medians[0][w] - 1.0) * 100.0)
            };
            print!("{cell:>26}");
        }
        println!();
    }
    let spread = |i: usize, w: usize| {
        let v = &results[i][w];
        let (lo, hi) = (v.iter().cloned().fold(f64::MAX, f64::min), v.iter().cloned().fold(0.0, f64::max));
        (hi - lo) / medians[i][w] * 100.0
    };
    println!(
        "run-to-run spread (max-min over median) with nothing attached: faults {:.1}%, mmap {:.1}%, getppid {:.1}%",
        spread(0, 0),
        spread(0, 1),
        spread(0, 2)
    );

    // ns per event per program, BPF statistics on for this pass only.
    println!();
    println!("cost per event by the kernel's BPF statistics (on for this pass only; they add a clock read per run)");
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let mut per_event: HashMap<(String, String), f64> = HashMap::new();
    for c in configs.iter().filter(|c| !matches!(c.setup, Setup::Nothing)) {
        let before_ids: HashSet<u32> = programs().keys().copied().collect();
        let running = start(&c.setup);
        let before = programs();
        for w in 0..3 {
            run_workload(&cg, w, &sizes);
        }
        let after = programs();
        drop(running);
        let mut rows: Vec<(String, u64, f64)> = after
            .iter()
            .filter(|(id, _)| !before_ids.contains(id))
            .filter_map(|(id, (name, runs, ns))| {
                let (_, r0, n0) = before.get(id)?;
                let runs = runs - r0;
                (runs > 0).then(|| (name.clone(), runs, (ns - n0) as f64 / runs as f64))
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1));
        println!("  {}", c.name);
        for (name, runs, ns) in rows {
            println!("    {name:<28} {ns:>8.0} ns/event  ({runs} events)");
            per_event.insert((c.name.clone(), name), ns);
        }
    }
    drop(stats);

    // The targets of the overhead issue, from this run.
    let find = |cfg: &str, prog: &str| per_event.iter().find(|((c, p), _)| c == cfg && p.contains(prog)).map(|(_, v)| *v);
    let slow = |cfg: &str, w: usize| configs.iter().position(|c| c.name == cfg).map(|i| (medians[i][w] / medians[0][w] - 1.0) * 100.0);
    println!();
    println!("targets (this run)");
    let show = |what: &str, got: Option<f64>, target: f64, unit: &str| match got {
        Some(v) => println!("  {what:<66} {v:>7.1}{unit}  target <= {target}{unit}: {}", if v <= target { "met" } else { "NOT met" }),
        None => println!("  {what:<66}       -   (not measured)"),
    };
    show("fault storm, memwatch (default) vs nothing", slow("memwatch", 0), 3.0, "%");
    show("mmap/munmap storm, memwatch (default) vs nothing", slow("memwatch", 1), 5.0, "%");
    show("getppid loop, memwatch (default) vs nothing", slow("memwatch", 2), 1.0, "%");
    let fault = find("memwatch --ebpf-page-faults", "page_fault_user");
    let empty = find("empty fault program", "page_fault_user");
    show("fault program above an empty one on the same hook (ns)", fault.zip(empty).map(|(f, e)| f - e), 40.0, "");
    // The fault-stack sampler (the stacks issue's targets).
    let stacks = slow("memwatch --stacks always", 0).zip(slow("empty fault program", 0)).map(|(s, e)| s - e);
    show("fault storm, memwatch --stacks always above the empty program (points)", stacks, 2.0, "");
    if let (Some(v), Some(i)) = (slow("memwatch", 0), configs.iter().position(|c| c.name == "memwatch")) {
        println!(
            "  {:<66} {v:>+7.1}%  within the spread of nothing ({:.1}%) and of itself ({:.1}%): {}",
            "fault storm, memwatch (default, sampler on standby) vs nothing",
            spread(0, 0),
            spread(i, 0),
            if v.abs() <= spread(0, 0).max(spread(i, 0)) { "yes" } else { "NO" }
        );
    }
    let standby = per_event.keys().any(|(c, p)| c == "memwatch" && p.contains("fault_stacks"));
    println!("  {:<66} {}", "memwatch (default) runs a fault-stack program", if standby { "YES (it should be on standby)" } else { "no" });
    let sampler = find("memwatch --stacks always", "fault_stacks");
    if let (Some(s), Some(e)) = (sampler, empty) {
        let period = memwatch::probes::DEFAULT_STACK_PERIOD as f64;
        println!(
            "  {:<66} {:>7.0} ns  ({s:.0} - {e:.0} ns/fault, x {period:.0})",
            "one sampled stack (the sampler above the empty program, x the period)",
            (s - e) * period
        );
    }
    let peer = per_event.iter().filter(|((c, p), _)| c == "bpftrace" && p.contains("page_fault")).map(|(_, v)| *v).next();
    if let (Some(f), Some(b)) = (fault, peer) {
        println!(
            "  {:<66} {:>7.1}x  target >= 3x: {}",
            "bpftrace's per-cgroup fault count over memwatch's fault program",
            b / f,
            if b / f >= 3.0 { "met" } else { "NOT met" }
        );
    }
    println!(
        "  fexit (the default for the mmap family) cannot be measured where the kernel refuses it; `memwatch check` says whether it does"
    );
}
