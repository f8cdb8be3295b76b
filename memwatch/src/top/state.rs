//! What `top` shows, updated only from frames and actions: rates from successive frames,
//! a short working-set history per container, sorting, filtering, selection and mode.

use std::collections::{HashMap, VecDeque};

use super::{Frame, input::Action};
use crate::{events::Event, snapshot::Container};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Name,
    Procs,
    Vsz,
    Rss,
    WorkingSet,
    Limit,
    Headroom,
    Trend,
    Faults,
    Mmap,
    Pressure,
    Ooms,
}

pub const COLUMNS: [Column; 12] = [
    Column::Name,
    Column::Procs,
    Column::Vsz,
    Column::Rss,
    Column::WorkingSet,
    Column::Limit,
    Column::Headroom,
    Column::Trend,
    Column::Faults,
    Column::Mmap,
    Column::Pressure,
    Column::Ooms,
];

impl Column {
    pub fn title(self) -> &'static str {
        match self {
            Column::Name => "NAME",
            Column::Procs => "PROCS",
            Column::Vsz => "VSZ",
            Column::Rss => "RSS",
            Column::WorkingSet => "WSET",
            Column::Limit => "LIMIT",
            Column::Headroom => "HEADROOM",
            Column::Trend => "TREND",
            Column::Faults => "FAULTS/s",
            Column::Mmap => "MMAP MB/s",
            Column::Pressure => "PRESSURE",
            Column::Ooms => "OOMS",
        }
    }
}

/// Rates of one process between the last two frames.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcRow {
    pub pid: u32,
    pub comm: String,
    pub vsz: u64,
    pub rss: u64,
    pub faults_per_s: Option<f64>,
    pub mmap_bytes_per_s: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub id: u64,
    pub name: String,
    pub container: Container,
    pub headroom_pct: f64,
    pub faults_per_s: Option<f64>,
    pub mmap_bytes_per_s: Option<f64>,
    /// Percent of time some task stalled on memory (PSI), over the last interval.
    pub pressure_pct: Option<f64>,
    /// Working-set history, oldest first.
    pub history: Vec<u64>,
    /// An OOM kill in the last 10 minutes, or during this session.
    pub recent_oom: bool,
    pub procs: Vec<ProcRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Table,
    /// Drilled into a container (by id).
    Detail(u64),
}

/// Counters seen in the previous frame, for rates.
#[derive(Debug, Clone, Copy)]
struct Prev {
    t: f64,
    faults: Option<u64>,
    mmap: Option<u64>,
    pressure_us: Option<u64>,
    oom_kills: Option<u64>,
}

const HISTORY: usize = 40;

#[derive(Debug)]
pub struct State {
    pub sort: Column,
    pub descending: bool,
    pub filter: String,
    pub editing_filter: bool,
    pub selected: usize,
    pub mode: Mode,
    pub help: bool,
    /// A message for the status line (e.g. the remote daemon is down).
    pub status: Option<String>,
    pub source: String,
    pub taken_at: f64,
    pub rows: Vec<Row>,
    pub events: Vec<Event>,
    all: Vec<Row>,
    prev: HashMap<u64, Prev>,
    prev_procs: HashMap<u32, (f64, u64, Option<u64>)>,
    history: HashMap<u64, VecDeque<u64>>,
    oomed: HashMap<u64, bool>,
}

impl State {
    pub fn new(source: impl Into<String>) -> State {
        State {
            sort: Column::Headroom,
            descending: false,
            filter: String::new(),
            editing_filter: false,
            selected: 0,
            mode: Mode::Table,
            help: false,
            status: None,
            source: source.into(),
            taken_at: 0.0,
            rows: vec![],
            events: vec![],
            all: vec![],
            prev: HashMap::new(),
            prev_procs: HashMap::new(),
            history: HashMap::new(),
            oomed: HashMap::new(),
        }
    }

