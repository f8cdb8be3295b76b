//! Sampling: [`Sampler`] runs every collector and builds the model; [`Stages`] is one sample
//! step of the whole pipeline (collectors told where kills were, model, history, then the OOM
//! stage with the records the kernel sent meanwhile), run on a thread of its own by
//! [`Stages::spawn`] or once by `memwatch explain`. The thread owns the ring buffers and the OOM
//! tracker; readers only ever load the latest `Arc<Snapshot>` and `Arc<OomView>`, published
//! side by side.

use std::{
    collections::{HashMap, HashSet},
    os::fd::AsRawFd,
    sync::{Arc, RwLock},
    thread,
    time::{Duration, Instant, SystemTime},
};

use arc_swap::{ArcSwap, ArcSwapOption};
use aya::maps::{MapData, RingBuf};

use crate::{
    Roots,
    collector::{CollectError, Collector, CollectorId, SampleInput, SnapshotBuilder},
    history::History,
    model::{self, ModelState, Options, Timing},
    oom::{Oom, OomView},
    selfmetrics::SelfMetrics,
    snapshot::Snapshot,
};

/// What the sampler publishes: the latest snapshot of the containers, and the OOM view, each
/// swapped in on its own (a kill does not copy the snapshot, a sample does not copy events).
#[derive(Default)]
pub struct Published {
    pub snapshot: ArcSwapOption<Snapshot>,
    pub oom: ArcSwap<OomView>,
    /// Every sample's containers for a bounded window (written by the sampler, once a sample).
    pub history: Arc<RwLock<History>>,
    /// Each container's recent fault stacks, and their names.
    pub stacks: Arc<RwLock<crate::stacks::Store>>,
    pub names: Arc<crate::stacks::symbolize::Names>,
    /// Where readers ask the sampler to count containers' fault stacks for a while (`memwatch
    /// profile --record`); None where there is no sampler to ask.
    pub record: Option<std::sync::mpsc::Sender<Record>>,
}

/// A request to count some containers' fault stacks until `until` (`memwatch profile
/// --record`): sent by a reader down to the sampler thread, which counts them as it counts the
/// containers at risk. An explicit input of the sample step, not shared state.
#[derive(Debug, Clone)]
pub struct Record {
    pub ids: Vec<u64>,
    pub until: Instant,
}

/// Shared with every reader.
pub type Shared = Arc<Published>;

/// The kernel's ring buffers the sampler thread reads: OOM records, and execs (whose programs'
/// runtime facts are read at once, for a kill that may come before any sample).
pub struct KernelEvents {
    pub oom: Option<RingBuf<MapData>>,
    pub exec: Option<RingBuf<MapData>>,
    /// Bytes per unit of the OOM record's size fields.
    pub oom_unit: u64,
}

/// Samples between two [`crate::allocator::give_back`] calls: where cgroups come and go by the
/// thousand, each sample's short-lived buffers leave free memory the allocator keeps.
const TRIM_EVERY: u64 = 10;

