//! Loading and attaching memwatch's kernel programs, and reading what they aggregate.
//!
//! Each probe (see [`spec::PROBES`]) has attach methods in order of preference; the first this
//! kernel accepts is used, and `memwatch check` says which. A probe whose tracepoint format is
//! missing or garbled, or whose every method fails to load or attach, is disabled with a reason
//! and the others run. Probes that cost every process on the node something are off unless
//! asked for ([`ProbeOptions`]). Only a failure to load the object itself (no privilege) is
//! fatal.

pub mod error;
pub mod maps;
pub mod spec;
pub mod stacks;
pub mod tracefs;

use std::{fs, os::fd::OwnedFd, path::Path, sync::Arc, time::Duration};

use aya::{
    Btf, Ebpf, EbpfLoader, Endianness,
    maps::{MapData, RingBuf},
    programs::{BtfTracePoint, FExit, Program, TracePoint},
};
use memwatch_common::{Config, DEFAULT_SLOTS, walk};
use thiserror::Error;

pub use error::{AttachError, Disabled, FieldError};
pub use spec::{Method, OptIn, PROBES, ProbeId, ProbeSpec, Units};

use crate::parse::{btf::Btf as BtfOffsets, caps, tracefs_format};
use tracefs::{Tracefs, TracefsError};

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
    #[error("map {name}: {source}")]
    Syscall { name: &'static str, source: std::io::Error },
}

/// Which probes to run beyond the defaults, and how big the per-cgroup array is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Count user page faults per event in the kernel (`--ebpf-page-faults`). Off by default:
    /// the kernel's own per-cgroup counters (memory.stat `pgfault`) cost nothing extra.
    pub page_faults: bool,
    /// Where fexit is unavailable, count mmap/munmap/brk/mremap on the `syscalls:sys_exit_*`
    /// tracepoints (`--syscall-tracepoints`), which slow every syscall on the node.
    pub syscall_tracepoints: bool,
    /// Memory css ids below this are counted (`--ebpf-cgroup-slots`).
    pub slots: u32,
    /// When the fault-stack sampler runs (`--stacks`).
    pub stacks: stacks::Mode,
    /// It samples one user page fault in this many (`--stack-period`, a power of two).
    pub stack_period: u32,
}

/// `--stack-period` unless told otherwise.
pub const DEFAULT_STACK_PERIOD: u32 = 64;
/// The kernel's internal "operation not supported" (not in libc: never meant for userspace, yet
/// BPF attach returns it).
const ENOTSUPP: i32 = 524;

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            page_faults: false,
            syscall_tracepoints: false,
            slots: DEFAULT_SLOTS,
            stacks: stacks::Mode::AtRisk,
            stack_period: DEFAULT_STACK_PERIOD,
        }
    }
}

impl ProbeOptions {
    /// Everything on: what tests of exact counts want on any kernel.
    pub fn all() -> Self {
        ProbeOptions { page_faults: true, syscall_tracepoints: true, stacks: stacks::Mode::Always, ..ProbeOptions::default() }
    }

    fn wants(&self, opt_in: OptIn) -> bool {
        match opt_in {
            OptIn::Default => true,
            OptIn::PageFaults => self.page_faults,
            OptIn::Stacks => self.stacks != stacks::Mode::Off,
        }
    }
}

/// Whether a probe runs.
#[derive(Debug, Clone)]
pub enum ProbeState {
    /// Running, attached by `method` (e.g. `fexit __x64_sys_mmap`).
    Attached { method: String },
    /// Not asked for; the reason says what it would cost and how to turn it on.
    Off(String),
    /// Asked for but unavailable here; the reason names what is missing.
    Disabled(Disabled),
    /// Loaded only when needed, and not now (the fault-stack sampler with nothing at risk):
    /// the reason says when it runs.
    Standby(String),
}

#[derive(Debug, Clone)]
pub struct ProbeStatus {
    pub id: ProbeId,
    pub state: ProbeState,
}

impl ProbeStatus {
    pub fn is_attached(&self) -> bool {
        matches!(self.state, ProbeState::Attached { .. })
    }
}

