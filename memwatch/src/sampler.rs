//! The sampling loop: runs every collector, builds the model, and swaps the new snapshot in.
//! It runs on its own thread, which also owns the OOM ring buffer and the OOM tracker; readers
//! only ever load the latest `Arc<Snapshot>` and `Arc<OomView>`, published side by side.

use std::{
    collections::HashSet,
    sync::Arc,
    thread,
    time::{Duration, Instant, SystemTime},
};

use std::os::fd::AsRawFd;

use arc_swap::{ArcSwap, ArcSwapOption};
use aya::maps::{MapData, RingBuf};

use crate::{
    Roots,
    collector::{CollectError, Collector, SnapshotBuilder},
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
}

/// Shared with every reader.
pub type Shared = Arc<Published>;

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
        use crate::collector::*;
        let mut v: Vec<Box<dyn Collector>> =
            vec![Box::new(cgroupfs::Cgroupfs::new(slow)), Box::new(procfs::Procfs::default()), Box::new(kubelet::Kubelet::default())];
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
        mut ring: Option<RingBuf<MapData>>,
        oom_unit: u64,
        keep_alive: impl Send + 'static,
    ) -> thread::JoinHandle<()> {
        shared.oom.store(oom.view());
        thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let _keep_alive = keep_alive;
                let mut next = Instant::now();
                loop {
                    let now = Instant::now();
                    let mut changed = false;
                    if now >= next {
                        let snap = Arc::new(self.sample());
                        shared.snapshot.store(Some(snap.clone()));
                        changed |= oom.on_snapshot(snap, now);
                        next += interval;
                        if next < now {
                            next = now; // fell behind: do not burst to catch up
                        }
                    }
                    let until = oom.next_deadline().map_or(next, |d| d.min(next));
                    let wait = until.saturating_duration_since(Instant::now());
                    match ring.as_mut() {
                        Some(r) => {
                            let mut pfd = libc::pollfd { fd: r.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                            // SAFETY: polling one valid fd owned by `r`.
                            unsafe { libc::poll(&mut pfd, 1, wait.as_millis().min(i32::MAX as u128) as i32) };
                            while let Some(item) = r.next() {
                                match crate::oom::decode(&item, oom_unit) {
                                    Ok(k) => changed |= oom.on_record(k, Instant::now()),
                                    Err(e) => tracing::warn!("undecodable OOM record: {e}"),
                                }
                            }
                        }
                        None => thread::sleep(wait),
                    }
                    changed |= oom.finish_ready(Instant::now());
                    if changed {
                        shared.oom.store(oom.view());
                    }
                }
            })
            .expect("spawn sampler thread")
    }
}
