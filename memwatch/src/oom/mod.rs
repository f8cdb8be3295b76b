//! OOM kills, from the kernel's records to explained, journaled events.
//!
//! - [`record`]: the raw ring-buffer records and their decoding;
//! - [`tracker`]: the state machine (no I/O of its own) that waits for a kill's records, asks
//!   the host for facts through [`world::World`], and reconciles with the kernel's counters;
//! - [`world`]: those facts, read for real from `/proc` and cgroupfs ([`world::Host`]);
//! - [`explain`]: turns one kill and its facts into an [`event::Event`];
//! - [`event`]: the event itself, a leaf that [`journal`] alone depends on;
//! - [`journal`]: the bounded on-disk record that survives restarts;
//! - [`warning`]: when a container becomes at risk before a kill, and leaves it (warnings and
//!   `cleared` events, numbered and journaled with the kills, which name the warning before);
//! - [`Oom`], here: the tracker plus the journal, numbering events and keeping the
//!   [`OomView`] that readers (metrics, API, `top`) see.

pub mod event;
pub mod explain;
pub mod journal;
pub mod reasons;
pub mod record;
pub mod tracker;
pub mod warning;
pub mod world;

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
    time::Instant,
};

pub use event::{Constraint, Event, EventKind, Source};
use journal::Journal;
pub use record::{OomKill, decode};
use tracker::Tracker;
pub use warning::ActiveWarning;
use world::World;

use crate::snapshot::Snapshot;

/// What readers see of OOM kills: published beside each snapshot, rebuilt only when events
/// change.
#[derive(Debug, Clone, Default)]
pub struct OomView {
    /// The most recent events, oldest first.
    pub events: Vec<Event>,
    pub by_constraint: BTreeMap<Constraint, u64>,
    pub missed_total: u64,
    /// Unix time of the last kill per cgroup id (the victim's cgroup and its ancestors).
    pub last_kill: HashMap<u64, f64>,
    /// Writes to the journal that failed (a full or read-only disk): those events are kept in
    /// memory only.
    pub journal_write_errors: u64,
    /// The warnings in force, by the id of the container warned.
    pub warned: HashMap<u64, ActiveWarning>,
    /// Warnings kept quiet by the node-wide bound.
    pub warnings_suppressed: u64,
    /// Kills the probe saw, by the victim's container id and what the victim was to it.
    pub victims: HashMap<u64, BTreeMap<event::VictimRole, u64>>,
}

/// The tracker, the journal, and the events they produced.
pub struct Oom {
    tracker: Tracker,
    world: Box<dyn World + Send>,
    journal: Option<Journal>,
    max_events: usize,
    next_seq: u64,
    view: Arc<OomView>,
    warner: warning::Warner,
}

impl Oom {
    /// With a state directory, events persist in a journal there; its warnings are returned.
    pub fn new(world: Box<dyn World + Send>, state_dir: Option<&Path>, max_events: usize) -> (Oom, Vec<String>) {
        let mut warnings = Vec::new();
        let mut oom = Oom {
            tracker: Tracker::new(),
            world,
            journal: None,
            max_events,
            next_seq: 1,
            view: Arc::default(),
            warner: warning::Warner::default(),
        };
        if let Some(dir) = state_dir {
            match Journal::open(dir, max_events) {
                Ok((journal, loaded)) => {
                    if let Some(w) = loaded.warning {
                        warnings.push(format!("{}: {w}", journal.path().display()));
                    }
                    oom.tracker.account_baseline(&loaded.baseline);
                    if loaded.fresh {
                        oom.tracker.first_run();
                    }
                    let mut view = OomView::default();
                    for e in loaded.events {
                        oom.tracker.account(&e);
                        oom.next_seq = oom.next_seq.max(e.seq + 1);
                        add(&mut view, e, max_events);
                    }
                    oom.view = Arc::new(view);
                    oom.journal = Some(journal);
                }
                Err(e) => {
                    warnings.push(format!("OOM events will not survive a restart: {e}"));
                    oom.tracker.first_run();
                }
            }
        } else {
            // Nothing remembered from before: every start is a first run.
            oom.tracker.first_run();
        }
        (oom, warnings)
    }

    /// Draw on this history for what grew before a kill.
    pub fn set_history(&mut self, history: Arc<std::sync::RwLock<crate::history::History>>) {
        self.tracker.set_history(history);
    }