    /// Takes a new frame: rates against the previous one, history, then filter and sort.
    pub fn update(&mut self, frame: Frame) {
        let t = frame.taken_at;
        if t <= self.taken_at && !self.all.is_empty() {
            return; // the same sample again
        }
        self.taken_at = t;
        let recent_cutoff = t - 600.0;
        let mut rows = Vec::with_capacity(frame.containers.len());
        let mut seen = HashMap::new();
        for c in frame.containers.iter() {
            let faults = c.page_faults;
            let mmap = c.ebpf.map(|e| e.mmap_anon_bytes + e.mmap_file_bytes);
            let pressure_us = c.pressure.map(|p| p.some_us);
            let prev = self.prev.get(&c.id).copied();
            let rate = |now: Option<u64>, before: Option<u64>| -> Option<f64> {
                let p = prev?;
                let dt = t - p.t;
                if dt > 0.0 { Some(now?.saturating_sub(before?) as f64 / dt) } else { None }
            };
            let faults_per_s = rate(faults, prev.and_then(|p| p.faults));
            let mmap_bytes_per_s = rate(mmap, prev.and_then(|p| p.mmap));
            let pressure_pct = rate(pressure_us, prev.and_then(|p| p.pressure_us)).map(|us| us / 1e4);
            let killed_now = matches!((prev.and_then(|p| p.oom_kills), c.oom_kills), (Some(a), Some(b)) if b > a);
            let oomed = self.oomed.entry(c.id).or_default();
            *oomed |= killed_now;
            let recent_oom = *oomed || frame.events.iter().any(|e| e.cgroup_ids.contains(&c.id) && e.time >= recent_cutoff);
            let hist = self.history.entry(c.id).or_default();
            hist.push_back(c.working_set_bytes);
            while hist.len() > HISTORY {
                hist.pop_front();
            }
            let procs = c
                .top_processes
                .iter()
                .map(|p| {
                    let mmap = p.ebpf.map(|e| e.mmap_anon_bytes + e.mmap_file_bytes);
                    let before = self.prev_procs.get(&p.pid).copied();
                    let (faults_per_s, mmap_bytes_per_s) = match before {
                        Some((bt, bf, bm)) if t > bt => (
                            Some(p.faults.saturating_sub(bf) as f64 / (t - bt)),
                            mmap.zip(bm).map(|(m, bm)| m.saturating_sub(bm) as f64 / (t - bt)),
                        ),
                        _ => (None, None),
                    };
                    ProcRow { pid: p.pid, comm: p.comm.to_string(), vsz: p.vsz_bytes, rss: p.rss_bytes, faults_per_s, mmap_bytes_per_s }
                })
                .collect();
            for p in &c.top_processes {
                self.prev_procs.insert(p.pid, (t, p.faults, p.ebpf.map(|e| e.mmap_anon_bytes + e.mmap_file_bytes)));
            }
            seen.insert(c.id, Prev { t, faults, mmap, pressure_us, oom_kills: c.oom_kills });
            rows.push(Row {
                id: c.id,
                name: display_name(c),
                container: c.clone(),
                headroom_pct: c.headroom_ratio * 100.0,
                faults_per_s,
                mmap_bytes_per_s,
                pressure_pct,
                history: hist.iter().copied().collect(),
                recent_oom,
                procs,
            });
        }
        self.history.retain(|id, _| seen.contains_key(id));
        self.oomed.retain(|id, _| seen.contains_key(id));
        let live: std::collections::HashSet<u32> = frame.containers.iter().flat_map(|c| c.top_processes.iter().map(|p| p.pid)).collect();
        self.prev_procs.retain(|pid, _| live.contains(pid));
        self.prev = seen;
        self.all = rows;
        self.events = frame.events;
        self.rebuild();
    }

