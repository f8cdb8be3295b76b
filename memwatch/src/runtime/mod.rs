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

pub mod dotnet;
pub mod env;
pub mod go;
pub mod jvm;
pub mod layout;
pub mod malloc;
pub mod node;
pub mod python;

use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use serde::{Deserialize, Serialize};

use crate::{
    apps::{self, AppFacts, AppId},
    host::procs::{self, ExeId, Section},
    parse::smaps::Mapping,
    runtime::layout::Class,
};
pub use malloc::MallocFacts;

/// Which runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeId {
    Go,
    Jvm,
    Node,
    Dotnet,
    Python,
}

impl RuntimeId {
    /// Its name: the `runtime` label, and the facts' tag.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeId::Go => "go",
            RuntimeId::Jvm => "jvm",
            RuntimeId::Node => "node",
            RuntimeId::Dotnet => "dotnet",
            RuntimeId::Python => "python",
        }
    }
}

/// What a runtime publishes of one process: its settings and, where it has them, live
/// figures. Tagged by runtime (`"name": "jvm"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Facts {
    Go(go::Settings),
    Jvm(Box<jvm::JvmFacts>),
    Node(node::NodeFacts),
    Dotnet(dotnet::DotnetFacts),
    Python(python::PythonFacts),
}

impl Facts {
    pub fn runtime(&self) -> RuntimeId {
        match self {
            Facts::Go(_) => RuntimeId::Go,
            Facts::Jvm(_) => RuntimeId::Jvm,
            Facts::Node(_) => RuntimeId::Node,
            Facts::Dotnet(_) => RuntimeId::Dotnet,
            Facts::Python(_) => RuntimeId::Python,
        }
    }
}

/// One process's facts, as containers and OOM events carry them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessFacts {
    pub pid: u32,
    pub comm: String,
    /// Its runtime's facts, when memwatch knows its runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Facts>,
    /// glibc malloc's arenas, when they were read (near the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malloc: Option<MallocFacts>,
    /// The application it is (a data store: `crate::apps`) and the settings that size its
    /// memory, when memwatch knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppFacts>,
}

impl ProcessFacts {
    /// `comm (pid N)`.
    pub fn who(&self) -> String {
        format!("{} (pid {})", self.comm, self.pid)
    }
}

/// A runtime's heap as the series show it (None: not known for this runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heap {
    pub used: Option<u64>,
    pub committed: Option<u64>,
    pub max: Option<u64>,
    /// The limit the runtime enforces on its heap (GOMEMLIMIT, -Xmx, V8's, .NET's hard limit).
    pub limit: Option<u64>,
}

impl Heap {
    pub fn add(&mut self, o: &Heap) {
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        (self.used, self.committed, self.max, self.limit) =
            (sum(self.used, o.used), sum(self.committed, o.committed), sum(self.max, o.max), sum(self.limit, o.limit));
    }
}

/// An executable as a detector sees it: the open file, its path, and what is read of it on
/// demand (once).
pub struct Executable<'a> {
    file: &'a File,
    path: Option<PathBuf>,
    sections: OnceLock<Vec<Section>>,
}

impl<'a> Executable<'a> {
    pub fn new(file: &'a File, path: Option<PathBuf>) -> Self {
        Executable { file, path, sections: OnceLock::new() }
    }

    /// Its file name (`java`, `node`, `python3.11`).
    pub fn file_name(&self) -> Option<&str> {
        self.path.as_deref()?.file_name()?.to_str()
    }

    fn sections(&self) -> &[Section] {
        self.sections.get_or_init(|| procs::elf_sections(self.file).unwrap_or_default())
    }

    /// Its ELF section names (none when it is not a 64-bit little-endian ELF file).
    pub fn section_names(&self) -> Vec<String> {
        self.sections().iter().map(|s| s.name.clone()).collect()
    }

    /// The `len` bytes after the first `needle` in section `name`, read in bounded chunks.
    pub fn find(&self, name: &str, needle: &[u8], len: usize) -> Option<Vec<u8>> {
        let s = self.sections().iter().find(|s| s.name == name)?;
        procs::find_in(self.file, s.offset, s.size, needle, len)
    }
}

/// A live process whose runtime was recognised, for reading its facts.
pub struct Process<'a> {
    pub procfs: &'a Path,
    pub pid: u32,
    /// Its executable's file name.
    pub exe_name: Option<&'a str>,
    /// Its runtime's version, as read from the executable (where the runtime says how).
    pub version: Option<&'a str>,
}