    /// Draw on these fault stacks for which code grew before a kill.
    pub fn set_stacks(&mut self, store: Arc<std::sync::RwLock<crate::stacks::Store>>, names: Arc<crate::stacks::symbolize::Names>) {
        self.tracker.set_stacks(store, names);
    }

    pub fn view(&self) -> Arc<OomView> {
        self.view.clone()
    }

    /// A record from the kernel. Returns true when events changed.
    pub fn on_record(&mut self, k: OomKill, now: Instant) -> bool {
        let done = self.tracker.on_record(k, now, self.world.as_ref());
        self.record(done)
    }

    /// A program was just started (exec): read what a kill would need while it lives.
    pub fn on_exec(&mut self, pid: u32) {
        self.world.exec(pid);
    }

    /// A new sample. Returns true when events changed.
    pub fn on_snapshot(&mut self, snap: Arc<Snapshot>, now: Instant) -> bool {
        // Processes that started before memwatch (or whose exec it missed) have their runtime
        // facts in the samples (the runtimes collector).
        let done = self.tracker.on_snapshot(snap.clone(), now, self.world.as_ref());
        if let Some(baseline) = self.tracker.take_baseline() {
            self.record_baseline(&baseline);
        }
        let mut changed = self.record(done);
        changed |= self.warn(&snap);
        changed
    }

    /// Raises and clears warnings on a new sample; true when the view changed.
    fn warn(&mut self, snap: &Snapshot) -> bool {
        let now = crate::unix_seconds(snap.taken_at);
        let transitions = self.warner.observe(snap, now, &self.view.last_kill);
        // Frames first seen just now are being named: wait for that once, briefly.
        if transitions.iter().any(|t| matches!(t, warning::Transition::Warn { .. })) {
            self.tracker.settle_names();
        }
        let mut events = Vec::with_capacity(transitions.len());
        for t in transitions {
            match t {
                warning::Transition::Warn { id, risks, hits_last_minute, after_kill } => {
                    let Some(c) = snap.container(id) else { continue };
                    let facts = explain::WarningCause { risks, hits: hits_last_minute, after_kill };
                    events.push(self.tracker.with_context(Some(snap), |cx| explain::warning(c, snap, cx, facts, now)));
                }
                warning::Transition::Clear { id, seq, since, hits_last_minute } => {
                    let Some(c) = snap.container(id) else { continue };
                    events.push(explain::cleared(c, snap, seq, since, hits_last_minute, now));
                }
            }
        }
        let changed = self.record(events);
        let warned = self.warner.active();
        if warned != self.view.warned || self.warner.suppressed != self.view.warnings_suppressed {
            let mut view = (*self.view).clone();
            view.warned = warned;
            view.warnings_suppressed = self.warner.suppressed;
            self.view = Arc::new(view);
            return true;
        }
        changed
    }

    /// Kills from before memwatch started: said once, and journaled so that a restart does not
    /// count them as missed.
    fn record_baseline(&mut self, baseline: &HashMap<u64, u64>) {
        if baseline.is_empty() {
            return;
        }
        let kills: u64 = baseline.values().sum();
        tracing::info!(
            target: "memwatch::oom",
            kills,
            cgroups = baseline.len(),
            "OOM kills from before memwatch started (on the kernel's counters): taken as a baseline, not as kills missed"
        );
        if let Some(j) = self.journal.as_mut()
            && let Err(err) = j.append_baseline(baseline)
        {
            tracing::error!("writing the OOM journal {}: {err}", j.path().display());
            let mut view = (*self.view).clone();
            view.journal_write_errors += 1;
            self.view = Arc::new(view);
        }
    }

    /// Explains kills whose wait is over. Returns true when events changed.
    pub fn finish_ready(&mut self, now: Instant) -> bool {
        let done = self.tracker.finish_ready(now, self.world.as_ref());
        self.record(done)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.tracker.next_deadline()
    }

