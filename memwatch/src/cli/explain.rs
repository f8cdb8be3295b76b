//! `memwatch explain PID|CONTAINER`: where a process's (or a container's processes') VSZ and
//! RSS are, by class, and what of it counts against the container's memory limit. Reads
//! `/proc/<pid>/smaps`, `status`, the executable's ELF headers (is it Go?) and, for Go
//! programs only, GOMEMLIMIT and GOGC from the environment; for a container, one sample of
//! its cgroup. Needs root (or CAP_SYS_PTRACE) for other users' processes.

use std::{
    fs,
    io::{self, Write},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Args;
use memwatch::{
    Roots,
    layout::{Breakdown, Facts},
    model::{CgroupFilter, Options},
    parse::smaps,
    pipeline::{self, Pipeline},
    snapshot::Container,
    units::human,
};
use serde::Serialize;

#[derive(Args)]
pub(crate) struct ExplainArgs {
    /// A process id; a cgroup path relative to the memory hierarchy (e.g.
    /// /kubepods.slice/.../cri-containerd-<id>.scope); or namespace/pod/container
    target: String,
    /// One JSON object
    #[arg(long)]
    json: bool,
}

/// A process, by class.
#[derive(Debug, Serialize)]
struct ProcessReport {
    pid: u32,
    comm: String,
    vsz_bytes: u64,
    rss_bytes: u64,
    /// VmSize and VmRSS from /proc/<pid>/status, read around smaps (the kernel's own totals).
    status_vsz_bytes: u64,
    status_rss_bytes: u64,
    anon_rss_bytes: u64,
    classes: Vec<memwatch::layout::ClassUse>,
    /// Present for Go programs: the only two variables ever read from an environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    go: Option<GoReport>,
    summary: String,
}

#[derive(Debug, Serialize)]
struct GoReport {
    gomemlimit: Option<String>,
    gogc: Option<String>,
}

/// A container: its processes summed by class, and the cgroup's own view.
#[derive(Debug, Serialize)]
struct ContainerReport {
    cgroup: String,
    name: String,
    vsz_bytes: u64,
    rss_bytes: u64,
    classes: Vec<memwatch::layout::ClassUse>,
    cgroup_memory: CgroupMemory,
    processes: Vec<ProcessReport>,
    summary: String,
}

#[derive(Debug, Serialize)]
struct CgroupMemory {
    usage_bytes: u64,
    working_set_bytes: u64,
    limit_bytes: u64,
    limit_is_machine: bool,
    headroom_bytes: u64,
    anon_bytes: u64,
    /// Page cache, shmem not included.
    file_bytes: u64,
    shmem_bytes: u64,
    kernel_bytes: Option<u64>,
}

pub(crate) fn run(roots: &Roots, args: &ExplainArgs) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    if let Ok(pid) = args.target.parse::<u32>() {
        let p = process(&roots.procfs, pid)?;
        if args.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&p)?)?;
        } else {
            print_process(&mut out, &p)?;
        }
        return Ok(());
    }
    let c = container(roots, &args.target)?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&c)?)?;
    } else {
        print_container(&mut out, &c)?;
    }
    Ok(())
}

fn status_sizes(procfs: &Path, pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = procfs.join(format!("{pid}/status"));
    let text = fs::read_to_string(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => anyhow::anyhow!("no process {pid}"),
        _ => anyhow::Error::new(e).context(format!("cannot read {}", path.display())),
    })?;
    let kib =
        |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).map(|v| v * 1024);
    // Kernel threads have no VmSize line.
    Ok((kib("VmSize:").unwrap_or(0), kib("VmRSS:").unwrap_or(0)))
}

/// How often smaps is read again when the process changed its mappings meanwhile.
const CONSISTENT_TRIES: usize = 5;

