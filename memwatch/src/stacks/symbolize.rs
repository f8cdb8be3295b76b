//! Naming frames, on a thread of its own so that the first symbolization of a large binary
//! (tens of ms) never delays a sample: the sample step asks, the worker answers into a shared
//! table, readers use what is there (a frame not named yet reads as `object+0xoffset`).
//! blazesym reads the ELF symbol tables; where a Go binary was stripped (`-s -w`), its
//! `.gopclntab` names the functions ([`super::gopclntab`]); JIT-compiled code is named by the
//! process's perf map ([`crate::parse::perfmap`]), read again as it grows. Results are kept per
//! object, bounded.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::{fd::AsRawFd, unix::fs::FileExt},
    sync::{Arc, Condvar, Mutex, RwLock, mpsc},
    thread,
};

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer as Blaze,
    source::{Elf, Source},
};

use super::{
    Frame, ObjectId,
    gopclntab::GoTable,
    resolve::{ObjectKind, Objects},
};
use crate::{
    host::procs,
    parse::{elf, perfmap::PerfMap},
};

/// Names kept at most; past it the table starts over.
const MAX_NAMES: usize = 262_144;
/// The largest `.gopclntab` read (a very large Go binary's is tens of MiB).
const MAX_PCLNTAB: u64 = 128 << 20;
/// The most of a perf map read (a long-running JVM's or Node's holds tens of thousands of
/// lines, a few MiB).
const MAX_PERF_MAP: u64 = 16 << 20;
/// Perf maps kept parsed at most (past it they start over, read again when asked).
const MAX_JIT_MAPS: usize = 8;

/// What frames are called, shared by the worker (writer) and every reader.
#[derive(Debug, Default)]
pub struct Names {
    inner: RwLock<Inner>,
    /// Requests sent to the worker, and answered: what [`Names::settle`] waits on.
    progress: Mutex<(u64, u64)>,
    answered: Condvar,
}

#[derive(Debug, Default)]
struct Inner {
    frames: HashMap<(ObjectId, u64), Arc<str>>,
    objects: HashMap<ObjectId, Arc<str>>,
}

impl Names {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The function of a frame, if named yet.
    pub fn function(&self, f: &Frame) -> Option<Arc<str>> {
        self.read().frames.get(&(f.object, f.offset)).cloned()
    }

    /// A frame for people: its function, else `object+0xoffset`.
    pub fn frame(&self, f: &Frame) -> String {
        let inner = self.read();
        if let Some(n) = inner.frames.get(&(f.object, f.offset)) {
            return n.to_string();
        }
        match inner.objects.get(&f.object) {
            Some(o) => format!("{o}+{:#x}", f.offset),
            None => format!("{:#x}", f.offset),
        }
    }

    /// The object's file name.
    pub fn object(&self, id: ObjectId) -> Option<Arc<str>> {
        self.read().objects.get(&id).cloned()
    }

    /// Waits, at most `timeout`, until the worker has answered every request sent so far: an
    /// OOM event names the frames first seen in the seconds before its kill (a kill is rare; a
    /// sample never waits). False when it timed out.
    pub fn settle(&self, timeout: std::time::Duration) -> bool {
        let p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let want = p.0;
        let (p, r) = self.answered.wait_timeout_while(p, timeout, |p| p.1 < want).unwrap_or_else(|e| e.into_inner());
        drop(p);
        !r.timed_out()
    }

    fn sent(&self) {
        self.progress.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
    }

    fn answered(&self) {
        self.progress.lock().unwrap_or_else(|e| e.into_inner()).1 += 1;
        self.answered.notify_all();
    }