impl serde::Serialize for ProbeStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("name", self.id.name())?;
        match &self.state {
            ProbeState::Attached { method } => {
                m.serialize_entry("state", "attached")?;
                m.serialize_entry("method", method)?;
            }
            ProbeState::Off(why) => {
                m.serialize_entry("state", "off")?;
                m.serialize_entry("reason", why)?;
            }
            ProbeState::Disabled(why) => {
                m.serialize_entry("state", "disabled")?;
                m.serialize_entry("reason", &why.to_string())?;
            }
            ProbeState::Standby(why) => {
                m.serialize_entry("state", "standby")?;
                m.serialize_entry("reason", why)?;
            }
        }
        m.end()
    }
}

/// How the kernel side finds a task's memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemcgIds {
    /// task->cgroups->subsys[memory], offsets from BTF, read with direct loads (5.11+).
    Btf,
    /// The same walk with `bpf_probe_read_kernel` at each step (kernels before 5.11).
    BtfProbeRead,
    /// BTF unusable: per-cgroup counting is off; the reason says why.
    Unavailable(String),
}

/// Where to find the kernel's interfaces.
#[derive(Debug, Clone)]
pub struct LoadOptions<'a> {
    pub sysfs: &'a Path,
    pub procfs: &'a Path,
    /// Overrides tracefs discovery (and mounting) under `sysfs`.
    pub tracefs: Option<&'a Path>,
    pub probes: ProbeOptions,
}

impl<'a> LoadOptions<'a> {
    /// The kernel's interfaces under `roots`, and the probes asked for.
    pub fn new(roots: &'a crate::Roots, probes: ProbeOptions) -> Self {
        LoadOptions { sysfs: &roots.sysfs, procfs: &roots.procfs, tracefs: roots.tracefs.as_deref(), probes }
    }
}

/// The loaded programs and their maps. Dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
    status: Vec<ProbeStatus>,
    memcg: MemcgIds,
    tracefs: Result<Tracefs, Arc<TracefsError>>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    warnings: Vec<String>,
    page_size: u64,
    units: Units,
    slots: u32,
    retired: Option<RingBuf<MapData>>,
    /// Held while memwatch keeps the kernel's BPF run-time statistics on.
    stats: Option<OwnedFd>,
    /// Where the kernel's BTF is: parsed again only if a program is attached later (parsed, it
    /// takes several MiB, too much to keep in a daemon that wants to stay small).
    btf_path: std::path::PathBuf,
    /// The fault-stack sampler's methods, kept for attaching it when it is wanted.
    stack_plan: Option<Plan>,
    stack_options: ProbeOptions,
    /// The memory cgroups the at-risk sampler counts now.
    stack_cgroups: std::collections::HashSet<u64>,
    /// When a container was last at risk (`--stacks at-risk`).
    stacks_wanted_at: Option<std::time::Instant>,
}

