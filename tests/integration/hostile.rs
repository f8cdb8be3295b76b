//! Hostile conditions, each with its outcome asserted: floods of scrapes over many containers,
//! slowloris, oversized and flooding headers, a connection cap, and hostile cgroup and process
//! names. Loopback and the tests' own cgroups only; bounded in time.
use std::{
    ffi::OsStr,
    io::{Read, Write},
    net::TcpStream,
    os::unix::ffi::OsStrExt,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, Barrier},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::util::{self, cgroup::TestCgroup, daemon::Daemon};

const MIB: u64 = 1 << 20;

/// One raw HTTP/1.1 request on a fresh connection: the status line's code (0 when the server
/// closed without answering).
fn raw_request(base: &str, head_extra: &[u8]) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    req.extend_from_slice(head_extra);
    req.extend_from_slice(b"\r\n");
    let _ = s.write_all(&req);
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    std::str::from_utf8(&buf[..n]).ok().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn a_thousand_concurrent_scrapes_of_a_thousand_containers() {
    if !util::require_root("a_thousand_concurrent_scrapes_of_a_thousand_containers") {
        return;
    }
    let _serial = util::serial();
    let parent = TestCgroup::new("scrapes", 1 << 40);
    for i in 0..1000 {
        let p = parent.path.join(format!("c{i}"));
        std::fs::create_dir(&p).unwrap();
        let limit = if parent.v2 { "memory.max" } else { "memory.limit_in_bytes" };
        std::fs::write(p.join(limit), (64 * MIB).to_string()).unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let d = Daemon::start(&["--no-ebpf", "--interval", "1s", "--state-dir", state.path().to_str().unwrap()]);
    let last = format!("{}/c999\"", parent.label());
    d.wait_until("the 1,000 containers", Duration::from_secs(20), || d.get("/metrics").is_ok_and(|(_, b)| b.contains(&last)));
    let n = 1000;
    let barrier = Arc::new(Barrier::new(n));
    let url = format!("{}/metrics", d.base);
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (b, url) = (barrier.clone(), url.clone());
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    b.wait();
                    let t = Instant::now();
                    let r = ureq::get(&url).timeout(Duration::from_secs(60)).call();
                    let (status, len) = match r {
                        Ok(r) => (r.status(), r.into_string().map(|s| s.len()).unwrap_or(0)),
                        Err(ureq::Error::Status(c, _)) => (c, 0),
                        Err(e) => panic!("scrape failed: {e}"),
                    };
                    (status, len, t.elapsed())
                })
                .unwrap()
        })
        .collect();
    let mut results: Vec<(u16, usize, Duration)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|r| r.0 == 200), "statuses: {:?}", results.iter().map(|r| r.0).filter(|s| *s != 200).collect::<Vec<_>>());
    assert!(results.iter().all(|r| r.1 > 1000 * 200), "every answer holds the 1,000 containers");
    results.sort_by_key(|r| r.2);
    let q = |p: f64| results[((results.len() as f64 * p) as usize).min(results.len() - 1)].2;
    eprintln!("1,000 concurrent scrapes of 1,000 containers: p50 {:?}, p99 {:?}, max {:?}", q(0.5), q(0.99), q(1.0));
    assert_eq!(d.get("/healthz").unwrap().0, 200);
}

#[test]
fn slowloris_header_floods_and_the_connection_cap() {
    if !util::require_root("slowloris_header_floods_and_the_connection_cap") {
        return;
    }
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(3);
    let d = Daemon::start(&[
        "--no-ebpf",
        "--http-header-timeout",
        "3s",
        "--max-connections",
        "400",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let addr = d.base.trim_start_matches("http://").to_string();
    // 300 connections sending their headers one byte at a time.
    let slow: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let started = Instant::now();
    let drip = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut sent = 0;
    let mut served = Vec::new();
    while started.elapsed() < timeout - Duration::from_millis(500) {
        for mut s in &slow {
            let _ = s.write_all(&drip[sent % drip.len()..sent % drip.len() + 1]);
        }
        sent += 1;
        // Meanwhile, others are served at once.
        let t = Instant::now();
        let (status, _) = d.get("/metrics").expect("a scrape during slowloris");
        served.push((status, t.elapsed()));
        thread::sleep(Duration::from_millis(100));
    }
    assert!(served.iter().all(|(s, t)| *s == 200 && *t < Duration::from_secs(1)), "{served:?}");
    // Past the header timeout, every slow connection has been closed by the server.
    thread::sleep(timeout);
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 256];
        let closed = match s.read(&mut buf) {
            Ok(0) => true,
            // hyper may answer 408 before closing.
            Ok(n) => std::str::from_utf8(&buf[..n]).is_ok_and(|r| r.starts_with("HTTP/1.1 408")),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed, "a slowloris connection still open after the header timeout");
    }
    // Oversized requests and header floods are refused.
    assert_eq!(raw_request(&d.base, format!("X-Big: {}\r\n", "a".repeat(64 * 1024)).as_bytes()), 431);
    let flood: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(raw_request(&d.base, flood.as_bytes()), 431);
    assert_eq!(raw_request(&d.base, b""), 200);
    // The cap: 400 open connections, and the next one is closed unanswered and counted.
    let held: Vec<TcpStream> = (0..400).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(raw_request(&d.base, b""), 0, "over the cap, closed without an answer");
    drop(held);
    thread::sleep(Duration::from_millis(300));
    let m = d.metrics();
    assert!(m.get_plain("memwatch_http_connections_refused_total", &[]).unwrap() >= 1.0);
    assert_eq!(d.get("/healthz").unwrap().0, 200);
}

