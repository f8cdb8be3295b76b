//! What keeping fault stacks costs the daemon: its RSS before and after a program in a cgroup
//! faults pages in under 10,000 distinct call stacks (memtest's `stacks` mode), with every
//! fault sampled (`--stacks always --stack-period 1`) and the maps drained every second. Prints
//! the stacks the daemon holds (the folded profile's lines), the RSS it grew by, bytes per
//! stack, and the kernel side's drops. Needs root; prints numbers, asserts nothing.
//!
//! `cargo bench -p memwatch-tests --bench stacks` (after `cargo build --release --bins`).
//! Environment: `MEMWATCH_BENCH_STACKS` (default 10000).
use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use memwatch::host;

mod common;
use common::{release_memwatch, root_or_skip, rss_kib, workspace};

/// Our cgroup and processes, stopped and removed when dropped (also on a panic).
struct Setup {
    cgroup: PathBuf,
    children: Vec<Child>,
    state: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..100 {
            if fs::remove_dir(&self.cgroup).is_ok() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = fs::remove_dir_all(&self.state);
    }
}

/// One GET over a fresh connection: the body of a 200 answer, None otherwise.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The sum of a counter's samples whose labels contain `with`.
fn metric(text: &str, name: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(with))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn memtest() -> PathBuf {
    let out = workspace().join("target/release/memtest-bench");
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-pthread", "-fno-omit-frame-pointer", "-o"])
        .arg(&out)
        .arg(workspace().join("tests/c/memtest.c"))
        .status()
        .expect("cc (Debian's gcc; scripts/setup.sh installs it)");
    assert!(st.success(), "building memtest failed");
    out
}

fn main() {
    if !root_or_skip("load BPF programs and create cgroups") {
        return;
    }
    let memwatch = release_memwatch();
    let n: u64 = std::env::var("MEMWATCH_BENCH_STACKS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let memtest = memtest();

    let mode = host::cgroup_mode(Path::new("/sys/fs/cgroup"));
    let root = mode.memory_root().expect("a memory cgroup hierarchy").to_path_buf();
    let name = format!("memwatch-bench-stacks-{}", std::process::id());
    let cgroup = root.join(&name);
    fs::create_dir(&cgroup).unwrap();
    let state = std::env::temp_dir().join(format!("{name}-state"));
    let mut setup = Setup { cgroup: cgroup.clone(), children: Vec::new(), state: state.clone() };
    fs::create_dir_all(&state).unwrap();
    let limit = if mode.is_v2() { "memory.max" } else { "memory.limit_in_bytes" };
    fs::write(cgroup.join(limit), (2u64 << 30).to_string()).unwrap();

    let port = 19000 + (std::process::id() % 1000) as u16;
    let daemon = Command::new(&memwatch)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--state-dir", state.to_str().unwrap()])
        .args(["--listen.api", &format!("127.0.0.1:{port}")])
        .args(["--stacks", "always", "--stack-period", "1", "--slow-interval", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start memwatch serve");
    let pid = daemon.id();
    setup.children.push(daemon);
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(port, "/metrics").is_none() {
        assert!(Instant::now() < deadline, "the daemon did not answer on port {port}");
        thread::sleep(Duration::from_millis(200));
    }
    // Settle: the first slow samples fill the tables every daemon keeps.
    thread::sleep(Duration::from_secs(5));
    let before = rss_kib(pid).unwrap_or(0);
    let drops_before = get(port, "/metrics").unwrap_or_default();

    let procs = cgroup.join("cgroup.procs");
    let script = format!("echo $$ > {} && exec \"$0\" stacks {n}", procs.display());
    let mut child = Command::new("sh").arg("-c").arg(script).arg(&memtest).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    setup.children.push(child);
    let started = Instant::now();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done", "memtest stacks {n}");
    let faulting = started.elapsed();

    // Until the folded profile stops growing (drained every second, symbolized as they come).
    let path = format!("/api/v1/profile?container=/{name}&seconds=600&format=folded");
    let (mut held, mut same) = (0usize, 0);
    while same < 5 {
        thread::sleep(Duration::from_secs(1));
        let now = get(port, &path).map(|b| b.lines().filter(|l| l.contains("path_")).count()).unwrap_or(0);
        same = if now == held { same + 1 } else { 0 };
        held = now;
    }
    let after = rss_kib(pid).unwrap_or(0);
    let metrics = get(port, "/metrics").unwrap_or_default();
    let drops = |kind: &str| {
        let with = format!("kind=\"{kind}\"");
        metric(&metrics, "memwatch_ebpf_drops_total", &with) - metric(&drops_before, "memwatch_ebpf_drops_total", &with)
    };

    let grew = after as f64 / 1024.0 - before as f64 / 1024.0;
    println!("fault-stack store: {n} pages faulted in under distinct stacks in {:.1} s, every fault sampled", faulting.as_secs_f64());
    println!("  stacks held by the daemon (folded profile lines through path_a/path_b): {held}");
    println!("  kernel side drops: stack_map_full {:.0}, stack_counts_full {:.0}", drops("stack_map_full"), drops("stack_counts_full"));
    println!("  daemon RSS: {:.1} MiB before, {:.1} MiB after: {grew:+.1} MiB", before as f64 / 1024.0, after as f64 / 1024.0);
    if held > 0 {
        println!("  {:.0} bytes of RSS per stack held", grew.max(0.0) * 1024.0 * 1024.0 / held as f64);
    }
    println!("  target: < +10 MiB for 10,000 distinct stacks: {}", if grew < 10.0 { "met" } else { "NOT met" });
    drop(setup);
}