impl Process<'_> {
    /// Its allowed environment variables (see [`env`]).
    pub fn env(&self) -> Option<env::Env> {
        env::read(self.procfs, self.pid)
    }

    /// Its command line, for the runtime's own options (parsed at once; only the flags a
    /// runtime needs are kept).
    pub fn cmdline(&self) -> Option<Vec<String>> {
        procs::cmdline(self.procfs, self.pid)
    }

    /// Its root directory as the host sees it (`/proc/<pid>/root`): the container's files.
    pub fn root(&self) -> PathBuf {
        procs::dir(self.procfs, self.pid).join("root")
    }

    /// A regular file inside its root, resolved as the process would (see
    /// [`procs::open_in_root`]): `rel` is relative to that root, e.g. `tmp/x`.
    pub fn open_in_root(&self, rel: &Path) -> std::io::Result<File> {
        procs::open_in_root(self.procfs, self.pid, rel)
    }

    /// Its effective uid and its pid in its own pid namespace.
    pub fn ids(&self) -> Option<(u32, u32)> {
        procs::ids(self.procfs, self.pid)
    }

    /// Its root directory, held open.
    pub fn root_dir(&self) -> std::io::Result<File> {
        procs::root(self.procfs, self.pid)
    }
}

/// What is kept of a process whose facts are not all there yet, to read what it leaves behind
/// if it dies first: its root directory (held open: the container's files stay reachable), its
/// effective uid and its pid in its own namespace.
#[derive(Debug)]
pub struct Kept {
    pub root: File,
    pub uid: u32,
    pub nspid: u32,
}