/// A copy of `sleep` under a hostile file name, so its comm (the name's first 15 bytes) is too.
fn hostile_sleep(dir: &std::path::Path) -> PathBuf {
    let p = dir.join(OsStr::from_bytes(b"q\"b\\n\nx\xff"));
    std::fs::copy("/bin/sleep", &p).unwrap();
    p
}

#[test]
fn hostile_cgroup_and_process_names() {
    if !util::require_root("hostile_cgroup_and_process_names") {
        return;
    }
    let _serial = util::serial();
    let parent = TestCgroup::new("names", 1 << 40);
    // (The kernel refuses a newline in a cgroup's name; process names below carry one.)
    let names: [&[u8]; 4] = [b"quo\"te", b"back\\slash", b"bad\xff\xfeutf8", b"{brace}=,label"];
    let mut dirs = Vec::new();
    for n in names {
        let p = parent.path.join(OsStr::from_bytes(n));
        std::fs::create_dir(&p).unwrap();
        dirs.push(p);
    }
    // A path of about 4 KiB: 16 levels of 250-byte names.
    let mut deep = parent.path.clone();
    for i in 0..16 {
        deep = deep.join(format!("{i:02}{}", "d".repeat(248)));
        std::fs::create_dir(&deep).unwrap();
    }
    dirs.push(deep);
    let limit_file = if parent.v2 { "memory.max" } else { "memory.limit_in_bytes" };
    let bin_dir = tempfile::tempdir().unwrap();
    let sleeper = hostile_sleep(bin_dir.path());
    let mut kids = Vec::new();
    for p in &dirs {
        std::fs::write(p.join(limit_file), (256 * MIB).to_string()).unwrap();
        let mut cmd = Command::new(&sleeper);
        cmd.arg("60").stdout(Stdio::null());
        let procs = p.join("cgroup.procs");
        // SAFETY: only async-signal-safe calls (open, write, close) run in the child.
        unsafe {
            use std::os::unix::process::CommandExt;
            let path = std::ffi::CString::new(procs.as_os_str().as_bytes()).unwrap();
            cmd.pre_exec(move || {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                libc::close(fd);
                if ok { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            });
        }
        kids.push(cmd.spawn().unwrap());
    }
    let state = tempfile::tempdir().unwrap();
    let d = Daemon::start(&["--interval", "1s", "--cgroups", "all", "--state-dir", state.path().to_str().unwrap()]);
    let label = parent.label();
    d.wait_until("every hostile cgroup", Duration::from_secs(15), || {
        d.get("/api/v1/containers").is_ok_and(|(_, b)| {
            serde_json::from_str::<Value>(&b).is_ok_and(|v| {
                v["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["cgroup"].as_str().unwrap_or("").starts_with(&format!("{label}/")))
                    .count()
                    >= dirs.len()
            })
        })
    });
    // The exposition stays valid (promtool), in both formats, with the names escaped.
    let (status, text) = d.get("/metrics").unwrap();
    assert_eq!(status, 200);
    crate::golden::promtool_check(&text);
    assert!(text.contains(&format!("cgroup=\"{label}/quo\\\"te\"")), "quotes escaped");
    assert!(text.contains(&format!("cgroup=\"{label}/back\\\\slash\"")), "backslashes escaped");
    assert!(text.contains(&format!("cgroup=\"{label}/bad\u{FFFD}\u{FFFD}utf8\"")), "invalid UTF-8 replaced");
    let (status, _, om) = d.get_with("/metrics", Some("application/openmetrics-text; version=1.0.0")).unwrap();
    assert_eq!(status, 200);
    assert!(om.trim_end().ends_with("# EOF"));
    // The JSON is valid, and the processes' hostile names come through as data.
    let (_, body) = d.get("/api/v1/containers").unwrap();
    let v: Value = serde_json::from_str(&body).expect("valid JSON");
    let ours: Vec<&Value> =
        v["containers"].as_array().unwrap().iter().filter(|c| c["cgroup"].as_str().unwrap().starts_with(&format!("{label}/"))).collect();
    assert!(ours.iter().any(|c| c["cgroup"].as_str().unwrap().len() > 4000), "the 4 KiB path");
    let comms: Vec<&str> =
        ours.iter().flat_map(|c| c["top_processes"].as_array().unwrap().iter().filter_map(|p| p["comm"].as_str())).collect();
    assert!(comms.iter().any(|c| c.starts_with("q\"b\\n\nx")), "{comms:?}");
    // `top` renders them, on a terminal's worth of lines and as JSON.
    let out = Command::new(util::memwatch_bin()).args(["top", "--once", "--remote", &d.base]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("quo\"te"), "{table}");
    assert!(table.contains("bad\u{FFFD}\u{FFFD}utf8"), "{table}");
    let out = Command::new(util::memwatch_bin()).args(["top", "--json", "--remote", &d.base]).output().unwrap();
    serde_json::from_slice::<Value>(&out.stdout).expect("top --json is valid JSON");
    for mut k in kids {
        let _ = k.kill();
        let _ = k.wait();
    }
}