impl Probes {
    /// Loads the object and attaches every probe asked for: [`configure`] (what this kernel
    /// offers, the plans and the object's settings), load, [`attach_all`], [`diagnose`].
    pub fn load(opts: &LoadOptions<'_>) -> Result<Probes, ProbeError> {
        let mut warnings = Vec::new();
        if let Err(e) = raise_memlock() {
            // Kernels >= 5.11 account BPF memory to the cgroup and ignore this limit.
            warnings.push(format!("could not raise RLIMIT_MEMLOCK ({e}); fine on Linux >= 5.11"));
        }
        let Configured { cfg, memcg, btf, btf_path, tracefs, units, mut plans, slots, stack_maps: (stack_entries, stack_counts) } =
            configure(opts);
        let mut ebpf = match EbpfLoader::new()
            .override_global("CONFIG", &cfg, true)
            .map_max_entries("SLOTS", slots)
            .map_max_entries("STACKS", stack_entries)
            .map_max_entries("STACK_COUNTS", stack_counts)
            .load(EBPF_OBJECT)
        {
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
        let (mut status, stack_plan) = attach_all(&mut ebpf, btf.as_ref(), &mut plans, &opts.probes);
        diagnose(&mut status, opts.procfs);
        let retired = ebpf.take_map("RETIRED").and_then(|m| RingBuf::try_from(m).ok());
        drop(btf);
        // Loading parsed the kernel's BTF (several MiB): give that back at once.
        crate::allocator::give_back();
        Ok(Probes {
            ebpf,
            status,
            memcg,
            tracefs,
            logger,
            warnings,
            page_size: cfg.page_size,
            units,
            slots,
            retired,
            stats: None,
            btf_path,
            stack_plan,
            stack_options: opts.probes,
            stack_cgroups: Default::default(),
            stacks_wanted_at: None,
        })
    }

    pub fn status(&self) -> &[ProbeStatus] {
        &self.status
    }

    pub fn is_attached(&self, probe: ProbeId) -> bool {
        self.status.iter().any(|s| s.id == probe && s.is_attached())
    }

    pub fn memcg_ids(&self) -> &MemcgIds {
        &self.memcg
    }

    pub fn tracefs(&self) -> &Result<Tracefs, Arc<TracefsError>> {
        &self.tracefs
    }

    /// Non-fatal problems met while loading, to be reported once.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Capacity of the per-cgroup slot array.
    pub fn slot_capacity(&self) -> u32 {
        self.slots
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

    /// The exec ring buffer; can be taken once.
    pub fn take_exec_events(&mut self) -> Option<RingBuf<MapData>> {
        self.ebpf.take_map("EXECS").and_then(|m| RingBuf::try_from(m).ok())
    }

    /// The OOM ring buffer; can be taken once.
    pub fn take_oom_events(&mut self) -> Option<RingBuf<MapData>> {
        self.ebpf.take_map("OOM_EVENTS").and_then(|m| RingBuf::try_from(m).ok())
    }

    /// Turns the kernel's BPF run-time statistics on for as long as this `Probes` lives (or
    /// until [`Probes::disable_stats`]), through BPF_ENABLE_STATS: no sysctl is written, and the
    /// kernel turns them off again when the last holder closes its fd, also if memwatch dies.
    pub fn enable_stats(&mut self) -> Result<(), String> {
        if self.stats.is_none() {
            let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| error::chain(&e))?;
            self.stats = Some(fd);
        }
        Ok(())
    }

    pub fn disable_stats(&mut self) {
        self.stats = None;
    }

    /// Whether the kernel is keeping run-time statistics now: by our request or by the sysctl.
    pub fn stats_enabled(&self, procfs: &Path) -> bool {
        self.stats.is_some() || fs::read_to_string(procfs.join("sys/kernel/bpf_stats_enabled")).is_ok_and(|s| s.trim() == "1")
    }

    /// Per attached probe: how often its programs ran and for how long in all, since they
    /// were loaded (only runs while statistics were on are counted).
    pub fn run_stats(&self) -> Vec<ProbeRuns> {
        PROBES
            .iter()
            .zip(&self.status)
            .filter(|(_, st)| st.is_attached())
            .map(|(spec, st)| {
                let mut r = ProbeRuns { probe: spec.id.name(), runs: 0, run_time: Duration::ZERO };
                for m in spec.methods {
                    if let Some(info) = self.ebpf.program(m.program()).and_then(|p| p.info().ok()) {
                        r.runs += info.run_count();
                        r.run_time += info.run_time();
                    }
                }
                debug_assert!(st.is_attached());
                r
            })
            .collect()
    }

    /// Attaches the empty program on the page-fault hook, to measure what the hook itself
    /// costs here; its runs are reported by [`Probes::empty_fault_runs`].
    pub fn attach_empty_fault_program(&mut self) -> Result<(), String> {
        let btf = Btf::parse_file(&self.btf_path, Endianness::default()).map_err(|e| error::chain(&e))?;
        let prog: &mut BtfTracePoint = program(&mut self.ebpf, spec::EMPTY_FAULT_PROGRAM).map_err(|e| e.to_string())?;
        prog.load("page_fault_user", &btf).map_err(|e| error::chain(&e))?;
        prog.attach().map(|_| ()).map_err(|e| error::chain(&e))
    }

    pub fn empty_fault_runs(&self) -> Option<ProbeRuns> {
        let info = self.ebpf.program(spec::EMPTY_FAULT_PROGRAM)?.info().ok()?;
        Some(ProbeRuns { probe: "page_fault_user (empty)", runs: info.run_count(), run_time: info.run_time() })
    }
}

/// What loading needs to know before the object is loaded: the object's settings, how tasks'
/// memory cgroups are found, the kernel's BTF and tracefs, and each probe's plan.
struct Configured {
    cfg: Config,
    memcg: MemcgIds,
    btf: Option<Btf>,
    btf_path: std::path::PathBuf,
    tracefs: Result<Tracefs, Arc<TracefsError>>,
    units: Units,
    plans: Vec<Result<Plan, ProbeState>>,
    slots: u32,
    /// The stack map's and the stack-count map's sizes: memory only when stacks are on (the
    /// map of stacks takes 1 KiB an entry).
    stack_maps: (u32, u32),
}

/// Reads what this kernel offers (BTF offsets, its version, tracepoint formats) and plans
/// every probe from it (pure but for those reads).
fn configure(opts: &LoadOptions<'_>) -> Configured {
    let page_size = crate::host::page_size();
    let mut cfg = Config { page_size, ..Config::empty() };
    let btf_path = opts.sysfs.join("kernel/btf/vmlinux");
    let kernel = crate::host::kernel_version(opts.procfs);
    let memcg = match kernel_offsets(&btf_path, &mut cfg) {
        Ok(()) if kernel.is_some_and(|v| v < (5, 11)) => {
            cfg.walk = walk::PROBE_READ;
            MemcgIds::BtfProbeRead
        }
        Ok(()) => {
            cfg.walk = walk::BTF;
            MemcgIds::Btf
        }
        Err(why) => MemcgIds::Unavailable(why),
    };
    let btf = Btf::parse_file(&btf_path, Endianness::default()).ok();
    let tracefs = Tracefs::open(opts.sysfs, opts.tracefs).map_err(Arc::new);
    let mut units = Units { oom_size: page_size };
    // Per probe, the methods worth trying, each configured from its format where it has one.
    let plans = PROBES.iter().map(|spec| plan(spec, &opts.probes, &memcg, tracefs.as_ref(), &mut cfg, &mut units)).collect();
    cfg.stack_period = opts.probes.stack_period.max(1).next_power_of_two();
    let stack_maps =
        if opts.probes.stacks != stacks::Mode::Off { (memwatch_common::STACK_ENTRIES, memwatch_common::STACK_COUNTS) } else { (1, 1) };
    Configured { cfg, memcg, btf, btf_path, tracefs, units, plans, slots: opts.probes.slots.max(16), stack_maps }
}

/// Attaches each planned probe by its first method the kernel accepts; the fault-stack sampler
/// only to prove it can be, then unloaded until a container is at risk (unless `--stacks
/// always`). Returns every probe's state and the sampler's plan.
fn attach_all(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    plans: &mut [Result<Plan, ProbeState>],
    opts: &ProbeOptions,
) -> (Vec<ProbeStatus>, Option<Plan>) {
    let mut status = Vec::with_capacity(PROBES.len());
    let mut stack_plan = None;
    for (spec, plan) in PROBES.iter().zip(plans.iter_mut()) {
        let state = match plan {
            Err(state) => state.clone(),
            Ok(plan) if spec.id == ProbeId::FaultStacks => {
                stack_plan = Some(plan.clone());
                match (opts.stacks, attach_first(ebpf, btf, spec, plan, opts)) {
                    (stacks::Mode::Always, state) => state,
                    // At risk: attached once to prove it can be, then unloaded until needed.
                    (_, ProbeState::Attached { method }) => {
                        for m in spec.methods {
                            unload(ebpf, m.program());
                        }
                        ProbeState::Standby(format!("{} (attaches as {method} when needed)", stacks::STANDBY))
                    }
                    (_, state) => state,
                }
            }
            Ok(plan) => attach_first(ebpf, btf, spec, plan, opts),
        };
        status.push(ProbeStatus { id: spec.id, state });
    }
    if opts.stacks == stacks::Mode::Always {
        set_switch(ebpf, memwatch_common::switch::STACKS_ALL, true);
    }
    (status, stack_plan)
}

/// CAP_BPF alone loads the object but not tracing programs: a refusal (EPERM) says which
/// capability it comes from rather than only the kernel's errno.
fn diagnose(status: &mut [ProbeStatus], procfs: &Path) {
    let missing = missing_caps(procfs);
    if missing.is_empty() {
        return;
    }
    for s in status {
        if let ProbeState::Disabled(why) = &mut s.state
            && why.is_eperm()
        {
            why.missing_caps = Some(missing.clone());
        }
    }
}

/// How often a probe's programs ran and their total run time, from the kernel's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRuns {
    pub probe: &'static str,
    pub runs: u64,
    pub run_time: Duration,
}