fn process(procfs: &Path, pid: u32) -> anyhow::Result<ProcessReport> {
    let comm = fs::read_to_string(procfs.join(format!("{pid}/comm"))).map(|s| s.trim().to_string()).unwrap_or_default();
    let exe = fs::read_link(procfs.join(format!("{pid}/exe"))).ok().map(|p| p.to_string_lossy().into_owned());
    let go = memwatch::collector::procfs::go_info(procfs, pid);
    let facts = Facts { exe, is_go: go.is_some() };
    let smaps_path = procfs.join(format!("{pid}/smaps"));
    let mut tries = 0;
    let (maps, status) = loop {
        let before = status_sizes(procfs, pid)?;
        let text = fs::read_to_string(&smaps_path).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => anyhow::anyhow!("cannot read {}: permission denied (run as root)", smaps_path.display()),
            _ => anyhow::Error::new(e).context(format!("cannot read {}", smaps_path.display())),
        })?;
        let after = status_sizes(procfs, pid)?;
        let maps = smaps::parse(&text).with_context(|| format!("cannot parse {}", smaps_path.display()))?;
        tries += 1;
        // The same VSZ before and after: the mappings did not change while read.
        if before.0 == after.0 || tries == CONSISTENT_TRIES {
            break (maps, after);
        }
    };
    let b = Breakdown::of(&maps, &facts);
    let who = format!("{comm} (pid {pid})");
    let mut summary = b.summary(&who);
    if let Some((limit, gogc)) = &go {
        summary += &format!(
            " It is a Go program: GOMEMLIMIT={}, GOGC={}.",
            limit.as_deref().unwrap_or("unset"),
            gogc.as_deref().unwrap_or("unset (100)")
        );
    }
    Ok(ProcessReport {
        pid,
        comm,
        vsz_bytes: b.vsz_bytes,
        rss_bytes: b.rss_bytes,
        status_vsz_bytes: status.0,
        status_rss_bytes: status.1,
        anon_rss_bytes: b.anon_rss_bytes,
        classes: b.classes,
        go: go.map(|(gomemlimit, gogc)| GoReport { gomemlimit, gogc }),
        summary,
    })
}

/// The container named by `target`, from one sample of this host.
fn find_container(roots: &Roots, target: &str) -> anyhow::Result<Container> {
    let opts = pipeline::Options {
        probes: None,
        per_process: false,
        slow_interval: Duration::from_secs(1),
        model: Options { filter: CgroupFilter::All, ..Options::default() },
        state_dir: None,
        max_events: 1,
        bpf_stats: false,
        self_metrics: None,
        history: Duration::from_secs(60),
    };
    let mut p = Pipeline::new(roots.clone(), &opts);
    let (snap, _) = p.sample_once();
    let found: Vec<&Container> = if target.starts_with('/') {
        snap.containers.iter().filter(|c| &*c.cgroup == target.trim_end_matches('/')).collect()
    } else {
        let parts: Vec<&str> = target.split('/').collect();
        match parts[..] {
            [ns, pod, name] => snap.containers.iter().filter(|c| &*c.namespace == ns && &*c.pod == pod && &*c.container == name).collect(),
            [ns, pod] => {
                let names: Vec<&str> =
                    snap.containers.iter().filter(|c| &*c.namespace == ns && &*c.pod == pod).map(|c| &*c.container).collect();
                let names = if names.is_empty() { "none here".to_string() } else { names.join(", ") };
                bail!("name a container: {target}/<container> (this pod has: {names})")
            }
            _ => bail!("{target:?} is not a process id, a cgroup path (starting with /) or namespace/pod/container"),
        }
    };
    match found[..] {
        [c] => Ok(c.clone()),
        [] => bail!("no container {target} on this host"),
        _ => bail!("{target} names {} containers", found.len()),
    }
}

/// Pids in a cgroup and its descendants.
fn pids_under(dir: &Path, out: &mut Vec<u32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(memwatch::parse::cgroup::procs(&text));
    }
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            pids_under(&e.path(), out);
        }
    }
}

