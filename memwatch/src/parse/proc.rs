//! Parsers for `/proc` files: `/proc/<pid>/stat` and `/proc/meminfo`.

/// What memwatch reads of a process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: std::sync::Arc<str>,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
    /// Page faults, minor and major, since the process started (the kernel's own count).
    pub faults: u64,
    /// When it started, in clock ticks after boot: with the pid, who it is (pids are reused).
    pub start_ticks: u64,
    /// Its parent's pid (0 for the kernel's own).
    pub ppid: u32,
}

/// `/proc/<pid>/stat`. The comm is between the first `(` and the *last* `)`: it may itself
/// contain spaces and parentheses.
pub fn stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.into();
    // Fields after the comm, starting at field 3 (state).
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat {
        pid,
        comm,
        vsize_bytes: field(23)?,
        rss_pages: field(24)?,
        faults: field(10)?.saturating_add(field(12)?),
        start_ticks: field(22).unwrap_or(0),
        ppid: field(4).and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
    })
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_numbers_are_no_overflow() {
        // Found by fuzzing (proc_files): minor + major faults near u64::MAX.
        let line = "301 (envoy) S 1 301 301 0 -1 4194560 1200 05000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 0 1 1 0 0 0\n";
        let s = stat(line).unwrap();
        assert_eq!(s.faults, u64::MAX);
        assert_eq!(mem_total("MemTotal: 18446744073709551615 kB\n"), None);
    }

    #[test]
    fn stat_with_awkward_comm() {
        let line = "4242 (my (weird) prog) S 1 4242 4242 0 -1 4194560 1200 0 3 0 10 5 0 0 20 0 4 0 12345 398458880 1280 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let s = stat(line).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(&*s.comm, "my (weird) prog");
        assert_eq!(s.vsize_bytes, 398458880);
        assert_eq!(s.rss_pages, 1280);
        assert_eq!(s.faults, 1203);
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(stat("12 (x) S 1 2 3"), None);
        assert_eq!(stat(""), None);
    }

    #[test]
    fn meminfo() {
        assert_eq!(mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"), Some(24576000 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
    }
}

/// The memory cgroup's path in a `/proc/<pid>/cgroup` (v1 `memory` line, else v2 `0::`).
pub fn memory_cgroup_path(text: &str) -> Option<String> {
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            return Some(path.to_string());
        }
        if controllers.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    v2
}

/// `Tgid` from a `/proc/<pid>/status`: the process a thread belongs to.
pub fn tgid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Tgid:"))?.trim().parse().ok()
}

/// (effective uid, pid in the innermost pid namespace) from a `/proc/<pid>/status`. Kernels
/// before 4.1 have no `NSpid`: the pid there is the host's.
pub fn ids(status: &str) -> Option<(u32, u32)> {
    let field = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).map(str::split_whitespace);
    let euid = field("Uid:")?.nth(1)?.parse().ok()?;
    let nspid = match field("NSpid:") {
        Some(f) => f.last()?.parse().ok()?,
        None => field("Pid:")?.next()?.parse().ok()?,
    };
    Some((euid, nspid))
}

#[cfg(test)]
mod status_tests {
    use super::{ids, memory_cgroup_path};

    #[test]
    fn ids_from_status() {
        let s = "Name:\tjava\nPid:\t4242\nUid:\t1000\t1001\t1001\t1001\nNSpid:\t4242\t17\n";
        assert_eq!(ids(s), Some((1001, 17)));
        assert_eq!(ids("Pid:\t9\nUid:\t0\t0\t0\t0\n"), Some((0, 9)), "no NSpid");
        assert_eq!(ids("Name:\tx\n"), None);
        assert_eq!(super::tgid("Name:\tVM Periodic Tas\nTgid:\t20333\nPid:\t20345\n"), Some(20333));
    }

    #[test]
    fn memory_path_from_proc_cgroup() {
        let hybrid = "12:pids:/x\n4:memory:/memwatch-test-a\n0::/user.slice\n";
        assert_eq!(memory_cgroup_path(hybrid).as_deref(), Some("/memwatch-test-a"));
        assert_eq!(memory_cgroup_path("0::/kubepods.slice/x.scope\n").as_deref(), Some("/kubepods.slice/x.scope"));
        assert_eq!(memory_cgroup_path(""), None);
    }
}