impl ProbeRuns {
    /// Nanoseconds per run between two readings; None without runs in between.
    pub fn ns_per_run_since(&self, earlier: &ProbeRuns) -> Option<f64> {
        let runs = self.runs.checked_sub(earlier.runs)?;
        (runs > 0).then(|| self.run_time.saturating_sub(earlier.run_time).as_nanos() as f64 / runs as f64)
    }
}

/// The methods a probe may try here, and why the others were dropped.
#[derive(Clone)]
struct Plan {
    methods: Vec<Method>,
    dropped: Vec<AttachError>,
}

/// Every probe's state when the programs could not be loaded at all (`why`, e.g. a missing
/// capability): those asked for are disabled with that reason, so `memwatch_probe_attached`
/// says 0 for each instead of nothing.
pub fn unavailable(opts: &ProbeOptions, why: Arc<ProbeError>) -> Vec<ProbeStatus> {
    PROBES
        .iter()
        .map(|spec| ProbeStatus {
            id: spec.id,
            state: if opts.wants(spec.opt_in) {
                ProbeState::Disabled(Disabled::one(AttachError::NotLoaded(why.clone())))
            } else {
                ProbeState::Off(off_reason(spec.opt_in))
            },
        })
        .collect()
}

/// Decides which methods a probe may use here, configuring each from its tracepoint format;
/// Err is the probe's final state when none is left.
fn plan(
    spec: &ProbeSpec,
    opts: &ProbeOptions,
    memcg: &MemcgIds,
    tracefs: Result<&Tracefs, &Arc<TracefsError>>,
    cfg: &mut Config,
    units: &mut Units,
) -> Result<Plan, ProbeState> {
    if !opts.wants(spec.opt_in) {
        return Err(ProbeState::Off(off_reason(spec.opt_in)));
    }
    if let (MemcgIds::Unavailable(why), true) = (memcg, spec.per_cgroup) {
        return Err(ProbeState::Disabled(Disabled::one(AttachError::NoMemcgWalk(why.clone()))));
    }
    let mut methods = Vec::new();
    let mut reasons = Vec::new();
    for m in spec.methods {
        if matches!(m, Method::SyscallExit { .. }) && !opts.syscall_tracepoints {
            continue;
        }
        let format = match (m.format(), tracefs) {
            (None, _) => None,
            (Some(_), Err(e)) => {
                reasons.push(AttachError::Tracefs(e.clone()));
                continue;
            }
            (Some((category, event)), Ok(t)) => match read_format(t, category, &event) {
                Ok(f) => Some(f),
                Err(why) => {
                    reasons.push(why);
                    continue;
                }
            },
        };
        // Configure into a scratch copy so a half-configured method leaves nothing behind.
        let (mut scratch, mut scratch_units) = (*cfg, *units);
        match (spec.configure)(format.as_ref(), &mut scratch, &mut scratch_units) {
            Ok(()) => {
                (*cfg, *units) = (scratch, scratch_units);
                methods.push(*m);
            }
            Err(why) => reasons.push(why),
        }
    }
    if methods.is_empty() {
        if reasons.is_empty() {
            reasons.push(AttachError::NoMethod);
        }
        return Err(ProbeState::Disabled(Disabled::new(reasons)));
    }
    Ok(Plan { methods, dropped: reasons })
}

