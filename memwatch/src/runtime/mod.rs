//! Language runtimes, recognised from outside the process, behind one small contract
//! ([`Runtime`]): detect the runtime from the executable, read its memory settings (and its
//! live heap figures where it publishes them) while the process lives, advise on an OOM kill
//! in plain words with a number, and name its mappings for `memwatch explain`. Nothing here
//! attaches to, pauses or signals a process.
//!
//! One folder per runtime ([`go`]); [`RUNTIMES`] registers them; [`env`] owns the only
//! environment variables ever read. [`Watcher`] reads a program's facts when it starts (the
//! exec hook) or is first sampled, and keeps them for when it is killed: a victim's `/proc`
//! entry is gone by the time its event is built.

pub mod env;
pub mod go;

use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use serde::{Deserialize, Serialize};

use crate::{
    explain::layout::Class,
    host::procs::{self, ExeId},
    oom::event::{Event, Reason},
    parse::smaps::Mapping,
};

/// Which runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeId {
    Go,
}

/// What a runtime publishes of one process: its settings and, where it has them, live
/// figures. Tagged by runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "runtime", rename_all = "snake_case")]
pub enum Facts {
    Go(go::Settings),
}

impl Facts {
    pub fn runtime(&self) -> RuntimeId {
        match self {
            Facts::Go(_) => RuntimeId::Go,
        }
    }
}

/// An executable as a detector sees it: the open file, and what is read of it on demand
/// (once).
pub struct Executable<'a> {
    file: &'a File,
    sections: OnceLock<Vec<String>>,
}

impl<'a> Executable<'a> {
    pub fn new(file: &'a File) -> Self {
        Executable { file, sections: OnceLock::new() }
    }

    /// Its ELF section names (none when it is not a 64-bit little-endian ELF file).
    pub fn section_names(&self) -> &[String] {
        self.sections.get_or_init(|| procs::elf_section_names(self.file).unwrap_or_default())
    }
}

/// A live process whose runtime was recognised, for reading its facts.
pub struct Process<'a> {
    pub procfs: &'a Path,
    pub pid: u32,
}

impl Process<'_> {
    /// Its allowed environment variables (see [`env`]).
    pub fn env(&self) -> Option<env::Env> {
        env::read(self.procfs, self.pid)
    }
}

/// The contract every runtime implements.
pub trait Runtime: Sync {
    fn id(&self) -> RuntimeId;
    /// Recognises the runtime from outside the process.
    fn detect(&self, exe: &Executable<'_>) -> bool;
    /// Reads its settings (and live figures, where published) now; None when the process is
    /// gone or unreadable.
    fn read(&self, p: &Process<'_>) -> Option<Facts>;
    /// What this runtime's processes in an event say about the kill, in plain words with the
    /// number to set (pure: from the event's facts alone). `limit` is the limit that was hit.
    fn advise(&self, e: &Event, limit: Option<u64>) -> Vec<Reason>;
    /// The class of a mapping this runtime owns, for `memwatch explain`, tried before the
    /// shapes every program has (thread stacks, glibc arenas).
    fn classify(&self, facts: Option<&Facts>, m: &Mapping) -> Option<Class>;
    /// The class of anonymous memory no shape explains, in this runtime's processes.
    fn unexplained_anonymous(&self) -> Option<Class> {
        None
    }
    /// One sentence for `memwatch explain`: the settings that matter.
    fn describe(&self, facts: &Facts) -> String;
}

/// Every runtime memwatch knows, tried in this order.
pub static RUNTIMES: &[&dyn Runtime] = &[&go::GO];

/// The runtime registered as `id`.
pub fn get(id: RuntimeId) -> &'static dyn Runtime {
    *RUNTIMES.iter().find(|r| r.id() == id).expect("every runtime id is registered")
}

/// The runtime of an executable, if memwatch knows it.
pub fn detect(exe: &Executable<'_>) -> Option<RuntimeId> {
    RUNTIMES.iter().find(|r| r.detect(exe)).map(|r| r.id())
}

/// `pid`'s runtime and its facts now (for one-shot use: `memwatch explain`).
pub fn inspect(procfs: &Path, pid: u32) -> Option<(RuntimeId, Option<Facts>)> {
    let (file, _) = procs::exe(procfs, pid)?;
    let id = detect(&Executable::new(&file))?;
    Some((id, get(id).read(&Process { procfs, pid })))
}

/// Processes at most remembered by a [`Watcher`], oldest forgotten first.
const WATCHED_PROCESSES: usize = 16384;
/// Executables at most remembered with their runtime (or none).
const WATCHED_EXECUTABLES: usize = 4096;

/// What was read of watched processes: per pid, its executable and its facts (None: no known
/// runtime, or unreadable); per executable, its runtime.
#[derive(Default)]
struct Watched {
    pids: HashMap<u32, (ExeId, Option<Facts>)>,
    order: VecDeque<u32>,
    exes: HashMap<ExeId, Option<RuntimeId>>,
}

/// Reads programs' runtime facts while they live and keeps them (bounded) for later.
pub struct Watcher {
    procfs: PathBuf,
    watched: Mutex<Watched>,
}

impl Watcher {
    pub fn new(procfs: PathBuf) -> Self {
        Watcher { procfs, watched: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads now what a kill of `pid` would need later: for programs just started (`exec`:
    /// read again even if known), which may be killed before any sample sees them, and for
    /// processes a sample sees (read once).
    pub fn watch(&self, pid: u32, exec: bool) {
        if !exec && self.lock().pids.contains_key(&pid) {
            return;
        }
        let Some((file, exe)) = procs::exe(&self.procfs, pid) else { return };
        let known = self.lock().exes.get(&exe).copied();
        let runtime = known.unwrap_or_else(|| detect(&Executable::new(&file)));
        let facts = runtime.and_then(|id| get(id).read(&Process { procfs: &self.procfs, pid }));
        let mut w = self.lock();
        if known.is_none() {
            if w.exes.len() >= WATCHED_EXECUTABLES {
                w.exes.clear();
            }
            w.exes.insert(exe, runtime);
        }
        if w.pids.insert(pid, (exe, facts)).is_none() {
            w.order.push_back(pid);
        }
        while w.order.len() > WATCHED_PROCESSES {
            if let Some(old) = w.order.pop_front() {
                w.pids.remove(&old);
            }
        }
    }

    /// `pid`'s facts: as watched while it still runs the same program (or is gone, and this is
    /// the last word on it), else read now.
    pub fn facts(&self, pid: u32) -> Option<Facts> {
        if let Some((exe, facts)) = self.lock().pids.get(&pid).cloned() {
            match procs::exe(&self.procfs, pid) {
                Some((_, id)) if id != exe => {}
                _ => return facts,
            }
        }
        inspect(&self.procfs, pid).and_then(|(_, f)| f)
    }
}
