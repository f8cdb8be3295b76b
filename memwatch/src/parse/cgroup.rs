//! Parsers for cgroup memory files, v1 and v2: flat key-value files (`memory.stat`,
//! `memory.events`, `memory.oom_control`), single values with `max`, and PSI files.

use std::collections::HashMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("line {line}: expected a number, got {text:?}")]
    Number { line: usize, text: String },
    #[error("empty file")]
    Empty,
}

/// `key value` lines into a map. Lines that are not `key number` are skipped, so a newer
/// kernel's extra keys or formats break nothing.
pub fn flat_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (k, v) = (it.next()?, it.next()?);
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The values of `keys` in a flat keyed file, without building a map (memory.stat has dozens of
/// keys and is read often). A key absent, or whose value is not a number, is None; unknown
/// keys are skipped.
pub fn pick<const N: usize>(text: &str, keys: [&str; N]) -> [Option<u64>; N] {
    let mut out = [None; N];
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next()) else { continue };
        if let Some(i) = keys.iter().position(|want| *want == k)
            && let Ok(v) = v.parse()
        {
            out[i] = Some(v);
        }
    }
    out
}

/// The first number of a single-value file; `max` (v2) is `None`.
pub fn limit(text: &str) -> Result<Option<u64>, ValueError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ValueError::Empty);
    }
    if t == "max" {
        return Ok(None);
    }
    let v: u64 = t.parse().map_err(|_| ValueError::Number { line: 1, text: t.to_string() })?;
    // cgroup v1 writes "unlimited" as PAGE_COUNTER_MAX * PAGE_SIZE, about 2^63.
    Ok(if v >= 1 << 62 { None } else { Some(v) })
}

/// A plain number (`memory.current`, `memory.usage_in_bytes`).
pub fn value(text: &str) -> Result<u64, ValueError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ValueError::Empty);
    }
    t.parse().map_err(|_| ValueError::Number { line: 1, text: t.to_string() })
}

/// Pressure stall totals, in microseconds, from a PSI file (`memory.pressure`,
/// `/proc/pressure/memory`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pressure {
    pub some_us: u64,
    pub full_us: Option<u64>,
}

pub fn psi(text: &str) -> Option<Pressure> {
    let mut p = Pressure::default();
    let mut some = false;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let kind = it.next()?;
        let total = it.find_map(|kv| kv.strip_prefix("total="))?.parse().ok()?;
        match kind {
            "some" => {
                p.some_us = total;
                some = true;
            }
            "full" => p.full_us = Some(total),
            _ => {}
        }
    }
    some.then_some(p)
}

/// The parts of a cgroup's memory that `memory.stat` gives, in bytes, over its subtree (v1's
/// `total_*` keys, v2's keys, which are hierarchical).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStat {
    pub anon: Option<u64>,
    /// Page cache, shmem/tmpfs included (as the kernel counts it).
    pub file: Option<u64>,
    pub shmem: Option<u64>,
    pub inactive_file: Option<u64>,
    /// Kernel memory charged to the cgroup: v2's `kernel`, else the sum of its parts where the
    /// kernel predates that key; None on v1 (it is in `memory.kmem.usage_in_bytes`).
    pub kernel: Option<u64>,
    pub major_faults: Option<u64>,
    pub faults: Option<u64>,
}

/// Parses `memory.stat`, v2 (`v2`) or v1.
pub fn memory_stat(text: &str, v2: bool) -> MemoryStat {
    if v2 {
        let [anon, file, shmem, inactive, major, faults, kernel, slab, stack, pagetables, percpu, sock, vmalloc] = pick(
            text,
            [
                "anon",
                "file",
                "shmem",
                "inactive_file",
                "pgmajfault",
                "pgfault",
                "kernel",
                "slab",
                "kernel_stack",
                "pagetables",
                "percpu",
                "sock",
                "vmalloc",
            ],
        );
        let parts = [slab, stack, pagetables, percpu, sock, vmalloc];
        let kernel = kernel.or_else(|| parts.iter().any(Option::is_some).then(|| parts.iter().flatten().sum()));
        MemoryStat { anon, file, shmem, inactive_file: inactive, kernel, major_faults: major, faults }
    } else {
        let [anon, file, shmem, inactive, major, faults] =
            pick(text, ["total_rss", "total_cache", "total_shmem", "total_inactive_file", "total_pgmajfault", "total_pgfault"]);
        MemoryStat { anon, file, shmem, inactive_file: inactive, kernel: None, major_faults: major, faults }
    }
}

