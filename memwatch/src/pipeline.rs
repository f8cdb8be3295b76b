//! One place that wires the pipeline, for `memwatch serve` and `memwatch top` alike: the kernel
//! probes (and their OOM ring buffer), the collectors, the sampler and the OOM tracker with its
//! journal. Running it publishes snapshots and the OOM view for readers.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    thread,
    time::Duration,
};

use crate::{
    Roots,
    history::History,
    model,
    oom::{Oom, OomView, world::Host},
    probes::{ProbeOptions, ProbeStatus, Probes},
    sampler::{KernelEvents, Sampler, Shared, Stages},
    selfmetrics::SelfMetrics,
    snapshot::Snapshot,
};

/// How to run the pipeline.
#[derive(Clone)]
pub struct Options {
    /// Which probes; None runs without eBPF (cgroup and /proc data only).
    pub probes: Option<ProbeOptions>,
    /// Per-process kernel counters (`memwatch top`'s detail view): a hash-map update per event
    /// while on, so the daemon leaves it off.
    pub per_process: bool,
    /// How old the files that are costly to read may get (see the cgroupfs collector).
    pub slow_interval: Duration,
    pub model: model::Options,
    /// Where the OOM journal lives; None keeps events in memory only.
    pub state_dir: Option<PathBuf>,
    pub max_events: usize,
    /// Keep the kernel's BPF run-time statistics on while the probes are loaded.
    pub bpf_stats: bool,
    /// Where sample durations are observed (the daemon's own instrumentation).
    pub self_metrics: Option<Arc<SelfMetrics>>,
    /// How long the containers' history is kept (for OOM events and traces).
    pub history: Duration,
}

impl Default for Options {
    /// `memwatch serve`'s defaults, without eBPF and without a journal.
    fn default() -> Self {
        Options {
            probes: None,
            per_process: false,
            slow_interval: Duration::from_secs(10),
            model: model::Options::default(),
            state_dir: None,
            max_events: 1000,
            bpf_stats: false,
            self_metrics: None,
            history: Duration::from_secs(15 * 60),
        }
    }
}

/// What loading found, for the caller to report (the log for `serve`, the status line for
/// `top`).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Each probe's state; empty without eBPF.
    pub probes: Vec<ProbeStatus>,
    /// Why the probes could not load at all (e.g. missing privilege), when they could not.
    pub ebpf_error: Option<String>,
    /// Non-fatal problems, each to be said once.
    pub warnings: Vec<String>,
    /// Whether BPF statistics were turned on, when asked for.
    pub bpf_stats: Option<Result<(), String>>,
}

/// The wired pipeline, before it runs.
pub struct Pipeline {
    stages: Stages,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub report: Report,
}

impl Pipeline {
    pub fn new(roots: Roots, opts: &Options) -> Pipeline {
        let mut report = Report::default();
        let mut logger = None;
        let mut events = KernelEvents { oom: None, exec: None, oom_unit: crate::host::page_size() };
        let mut stack_maps = None;
        let probes = match opts.probes {
            None => None,
            Some(p) => match Probes::load(&crate::probes::LoadOptions::new(&roots, p)) {
                Ok(mut probes) => {
                    report.warnings.extend(probes.warnings().iter().cloned());
                    report.probes = probes.status().to_vec();
                    events.oom = probes.take_oom_events();
                    events.exec = probes.take_exec_events();
                    stack_maps = probes.take_stack_maps();
                    logger = probes.take_logger();
                    events.oom_unit = probes.oom_size_unit();
                    if opts.bpf_stats {
                        report.bpf_stats = Some(probes.enable_stats());
                    }
                    Some(probes)
                }
                Err(e) => {
                    report.ebpf_error = Some(e.to_string());
                    report.probes = crate::probes::unavailable(&p, Arc::new(e));
                    None
                }
            },
        };
        let watcher = Arc::new(crate::runtime::Watcher::new(roots.procfs.clone()));
        let (mut oom, warnings) =
            Oom::new(Box::new(Host::watching(roots.clone(), watcher.clone())), opts.state_dir.as_deref(), opts.max_events);
        report.warnings.extend(warnings);
        let history = Arc::new(RwLock::new(History::new(opts.history)));
        oom.set_history(history.clone());
        let mut collectors = Sampler::collectors(probes, opts.per_process, opts.slow_interval, Some(watcher));
        if report.ebpf_error.is_some() {
            collectors.push(Box::new(crate::collector::ebpf::Unavailable(report.probes.clone())));
        }
        let procfs = roots.procfs.clone();
        let mut sampler = Sampler::new(roots, collectors, opts.model.clone());
        if let Some(m) = &opts.self_metrics {
            sampler.observe_into(m.clone());
        }
        let period = opts.probes.map_or(1, |p| p.stack_period.max(1).next_power_of_two() as u64);
        let always = opts.probes.is_some_and(|p| p.stacks == crate::probes::stacks::Mode::Always);
        let stacks =
            crate::stacks::Stage::new(stack_maps, procfs, opts.slow_interval, period, crate::host::page_size(), opts.history, always);
        oom.set_stacks(stacks.store.clone(), stacks.names.clone());
        Pipeline { stages: Stages::new(sampler, history, oom, events, stacks), logger, report }
    }

    /// The kernel-side logger: whoever takes it must keep it alive and flush it when its fd is
    /// readable (`serve` does, on its runtime). Left here, it is kept and never read.
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        self.logger.take()
    }

    /// One sample step now, on this thread (for one-shot output).
    pub fn sample_once(&mut self) -> (Arc<Snapshot>, Arc<OomView>) {
        let (snap, _) = self.stages.step(std::time::Instant::now());
        (snap, self.stages.oom.view())
    }

    /// Runs the sample step on its own thread every `interval`, publishing into the returned
    /// [`Shared`].
    pub fn spawn(self, interval: Duration) -> (Shared, thread::JoinHandle<()>) {
        // The logger, if nobody took it, lives as long as the sampler.
        let Pipeline { stages, logger, .. } = self;
        let shared: Shared = Arc::new(crate::sampler::Published {
            history: stages.history.clone(),
            stacks: stages.stacks.store.clone(),
            names: stages.stacks.names.clone(),
            record: stages.stacks.is_sampling().then(|| stages.record_sender()),
            ..Default::default()
        });
        let handle = stages.spawn(interval, shared.clone(), logger);
        (shared, handle)
    }
}
