//! The reports `memwatch explain` prints: a process by class (from its `smaps`, checked against
//! the kernel's own `VmSize`/`VmRSS`), and a container's processes summed, beside the cgroup's
//! own view. Reads `/proc` and one sample of the host; the classification itself is
//! [`super::layout`]'s, pure.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Serialize;
use thiserror::Error;

use crate::runtime::layout::{Breakdown, ClassUse, Facts};
use crate::{
    Roots,
    model::{self, CgroupFilter},
    parse::{cgroup, smaps},
    pipeline::{self, Pipeline},
    runtime,
    snapshot::Container,
    units::human,
};

#[derive(Debug, Error)]
pub enum ExplainError {
    #[error("no process {0}")]
    NoProcess(u32),
    #[error("cannot read {path}: permission denied (run as root)")]
    PermissionDenied { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot parse {path}: {source}")]
    Parse { path: PathBuf, source: smaps::SmapsError },
    #[error("name a container: {target}/<container> (this pod has: {names})")]
    PodNotContainer { target: String, names: String },
    #[error("{0:?} is not a process id, a cgroup path (starting with /) or namespace/pod/container")]
    BadTarget(String),
    #[error("no container {0} on this host")]
    NoContainer(String),
    #[error("{target} names {count} containers")]
    Ambiguous { target: String, count: usize },
    #[error("no memory cgroup hierarchy under {0}")]
    NoMemoryHierarchy(PathBuf),
}

/// A process, by class.
#[derive(Debug, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub comm: String,
    pub vsz_bytes: u64,
    pub rss_bytes: u64,
    /// VmSize and VmRSS from /proc/<pid>/status, read around smaps (the kernel's own totals).
    pub status_vsz_bytes: u64,
    pub status_rss_bytes: u64,
    pub anon_rss_bytes: u64,
    pub classes: Vec<ClassUse>,
    /// Present for Go programs: GOMEMLIMIT and GOGC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub go: Option<GoReport>,
    /// Its runtime's facts, for every runtime memwatch knows (Go's too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<runtime::Facts>,
    /// The data store it is and its memory settings, read from outside (`crate::apps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<crate::apps::AppFacts>,
    pub summary: String,
}

#[derive(Debug, Serialize)]
pub struct GoReport {
    pub gomemlimit: Option<String>,
    pub gogc: Option<String>,
}

/// A container: its processes summed by class, and the cgroup's own view.
#[derive(Debug, Serialize)]
pub struct ContainerReport {
    pub cgroup: String,
    pub name: String,
    pub vsz_bytes: u64,
    pub rss_bytes: u64,
    pub classes: Vec<ClassUse>,
    pub cgroup_memory: CgroupMemory,
    pub processes: Vec<ProcessReport>,
    pub summary: String,
}

#[derive(Debug, Serialize)]
pub struct CgroupMemory {
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
    pub limit_bytes: u64,
    pub limit_is_machine: bool,
    pub headroom_bytes: u64,
    pub anon_bytes: u64,
    /// Page cache, shmem not included.
    pub file_bytes: u64,
    pub shmem_bytes: u64,
    pub kernel_bytes: Option<u64>,
}

fn read_error(path: PathBuf, e: io::Error) -> ExplainError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => ExplainError::PermissionDenied { path },
        _ => ExplainError::Read { path, source: e },
    }
}

fn status_sizes(procfs: &Path, pid: u32) -> Result<(u64, u64), ExplainError> {
    let path = procfs.join(format!("{pid}/status"));
    let text = fs::read_to_string(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ExplainError::NoProcess(pid),
        _ => read_error(path.clone(), e),
    })?;
    let kib =
        |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).map(|v| v * 1024);
    // Kernel threads have no VmSize line.
    Ok((kib("VmSize:").unwrap_or(0), kib("VmRSS:").unwrap_or(0)))
}

/// How often smaps is read again when the process changed its mappings meanwhile.
const CONSISTENT_TRIES: usize = 5;