/// Pids in a `cgroup.procs` file; anything that is not a number is skipped.
pub fn procs(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_takes_only_the_keys_asked_for() {
        let stat = "anon 4096\nfile 8192\nweird line\nfile_mapped x\npgfault 12\n";
        assert_eq!(pick(stat, ["file", "pgfault", "missing", "file_mapped"]), [Some(8192), Some(12), None, None]);
        assert_eq!(pick("", ["anon"]), [None]);
    }

    // From a 6.1 kernel, pure v2.
    const STAT_V2: &str = "anon 10485760\nfile 4194304\nkernel 319488\nkernel_stack 32768\nshmem 0\nactive_anon 10485760\ninactive_anon 0\nactive_file 1048576\ninactive_file 3145728\npgfault 4821\npgmajfault 7\nsome_future_key 1\n";
    // From this machine's v1 memory controller (6.18, hybrid).
    const STAT_V1: &str = "cache 4194304\nrss 10485760\nrss_huge 0\nshmem 0\nmapped_file 0\npgmajfault 3\ninactive_file 3145728\nhierarchical_memory_limit 33554432\ntotal_cache 4194304\ntotal_rss 10485760\ntotal_inactive_file 3145728\ntotal_pgmajfault 3\n";

    #[test]
    fn memory_stat_v1_and_v2() {
        let v2 = flat_keyed(STAT_V2);
        assert_eq!((v2["anon"], v2["file"], v2["inactive_file"], v2["pgmajfault"]), (10485760, 4194304, 3145728, 7));
        assert_eq!(v2["some_future_key"], 1);
        let v1 = flat_keyed(STAT_V1);
        assert_eq!((v1["total_rss"], v1["total_cache"], v1["total_inactive_file"]), (10485760, 4194304, 3145728));
    }

    #[test]
    fn memory_stat_parts() {
        let v2 = memory_stat(STAT_V2, true);
        assert_eq!((v2.anon, v2.file, v2.shmem, v2.kernel), (Some(10485760), Some(4194304), Some(0), Some(319488)));
        // A kernel before the `kernel` key: the sum of the parts it has.
        let old = memory_stat("anon 1\nslab 100\nkernel_stack 20\nsock 3\n", true);
        assert_eq!((old.kernel, old.file), (Some(123), None));
        assert_eq!(memory_stat("anon 1\n", true).kernel, None);
        let v1 = memory_stat(STAT_V1, false);
        assert_eq!((v1.anon, v1.file, v1.inactive_file, v1.kernel), (Some(10485760), Some(4194304), Some(3145728), None));
    }

    #[test]
    fn events_and_oom_control() {
        let ev = flat_keyed("low 0\nhigh 3\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n");
        assert_eq!(ev["oom_kill"], 2);
        let v1 = flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 5\n");
        assert_eq!(v1["oom_kill"], 5);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let m = flat_keyed("good 1\nbad x\n\nlonely\nalso_good 2 extra\n");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn limits() {
        assert_eq!(limit("max\n"), Ok(None));
        assert_eq!(limit("33554432\n"), Ok(Some(33554432)));
        assert_eq!(limit("9223372036854771712\n"), Ok(None), "v1 unlimited");
        assert!(matches!(limit("lots\n"), Err(ValueError::Number { .. })));
        assert_eq!(limit(""), Err(ValueError::Empty));
        assert_eq!(value(" 4096\n"), Ok(4096));
        assert!(value("-1").is_err());
    }

    #[test]
    fn pressure() {
        let p = psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=567\n").unwrap();
        assert_eq!(p, Pressure { some_us: 1234, full_us: Some(567) });
        // Old kernels' /proc/pressure/cpu style: no full line.
        assert_eq!(psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=9\n").unwrap().full_us, None);
        assert_eq!(psi(""), None);
        assert_eq!(psi("some avg10=0.00\n"), None);
    }

    #[test]
    fn procs_file() {
        assert_eq!(procs("1\n22\n\nx\n333\n"), vec![1, 22, 333]);
    }
}