fn container(roots: &Roots, target: &str) -> anyhow::Result<ContainerReport> {
    let c = find_container(roots, target)?;
    let root = memwatch::host::cgroup_mode(&roots.cgroupfs).memory_root().map(Path::to_path_buf).context("no memory cgroup hierarchy")?;
    let dir = root.join(c.cgroup.trim_start_matches('/'));
    let mut pids = Vec::new();
    pids_under(&dir, &mut pids);
    pids.sort_unstable();
    pids.dedup();
    let mut processes: Vec<ProcessReport> = pids
        .into_iter()
        .filter_map(|pid| process(&roots.procfs, pid).ok())
        .filter(|p| p.status_vsz_bytes > 0) // kernel threads
        .collect();
    processes.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
    let mut total = Breakdown::default();
    for p in &processes {
        total.merge(&Breakdown {
            vsz_bytes: p.vsz_bytes,
            rss_bytes: p.rss_bytes,
            anon_rss_bytes: p.anon_rss_bytes,
            shmem_rss_bytes: 0,
            classes: p.classes.clone(),
        });
    }
    let name = memwatch::history::display_name(&c).to_string();
    let mem = CgroupMemory {
        usage_bytes: c.usage_bytes,
        working_set_bytes: c.working_set_bytes,
        limit_bytes: c.limit_bytes,
        limit_is_machine: c.limit_is_machine,
        headroom_bytes: c.headroom_bytes,
        anon_bytes: c.rss_bytes,
        file_bytes: c.cache_bytes.saturating_sub(c.shmem_bytes),
        shmem_bytes: c.shmem_bytes,
        kernel_bytes: c.kernel_bytes,
    };
    let summary = container_summary(&name, &processes, &total, &mem);
    Ok(ContainerReport {
        cgroup: c.cgroup.to_string(),
        name,
        vsz_bytes: total.vsz_bytes,
        rss_bytes: total.rss_bytes,
        classes: total.classes,
        cgroup_memory: mem,
        processes,
        summary,
    })
}

fn container_summary(name: &str, procs: &[ProcessReport], total: &Breakdown, m: &CgroupMemory) -> String {
    let h = |b: u64| human(b as f64);
    let mut s = format!(
        "{name}: {} process(es), {} of VSZ and {} of RSS in all (shared pages counted in each process).",
        procs.len(),
        h(total.vsz_bytes),
        h(total.rss_bytes)
    );
    let limit = if m.limit_is_machine { format!("no limit of its own (the machine's {})", h(m.limit_bytes)) } else { h(m.limit_bytes) };
    s += &format!(
        " Against its limit, {limit}, the kernel charges {}: anonymous {}, page cache {}, shmem/tmpfs {}{}. The working set ({}: \
         usage less inactive page cache) leaves {} of headroom. VSZ is not charged at all: reserved address space costs nothing \
         until touched.",
        h(m.usage_bytes),
        h(m.anon_bytes),
        h(m.file_bytes),
        h(m.shmem_bytes),
        m.kernel_bytes.map(|k| format!(", kernel {}", h(k))).unwrap_or_default(),
        h(m.working_set_bytes),
        h(m.headroom_bytes)
    );
    if let Some(p) = procs.first() {
        s += &format!(" The largest process is {} (pid {}) with {} resident.", p.comm, p.pid, h(p.rss_bytes));
    }
    s
}

fn print_classes(out: &mut impl Write, classes: &[memwatch::layout::ClassUse]) -> io::Result<()> {
    writeln!(out, "  {:<20} {:>10} {:>10}  WHAT", "CLASS", "VSZ", "RSS")?;
    for c in classes {
        writeln!(out, "  {:<20} {:>10} {:>10}  {}", c.class.name(), human(c.vsz_bytes as f64), human(c.rss_bytes as f64), c.description)?;
    }
    Ok(())
}

fn print_process(out: &mut impl Write, p: &ProcessReport) -> io::Result<()> {
    writeln!(out, "{} (pid {}): VSZ {}, RSS {}", p.comm, p.pid, human(p.vsz_bytes as f64), human(p.rss_bytes as f64))?;
    print_classes(out, &p.classes)?;
    writeln!(out)?;
    writeln!(out, "{}", wrap(&p.summary, 100))
}

fn print_container(out: &mut impl Write, c: &ContainerReport) -> io::Result<()> {
    writeln!(out, "{} ({}): VSZ {}, RSS {}", c.name, c.cgroup, human(c.vsz_bytes as f64), human(c.rss_bytes as f64))?;
    print_classes(out, &c.classes)?;
    writeln!(out)?;
    for p in c.processes.iter().take(10) {
        writeln!(out, "  pid {:<8} {:<16} VSZ {:>10}  RSS {:>10}", p.pid, p.comm, human(p.vsz_bytes as f64), human(p.rss_bytes as f64))?;
    }
    writeln!(out)?;
    writeln!(out, "{}", wrap(&c.summary, 100))
}

/// Wraps text at spaces to lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split(' ') {
        if line > 0 && line + 1 + word.chars().count() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.chars().count();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrapping() {
        assert_eq!(super::wrap("aaa bbb ccc", 7), "aaa bbb\nccc");
        assert_eq!(super::wrap("", 7), "");
    }
}