/// The contract every runtime implements.
pub trait Runtime: Sync {
    fn id(&self) -> RuntimeId;
    /// Recognises the runtime from outside the process, by its executable.
    fn detect(&self, exe: &Executable<'_>) -> bool;
    /// Recognises it by the libraries a process maps (an embedding launcher), once they are.
    fn detect_mapped(&self, _libraries: &[String]) -> bool {
        false
    }
    /// Its version, read from the executable (once per executable).
    fn version(&self, _exe: &Executable<'_>) -> Option<String> {
        None
    }
    /// Whether its facts include live figures, read again on the slow cadence.
    fn live(&self) -> bool {
        false
    }
    /// Whether these facts are all there will be; else they are read again soon (a JVM that
    /// has not yet created its performance-data file).
    fn settled(&self, _facts: &Facts) -> bool {
        true
    }
    /// Reads its settings (and live figures, where published) now; None when the process is
    /// gone or unreadable. Never attaches to, pauses or signals the process.
    fn read(&self, p: &Process<'_>) -> Option<Facts>;
    /// Reads its live figures again, keeping what does not change (its settings); by default
    /// reads everything.
    fn refresh(&self, p: &Process<'_>, _old: &Facts) -> Option<Facts> {
        self.read(p)
    }
    /// After the process died with its facts unsettled: what it left behind (a JVM's
    /// performance-data file), read through what was kept of it; None: nothing more.
    fn read_left_behind(&self, _old: &Facts, _kept: &Kept) -> Option<Facts> {
        None
    }
    /// The class of a mapping this runtime owns, for `memwatch explain`, tried before the
    /// shapes every program has (thread stacks, glibc arenas).
    fn classify(&self, facts: Option<&Facts>, m: &Mapping) -> Option<Class>;
    /// Renames or claims mappings after the shapes were told (runs of mappings, for example).
    fn refine(&self, _facts: Option<&Facts>, _maps: &[Mapping], _classes: &mut [Option<Class>]) {}
    /// The class of anonymous memory no shape explains, in this runtime's processes.
    fn unexplained_anonymous(&self) -> Option<Class> {
        None
    }
    /// One sentence for `memwatch explain`: the settings and figures that matter.
    fn describe(&self, facts: &Facts) -> String;
}

/// Every runtime memwatch knows, tried in this order.
pub static RUNTIMES: &[&dyn Runtime] = &[&go::GO, &jvm::JVM, &node::NODE, &dotnet::DOTNET, &python::PYTHON];

/// The runtime registered as `id`.
pub fn get(id: RuntimeId) -> &'static dyn Runtime {
    *RUNTIMES.iter().find(|r| r.id() == id).expect("every runtime id is registered")
}

/// The runtime of an executable, if memwatch knows it.
pub fn detect(exe: &Executable<'_>) -> Option<RuntimeId> {
    RUNTIMES.iter().find(|r| r.detect(exe)).map(|r| r.id())
}

/// The runtime of a process by the libraries it maps.
pub fn detect_mapped(procfs: &Path, pid: u32) -> Option<RuntimeId> {
    let libs = procs::mapped_libraries(procfs, pid)?;
    RUNTIMES.iter().find(|r| r.detect_mapped(&libs)).map(|r| r.id())
}

/// The heap figures of one process's facts, in a container limited to `limit` on a machine
/// with `machine` bytes.
pub fn heap(facts: &Facts, limit: Option<u64>, machine: u64) -> Heap {
    match facts {
        Facts::Go(s) => {
            Heap { limit: s.gomemlimit.as_deref().and_then(go::units::go_byte_count).filter(|b| *b != u64::MAX), ..Heap::default() }
        }
        Facts::Jvm(j) => Heap {
            used: j.heap.map(|s| s.used_bytes),
            committed: j.heap.map(|s| s.committed_bytes),
            max: j.heap.map(|s| s.max_bytes),
            limit: Some(j.max_heap(limit, machine).0),
        },
        Facts::Node(n) => Heap { limit: Some(n.heap_limit(limit, machine)), ..Heap::default() },
        Facts::Dotnet(d) => Heap { limit: d.hard_limit(limit).map(|(b, _)| b), ..Heap::default() },
        Facts::Python(_) => Heap::default(),
    }
}

/// What is known of an executable: its runtime and that runtime's version.
#[derive(Debug, Clone, Default)]
struct ExeInfo {
    runtime: Option<RuntimeId>,
    version: Option<String>,
    name: Option<String>,
    app: Option<AppId>,
}

fn exe_info(file: &File, path: Option<PathBuf>) -> ExeInfo {
    let exe = Executable::new(file, path);
    let runtime = detect(&exe);
    let app = exe.file_name().and_then(apps::detect);
    ExeInfo { version: runtime.and_then(|id| get(id).version(&exe)), name: exe.file_name().map(String::from), runtime, app }
}

/// `pid`'s runtime with its facts, and its application's settings, read now (for one-shot
/// use: `memwatch explain`); None when it is gone.
pub fn inspect(procfs: &Path, pid: u32) -> Option<Read> {
    Reader::new(procfs.to_path_buf()).read(pid, false)
}

/// Executables at most remembered with their runtime (or none).
const KNOWN_EXECUTABLES: usize = 4096;

/// Recognises processes' runtimes and reads their facts, remembering per executable what its
/// runtime is (reading an executable's sections once, not once per process).
pub struct Reader {
    procfs: PathBuf,
    exes: Mutex<HashMap<ExeId, ExeInfo>>,
}

/// What [`Reader::read`] found of a process.
#[derive(Debug, Clone)]
pub struct Read {
    pub exe: ExeId,
    pub runtime: Option<RuntimeId>,
    pub facts: Option<Facts>,
    /// Its application's settings, when it is one memwatch knows.
    pub app: Option<AppFacts>,
}

impl Reader {
    pub fn new(procfs: PathBuf) -> Self {
        Reader { procfs, exes: Mutex::default() }
    }

    pub fn procfs(&self) -> &Path {
        &self.procfs
    }

    fn exe_info(&self, pid: u32, file: &File, exe: ExeId) -> ExeInfo {
        let mut exes = self.exes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = exes.get(&exe) {
            return i.clone();
        }
        drop(exes);
        let info = exe_info(file, procs::exe_path(&self.procfs, pid));
        exes = self.exes.lock().unwrap_or_else(|e| e.into_inner());
        if exes.len() >= KNOWN_EXECUTABLES {
            exes.clear();
        }
        exes.insert(exe, info.clone());
        info
    }

    /// Reads the live figures of `pid`, whose runtime is known, again (no detection).
    pub fn refresh(&self, pid: u32, old: &Facts) -> Option<Facts> {
        let p = Process { procfs: &self.procfs, pid, exe_name: None, version: None };
        get(old.runtime()).refresh(&p, old)
    }

