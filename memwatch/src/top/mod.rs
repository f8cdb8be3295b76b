//! `memwatch top`: a live terminal view of containers' memory. Split as tokio-console is:
//! [`data`] changes only with frames (rows, rates, history), [`state`] only with key actions
//! (sort, filter, selection, mode, help, the status line), [`input`] maps keys to actions with
//! pure functions, [`view`] draws one screen per file, [`plain`] prints for scripts.
pub mod data;
pub mod input;
pub mod plain;
pub mod state;
pub mod view;

use std::{collections::HashMap, sync::Arc};

use crate::stacks::profile::StackUse;

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
    /// Each container's top fault stacks of the last minute (by cgroup id), where sampled.
    pub stacks: HashMap<u64, Vec<StackUse>>,
}

/// How many stacks the detail view lists, over how long.
pub const TOP_STACKS: usize = 3;
pub const TOP_STACKS_SECONDS: f64 = 60.0;

impl Frame {
    pub fn new(s: &Snapshot, oom: &OomView) -> Frame {
        Frame {
            taken_at: crate::unix_seconds(s.taken_at),
            containers: s.containers.clone(),
            events: oom.events.clone(),
            stacks: HashMap::new(),
        }
    }

    /// With the published fault stacks.
    pub fn with_stacks(mut self, store: &crate::stacks::Store, names: &crate::stacks::symbolize::Names) -> Frame {
        self.stacks = crate::stacks::top_per_container(store, names, self.taken_at - TOP_STACKS_SECONDS, TOP_STACKS);
        self
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

pub use crate::units::{human, human_secs};
