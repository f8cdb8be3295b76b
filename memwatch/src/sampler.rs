//! The sampling loop: runs every collector, builds the model, and swaps the new snapshot in.
//! It runs on its own thread, which also owns the OOM ring buffer and the OOM tracker; readers
//! only ever load the latest `Arc<Snapshot>` and `Arc<OomView>`, published side by side.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
    thread,
    time::{Duration, Instant, SystemTime},
};

use std::os::fd::AsRawFd;

use arc_swap::{ArcSwap, ArcSwapOption};
use aya::maps::{MapData, RingBuf};

use crate::{
    Roots,
    collector::{CollectError, Collector, SnapshotBuilder},
    history::History,
    model::{self, ModelState, Options, Timing},
    oom::{Oom, OomView},
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
}

/// Shared with every reader.
pub type Shared = Arc<Published>;

/// The kernel's ring buffers the sampler thread reads: OOM records, and execs (whose programs'
/// Go settings are read at once, for a kill that may come before any sample).
pub struct KernelEvents {
    pub oom: Option<RingBuf<MapData>>,
    pub exec: Option<RingBuf<MapData>>,
    /// Bytes per unit of the OOM record's size fields.
    pub oom_unit: u64,
    /// Where the cgroups of each kill are said to the cgroupfs collector.
    pub hints: Arc<crate::collector::cgroupfs::OomHints>,
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

    /// Hands every waiting record to `oom`; true when its events changed. Execs first: a
    /// program that started and was killed between two reads is watched before its kill is.
    pub fn drain(&mut self, oom: &mut Oom) -> bool {
        if let Some(r) = self.exec.as_mut() {
            while let Some(item) = r.next() {
                if item.len() >= 4 {
                    oom.on_exec(u32::from_ne_bytes([item[0], item[1], item[2], item[3]]));
                }
            }
        }
        let mut changed = false;
        if let Some(r) = self.oom.as_mut() {
            while let Some(item) = r.next() {
                match crate::oom::decode(&item, self.oom_unit) {
                    Ok(k) => {
                        self.hints.add(k.levels.iter().map(|l| l.cgroup_id).chain([k.trigger_memcg_id]).chain(k.victim_memcg_id));
                        changed |= oom.on_record(k, Instant::now());
                    }
                    Err(e) => tracing::warn!("undecodable OOM record: {e}"),
                }
            }
        }
        changed
    }
}

pub struct Sampler {
    roots: Roots,
    collectors: Vec<Box<dyn Collector>>,
    state: ModelState,
    opts: Options,
    page_size: u64,
    epoch: Instant,
    /// Collectors already reported as unsupported here (reported once).
    unsupported: HashSet<&'static str>,
    self_metrics: Option<Arc<crate::selfmetrics::SelfMetrics>>,
}

impl Sampler {
    pub fn new(roots: Roots, collectors: Vec<Box<dyn Collector>>, opts: Options) -> Self {
        Sampler {
            roots,
            collectors,
            state: ModelState::default(),
            opts,
            page_size: crate::probes::page_size(),
            epoch: Instant::now(),
            unsupported: HashSet::new(),
            self_metrics: None,
        }
    }

    /// Observe each sample's duration into the daemon's own instrumentation.
    pub fn observe_into(&mut self, m: Arc<crate::selfmetrics::SelfMetrics>) {
        self.self_metrics = Some(m);
    }

    /// The collectors every sampler runs, in order (cgroupfs first: the others need its walk).
    /// `per_process` also reads each process's kernel counters (for `memwatch top`); `slow` is
    /// how old the files that are costly to read may get.
    pub fn default_collectors(probes: Option<crate::probes::Probes>, per_process: bool, slow: Duration) -> Vec<Box<dyn Collector>> {
        Self::collectors_with_hints(probes, per_process, slow, Arc::default())
    }

    /// As [`Sampler::default_collectors`], with the cgroupfs collector told by `hints` where the
    /// OOM probe saw kills.
    pub fn collectors_with_hints(
        probes: Option<crate::probes::Probes>,
        per_process: bool,
        slow: Duration,
        hints: Arc<crate::collector::cgroupfs::OomHints>,
    ) -> Vec<Box<dyn Collector>> {
        use crate::collector::*;
        let mut v: Vec<Box<dyn Collector>> = vec![
            Box::new(cgroupfs::Cgroupfs::new(slow).with_hints(hints)),
            Box::new(procfs::Procfs::default()),
            Box::new(kubelet::Kubelet::default()),
        ];
        if let Some(p) = probes {
            v.push(Box::new(ebpf::Ebpf::new(p, per_process)));
        }
        v
    }

    pub fn sample(&mut self) -> Snapshot {
        let started = Instant::now();
        let mut b = SnapshotBuilder::new(self.page_size);
        for c in &mut self.collectors {
            match c.collect(&self.roots, &mut b) {
                Ok(()) => {}
                Err(CollectError::Unsupported(why)) => {
                    if self.unsupported.insert(c.name()) {
                        tracing::warn!(collector = c.name(), "unsupported on this host: {why}");
                    }
                }
                Err(e) => {
                    tracing::debug!(collector = c.name(), "collector failed: {e}");
                    b.error(c.name(), e.reason());
                }
            }
        }
        let timing =
            Timing { wall: SystemTime::now(), mono: self.epoch.elapsed().as_secs_f64(), duration: started.elapsed().as_secs_f64() };
        if let Some(m) = &self.self_metrics {
            m.sample_seconds.observe(timing.duration);
        }
        model::build(b, &mut self.state, &self.opts, timing)
    }

    /// Samples every `interval` on a thread of its own, publishing into `shared`. Between
    /// samples it waits on the OOM ring buffer (when there is one), so a kill is explained and
    /// published as soon as its victim exits, not at the next sample. `keep_alive` lives as
    /// long as the thread (the kernel-side logger, when nobody reads it).
    pub fn spawn(
        mut self,
        interval: Duration,
        shared: Shared,
        mut oom: Oom,
        mut events: KernelEvents,
        keep_alive: impl Send + 'static,
    ) -> thread::JoinHandle<()> {
        shared.oom.store(oom.view());
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
                        let snap = Arc::new(self.sample());
                        shared.snapshot.store(Some(snap.clone()));
                        shared.history.write().unwrap_or_else(|e| e.into_inner()).push(&snap);
                        // Records first: a kill the sample's counters already show has its record
                        // in the ring, and must be pending before the counters are reconciled.
                        changed |= events.drain(&mut oom);
                        changed |= oom.on_snapshot(snap, now);
                        next += interval;
                        if next < now {
                            next = now; // fell behind: do not burst to catch up
                        }
                    }
                    let until = oom.next_deadline().map_or(next, |d| d.min(next));
                    events.wait(until.saturating_duration_since(Instant::now()));
                    changed |= events.drain(&mut oom);
                    changed |= oom.finish_ready(Instant::now());
                    if changed {
                        shared.oom.store(oom.view());
                    }
                }
            })
            .expect("spawn sampler thread")
    }
}