fn off_reason(opt_in: OptIn) -> String {
    match opt_in {
        OptIn::Default => String::new(),
        OptIn::PageFaults => "page faults come from the kernel's own counters (memory.stat pgfault) at no cost; \
            --ebpf-page-faults counts each fault in the kernel instead (a few tens of ns per fault)"
            .into(),
        OptIn::Stacks => "--stacks off: no fault stacks are sampled".into(),
    }
}

fn read_format(t: &Tracefs, category: &'static str, event: &str) -> Result<tracefs_format::Format, AttachError> {
    let text = t.read_format(category, event).map_err(|e| match &e {
        TracefsError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            AttachError::TracepointMissing { category, event: event.to_string() }
        }
        _ => AttachError::Tracefs(Arc::new(e)),
    })?;
    tracefs_format::parse(&text).map_err(|e| AttachError::FormatUnreadable { category, event: event.to_string(), reason: e.to_string() })
}

/// The prefix of syscall entry points on this architecture.
pub fn syscall_prefix() -> &'static str {
    if cfg!(target_arch = "aarch64") { "__arm64_sys_" } else { "__x64_sys_" }
}

/// Tries each method in turn; the first that loads and attaches wins.
fn attach_first(ebpf: &mut Ebpf, btf: Option<&Btf>, spec: &ProbeSpec, plan: &mut Plan, opts: &ProbeOptions) -> ProbeState {
    let mut failures = Vec::new();
    for m in &plan.methods {
        match attach(ebpf, btf, m, opts) {
            Ok(mut label) => {
                // Companions add detail where the kernel allows them; without them the probe
                // still works.
                for c in spec.companions {
                    match attach(ebpf, btf, c, opts) {
                        Ok(l) => label.push_str(&format!(" + {l}")),
                        Err(_) => unload(ebpf, c.program()),
                    }
                }
                return ProbeState::Attached { method: label };
            }
            Err(why) => {
                // Unload so a failed method holds nothing in the kernel.
                unload(ebpf, m.program());
                failures.push(why);
            }
        }
    }
    failures.append(&mut plan.dropped);
    let fallback = spec.methods.iter().find_map(|m| match m {
        Method::SyscallExit { syscall, .. } => Some(*syscall),
        _ => None,
    });
    if let Some(syscall) = fallback
        && !opts.syscall_tracepoints
    {
        failures.push(AttachError::FallbackOff { syscall });
    }
    ProbeState::Disabled(Disabled::new(failures))
}

