//! `memwatch top`: a live terminal view of containers' memory. Split as tokio-console is:
//! [`data`] changes only with frames (rows, rates, history), [`state`] only with key actions
//! (sort, filter, selection, mode, help, the status line), [`input`] maps keys to actions with
//! pure functions, [`view`] draws one screen per file, [`plain`] prints for scripts.
pub mod data;
pub mod input;
pub mod plain;
pub mod state;
pub mod view;

use std::sync::Arc;

use crate::{
    oom::{Event, OomView},
    snapshot::{Container, Snapshot},
};

/// What one refresh brings, from the in-process sampler or a remote daemon.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// Unix seconds.
    pub taken_at: f64,
    pub containers: Arc<Vec<Container>>,
    pub events: Vec<Event>,
}

impl Frame {
    pub fn new(s: &Snapshot, oom: &OomView) -> Frame {
        Frame { taken_at: crate::unix_seconds(s.taken_at), containers: s.containers.clone(), events: oom.events.clone() }
    }
}

/// The data and how it is shown, together: what the views draw.
#[derive(Debug)]
pub struct App {
    pub data: data::Data,
    pub view: state::ViewState,
}

impl App {
    pub fn new(source: impl Into<String>) -> App {
        App { data: data::Data::new(), view: state::ViewState::new(source) }
    }

    /// Takes a new frame and orders the rows again.
    pub fn update(&mut self, frame: Frame) {
        if self.data.update(frame) {
            self.view.refresh(&self.data);
        }
    }

    /// Applies a key's action; returns false when the program should end.
    pub fn apply(&mut self, a: input::Action, page: usize) -> bool {
        self.view.apply(a, page, &self.data)
    }

    /// The rows shown, in order.
    pub fn rows(&self) -> impl Iterator<Item = &data::Row> {
        self.view.rows(&self.data)
    }
}

/// Bytes in binary units: `512 B`, `4.0 KiB`, `1.5 GiB`.
pub fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{v:.0} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// A duration for people: `45s`, `3m20s`, `2h05m`.
pub fn human_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(human(512.0), "512 B");
        assert_eq!(human(4096.0), "4.0 KiB");
        assert_eq!(human(64.0 * 1048576.0), "64.0 MiB");
        assert_eq!(human(1.5 * 1073741824.0), "1.5 GiB");
        assert_eq!(human_secs(45.2), "45s");
        assert_eq!(human_secs(200.0), "3m20s");
        assert_eq!(human_secs(7500.0), "2h05m");
    }
}
