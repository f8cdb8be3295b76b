//! How `top` shows its data: sort, filter, selection, mode, help and the status line. Changed
//! only by key actions; reads [`Data`] for the rows it orders and picks from.

use super::{
    data::{Data, Row},
    input::Action,
};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Table,
    /// Drilled into a container (by id).
    Detail(u64),
}

#[derive(Debug)]
pub struct ViewState {
    pub sort: Column,
    pub descending: bool,
    pub filter: String,
    pub editing_filter: bool,
    pub selected: usize,
    pub mode: Mode,
    pub help: bool,
    /// A passing message for the status line (e.g. the remote daemon is down).
    pub status: Option<String>,
    /// A standing one, shown when there is no passing message (e.g. why the eBPF columns are
    /// empty).
    pub note: Option<String>,
    /// Where the data comes from, for the header.
    pub source: String,
    /// Where the web view of the same data is (the daemon's API address), for the footer.
    pub web: Option<String>,
    /// Indices into [`Data::rows`] of the rows shown, in order.
    visible: Vec<usize>,
}

impl ViewState {
    pub fn new(source: impl Into<String>) -> ViewState {
        ViewState {
            sort: Column::Headroom,
            descending: false,
            filter: String::new(),
            editing_filter: false,
            selected: 0,
            mode: Mode::Table,
            help: false,
            status: None,
            note: None,
            source: source.into(),
            web: None,
            visible: vec![],
        }
    }

    /// The rows shown, filtered and sorted.
    pub fn rows<'a>(&'a self, data: &'a Data) -> impl Iterator<Item = &'a Row> + 'a {
        self.visible.iter().filter_map(|i| data.rows().get(*i))
    }

    pub fn len(&self) -> usize {
        self.visible.len()
    }

    pub fn is_empty(&self) -> bool {
        self.visible.is_empty()
    }

    /// The row of the container being looked at in the detail view.
    pub fn detail<'a>(&self, data: &'a Data) -> Option<&'a Row> {
        match self.mode {
            Mode::Detail(id) => data.row(id),
            Mode::Table => None,
        }
    }

    /// Applies a key's action; returns false when the program should end.
    pub fn apply(&mut self, a: Action, page: usize, data: &Data) -> bool {
        let last = self.visible.len().saturating_sub(1);
        match a {
            Action::Quit => return false,
            Action::Help => self.help = !self.help,
            Action::Back if self.help => self.help = false,
            Action::Back if self.editing_filter => {
                self.editing_filter = false;
                self.filter.clear();
            }
            Action::Back => match self.mode {
                Mode::Detail(_) => self.mode = Mode::Table,
                Mode::Table => self.filter.clear(),
            },
            _ if self.help => {} // the help overlay takes only Back, Help and Quit
            Action::Up => self.selected = self.selected.saturating_sub(1),
            Action::Down => self.selected = (self.selected + 1).min(last),
            Action::PageUp => self.selected = self.selected.saturating_sub(page.max(1)),
            Action::PageDown => self.selected = (self.selected + page.max(1)).min(last),
            Action::First => self.selected = 0,
            Action::Last => self.selected = last,
            Action::Open => {
                let id = self.rows(data).nth(self.selected).map(|r| r.id);
                if let Some(id) = id {
                    self.mode = Mode::Detail(id);
                }
            }
            Action::SortNext | Action::SortPrev => {
                let i = COLUMNS.iter().position(|c| *c == self.sort).unwrap_or(0);
                let n = COLUMNS.len();
                self.sort = COLUMNS[if a == Action::SortNext { (i + 1) % n } else { (i + n - 1) % n }];
                // Names read best A to Z, headroom smallest first, everything else largest first.
                self.descending = !matches!(self.sort, Column::Name | Column::Headroom | Column::Trend);
            }
            Action::Reverse => self.descending = !self.descending,
            Action::FilterStart => self.editing_filter = true,
            Action::FilterChar(c) => self.filter.push(c),
            Action::FilterBackspace => {
                self.filter.pop();
            }
            Action::FilterDone => self.editing_filter = false,
            Action::Nothing => {}
        }
        self.refresh(data);
        true
    }

    /// Orders and filters the rows again (after a new frame or a change of sort or filter),
    /// keeping the same container selected where it is still shown.
    pub fn refresh(&mut self, data: &Data) {
        let keep = self.visible.get(self.selected).and_then(|i| data.rows().get(*i)).map(|r| r.id);
        let needle = self.filter.to_lowercase();
        let rows = data.rows();
        let mut visible: Vec<usize> = (0..rows.len())
            .filter(|i| {
                needle.is_empty()
                    || rows[*i].name.to_lowercase().contains(&needle)
                    || rows[*i].container.cgroup.to_lowercase().contains(&needle)
            })
            .collect();
        let key = self.sort;
        visible.sort_by(|i, j| {
            let (a, b) = (&rows[*i], &rows[*j]);
            let ord = match key {
                Column::Name => a.name.cmp(&b.name),
                Column::Procs => a.container.processes.cmp(&b.container.processes),
                Column::Vsz => a.container.vsz_bytes.cmp(&b.container.vsz_bytes),
                Column::Rss => a.container.rss_bytes.cmp(&b.container.rss_bytes),
                Column::WorkingSet => a.container.working_set_bytes.cmp(&b.container.working_set_bytes),
                Column::Limit => a.container.limit_bytes.cmp(&b.container.limit_bytes),
                Column::Headroom => a.headroom_pct.total_cmp(&b.headroom_pct),
                Column::Trend => {
                    a.container.time_to_oom_seconds.unwrap_or(f64::MAX).total_cmp(&b.container.time_to_oom_seconds.unwrap_or(f64::MAX))
                }
                Column::Faults => a.faults_per_s.unwrap_or(-1.0).total_cmp(&b.faults_per_s.unwrap_or(-1.0)),
                Column::Mmap => a.mmap_bytes_per_s.unwrap_or(-1.0).total_cmp(&b.mmap_bytes_per_s.unwrap_or(-1.0)),
                Column::Pressure => a.pressure_pct.unwrap_or(-1.0).total_cmp(&b.pressure_pct.unwrap_or(-1.0)),
                Column::Ooms => a.container.oom_kills.cmp(&b.container.oom_kills),
            };
            let ord = if self.descending { ord.reverse() } else { ord };
            ord.then_with(|| a.name.cmp(&b.name))
        });
        self.visible = visible;
        self.selected = keep.and_then(|id| self.visible.iter().position(|i| rows[*i].id == id)).unwrap_or(self.selected);
        self.selected = self.selected.min(self.visible.len().saturating_sub(1));
    }
}