fn unload(ebpf: &mut Ebpf, name: &str) {
    let _ = match ebpf.program_mut(name) {
        Some(Program::FExit(p)) => p.unload(),
        Some(Program::BtfTracePoint(p)) => p.unload(),
        Some(Program::TracePoint(p)) => p.unload(),
        Some(Program::PerfEvent(p)) => p.unload(),
        _ => Ok(()),
    };
}

fn set_switch(ebpf: &mut Ebpf, index: u32, on: bool) {
    if let Some(map) = ebpf.map_mut("SWITCHES")
        && let Ok(mut arr) = aya::maps::Array::<_, u32>::try_from(map)
    {
        let _ = arr.set(index, u32::from(on), 0);
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, AttachError>
where
    &'a mut T: TryFrom<&'a mut Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(AttachError::ProgramMissing(name))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| AttachError::kernel(format!("program {name}"), e))
}

/// Loads and attaches one method; Ok is the label `memwatch check` shows.
fn attach(ebpf: &mut Ebpf, btf: Option<&Btf>, m: &Method, opts: &ProbeOptions) -> Result<String, AttachError> {
    match *m {
        Method::Fexit { program: name, syscall } => {
            let btf = btf.ok_or(AttachError::BtfMissing { fexit: true })?;
            let function = format!("{}{syscall}", syscall_prefix());
            let p: &mut FExit = program(ebpf, name)?;
            p.load(&function, btf).map_err(|e| match error::os_error(&e) {
                Some(libc::EPERM) => AttachError::TrampolineRefused { function: function.clone() },
                // aya says so only in its message: it has no variant for a forward declaration.
                _ if error::chain(&e).contains("type FWD is not a struct") => {
                    AttachError::PtRegsForwardDeclared { function: function.clone() }
                }
                _ => AttachError::kernel(format!("fexit on {function}"), e),
            })?;
            p.attach().map_err(|e| match error::os_error(&e) {
                Some(ENOTSUPP) => AttachError::TrampolineUnsupported { function: function.clone() },
                _ => AttachError::kernel(format!("fexit on {function}"), e),
            })?;
            Ok(format!("fexit {function}"))
        }
        Method::BtfTracepoint { program: name, event } => {
            let btf = btf.ok_or(AttachError::BtfMissing { fexit: false })?;
            let p: &mut BtfTracePoint = program(ebpf, name)?;
            p.load(event, btf).map_err(|e| match e {
                // The tracepoint is not in this kernel (x86's exceptions:page_fault_user elsewhere).
                aya::programs::ProgramError::Btf(aya::BtfError::UnknownBtfTypeName { .. }) => {
                    AttachError::TracepointMissing { category: "tp_btf", event: event.to_string() }
                }
                e => AttachError::kernel(format!("tp_btf {event}"), e),
            })?;
            p.attach().map_err(|e| AttachError::kernel(format!("tp_btf {event}"), e))?;
            Ok(format!("tp_btf {event}"))
        }
        Method::Tracepoint { program: name, category, event } => {
            let p: &mut TracePoint = program(ebpf, name)?;
            p.load().map_err(|e| AttachError::kernel(format!("loading {name}"), e))?;
            p.attach(category, event).map_err(|e| AttachError::kernel(format!("attaching {category}:{event}"), e))?;
            Ok(format!("tracepoint {category}:{event}"))
        }
        Method::PerfPageFaults { program: name } => {
            use aya::programs::perf_event::{PerfEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent};
            let period = opts.stack_period.max(1).next_power_of_two() as u64;
            let p: &mut PerfEvent = program(ebpf, name)?;
            p.load().map_err(|e| AttachError::kernel(format!("loading {name}"), e))?;
            let cpus = aya::util::online_cpus().map_err(|(what, e)| AttachError::Io { what, source: Arc::new(e) })?;
            for cpu in cpus {
                p.attach(
                    PerfEventConfig::Software(SoftwareEvent::PageFaults),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Period(period),
                    false,
                )
                .map_err(|e| AttachError::kernel(format!("perf page-faults on CPU {cpu}"), e))?;
            }
            Ok(format!("perf page-faults (1 in {period})"))
        }
        Method::SyscallExit { program: name, syscall } => {
            let event = format!("sys_exit_{syscall}");
            let p: &mut TracePoint = program(ebpf, name)?;
            p.load().map_err(|e| AttachError::kernel(format!("loading {name} (needs Linux 5.15+)"), e))?;
            p.attach("syscalls", &event).map_err(|e| AttachError::kernel(format!("attaching syscalls:{event}"), e))?;
            Ok(format!("tracepoint syscalls:{event} (taxes every syscall)"))
        }
    }
}