impl KernelEvents {
    /// Waits up to `wait` for a record on either ring (sleeps when there is none).
    fn wait(&self, wait: Duration) {
        let mut fds: Vec<libc::pollfd> = [self.oom.as_ref(), self.exec.as_ref()]
            .into_iter()
            .flatten()
            .map(|r| libc::pollfd { fd: r.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        if fds.is_empty() {
            thread::sleep(wait);
            return;
        }
        // SAFETY: polling valid fds owned by the rings, for the length of the vector.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait.as_millis().min(i32::MAX as u128) as i32) };
    }

    /// Hands every waiting record to `oom`, and adds the cgroups of each kill to `kills` (for
    /// the next sample to re-read); true when its events changed. Execs first: a program that
    /// started and was killed between two reads is watched before its kill is.
    pub fn drain(&mut self, oom: &mut Oom, kills: &mut HashSet<u64>, mut before_kill: impl FnMut()) -> bool {
        if let Some(r) = self.exec.as_mut() {
            while let Some(item) = r.next() {
                if item.len() >= 4 {
                    oom.on_exec(u32::from_ne_bytes([item[0], item[1], item[2], item[3]]));
                }
            }
        }
        let mut changed = false;
        let mut first = true;
        if let Some(r) = self.oom.as_mut() {
            while let Some(item) = r.next() {
                match crate::oom::decode(&item, self.oom_unit) {
                    Ok(k) => {
                        if std::mem::take(&mut first) && !k.victim_exit && !k.victim_task {
                            before_kill();
                        }
                        kills.extend(k.levels.iter().map(|l| l.cgroup_id).chain([k.trigger_memcg_id]).chain(k.victim_memcg_id));
                        changed |= oom.on_record(k, Instant::now());
                    }
                    Err(e) => tracing::warn!("undecodable OOM record: {e}"),
                }
            }
        }
        changed
    }
}

/// The collectors and the model: one sample of the host.
pub struct Sampler {
    roots: Roots,
    collectors: Vec<Box<dyn Collector>>,
    state: ModelState,
    opts: Options,
    page_size: u64,
    epoch: Instant,
    /// Collectors already reported as unsupported here (reported once).
    unsupported: HashSet<CollectorId>,
    self_metrics: Option<Arc<SelfMetrics>>,
}

impl Sampler {
    pub fn new(roots: Roots, collectors: Vec<Box<dyn Collector>>, opts: Options) -> Self {
        Sampler {
            roots,
            collectors,
            state: ModelState::default(),
            opts,
            page_size: crate::host::page_size(),
            epoch: Instant::now(),
            unsupported: HashSet::new(),
            self_metrics: None,
        }
    }

    /// Observe each sample's duration into the daemon's own instrumentation.
    pub fn observe_into(&mut self, m: Arc<SelfMetrics>) {
        self.self_metrics = Some(m);
    }

    /// The collectors every sampler runs, in order (cgroupfs first: the others need its walk).
    /// `per_process` also reads each process's kernel counters (for `memwatch top`); `slow` is
    /// how old the files that are costly to read may get.
    pub fn default_collectors(probes: Option<crate::probes::Probes>, per_process: bool, slow: Duration) -> Vec<Box<dyn Collector>> {
        Self::collectors(probes, per_process, slow, None)
    }

    /// [`Sampler::default_collectors`], with the runtimes' exec-time reads shared with the OOM
    /// stage (`watcher`; see `runtime::Watcher::started`).
    pub fn collectors(
        probes: Option<crate::probes::Probes>,
        per_process: bool,
        slow: Duration,
        watcher: Option<Arc<crate::runtime::Watcher>>,
    ) -> Vec<Box<dyn Collector>> {
        use crate::collector::*;
        let mut v: Vec<Box<dyn Collector>> = vec![
            Box::new(cgroupfs::Cgroupfs::new(slow)),
            Box::new(procfs::Procfs::default()),
            Box::new(runtimes::Runtimes::new(slow, watcher)),
            Box::new(kubelet::Kubelet::default()),
        ];
        if let Some(p) = probes {
            v.push(Box::new(ebpf::Ebpf::new(p, per_process)));
        }
        v
    }

    /// One sample, told `input` by the stages after it.
    pub fn sample(&mut self, input: &SampleInput) -> Snapshot {
        let started = Instant::now();
        let mut b = SnapshotBuilder::new(self.page_size);
        for c in &mut self.collectors {
            match c.collect(&self.roots, input, &mut b) {
                Ok(()) => {}
                Err(CollectError::Unsupported(why)) => {
                    if self.unsupported.insert(c.id()) {
                        tracing::warn!(collector = c.id().name(), "unsupported on this host: {why}");
                    }
                }
                Err(e) => {
                    tracing::debug!(collector = c.id().name(), "collector failed: {e}");
                    b.error(c.id(), e.reason());
                }
            }
        }
        let timing = Timing {
            wall: SystemTime::now(),
            mono: self.epoch.elapsed().as_secs_f64(),
            duration: started.elapsed().as_secs_f64(),
            boot: crate::host::boot_seconds(),
        };
        if let Some(m) = &self.self_metrics {
            m.sample_seconds.observe(timing.duration);
        }
        model::build(b, &mut self.state, &self.opts, timing)
    }
}

/// The pipeline's stages after the probes, and one sample step through them.
pub struct Stages {
    pub sampler: Sampler,
    pub history: Arc<RwLock<History>>,
    pub oom: Oom,
    pub events: KernelEvents,
    pub stacks: crate::stacks::Stage,
    /// Cgroups where the OOM probe saw kills since the last sample: the next sample's input.
    kills: HashSet<u64>,
    /// Cgroups at risk after the last sample, or asked for: the next sample's input.
    at_risk: HashSet<u64>,
    /// Containers asked for (`--record`), until when.
    recording: HashMap<u64, Instant>,
    records: std::sync::mpsc::Receiver<Record>,
    record_tx: std::sync::mpsc::Sender<Record>,
}

impl Stages {
    pub fn new(sampler: Sampler, history: Arc<RwLock<History>>, oom: Oom, events: KernelEvents, stacks: crate::stacks::Stage) -> Self {
        let (record_tx, records) = std::sync::mpsc::channel();
        Stages {
            sampler,
            history,
            oom,
            events,
            stacks,
            kills: HashSet::new(),
            at_risk: HashSet::new(),
            recording: HashMap::new(),
            records,
            record_tx,
        }
    }

    /// Where readers ask for containers to be counted (see [`Record`]).
    pub fn record_sender(&self) -> std::sync::mpsc::Sender<Record> {
        self.record_tx.clone()
    }

    /// One sample step: the collectors (told where kills were and which containers are at
    /// risk) and the model, the history, the fault stacks on their slow cadence (every sample
    /// while a container is at risk), then the OOM
    /// stage, with the kernel's records first (a kill the sample's counters already show has its
    /// record in the ring, and must be pending before the counters are reconciled). Returns the
    /// snapshot and whether OOM events changed.
    pub fn step(&mut self, now: Instant) -> (Arc<Snapshot>, bool) {
        let input = SampleInput { oom_cgroups: std::mem::take(&mut self.kills), at_risk: std::mem::take(&mut self.at_risk) };
        let snap = Arc::new(self.sampler.sample(&input));
        self.history.write().unwrap_or_else(|e| e.into_inner()).push(&snap);
        // While a container is at risk its stacks are drained every sample: a process there
        // may be killed any moment, and its maps must be read while it lives.
        self.stacks.drain_if_due(now, crate::unix_seconds(snap.taken_at), !input.at_risk.is_empty());
        let mut changed = self.drain_kernel();
        changed |= self.oom.on_snapshot(snap.clone(), now);
        let view = self.oom.view();
        self.at_risk = crate::risk::at_risk(&snap, &view.last_kill, |id| view.warned.contains_key(&id));
        // Containers asked for are counted as those at risk are, until their time is up.
        while let Ok(r) = self.records.try_recv() {
            for id in r.ids {
                let until = self.recording.entry(id).or_insert(r.until);
                *until = (*until).max(r.until);
            }
        }
        self.recording.retain(|_, until| *until > now);
        self.at_risk.extend(self.recording.keys().copied());
        self.stacks.counting(&self.at_risk, crate::unix_seconds(snap.taken_at));
        (snap, changed)
    }

    /// The kernel's records; before the first OOM record of a drain, the fault stacks so far,
    /// while the victim's maps can still be read.
    fn drain_kernel(&mut self) -> bool {
        let stacks = &mut self.stacks;
        self.events.drain(&mut self.oom, &mut self.kills, || stacks.drain(crate::unix_seconds(SystemTime::now())))
    }

    /// Between samples: waits until `until` for kernel records (a kill is explained and
    /// published as soon as its victim exits, not at the next sample); true when OOM events
    /// changed.
    fn between(&mut self, until: Instant) -> bool {
        let until = self.oom.next_deadline().map_or(until, |d| d.min(until));
        self.events.wait(until.saturating_duration_since(Instant::now()));
        let changed = self.drain_kernel();
        changed | self.oom.finish_ready(Instant::now())
    }

    /// Samples every `interval` on a thread of its own, publishing into `shared`. `keep_alive`
    /// lives as long as the thread (the kernel-side logger, when nobody reads it).
    pub fn spawn(mut self, interval: Duration, shared: Shared, keep_alive: impl Send + 'static) -> thread::JoinHandle<()> {
        shared.oom.store(self.oom.view());
        thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let _keep_alive = keep_alive;
                let mut next = Instant::now();
                let mut samples: u64 = 0;
                loop {
                    let now = Instant::now();
                    let mut changed = false;
                    if now >= next {
                        samples += 1;
                        if samples.is_multiple_of(TRIM_EVERY) {
                            crate::allocator::give_back();
                        }
                        let (snap, c) = self.step(now);
                        shared.snapshot.store(Some(snap));
                        changed = c;
                        next += interval;
                        if next < now {
                            next = now; // fell behind: do not burst to catch up
                        }
                    }
                    changed |= self.between(next);
                    if changed {
                        shared.oom.store(self.oom.view());
                    }
                }
            })
            .expect("spawn sampler thread")
    }
}
