//! Loading and attaching memwatch's kernel programs, and reading what they aggregate.
//!
//! Each probe is a group of tracepoints that only make sense together (sys_enter + sys_exit).
//! Its field offsets come from this kernel's tracefs `format` files; a probe whose format is
//! missing or garbled, or whose program fails to load or attach, is disabled with a reason and
//! the others run. Only a failure to load the object itself (no privilege) is fatal.

use std::{collections::HashMap, fs, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::TracePoint,
};
use memwatch_common::{Config, Counters, FIELD_ABSENT, ProcEntry};
use thiserror::Error;

use crate::{
    parse::{btf::Btf, caps, tracefs_format},
    tracefs::Tracefs,
};

/// The compiled eBPF object, built by build.rs with aya-build.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/memwatch"));

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("loading the eBPF object needs {missing}; run memwatch as root or grant those capabilities")]
    Privilege { missing: String },
    #[error("loading the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
}

/// One tracepoint and the program attached to it.
pub struct Hook {
    pub category: &'static str,
    pub event: &'static str,
}

impl Hook {
    /// Programs are named after their tracepoint.
    pub fn program(&self) -> &'static str {
        self.event
    }
}

/// A group of tracepoints attached together, with the config fields they need.
pub struct ProbeSpec {
    pub name: &'static str,
    pub hooks: &'static [Hook],
    /// Fills `cfg` from the hooks' formats (same order as `hooks`); Err names what is missing.
    configure: fn(&[tracefs_format::Format], &mut Config, &mut Units) -> Result<(), String>,
}

/// Units the formats' print lines reveal, for decoding records in userspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Units {
    /// Bytes per unit of `mark_victim`'s size fields: 1024 where the kernel prints them as
    /// `%lukB` (it stores KiB), else the page size.
    pub oom_size: u64,
}

const fn hook(category: &'static str, event: &'static str) -> Hook {
    Hook { category, event }
}

/// Every probe memwatch has, in the order `memwatch check` lists them.
pub static PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        name: "mmap",
        hooks: &[hook("syscalls", "sys_enter_mmap"), hook("syscalls", "sys_exit_mmap")],
        configure: |f, c, _| {
            c.mmap_len = need(&f[0], "len", 8)?;
            c.mmap_flags = need(&f[0], "flags", 8)?;
            c.mmap_ret = need(&f[1], "ret", 8)?;
            Ok(())
        },
    },
    ProbeSpec {
        name: "munmap",
        hooks: &[hook("syscalls", "sys_enter_munmap"), hook("syscalls", "sys_exit_munmap")],
        configure: |f, c, _| {
            c.munmap_len = need(&f[0], "len", 8)?;
            c.munmap_ret = need(&f[1], "ret", 8)?;
            Ok(())
        },
    },
    ProbeSpec {
        name: "brk",
        hooks: &[hook("syscalls", "sys_enter_brk"), hook("syscalls", "sys_exit_brk")],
        configure: |f, c, _| {
            c.brk_brk = need(&f[0], "brk", 8)?;
            c.brk_ret = need(&f[1], "ret", 8)?;
            Ok(())
        },
    },
    ProbeSpec {
        name: "mremap",
        hooks: &[hook("syscalls", "sys_enter_mremap"), hook("syscalls", "sys_exit_mremap")],
        configure: |f, c, _| {
            c.mremap_old_len = need(&f[0], "old_len", 8)?;
            c.mremap_new_len = need(&f[0], "new_len", 8)?;
            c.mremap_ret = need(&f[1], "ret", 8)?;
            Ok(())
        },
    },
    ProbeSpec {
        name: "page_fault_user",
        hooks: &[hook("exceptions", "page_fault_user")],
        configure: |_, _, _| Ok(()),
    },
    ProbeSpec {
        name: "oom_mark_victim",
        hooks: &[hook("oom", "mark_victim")],
        configure: |f, c, units| {
            let f = &f[0];
            if f.print_fmt.contains("total-vm=%lukB") {
                units.oom_size = 1024;
            }
            c.oom_pid = need(f, "pid", 4)?;
            c.oom_comm = optional(f, "comm", 4);
            c.oom_total_vm = optional(f, "total_vm", 8);
            c.oom_anon_rss = optional(f, "anon_rss", 8);
            c.oom_file_rss = optional(f, "file_rss", 8);
            c.oom_shmem_rss = optional(f, "shmem_rss", 8);
            c.oom_uid = optional(f, "uid", 4);
            c.oom_pgtables = optional(f, "pgtables", 8);
            c.oom_score_adj = optional(f, "oom_score_adj", 2);
            if c.oom_comm != FIELD_ABSENT && !f.field("comm").is_some_and(|x| x.ctype.starts_with("__data_loc")) {
                c.oom_comm = FIELD_ABSENT;
            }
            Ok(())
        },
    },
    ProbeSpec {
        name: "process_exit",
        hooks: &[hook("sched", "sched_process_exit")],
        configure: |f, c, _| {
            c.exit_group_dead = optional(&f[0], "group_dead", 1);
            Ok(())
        },
    },
    ProbeSpec {
        name: "process_exec",
        hooks: &[hook("sched", "sched_process_exec")],
        configure: |_, _, _| Ok(()),
    },
];