/// The capabilities for loading and attaching that this process lacks ("" when none), from
/// its own `/proc/self/status`.
fn missing_caps(procfs: &Path) -> String {
    let status = fs::read_to_string(procfs.join("self/status")).unwrap_or_default();
    caps::effective(&status).map(caps::missing_for_bpf).unwrap_or_default().join(" and ")
}

fn load_error(e: aya::EbpfError, procfs: &Path) -> ProbeError {
    let missing = missing_caps(procfs);
    if !missing.is_empty() {
        return ProbeError::Privilege { missing };
    }
    ProbeError::Load(e)
}

/// Reads from the kernel's BTF the offsets of the task -> memory css walk and of the syscall
/// arguments in `struct pt_regs`.
fn kernel_offsets(btf_path: &Path, cfg: &mut Config) -> Result<(), String> {
    let data = fs::read(btf_path).map_err(|e| format!("{}: {e}", btf_path.display()))?;
    let btf = BtfOffsets::parse(&data).map_err(|e| format!("{}: {e}", btf_path.display()))?;
    let member = |s: &str, m: &str| btf.member_offset(s, m).ok_or_else(|| format!("BTF has no {s}.{m}"));
    let memory_id =
        btf.enum_value("cgroup_subsys_id", "memory_cgrp_id").ok_or("BTF has no memory_cgrp_id (kernel built without memcg?)")?;
    cfg.task_cgroups = member("task_struct", "cgroups")?;
    cfg.css_set_memcg = member("css_set", "subsys")? + 8 * memory_id as u32;
    cfg.css_id = member("cgroup_subsys_state", "id")?;
    cfg.css_serial = member("cgroup_subsys_state", "serial_nr")?;
    cfg.css_cgroup = member("cgroup_subsys_state", "cgroup")?;
    cfg.css_parent = member("cgroup_subsys_state", "parent")?;
    cfg.cgroup_kn = member("cgroup", "kn")?;
    cfg.kn_id = member("kernfs_node", "id")?;
    cfg.task_mm = member("task_struct", "mm")?;
    cfg.task_pid = member("task_struct", "pid")?;
    cfg.mm_start_brk = member("mm_struct", "start_brk")?;
    memcg_counter_offsets(&btf, cfg);
    // The fault-stack sampler's caller word: the user stack pointer and the executable's text.
    cfg.regs_sp = if cfg!(target_arch = "aarch64") { 31 * 8 } else { btf.member_offset("pt_regs", "sp").unwrap_or(0) };
    cfg.mm_start_code = btf.member_offset("mm_struct", "start_code").unwrap_or(0);
    cfg.mm_end_code = btf.member_offset("mm_struct", "end_code").unwrap_or(0);
    if cfg.mm_start_code == 0 || cfg.mm_end_code == 0 {
        cfg.regs_sp = 0;
    }
    let regs: [u32; 5] = if cfg!(target_arch = "aarch64") {
        // orig_x0: the first argument is overwritten by the return value in `regs[0]`.
        let base = member("pt_regs", "regs")?;
        [member("pt_regs", "orig_x0")?, base + 8, base + 16, base + 24, base + 32]
    } else {
        [member("pt_regs", "di")?, member("pt_regs", "si")?, member("pt_regs", "dx")?, member("pt_regs", "r10")?, member("pt_regs", "r8")?]
    };
    for (dst, off) in cfg.regs_arg.iter_mut().zip(regs) {
        *dst = u16::try_from(off).map_err(|_| "pt_regs offsets out of range".to_string())?;
    }
    Ok(())
}

/// Where a memory cgroup's page counters are, for the state at an OOM kill. Optional: where
/// BTF does not say, `memcg_memory` stays 0 and kills are recorded without it.
fn memcg_counter_offsets(btf: &BtfOffsets<'_>, cfg: &mut Config) {
    let member = |s: &str, m: &str| btf.member_offset(s, m);
    let (Some(0), Some(memory), Some(usage), Some(max)) =
        (member("mem_cgroup", "css"), member("mem_cgroup", "memory"), member("page_counter", "usage"), member("page_counter", "max"))
    else {
        return;
    };
    cfg.memcg_memory = memory;
    // One union on every kernel memwatch supports: `swap` for v2, `memsw` for v1.
    cfg.memcg_swap = member("mem_cgroup", "swap").or_else(|| member("mem_cgroup", "memsw")).unwrap_or(0);
    cfg.page_counter_usage = usage;
    cfg.page_counter_max = max;
}

fn raise_memlock() -> std::io::Result<()> {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit with a valid pointer to an initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
