//! The sampling loop: runs every collector, builds the model, and swaps the new snapshot in.
//! It runs on its own thread; readers only ever load the latest `Arc<Snapshot>`.

use std::{
    collections::HashSet,
    sync::Arc,
    thread,
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwapOption;

use crate::{
    Roots,
    collector::{CollectError, Collector, SnapshotBuilder},
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
    pub fn default_collectors(probes: Option<crate::probes::Probes>) -> Vec<Box<dyn Collector>> {
        use crate::collector::*;
        let mut v: Vec<Box<dyn Collector>> = vec![Box::new(cgroupfs::Cgroupfs), Box::new(procfs::Procfs), Box::new(kubelet::Kubelet)];
        if let Some(p) = probes {
            v.push(Box::new(ebpf::Ebpf::new(p)));
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

    /// Samples every `interval` on a thread of its own, publishing into `shared`.
    pub fn spawn(mut self, interval: Duration, shared: Shared) -> thread::JoinHandle<()> {
        thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let mut next = Instant::now();
                loop {
                    let snap = self.sample();
                    shared.store(Some(Arc::new(snap)));
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        next = now; // fell behind: do not burst to catch up
                    }
                    thread::sleep(next - now);
                }
            })
            .expect("spawn sampler thread")
    }
}