fn need(f: &tracefs_format::Format, name: &str, size: u16) -> Result<u16, String> {
    match f.field(name) {
        Some(x) if x.size == size => Ok(x.offset),
        Some(x) => Err(format!("field `{name}` of {} is {} bytes, expected {size}", f.name, x.size)),
        None => Err(format!("format of {} has no field `{name}`", f.name)),
    }
}

fn optional(f: &tracefs_format::Format, name: &str, size: u16) -> u16 {
    need(f, name, size).unwrap_or(FIELD_ABSENT)
}

/// Whether a probe runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum ProbeState {
    Attached,
    Disabled(String),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeStatus {
    pub name: &'static str,
    #[serde(flatten)]
    pub state: ProbeState,
}

/// How the kernel side finds a process's memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum MemcgIds {
    /// task->cgroups->subsys[memory]->cgroup->kn->id, offsets from BTF: right on v1 and v2.
    Btf,
    /// BTF unusable: the v2 cgroup id, which names the memory cgroup only on pure v2.
    CgroupV2Only(String),
}

/// Where to find the kernel's interfaces.
#[derive(Debug, Clone)]
pub struct LoadOptions<'a> {
    pub sysfs: &'a Path,
    pub procfs: &'a Path,
    /// Overrides tracefs discovery (and mounting) under `sysfs`.
    pub tracefs: Option<&'a Path>,
}

/// Sum of one process's per-CPU slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSample {
    pub cgroup_id: u64,
    pub memcg_id: u64,
    pub counters: Counters,
}

/// The loaded programs and their maps. Dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
    status: Vec<ProbeStatus>,
    memcg: MemcgIds,
    tracefs: Result<Tracefs, String>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    warnings: Vec<String>,
    page_size: u64,
    units: Units,
}