    /// Recognises `pid`'s runtime (by its executable; by its mapped libraries too unless it
    /// just started, `exec`, when they are not mapped yet) and reads its facts.
    pub fn read(&self, pid: u32, exec: bool) -> Option<Read> {
        let (file, exe) = procs::exe(&self.procfs, pid)?;
        let info = self.exe_info(pid, &file, exe);
        let runtime = info.runtime.or_else(|| if exec { None } else { detect_mapped(&self.procfs, pid) });
        let p = Process { procfs: &self.procfs, pid, exe_name: info.name.as_deref(), version: info.version.as_deref() };
        let app = info.app.and_then(|id| apps::read(&self.procfs, pid, id));
        Some(Read { exe, runtime, facts: runtime.and_then(|id| get(id).read(&p)), app })
    }
}

/// Processes at most remembered by a [`Watcher`], oldest forgotten first.
const WATCHED_PROCESSES: usize = 16384;
/// Processes at most whose root directory is held open (one descriptor each) because their
/// facts were not all there when they started.
const KEPT_PROCESSES: usize = 256;

/// Reads programs' runtime facts when they start (the exec hook), before any sample may see
/// them, and keeps them (bounded) for their OOM event: a victim's `/proc` entry is gone by the
/// time its event is built. Of a program whose facts are not all there yet (a JVM that has not
/// written its performance-data file), it keeps what lets it read what the program leaves
/// behind if it is killed first.
pub struct Watcher {
    reader: Reader,
    watched: Mutex<(HashMap<u32, Read>, VecDeque<u32>)>,
    kept: Mutex<(HashMap<u32, Kept>, VecDeque<u32>)>,
}

impl Watcher {
    pub fn new(procfs: PathBuf) -> Self {
        Watcher { reader: Reader::new(procfs), watched: Mutex::default(), kept: Mutex::default() }
    }

    /// A program just started: read what its kill would need.
    pub fn exec(&self, pid: u32) {
        let Some(read) = self.reader.read(pid, true) else { return };
        if read.facts.as_ref().is_some_and(|f| !get(f.runtime()).settled(f))
            && let (Ok(root), Some((uid, nspid))) = (procs::root(self.reader.procfs(), pid), procs::ids(self.reader.procfs(), pid))
        {
            let mut k = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            let (by, order) = &mut *k;
            if by.insert(pid, Kept { root, uid, nspid }).is_none() {
                order.push_back(pid);
            }
            while order.len() > KEPT_PROCESSES {
                if let Some(old) = order.pop_front() {
                    by.remove(&old);
                }
            }
        }
        let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let (pids, order) = &mut *w;
        if pids.insert(pid, read).is_none() {
            order.push_back(pid);
        }
        while order.len() > WATCHED_PROCESSES {
            if let Some(old) = order.pop_front() {
                pids.remove(&old);
            }
        }
    }

    /// What was read of `pid` when it started (the exec hook), if that was this executable:
    /// the samplers' reading of a program that rewrites its command line once it runs (Redis's
    /// title), which only the exec-time read saw whole.
    pub fn started(&self, pid: u32, exe: ExeId) -> Option<Read> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner()).0.get(&pid).filter(|r| r.exe == exe).cloned()
    }

    /// `pid`'s application settings for an event: as read when it started, else read now.
    pub fn app(&self, pid: u32) -> Option<AppFacts> {
        let known = self.watched.lock().unwrap_or_else(|e| e.into_inner()).0.get(&pid).and_then(|r| r.app.clone());
        known.or_else(|| self.reader.read(pid, false).and_then(|r| r.app))
    }

    /// `pid`'s facts for an event: read now while it lives (fresh live figures), else what was
    /// read when it started, completed by what it left behind where that was all there was.
    pub fn facts(&self, pid: u32) -> Option<Facts> {
        let known = self.watched.lock().unwrap_or_else(|e| e.into_inner()).0.get(&pid).cloned();
        match (known, procs::exe(self.reader.procfs(), pid)) {
            (Some(r), None) => {
                let facts = r.facts?;
                let rt = get(facts.runtime());
                if rt.settled(&facts) {
                    return Some(facts);
                }
                let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
                Some(kept.0.get(&pid).and_then(|k| rt.read_left_behind(&facts, k)).unwrap_or(facts))
            }
            (Some(r), Some((_, id))) if r.exe != id => self.reader.read(pid, false).and_then(|r| r.facts),
            (_, Some(_)) => self.reader.read(pid, false).and_then(|r| r.facts),
            (None, None) => None,
        }
    }
}
