//! Memory cgroups created by a test, on pure v2, v1 or hybrid hosts; removed when dropped,
//! also when the test fails. Only cgroups this helper created are ever written to.
use std::{
    ffi::CString,
    fs,
    os::unix::{ffi::OsStrExt, fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use memwatch::host;

/// Memory cgroups the kernel holds, removed ones not yet freed included (`/proc/cgroups`).
pub(crate) fn memory_cgroups() -> u64 {
    fs::read_to_string("/proc/cgroups")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("memory\t").and_then(|r| r.split('\t').nth(1)).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

pub(crate) struct TestCgroup {
    pub path: PathBuf,
    pub v2: bool,
}

impl TestCgroup {
    /// Creates `<memory root>/memwatch-test-<name>-<pid>` with a memory limit in bytes.
    pub(crate) fn new(name: &str, limit: u64) -> TestCgroup {
        let mode = host::cgroup_mode(Path::new("/sys/fs/cgroup"));
        let root = mode.memory_root().expect("this host has no memory cgroup controller").to_path_buf();
        let path = root.join(format!("memwatch-test-{name}-{}", std::process::id()));
        if path.exists() {
            remove(&path); // left over from a crashed run of this same process id
        }
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let cg = TestCgroup { path, v2: mode.is_v2() };
        let file = if cg.v2 { "memory.max" } else { "memory.limit_in_bytes" };
        cg.write(file, &limit.to_string());
        if cg.v2 {
            cg.write("memory.swap.max", "0");
        }
        cg
    }

    pub(crate) fn write(&self, file: &str, value: &str) {
        let p = self.path.join(file);
        if let Err(e) = fs::write(&p, value) {
            // memory.swap.max is absent without swap accounting: nothing to limit then.
            if !(file == "memory.swap.max" && e.kind() == std::io::ErrorKind::NotFound) {
                panic!("write {value:?} to {}: {e}", p.display());
            }
        }
    }

    pub(crate) fn read(&self, file: &str) -> String {
        fs::read_to_string(self.path.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"))
    }

    /// The cgroup's id as the kernel reports it: the inode of its directory.
    pub(crate) fn id(&self) -> u64 {
        fs::metadata(&self.path).unwrap().ino()
    }

    /// The cgroup's path as memwatch labels it: relative to the memory hierarchy's root.
    pub(crate) fn label(&self) -> String {
        format!("/{}", self.path.file_name().unwrap().to_string_lossy())
    }

    /// A key of the cgroup's memory.stat (v1 keys are the total_* ones).
    pub(crate) fn stat(&self, key: &str) -> u64 {
        self.read("memory.stat")
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("memory.stat has no {key}"))
    }

    /// memory.current (v2) or memory.usage_in_bytes (v1).
    pub(crate) fn usage(&self) -> u64 {
        let f = if self.v2 { "memory.current" } else { "memory.usage_in_bytes" };
        self.read(f).trim().parse().unwrap()
    }

    /// The kernel's own count of OOM kills in this cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        let text = if self.v2 { self.read("memory.events") } else { self.read("memory.oom_control") };
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    /// Makes the child write "0" (itself) to cgroup.procs between fork and exec.
    pub(crate) fn join_before_exec(&self, cmd: &mut Command) {
        let procs = CString::new(self.path.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
        // SAFETY: only async-signal-safe calls (open, write, close) run in the child.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if ok { Ok(()) } else { Err(err) }
            });
        }
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}

/// Removes a test cgroup and any cgroups the test made below it, deepest first.
fn remove_tree(path: &Path) {
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    remove(path);
}

/// Kills what is left inside and removes the directory, retrying while the kernel finishes
/// tearing down the killed tasks.
fn remove(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for pid in fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default().lines() {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: sending a signal to a process of our own test cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        match fs::remove_dir(path) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if Instant::now() > deadline => {
                eprintln!("warning: could not remove test cgroup {}: {e}", path.display());
                return;
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}