    /// Numbers, logs and journals completed events, and publishes a new view.
    fn record(&mut self, done: Vec<Event>) -> bool {
        if done.is_empty() {
            return false;
        }
        let mut view = (*self.view).clone();
        for mut e in done {
            e.seq = self.next_seq;
            self.next_seq += 1;
            match e.kind {
                // The story links: the warning in force before this kill.
                EventKind::OomKill if e.source == Source::Probe => {
                    e.warned = self.warner.in_force(&e.cgroup_ids, e.time).map(|w| event::Warned {
                        seq: w.seq,
                        seconds_before: e.time - w.time,
                        text: w.text.clone(),
                    });
                }
                EventKind::Warning => self.warner.recorded(e.cgroup_id, e.seq, reasons::summary(&e.explanation)),
                _ => {}
            }
            log(&e);
            if let Some(j) = self.journal.as_mut()
                && let Err(err) = j.append(&e)
            {
                tracing::error!("writing the OOM journal {}: {err} (event {} is kept in memory only)", j.path().display(), e.seq);
                view.journal_write_errors += 1;
            }
            add(&mut view, e, self.max_events);
        }
        self.view = Arc::new(view);
        true
    }
}

/// Adds an event to a view: its counts, and the list bounded to `max` events.
fn add(view: &mut OomView, e: Event, max: usize) {
    if !e.is_kill() {
        push_bounded(view, e, max);
        return;
    }
    for id in &e.cgroup_ids {
        let last = view.last_kill.entry(*id).or_default();
        *last = last.max(e.time);
    }
    *view.by_constraint.entry(e.constraint).or_default() += e.count;
    // A group kill took the whole container, its main process with it.
    let role = if e.group.is_some() { Some(event::VictimRole::Main) } else { e.victim.as_ref().and_then(|v| v.role) };
    if let Some(role) = role.filter(|_| e.source == Source::Probe) {
        *view.victims.entry(e.cgroup_id).or_default().entry(role).or_default() += e.count;
    }
    if e.source == Source::KernelCounter {
        view.missed_total += e.count;
    }
    push_bounded(view, e, max);
}

fn push_bounded(view: &mut OomView, e: Event, max: usize) {
    view.events.push(e);
    if view.events.len() > max {
        let extra = view.events.len() - max;
        view.events.drain(..extra);
    }
}