impl Probes {
    pub fn load(opts: &LoadOptions<'_>) -> Result<Probes, ProbeError> {
        let mut warnings = Vec::new();
        if let Err(e) = raise_memlock() {
            // Kernels >= 5.11 account BPF memory to the cgroup and ignore this limit.
            warnings.push(format!("could not raise RLIMIT_MEMLOCK ({e}); fine on Linux >= 5.11"));
        }
        let page_size = page_size();
        let mut cfg = Config { page_size, ..Config::empty() };
        let memcg = match memcg_offsets(&opts.sysfs.join("kernel/btf/vmlinux"), &mut cfg) {
            Ok(()) => MemcgIds::Btf,
            Err(why) => MemcgIds::CgroupV2Only(why),
        };

        let tracefs = Tracefs::open(opts.sysfs, opts.tracefs).map_err(|e| e.to_string());
        let mut units = Units { oom_size: page_size };
        let mut status: Vec<ProbeStatus> = PROBES
            .iter()
            .map(|spec| {
                let state = match &tracefs {
                    Err(e) => ProbeState::Disabled(e.clone()),
                    Ok(t) => match configure(spec, t, &mut cfg, &mut units) {
                        Ok(()) => ProbeState::Attached, // provisional: attached below
                        Err(why) => ProbeState::Disabled(why),
                    },
                };
                ProbeStatus { name: spec.name, state }
            })
            .collect();

        let mut ebpf = match EbpfLoader::new().override_global("CONFIG", &cfg, true).load(EBPF_OBJECT) {
            Ok(ebpf) => ebpf,
            Err(e) => return Err(load_error(e, opts.procfs)),
        };
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                warnings.push(format!("kernel-side logging unavailable: {e}"));
                None
            }
        };

        for (spec, st) in PROBES.iter().zip(status.iter_mut()) {
            if st.state == ProbeState::Attached {
                if let Err(why) = attach(&mut ebpf, spec) {
                    st.state = ProbeState::Disabled(why);
                }
            }
        }
        Ok(Probes { ebpf, status, memcg, tracefs, logger, warnings, page_size, units })
    }

    pub fn status(&self) -> &[ProbeStatus] {
        &self.status
    }

    pub fn is_attached(&self, probe: &str) -> bool {
        self.status.iter().any(|s| s.name == probe && s.state == ProbeState::Attached)
    }

    pub fn memcg_ids(&self) -> &MemcgIds {
        &self.memcg
    }

    pub fn tracefs(&self) -> &Result<Tracefs, String> {
        &self.tracefs
    }

    /// Non-fatal problems met while loading, to be reported once.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Bytes per unit of the OOM record's size fields on this kernel.
    pub fn oom_size_unit(&self) -> u64 {
        self.units.oom_size
    }

    /// The kernel-side logger; whoever takes it must keep it alive and `flush()` it when its
    /// fd is readable. Until taken, [`Probes::flush_logs`] drains it.
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        self.logger.take()
    }

    pub fn flush_logs(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }

    /// The OOM ring buffer; can be taken once.
    pub fn take_oom_events(&mut self) -> Option<RingBuf<MapData>> {
        self.ebpf.take_map("OOM_EVENTS").and_then(|m| RingBuf::try_from(m).ok())
    }

    fn proc_map(&self) -> Result<PerCpuHashMap<&MapData, u32, ProcEntry>, ProbeError> {
        let map = self.ebpf.map("PROC_STATS").expect("PROC_STATS is in the object");
        PerCpuHashMap::try_from(map).map_err(|source| ProbeError::Map { name: "PROC_STATS", source })
    }

    fn cgroup_map(&self) -> Result<PerCpuHashMap<&MapData, u64, Counters>, ProbeError> {
        let map = self.ebpf.map("CGROUP_STATS").expect("CGROUP_STATS is in the object");
        PerCpuHashMap::try_from(map).map_err(|source| ProbeError::Map { name: "CGROUP_STATS", source })
    }

    /// One process's counters, summed over CPUs; None when the kernel has no entry for it.
    pub fn process(&self, tgid: u32) -> Result<Option<ProcSample>, ProbeError> {
        match self.proc_map()?.get(&tgid, 0) {
            Ok(values) => Ok(Some(sum_proc(values.iter()))),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(ProbeError::Map { name: "PROC_STATS", source }),
        }
    }

    /// Every process the kernel side tracks. Entries that vanish mid-walk are skipped.
    pub fn processes(&self) -> Result<HashMap<u32, ProcSample>, ProbeError> {
        Ok(self
            .proc_map()?
            .iter()
            .filter_map(Result::ok)
            .map(|(tgid, values)| (tgid, sum_proc(values.iter())))
            .collect())
    }

    /// How many processes the kernel side tracks (keys only: no per-CPU values read).
    pub fn tracked_processes(&self) -> Result<u64, ProbeError> {
        Ok(self.proc_map()?.keys().filter(Result::is_ok).count() as u64)
    }

    /// Counters per memory cgroup id, summed over CPUs.
    pub fn cgroups(&self) -> Result<HashMap<u64, Counters>, ProbeError> {
        Ok(self
            .cgroup_map()?
            .iter()
            .filter_map(Result::ok)
            .map(|(id, values)| {
                let mut total = Counters::default();
                values.iter().for_each(|v| total.accumulate(v));
                (id, total)
            })
            .collect())
    }

    /// Forgets a cgroup that no longer exists.
    pub fn forget_cgroup(&mut self, id: u64) {
        let map = self.ebpf.map_mut("CGROUP_STATS").expect("CGROUP_STATS is in the object");
        if let Ok(mut m) = PerCpuHashMap::<_, u64, Counters>::try_from(map) {
            let _ = m.remove(&id);
        }
    }

    /// Events the kernel side had to drop: (map full, OOM ring buffer full).
    pub fn drops(&self) -> (u64, u64) {
        let map = self.ebpf.map("DROPS").expect("DROPS is in the object");
        let Ok(arr) = PerCpuArray::<_, u64>::try_from(map) else { return (0, 0) };
        let total = |i| arr.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0);
        (total(0), total(1))
    }
}