    /// How many frames are named.
    pub fn len(&self) -> usize {
        self.read().frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Request {
    object: ObjectId,
    kind: ObjectKind,
    file: Arc<File>,
    offsets: Vec<u64>,
}

/// The sample step's side: asks for frames not named yet.
pub struct Symbolizer {
    tx: mpsc::Sender<Request>,
    names: Arc<Names>,
    asked: HashSet<(ObjectId, u64)>,
}

impl Symbolizer {
    /// Starts the worker thread.
    pub fn spawn() -> Symbolizer {
        let (tx, rx) = mpsc::channel::<Request>();
        let names = Arc::new(Names::default());
        let shared = names.clone();
        thread::Builder::new().name("symbolizer".into()).spawn(move || work(rx, &shared)).expect("spawn the symbolizer thread");
        Symbolizer { tx, names, asked: HashSet::new() }
    }

    pub fn names(&self) -> Arc<Names> {
        self.names.clone()
    }

    /// Asks for the frames not yet named or asked for, batched per object.
    pub fn request<'a>(&mut self, objects: &Objects, frames: impl IntoIterator<Item = &'a Frame>) {
        let mut by_object: HashMap<ObjectId, Vec<u64>> = HashMap::new();
        for f in frames {
            if f.object == ObjectId::UNKNOWN || !self.asked.insert((f.object, f.offset)) {
                continue;
            }
            by_object.entry(f.object).or_default().push(f.offset);
        }
        if self.asked.len() > MAX_NAMES {
            self.asked.clear();
        }
        for (object, offsets) in by_object {
            let Some(o) = objects.get(object) else { continue };
            {
                let mut inner = self.names.inner.write().unwrap_or_else(|e| e.into_inner());
                inner.objects.entry(object).or_insert_with(|| o.name.clone());
            }
            if let Some(file) = &o.file {
                self.names.sent();
                if self.tx.send(Request { object, kind: o.kind, file: file.clone(), offsets }).is_err() {
                    self.names.answered();
                }
            }
        }
    }
}

/// A Go binary's table, and how its file offsets map to addresses.
struct GoObject {
    table: GoTable,
    loads: Vec<elf::Load>,
}

fn go_object(file: &File) -> Option<GoObject> {
    let sections = procs::elf_sections(file)?;
    let s = sections.iter().find(|s| s.name == ".gopclntab").filter(|s| s.size <= MAX_PCLNTAB)?;
    let mut data = vec![0u8; s.size as usize];
    file.read_exact_at(&mut data, s.offset).ok()?;
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0).ok()?;
    let (phoff, entsize, count) = elf::program_table(&header)?;
    let mut table = vec![0u8; entsize as usize * count as usize];
    file.read_exact_at(&mut table, phoff).ok()?;
    Some(GoObject { table: GoTable::parse(data).ok()?, loads: elf::loads(&table, entsize, count) })
}

impl GoObject {
    fn name(&self, offset: u64) -> Option<&str> {
        let l = self.loads.iter().find(|l| l.offset <= offset && offset < l.offset + l.filesz)?;
        self.table.name(offset - l.offset + l.vaddr)
    }
}

/// A perf map as read so far: the lines up to `read` bytes in.
#[derive(Default)]
struct JitMap {
    map: PerfMap,
    read: u64,
}

impl JitMap {
    /// Reads what was appended since the last read (bounded), then names the addresses.
    fn names(&mut self, file: &File, addrs: &[u64]) -> Vec<Option<String>> {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0).min(MAX_PERF_MAP);
        if len < self.read {
            // Truncated and rewritten: start over.
            *self = JitMap::default();
        }
        if len > self.read {
            let mut buf = vec![0u8; (len - self.read) as usize];
            if let Ok(n) = file.read_at(&mut buf, self.read) {
                self.read += self.map.extend(&buf[..n]) as u64;
            }
        }
        addrs.iter().map(|a| self.map.name(*a).map(crate::parse::perfmap::display)).collect()
    }
}

fn work(rx: mpsc::Receiver<Request>, names: &Names) {
    let blaze = Blaze::new();
    let mut go: HashMap<ObjectId, Option<GoObject>> = HashMap::new();
    let mut jit: HashMap<ObjectId, JitMap> = HashMap::new();
    while let Ok(req) = rx.recv() {
        if req.kind == ObjectKind::PerfMap {
            if jit.len() >= MAX_JIT_MAPS && !jit.contains_key(&req.object) {
                jit.clear();
            }
            let named = jit.entry(req.object).or_default().names(&req.file, &req.offsets);
            store(names, &req, named);
            continue;
        }
        // blazesym opens by path: the object's own descriptor, held open by the resolver.
        let path = format!("/proc/self/fd/{}", req.file.as_raw_fd());
        let src = Source::Elf(Elf::new(path));
        let named: Vec<Option<String>> = match blaze.symbolize(&src, Input::FileOffset(&req.offsets)) {
            Ok(syms) => syms
                .into_iter()
                .map(|s| match s {
                    Symbolized::Sym(sym) => Some(sym.name.into_owned()),
                    Symbolized::Unknown(_) => None,
                })
                .collect(),
            Err(_) => vec![None; req.offsets.len()],
        };
        let g =
            if named.iter().any(Option::is_none) { go.entry(req.object).or_insert_with(|| go_object(&req.file)).as_ref() } else { None };
        let named = req.offsets.iter().zip(named).map(|(off, n)| n.or_else(|| g.and_then(|g| g.name(*off)).map(String::from))).collect();
        store(names, &req, named);
    }
}

/// Puts a request's answers into the shared table.
fn store(names: &Names, req: &Request, named: Vec<Option<String>>) {
    let mut inner = names.inner.write().unwrap_or_else(|e| e.into_inner());
    if inner.frames.len() + req.offsets.len() > MAX_NAMES {
        inner.frames.clear();
    }
    for (off, n) in req.offsets.iter().zip(named) {
        if let Some(n) = n {
            inner.frames.insert((req.object, *off), Arc::from(n));
        }
    }
    drop(inner);
    names.answered();
}