    /// Applies a key's action; returns false when the program should end.
    pub fn apply(&mut self, a: Action, page: usize) -> bool {
        match a {
            Action::Quit => return false,
            Action::Help => self.help = !self.help,
            Action::Back if self.help => self.help = false,
            Action::Back if self.editing_filter => {
                self.editing_filter = false;
                self.filter.clear();
                self.rebuild();
            }
            Action::Back => match self.mode {
                Mode::Detail(_) => self.mode = Mode::Table,
                Mode::Table if !self.filter.is_empty() => {
                    self.filter.clear();
                    self.rebuild();
                }
                Mode::Table => {}
            },
            _ if self.help => {} // the help overlay takes only Back, Help and Quit
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => self.selected = (self.selected + 1).min(self.rows.len().saturating_sub(1)),
            Action::PageUp => self.selected = self.selected.saturating_sub(page.max(1)),
            Action::PageDown => self.selected = (self.selected + page.max(1)).min(self.rows.len().saturating_sub(1)),
            Action::First => self.selected = 0,
            Action::Last => self.selected = self.rows.len().saturating_sub(1),
            Action::Open => {
                if let Some(r) = self.rows.get(self.selected) {
                    self.mode = Mode::Detail(r.id);
                }
            }
            Action::SortNext | Action::SortPrev => {
                let i = COLUMNS.iter().position(|c| *c == self.sort).unwrap_or(0);
                let n = COLUMNS.len();
                self.sort = COLUMNS[if a == Action::SortNext { (i + 1) % n } else { (i + n - 1) % n }];
                // Names read best A to Z, headroom smallest first, everything else largest first.
                self.descending = !matches!(self.sort, Column::Name | Column::Headroom | Column::Trend);
                self.rebuild();
            }
            Action::Reverse => {
                self.descending = !self.descending;
                self.rebuild();
            }
            Action::FilterStart => self.editing_filter = true,
            Action::FilterChar(c) => {
                self.filter.push(c);
                self.rebuild();
            }
            Action::FilterBackspace => {
                self.filter.pop();
                self.rebuild();
            }
            Action::FilterDone => self.editing_filter = false,
            Action::Nothing => {}
        }
        true
    }

    /// The row of the container being looked at in the detail view.
    pub fn detail(&self) -> Option<&Row> {
        match self.mode {
            Mode::Detail(id) => self.all.iter().find(|r| r.id == id),
            Mode::Table => None,
        }
    }

    fn rebuild(&mut self) {
        let keep = self.rows.get(self.selected).map(|r| r.id);
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<Row> = self
            .all
            .iter()
            .filter(|r| needle.is_empty() || r.name.to_lowercase().contains(&needle) || r.container.cgroup.to_lowercase().contains(&needle))
            .cloned()
            .collect();
        let key = self.sort;
        rows.sort_by(|a, b| {
            let ord = match key {
                Column::Name => a.name.cmp(&b.name),
                Column::Procs => a.container.processes.cmp(&b.container.processes),
                Column::Vsz => a.container.vsz_bytes.cmp(&b.container.vsz_bytes),
                Column::Rss => a.container.rss_bytes.cmp(&b.container.rss_bytes),
                Column::WorkingSet => a.container.working_set_bytes.cmp(&b.container.working_set_bytes),
                Column::Limit => a.container.limit_bytes.cmp(&b.container.limit_bytes),
                Column::Headroom => a.headroom_pct.total_cmp(&b.headroom_pct),
                Column::Trend => a.container.time_to_oom_seconds.unwrap_or(f64::MAX).total_cmp(&b.container.time_to_oom_seconds.unwrap_or(f64::MAX)),
                Column::Faults => a.faults_per_s.unwrap_or(-1.0).total_cmp(&b.faults_per_s.unwrap_or(-1.0)),
                Column::Mmap => a.mmap_bytes_per_s.unwrap_or(-1.0).total_cmp(&b.mmap_bytes_per_s.unwrap_or(-1.0)),
                Column::Pressure => a.pressure_pct.unwrap_or(-1.0).total_cmp(&b.pressure_pct.unwrap_or(-1.0)),
                Column::Ooms => a.container.oom_kills.cmp(&b.container.oom_kills),
            };
            let ord = if self.descending { ord.reverse() } else { ord };
            ord.then_with(|| a.name.cmp(&b.name))
        });
        self.rows = rows;
        self.selected = keep.and_then(|id| self.rows.iter().position(|r| r.id == id)).unwrap_or(self.selected);
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
    }
}

/// `namespace/pod/container` for Kubernetes, else the cgroup path.
pub fn display_name(c: &Container) -> String {
    if c.pod.is_empty() {
        c.cgroup.to_string()
    } else {
        format!("{}/{}/{}", c.namespace, c.pod, if c.container.is_empty() { "(pause)" } else { &c.container })
    }
}