/// One structured log line per event (target `memwatch::oom`).
fn log(e: &Event) {
    let w = e.warning.as_ref();
    match e.kind {
        EventKind::Warning => {
            return tracing::warn!(
                target: "memwatch::oom",
                seq = e.seq,
                kind = e.kind.label(),
                namespace = e.namespace.as_str(),
                pod = e.pod.as_str(),
                container = e.container.as_str(),
                cgroup = e.cgroup.as_str(),
                working_set_bytes = w.map(|w| w.state.working_set_bytes).unwrap_or(0),
                limit_bytes = w.map(|w| w.state.limit_bytes).unwrap_or(0),
                time_to_limit_seconds = w.and_then(|w| w.time_to_limit_seconds).map(|t| t.round() as u64),
                limit_hits_last_minute = w.map(|w| w.limit_hits_last_minute).unwrap_or(0),
                grower = e.recent.as_ref().and_then(|r| r.processes.first()).map(|p| format!("{} (pid {})", p.comm, p.pid)).unwrap_or_default(),
                grew_in = e.stacks.as_ref().and_then(|s| s.top.iter().find_map(|t| t.own.as_deref())).unwrap_or(""),
                why = reasons::summary(&e.explanation).as_str(),
                "memory warning: at risk of an OOM kill"
            );
        }
        EventKind::Cleared => {
            return tracing::info!(
                target: "memwatch::oom",
                seq = e.seq,
                kind = e.kind.label(),
                warning_seq = w.and_then(|w| w.warning_seq).unwrap_or(0),
                namespace = e.namespace.as_str(),
                pod = e.pod.as_str(),
                container = e.container.as_str(),
                cgroup = e.cgroup.as_str(),
                working_set_bytes = w.map(|w| w.state.working_set_bytes).unwrap_or(0),
                limit_bytes = w.map(|w| w.state.limit_bytes).unwrap_or(0),
                "memory warning cleared"
            );
        }
        EventKind::OomKill => {}
    }
    match e.source {
        Source::Probe => tracing::warn!(
            target: "memwatch::oom",
            seq = e.seq,
            victim_pid = e.victim.as_ref().map(|v| v.pid).unwrap_or(0),
            victim_comm = e.victim.as_ref().map(|v| v.comm.as_str()).unwrap_or(""),
            victim_rss_bytes = e.victim.as_ref().and_then(|v| v.rss_bytes).unwrap_or(0),
            namespace = e.namespace.as_str(),
            pod = e.pod.as_str(),
            container = e.container.as_str(),
            cgroup = e.cgroup.as_str(),
            constraint = e.constraint.label(),
            constrained_by = e.constrained_by.as_deref().unwrap_or(""),
            usage_at_kill_bytes = e.at_kill.as_ref().map(|a| a.usage_bytes).unwrap_or(0),
            limit_bytes = e.at_kill.as_ref().and_then(|a| a.limit_bytes).or(e.before.as_ref().map(|b| b.limit_bytes)).unwrap_or(0),
            why = reasons::summary(&e.explanation).as_str(),
            grew_in = e.stacks.as_ref().and_then(|s| s.top.iter().find_map(|t| t.own.as_deref())).unwrap_or(""),
            warned_seq = e.warned.as_ref().map(|w| w.seq),
            warned_seconds_before = e.warned.as_ref().map(|w| w.seconds_before.round() as u64),
            "OOM kill"
        ),
        Source::KernelCounter => tracing::warn!(
            target: "memwatch::oom",
            seq = e.seq,
            count = e.count,
            namespace = e.namespace.as_str(),
            pod = e.pod.as_str(),
            container = e.container.as_str(),
            cgroup = e.cgroup.as_str(),
            "OOM kills counted by the kernel but missed by the probe"
        ),
        Source::Sample => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oom::event::tests::event;

    struct Nothing;
    impl World for Nothing {
        fn process(&self, _: u32) -> Option<world::ProcFacts> {
            None
        }
        fn runtime(&self, _: u32) -> Option<crate::runtime::Facts> {
            None
        }
        fn cgroup_path(&self, _: u64) -> Option<String> {
            None
        }
        fn ancestry(&self, _: &str) -> Vec<(u64, String)> {
            vec![]
        }
        fn limit_events(&self, _: &str) -> Option<u64> {
            None
        }
        fn memory_parts(&self, _: &str) -> Option<world::MemoryStat> {
            None
        }
        fn processes(&self, _: &str, _: usize) -> Vec<event::ProcessInfo> {
            vec![]
        }
        fn wall_now(&self) -> f64 {
            0.0
        }
        fn boot_to_wall(&self, _: u64) -> f64 {
            0.0
        }
    }

    #[test]
    fn a_kill_names_the_warning_in_force_and_warnings_count_as_no_kill() {
        use crate::snapshot::fixture::{container, snapshot};
        let dir = tempfile::tempdir().unwrap();
        let (mut oom, _) = Oom::new(Box::new(Nothing), Some(dir.path()), 100);
        let mut c = container(10, "/c10");
        c.headroom_ratio = 0.05;
        assert!(oom.on_snapshot(Arc::new(snapshot(1_700_000_000.0, vec![c])), Instant::now()));
        let view = oom.view();
        let w = &view.events[0];
        assert_eq!((w.kind, w.seq, w.count), (EventKind::Warning, 1, 0));
        assert_eq!(view.warned[&10].seq, 1, "in force");
        assert!(view.by_constraint.is_empty() && view.last_kill.is_empty(), "a warning is no kill");
        // A kill in the container 7 s later names it.
        let mut kill = event(0, 10);
        kill.time = 1_700_000_007.0;
        assert!(oom.record(vec![kill]));
        let view = oom.view();
        let warned = view.events[1].warned.as_ref().expect("the warning before");
        assert_eq!((warned.seq, warned.seconds_before), (1, 7.0));
        assert!(warned.text.starts_with("At risk of an OOM kill"), "{warned:?}");
        assert_eq!(view.by_constraint[&Constraint::Cgroup], 1);
        // Both journaled, read back in order; only the kill is accounted.
        drop(oom);
        let (oom, _) = Oom::new(Box::new(Nothing), Some(dir.path()), 100);
        let kinds: Vec<EventKind> = oom.view().events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Warning, EventKind::OomKill]);
        assert_eq!(oom.view().by_constraint[&Constraint::Cgroup], 1);
    }

    #[test]
    fn the_journal_restores_events_counts_and_numbering() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut oom, w) = Oom::new(Box::new(Nothing), Some(dir.path()), 100);
            assert!(w.is_empty());
            assert!(oom.record(vec![event(0, 10), event(0, 10), event(0, 11)]));
        }
        let (oom, _) = Oom::new(Box::new(Nothing), Some(dir.path()), 100);
        let view = oom.view();
        assert_eq!(view.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(oom.next_seq, 4);
        assert_eq!(view.by_constraint[&Constraint::Cgroup], 3);
        assert!(view.last_kill.contains_key(&1), "the common ancestor");
    }
}