/// Reads smaps until the process's VSZ is the same before and after (its mappings did not
/// change while read), at most [`CONSISTENT_TRIES`] times; with the status sizes after.
fn consistent_smaps(procfs: &Path, pid: u32) -> Result<(Vec<smaps::Mapping>, (u64, u64)), ExplainError> {
    let path = procfs.join(format!("{pid}/smaps"));
    let mut tries = 0;
    loop {
        let before = status_sizes(procfs, pid)?;
        let text = fs::read_to_string(&path).map_err(|e| read_error(path.clone(), e))?;
        let after = status_sizes(procfs, pid)?;
        let maps = smaps::parse(&text).map_err(|source| ExplainError::Parse { path: path.clone(), source })?;
        tries += 1;
        if before.0 == after.0 || tries == CONSISTENT_TRIES {
            return Ok((maps, after));
        }
    }
}

/// One process by class.
pub fn process(procfs: &Path, pid: u32) -> Result<ProcessReport, ExplainError> {
    let comm = fs::read_to_string(procfs.join(format!("{pid}/comm"))).map(|s| s.trim().to_string()).unwrap_or_default();
    let exe = fs::read_link(procfs.join(format!("{pid}/exe"))).ok().map(|p| p.to_string_lossy().into_owned());
    let (runtime, runtime_facts, app) = runtime::inspect(procfs, pid).map_or((None, None, None), |r| (r.runtime, r.facts, r.app));
    let facts = Facts { exe, runtime, runtime_facts };
    let (maps, status) = consistent_smaps(procfs, pid)?;
    let b = Breakdown::of(&maps, &facts);
    let mut summary = b.summary(&format!("{comm} (pid {pid})"));
    if let (Some(id), Some(f)) = (facts.runtime, &facts.runtime_facts) {
        summary += " ";
        summary += &runtime::get(id).describe(f);
    }
    if let Some(a) = &app {
        summary += " ";
        summary += &a.describe();
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
        go: match &facts.runtime_facts {
            Some(runtime::Facts::Go(s)) => Some(GoReport { gomemlimit: s.gomemlimit.clone(), gogc: s.gogc.clone() }),
            _ => None,
        },
        runtime: facts.runtime_facts,
        app,
        summary,
    })
}

/// The container named by `target`, from one sample of this host.
fn find_container(roots: &Roots, target: &str) -> Result<Container, ExplainError> {
    let opts = pipeline::Options {
        slow_interval: Duration::from_secs(1),
        model: model::Options { filter: CgroupFilter::All, ..model::Options::default() },
        max_events: 1,
        history: Duration::from_secs(60),
        ..pipeline::Options::default()
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
                return Err(ExplainError::PodNotContainer { target: target.to_string(), names });
            }
            _ => return Err(ExplainError::BadTarget(target.to_string())),
        }
    };
    match found[..] {
        [c] => Ok(c.clone()),
        [] => Err(ExplainError::NoContainer(target.to_string())),
        _ => Err(ExplainError::Ambiguous { target: target.to_string(), count: found.len() }),
    }
}

/// Pids in a cgroup and its descendants.
fn pids_under(dir: &Path, out: &mut Vec<u32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(cgroup::procs(&text));
    }
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            pids_under(&e.path(), out);
        }
    }
}

/// A container's processes by class, and the cgroup's own view.
pub fn container(roots: &Roots, target: &str) -> Result<ContainerReport, ExplainError> {
    let c = find_container(roots, target)?;
    let mode = crate::host::cgroup_mode(&roots.cgroupfs);
    let root = mode.memory_root().ok_or_else(|| ExplainError::NoMemoryHierarchy(roots.cgroupfs.clone()))?;
    let mut pids = Vec::new();
    pids_under(&root.join(c.cgroup.trim_start_matches('/')), &mut pids);
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
    let name = c.display_name().to_string();
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
    // Its data stores' settings, once per application (a server's children repeat it).
    let mut said = Vec::new();
    for p in procs {
        if let Some(a) = p.app.as_ref().filter(|a| !said.contains(&a.id())) {
            said.push(a.id());
            s += &format!(" {} (pid {}): {}", p.comm, p.pid, a.describe());
        }
    }
    s
}
