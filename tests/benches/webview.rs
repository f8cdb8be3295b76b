//! What the web view costs, at 1,000 containers (real memory cgroups of the bench's own, one
//! release daemon): the size of what a browser loads; the node view's first paint in headless
//! Chromium against a page of the same daemon with nothing in it (the stories page, empty), in
//! alternating rounds; and the daemon's CPU with a browser polling the node view (its live part
//! every 5 s) against the same daemon with no client, alternating, medians. Needs root and
//! Chromium; prints numbers, asserts nothing.
//!
//! `cargo bench -p memwatch-tests --bench webview` (after `cargo build --release --bins`).
use std::{
    fs,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod common;
use common::{CgroupTree, release_memwatch, root_or_skip};

#[allow(dead_code)]
#[path = "../integration/util/browser.rs"]
mod browser;

const N: usize = 1000;
/// Seconds the daemon's CPU is measured over, each side of a round.
const ROUND: f64 = 30.0;
const ROUNDS: usize = 4;

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU seconds of a process (utime + stime of /proc/<pid>/stat, which keep what its exited
/// threads used: the async runtime's blocking threads come and go; summing the live threads'
/// schedstat would lose them). Clock ticks of 10 ms: over a 30 s round, 0.03 points of a core.
fn cpu_seconds(pid: u32) -> f64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) of stat are the 12th and 13th after the name.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n.is_multiple_of(2) { (v[n / 2 - 1] + v[n / 2]) / 2.0 } else { v[n / 2] }
}

/// The daemon's share of a core over `secs`.
fn cpu_share(pid: u32, secs: f64) -> f64 {
    let (c, t) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    (cpu_seconds(pid) - c) / t.elapsed().as_secs_f64()
}

/// First contentful paint of `url`, in ms, as the browser's Paint Timing reports it; and the
/// time to the response's end.
fn paint(b: &browser::Browser, url: &str) -> (f64, f64) {
    b.goto("about:blank");
    b.goto(url);
    // The paint entry is recorded a frame after the load: asked again until it is there.
    let started = Instant::now();
    loop {
        let v = b.eval(
            "const p = performance.getEntriesByName('first-contentful-paint')[0]; \
             const n = performance.getEntriesByType('navigation')[0]; return [p ? p.startTime : -1, n.responseEnd];",
        );
        let (fcp, resp) = (v[0].as_f64().unwrap_or(-1.0), v[1].as_f64().unwrap_or(-1.0));
        if fcp >= 0.0 || started.elapsed() > Duration::from_secs(5) {
            return (fcp, resp);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    if !root_or_skip("create cgroups") {
        return;
    }
    let bin = release_memwatch();
    let tree = CgroupTree::new("memwatch-bench-web", N);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let state = tempfile::tempdir().unwrap();
    let d = Daemon(
        Command::new(&bin)
            .args(["serve", "--no-ebpf", "--cgroups", "all", "--cgroups.include", &tree.include, "--listen", &addr])
            .args(["--listen.api", &addr])
            .arg("--state-dir")
            .arg(state.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://{addr}");
    // A few samples first: the sparklines have points, the rates a sample before.
    std::thread::sleep(Duration::from_secs(15));
    let get = |p: &str| ureq::get(&format!("{base}{p}")).call().expect(p).into_string().unwrap();
    let page = get("/");
    let (css, js) = (get("/static/app.css"), get("/static/app.js"));
    let rows = page.matches("<tr id=").count();
    println!(
        "webview: the node view of {rows} containers: HTML {} KiB, app.css {} KiB, app.js {} KiB: {} KiB in all (target under 300 KB)",
        page.len() / 1024,
        css.len() / 1024,
        js.len() / 1024,
        (page.len() + css.len() + js.len()) / 1024
    );
    let live = get("/?part=live");
    println!("webview: the live part a browser polls every 5 s: {} KiB", live.len() / 1024);

    let b = browser::Browser::start(1400, 900);
    let (mut full, mut empty, mut resp) = (vec![], vec![], vec![]);
    for round in 0..6 {
        let (f, e) = if round % 2 == 0 {
            let f = paint(&b, &format!("{base}/"));
            (f, paint(&b, &format!("{base}/events")))
        } else {
            let e = paint(&b, &format!("{base}/events"));
            (paint(&b, &format!("{base}/")), e)
        };
        full.push(f.0);
        resp.push(f.1);
        empty.push(e.0);
    }
    let (mf, me, mr) = (median(&mut full), median(&mut empty), median(&mut resp));
    println!("webview: first contentful paint, node view {full:.0?} ms, an empty page of the same daemon {empty:.0?} ms");
    println!(
        "webview: medians {mf:.0} ms (the response ends at {mr:.0} ms) and {me:.0} ms: ratio {:.2}; target under 1 s at {N} containers",
        mf / me.max(1.0)
    );

    // The daemon's CPU while a browser polls the node view, against none, alternating.
    let pid = d.0.id();
    let (mut with, mut without) = (vec![], vec![]);
    for round in 0..ROUNDS {
        let polled = |b: &browser::Browser| {
            b.goto(&format!("{base}/"));
            cpu_share(pid, ROUND)
        };
        let idle = |b: &browser::Browser| {
            b.goto("about:blank");
            cpu_share(pid, ROUND)
        };
        if round % 2 == 0 {
            with.push(polled(&b) * 100.0);
            without.push(idle(&b) * 100.0);
        } else {
            without.push(idle(&b) * 100.0);
            with.push(polled(&b) * 100.0);
        }
    }
    let (mw, mo) = (median(&mut with), median(&mut without));
    println!("webview: daemon CPU with a browser on the node view {with:.2?} %, with none {without:.2?} % of a core");
    println!("webview: medians {mw:.2}% and {mo:.2}%: a polling browser adds {:.2} points of a core (target under 0.2)", mw - mo);
    drop(b);
    drop(d);
}
