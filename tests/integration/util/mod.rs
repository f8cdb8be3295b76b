//! Shared helpers for the integration tests: root checks, test cgroups, workloads, binaries.
#![allow(dead_code)]
pub(crate) mod browser;
pub(crate) mod cgroup;
pub(crate) mod daemon;
pub(crate) mod oom;
pub(crate) mod programs;

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::SystemTime,
};

/// True when the test can run. Without root it prints why it skips (`cargo xtask test` reads
/// that line from the test's output and counts it as skipped, not passed); under CI (CI=true) a
/// skip is a failure, so CI can never pass by skipping. Tests call it through
/// [`require_root!`], which knows their name.
pub(crate) fn runs_as_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let why = "needs root (CAP_BPF, CAP_PERFMON, and cgroup writes) to load eBPF programs";
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: {why}; CI=true does not allow skipping");
    }
    skipped(test, why);
    false
}

/// Says a test is skipping (the line `cargo xtask test` counts).
pub(crate) fn skipped(test: &str, why: &str) {
    eprintln!("skipping {test}: {why}");
}

/// The path of the function it is written in, within this test binary (`oom::a_test`).
macro_rules! test_name {
    () => {{
        fn here() {}
        let full = std::any::type_name_of_val(&here);
        let path = full.strip_suffix("::here").unwrap_or(full);
        path.split_once("::").map_or(path, |(_, rest)| rest)
    }};
}
pub(crate) use test_name;

/// Returns from the test it is written in unless it runs as root (see [`runs_as_root`]).
macro_rules! require_root {
    () => {
        if !$crate::util::runs_as_root($crate::util::test_name!()) {
            return;
        }
    };
}
pub(crate) use require_root;

/// Tests that would disturb each other's view of the kernel (OOM kills, 10,000 processes)
/// take this lock.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn workload_bin() -> &'static str {
    env!("CARGO_BIN_EXE_memwatch-workload")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The `memwatch` binary built beside the workload. Cargo does not build another package's
/// binary for these tests, so refuse a missing or stale one rather than test old code.
pub(crate) fn memwatch_bin() -> PathBuf {
    let bin = Path::new(workload_bin()).with_file_name("memwatch");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
    let newest = ["memwatch/src", "memwatch-common/src", "memwatch-ebpf/src"]
        .iter()
        .filter_map(|d| newest_mtime(&workspace().join(d)))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    assert!(built >= newest, "{} is missing or older than the sources: run `cargo build` first (`cargo xtask test` does)", bin.display());
    bin
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            if m.is_dir() { newest_mtime(&e.path()) } else { m.modified().ok() }
        })
        .max()
}

/// A running workload with a line protocol on stdin/stdout. Killed when dropped.
pub(crate) struct Workload {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Workload {
    /// Starts the workload with `args`, inside `cgroup` when given (it joins before exec).
    pub(crate) fn start(args: &[&str], cgroup: Option<&cgroup::TestCgroup>) -> Workload {
        let mut cmd = Command::new(workload_bin());
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
        if let Some(cg) = cgroup {
            cg.join_before_exec(&mut cmd);
        }
        let mut child = cmd.spawn().expect("start workload");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Workload { child, stdin, stdout }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn expect_line(&mut self, want: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read workload");
        assert_eq!(line.trim(), want, "workload said {line:?}");
    }

    pub(crate) fn send_line(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(b"go\n").and_then(|_| stdin.flush()).expect("write workload");
    }

    /// Closes stdin and waits for a clean exit.
    pub(crate) fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait workload");
        assert!(status.success(), "workload exited with {status}");
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that a process ended by SIGKILL, as the OOM killer ends its victims.
pub(crate) fn assert_killed(status: std::process::ExitStatus, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{what}: exited with {status}, not killed");
}

pub(crate) fn is_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
