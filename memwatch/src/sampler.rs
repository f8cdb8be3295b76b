//! The sampling loop: runs every collector, builds the model, and swaps the new snapshot in.
//! It runs on its own thread; readers only ever load the latest `Arc<Snapshot>`.

use std::{
    collections::HashSet,
    sync::Arc,
    thread,
    time::{Duration, Instant, SystemTime},
};

use std::os::fd::AsRawFd;

use arc_swap::ArcSwapOption;
use aya::maps::{MapData, RingBuf};

use crate::{
    Roots,
    collector::{CollectError, Collector, SnapshotBuilder},
    events::OomTracker,
    model::{self, ModelState, Options, Timing},
    snapshot::Snapshot,
};

/// The latest snapshot, shared with every reader.
pub type Shared = Arc<ArcSwapOption<Snapshot>>;

pub struct Sampler {
    roots: Roots,
    collectors: Vec<Box<dyn Collector>>,
    state: ModelState,
    opts: Options,
    page_size: u64,
    epoch: Instant,
    /// Collectors already reported as unsupported here (reported once).
    unsupported: HashSet<&'static str>,
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
        }
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
        let timing = Timing {
            wall: SystemTime::now(),
            mono: self.epoch.elapsed().as_secs_f64(),
            duration: started.elapsed().as_secs_f64(),
        };
        model::build(b, &mut self.state, &self.opts, timing)
    }

    /// Samples every `interval` on a thread of its own, publishing into `shared`. Between
    /// samples it waits on the OOM ring buffer (when there is one), so a kill is explained and
    /// published as soon as its victim exits, not at the next sample.
    pub fn spawn(
        mut self,
        interval: Duration,
        shared: Shared,
        mut oom: OomTracker,
        mut ring: Option<RingBuf<MapData>>,
        oom_unit: u64,
    ) -> thread::JoinHandle<()> {
        thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let mut next = Instant::now();
                let mut latest: Option<Arc<Snapshot>> = None;
                let publish = |snap: &Arc<Snapshot>, oom: &OomTracker| {
                    shared.store(Some(Arc::new(Snapshot { oom: oom.view(), ..(**snap).clone() })));
                };
                loop {
                    let now = Instant::now();
                    if now >= next {
                        let snap = Arc::new(self.sample());
                        oom.on_snapshot(snap.clone(), now);
                        publish(&snap, &oom);
                        latest = Some(snap);
                        next += interval;
                        if next < now {
                            next = now; // fell behind: do not burst to catch up
                        }
                    }
                    let until = oom.next_deadline().map_or(next, |d| d.min(next));
                    let wait = until.saturating_duration_since(Instant::now());
                    let mut changed = false;
                    match ring.as_mut() {
                        Some(r) => {
                            let mut pfd = libc::pollfd { fd: r.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                            // SAFETY: polling one valid fd owned by `r`.
                            unsafe { libc::poll(&mut pfd, 1, wait.as_millis().min(i32::MAX as u128) as i32) };
                            while let Some(item) = r.next() {
                                match crate::oom::decode(&item, oom_unit) {
                                    Ok(k) => changed |= oom.on_record(k),
                                    Err(e) => tracing::warn!("undecodable OOM record: {e}"),
                                }
                            }
                        }
                        None => thread::sleep(wait),
                    }
                    changed |= oom.finish_ready(Instant::now());
                    if changed {
                        if let Some(snap) = &latest {
                            publish(snap, &oom);
                        }
                    }
                }
            })
            .expect("spawn sampler thread")
    }
}