fn sum_proc<'a>(values: impl Iterator<Item = &'a ProcEntry>) -> ProcSample {
    let mut s = ProcSample::default();
    for v in values {
        s.counters.accumulate(&v.counters);
        if v.memcg_id != 0 {
            s.memcg_id = v.memcg_id;
        }
        if v.cgroup_id != 0 {
            s.cgroup_id = v.cgroup_id;
        }
    }
    s
}

fn configure(spec: &ProbeSpec, tracefs: &Tracefs, cfg: &mut Config, units: &mut Units) -> Result<(), String> {
    let mut formats = Vec::with_capacity(spec.hooks.len());
    for h in spec.hooks {
        let text = tracefs.read_format(h.category, h.event).map_err(|e| match &e {
            crate::tracefs::TracefsError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                format!("tracepoint {}:{} not found on this kernel", h.category, h.event)
            }
            _ => e.to_string(),
        })?;
        let format = tracefs_format::parse(&text).map_err(|e| {
            format!("format of {}:{} is unreadable: {e}", h.category, h.event)
        })?;
        formats.push(format);
    }
    // Configure into a scratch copy so a half-configured probe leaves nothing behind.
    let (mut scratch, mut scratch_units) = (*cfg, *units);
    (spec.configure)(&formats, &mut scratch, &mut scratch_units)?;
    (*cfg, *units) = (scratch, scratch_units);
    Ok(())
}

fn attach(ebpf: &mut Ebpf, spec: &ProbeSpec) -> Result<(), String> {
    let mut done: Vec<&'static str> = Vec::new();
    let result = (|| {
        for h in spec.hooks {
            let prog: &mut TracePoint = ebpf
                .program_mut(h.program())
                .ok_or_else(|| format!("program {} missing from the object", h.program()))?
                .try_into()
                .map_err(|e| format!("program {}: {e}", h.program()))?;
            prog.load().map_err(|e| format!("loading {}: {}", h.program(), error_chain(&e)))?;
            done.push(h.program());
            prog.attach(h.category, h.event)
                .map_err(|e| format!("attaching {}:{}: {}", h.category, h.event, error_chain(&e)))?;
        }
        Ok(())
    })();
    if result.is_err() {
        // A probe runs whole or not at all: unload what this one already loaded.
        for name in done {
            if let Some(tp) = ebpf.program_mut(name).and_then(|p| <&mut TracePoint>::try_from(p).ok()) {
                let _ = tp.unload();
            }
        }
    }
    result
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn load_error(e: aya::EbpfError, procfs: &Path) -> ProbeError {
    let status = fs::read_to_string(procfs.join("self/status")).unwrap_or_default();
    let missing = caps::effective(&status).map(caps::missing_for_bpf).unwrap_or_default();
    if !missing.is_empty() {
        return ProbeError::Privilege { missing: missing.join(" and ") };
    }
    ProbeError::Load(e)
}

/// Reads the offsets for the task -> memory cgroup walk from the kernel's BTF.
fn memcg_offsets(btf_path: &Path, cfg: &mut Config) -> Result<(), String> {
    let data = fs::read(btf_path).map_err(|e| format!("{}: {e}", btf_path.display()))?;
    let btf = Btf::parse(&data).map_err(|e| format!("{}: {e}", btf_path.display()))?;
    let member = |s: &str, m: &str| btf.member_offset(s, m).ok_or_else(|| format!("BTF has no {s}.{m}"));
    let memory_id = btf
        .enum_value("cgroup_subsys_id", "memory_cgrp_id")
        .ok_or("BTF has no memory_cgrp_id (kernel built without memcg?)")?;
    cfg.task_cgroups = member("task_struct", "cgroups")?;
    cfg.css_set_memcg = member("css_set", "subsys")? + 8 * memory_id as u32;
    cfg.css_cgroup = member("cgroup_subsys_state", "cgroup")?;
    cfg.cgroup_kn = member("cgroup", "kn")?;
    cfg.kn_id = member("kernfs_node", "id")?;
    cfg.memcg_ok = 1;
    Ok(())
}

fn raise_memlock() -> std::io::Result<()> {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit with a valid pointer to an initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}
