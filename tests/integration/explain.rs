//! `memwatch explain` on real programs: a Go HTTP server built with cgo and without, and a C
//! program whose 8 threads each malloc. The classes must add up to the kernel's own VSZ and
//! RSS (from /proc/<pid>/status, read here), and the largest class must be the expected one.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use serde_json::Value;

use crate::util::{self, cgroup::TestCgroup, programs};

/// A program that prints a line when ready and runs until its stdin closes.
struct Running(Child);

impl Running {
    fn start(bin: &Path, args: &[&str], cg: Option<&TestCgroup>) -> Running {
        let mut cmd = Command::new(bin);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
        if let Some(cg) = cg {
            cg.join_before_exec(&mut cmd);
        }
        let mut child = cmd.spawn().expect("start");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "{bin:?} said nothing");
        Running(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn explain(target: &str) -> Value {
    let out = Command::new(util::memwatch_bin()).args(["explain", target, "--json"]).output().unwrap();
    assert!(out.status.success(), "explain {target}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// VmSize and VmRSS as the kernel says, in bytes.
fn status(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).unwrap() * 1024;
    (kib("VmSize:"), kib("VmRSS:"))
}

fn class<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["classes"].as_array().unwrap().iter().find(|c| c["class"] == name)
}

/// Checks that the classes add up to the kernel's totals, and returns the largest class.
fn check_sums(r: &Value, pid: u32) -> String {
    let (vsz, rss) = status(pid);
    let classes = r["classes"].as_array().unwrap();
    let sum = |k: &str| classes.iter().map(|c| c[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("vsz_bytes"), r["vsz_bytes"].as_u64().unwrap());
    assert_eq!(sum("rss_bytes"), r["rss_bytes"].as_u64().unwrap());
    assert_eq!(r["vsz_bytes"].as_u64().unwrap(), vsz, "VSZ by class vs VmSize: {r:#}");
    // RSS moves by a page or two as the process runs; the kernel's counter is per-CPU cached.
    let got = r["rss_bytes"].as_u64().unwrap();
    assert!(got.abs_diff(rss) <= 256 << 10, "RSS by class {got} vs VmRSS {rss}: {r:#}");
    classes[0]["class"].as_str().unwrap().to_string()
}

#[test]
fn a_cgo_go_server_a_static_one_and_a_threaded_c_program_by_class() {
    util::require_root!();
    let cgo = Running::start(programs::gomem(), &["serve"], None);
    let r = explain(&cgo.pid().to_string());
    assert_eq!(check_sums(&r, cgo.pid()), "go_runtime", "{r:#}");
    assert!(class(&r, "go_heap_arenas").is_some(), "{r:#}");
    assert!(class(&r, "glibc_malloc_arenas").is_some(), "cgo threads get malloc arenas: {r:#}");
    assert!(class(&r, "thread_stacks").is_some(), "cgo threads have glibc stacks: {r:#}");
    assert_eq!(r["go"]["gomemlimit"], Value::Null);
    let summary = r["summary"].as_str().unwrap();
    assert!(summary.contains("does not count against a container's memory limit"), "{summary}");
    assert!(summary.contains("It is a Go program"), "{summary}");

    let plain = Running::start(programs::gomem_static(), &["serve"], None);
    let r = explain(&plain.pid().to_string());
    assert_eq!(check_sums(&r, plain.pid()), "go_runtime", "{r:#}");
    assert!(class(&r, "glibc_malloc_arenas").is_none() && class(&r, "thread_stacks").is_none(), "no libc threads: {r:#}");
    assert!(class(&r, "shared_libraries").is_none(), "a static binary: {r:#}");

    let c = Running::start(programs::memtest(), &["threads", "8", "100"], None);
    let r = explain(&c.pid().to_string());
    assert_eq!(check_sums(&r, c.pid()), "glibc_malloc_arenas", "{r:#}");
    assert_eq!(class(&r, "glibc_malloc_arenas").unwrap()["vsz_bytes"], 8u64 * (64 << 20), "one 64 MiB arena per thread");
    assert_eq!(class(&r, "thread_stacks").unwrap()["vsz_bytes"].as_u64().unwrap() % (8 << 20), 8 * 4096, "8 stacks and guards");
    assert!(r["go"].is_null());
    // The human form: a table and the paragraph.
    let out = Command::new(util::memwatch_bin()).args(["explain", &c.pid().to_string()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\n', " ");
    assert!(text.contains("glibc_malloc_arenas") && text.contains("Reserved address space costs nothing"), "{text}");
}

#[test]
fn a_container_sums_its_processes_and_adds_the_cgroup_view() {
    util::require_root!();
    let limit = 256u64 << 20;
    let cg = TestCgroup::new("explain", limit);
    let a = Running::start(programs::memtest(), &["threads", "4", "1024"], Some(&cg));
    let b = Running::start(programs::gomem(), &["serve"], Some(&cg));
    let r = explain(&cg.label());
    assert_eq!(r["cgroup"], cg.label().as_str());
    let pids: Vec<u64> = r["processes"].as_array().unwrap().iter().map(|p| p["pid"].as_u64().unwrap()).collect();
    assert!(pids.contains(&(a.pid() as u64)) && pids.contains(&(b.pid() as u64)), "{pids:?}");
    let classes = r["classes"].as_array().unwrap();
    assert_eq!(classes.iter().map(|c| c["vsz_bytes"].as_u64().unwrap()).sum::<u64>(), r["vsz_bytes"].as_u64().unwrap());
    let per_process: u64 = r["processes"].as_array().unwrap().iter().map(|p| p["vsz_bytes"].as_u64().unwrap()).sum();
    assert_eq!(per_process, r["vsz_bytes"].as_u64().unwrap());
    let m = &r["cgroup_memory"];
    assert_eq!(m["limit_bytes"], limit);
    assert!(m["anon_bytes"].as_u64().unwrap() >= 4 << 20, "four threads touched 1 MiB each: {m}");
    assert_eq!(m["headroom_bytes"].as_u64().unwrap(), limit - m["working_set_bytes"].as_u64().unwrap());
    let summary = r["summary"].as_str().unwrap();
    assert!(summary.contains("Against its limit, 256.0 MiB"), "{summary}");
    // An unknown container is a clear error.
    let out = Command::new(util::memwatch_bin()).args(["explain", "nope/nothing/here"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no container nope/nothing/here"));
}
