//! From a sampled stack's user addresses to frames that outlive the process: (the object the
//! address is in, the offset in its file), read from `/proc/<pid>/maps` while the process lives.
//! Each object (executable or library) is opened once, through the process's root (its own
//! container's files), and kept open, so it can be named after the process is gone.

use std::{
    collections::HashMap,
    fs::File,
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::probes::stacks::Sampled;
use crate::{
    host::procs,
    parse::maps::{self, MapEntry},
};

/// An object (a mapped file) by its index in the [`Objects`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId(pub u32);

impl ObjectId {
    /// Memory no file backs (JIT code, anonymous mappings): the offset is the address.
    pub const UNKNOWN: ObjectId = ObjectId(u32::MAX);
}

/// One frame: where its instruction is, and whether it is in the process's own executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    pub object: ObjectId,
    pub offset: u64,
    /// In the process's main executable (the program's own code, not a library's), or code a
    /// JIT compiled for the program.
    pub main: bool,
    /// JIT-compiled code named by the process's perf map (the offset is the address).
    pub jit: bool,
}

/// A mapped file, or a JIT's perf map, open.
#[derive(Debug)]
pub struct Object {
    /// (device, inode) as the host sees them.
    pub key: (u64, u64),
    /// Its file name, for people.
    pub name: Arc<str>,
    pub file: Option<Arc<File>>,
    pub kind: ObjectKind,
}

/// How an object's addresses are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// An ELF file: frames are file offsets.
    Elf,
    /// A JIT's `/tmp/perf-<pid>.map` (see [`crate::parse::perfmap`]): frames are addresses.
    PerfMap,
}

/// Objects at most kept open; beyond it new ones are not named.
const MAX_OBJECTS: usize = 4096;
/// Processes whose maps are remembered at most.
const MAX_PIDS: usize = 8192;

/// Every object seen, by id.
#[derive(Debug, Default)]
pub struct Objects {
    by_key: HashMap<(u64, u64), ObjectId>,
    pub list: Vec<Object>,
}

impl Objects {
    pub fn get(&self, id: ObjectId) -> Option<&Object> {
        self.list.get(id.0 as usize)
    }
}

/// What is remembered of a process: its mappings as last read, and its executable's (device,
/// inode).
struct Process {
    maps: Vec<MapEntry>,
    exe: Option<(u64, u64)>,
    comm: Arc<str>,
    /// Its JIT's perf map, looked for at the first frame in anonymous memory (None inside:
    /// looked for and absent; looked for again when the maps are read again).
    perf_map: Option<Option<ObjectId>>,
}

/// Resolves sampled stacks, on the sampling thread (reads `/proc` while processes live).
pub struct Resolver {
    procfs: PathBuf,
    pids: HashMap<u32, Process>,
    pub objects: Objects,
    /// Per (object, offset) of a caller word: whether the instruction before it is a call.
    confirmed: HashMap<(ObjectId, u64), bool>,
}

impl Resolver {
    pub fn new(procfs: PathBuf) -> Self {
        Resolver { procfs, pids: HashMap::new(), objects: Objects::default(), confirmed: HashMap::new() }
    }

    pub fn procfs(&self) -> &Path {
        &self.procfs
    }

    fn read_process(&self, pid: u32) -> Option<Process> {
        let text = std::fs::read_to_string(procs::dir(&self.procfs, pid).join("maps")).ok()?;
        let exe = procs::exe(&self.procfs, pid).map(|(_, id)| id);
        let comm = procs::stat(&self.procfs, pid).map(|s| s.comm).unwrap_or_else(|| Arc::from(""));
        Some(Process { maps: maps::maps(&text), exe, comm, perf_map: None })
    }

    /// The mapping of `addr` in `pid`, reading the maps again once if they do not cover it.
    fn mapping(&mut self, pid: u32, addr: u64, reread: &mut bool) -> Option<(MapEntry, Option<(u64, u64)>)> {
        if !self.pids.contains_key(&pid) || (*reread && !self.pids[&pid].maps.iter().any(|m| m.contains(addr))) {
            *reread = false;
            let p = self.read_process(pid)?;
            if self.pids.len() >= MAX_PIDS {
                self.pids.clear();
            }
            self.pids.insert(pid, p);
        }
        let p = self.pids.get(&pid)?;
        p.maps.iter().find(|m| m.contains(addr)).cloned().map(|m| (m, p.exe))
    }

    /// The object of a file mapping, opened through the process's root on first sight.
    fn object(&mut self, pid: u32, m: &MapEntry) -> ObjectId {
        if m.inode == 0 || !m.path.starts_with('/') {
            return ObjectId::UNKNOWN;
        }
        let key = (libc::makedev(m.dev.0, m.dev.1), m.inode);
        if let Some(id) = self.objects.by_key.get(&key) {
            return *id;
        }
        if self.objects.list.len() >= MAX_OBJECTS {
            return ObjectId::UNKNOWN;
        }
        let path = procs::dir(&self.procfs, pid).join("root").join(m.path.trim_start_matches('/'));
        // The same file as mapped, or nothing (replaced since, or another mount namespace's).
        let file = File::open(&path).ok().filter(|f| f.metadata().is_ok_and(|md| (md.dev(), md.ino()) == key));
        let id = ObjectId(self.objects.list.len() as u32);
        let name = Path::new(&m.path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.objects.list.push(Object { key, name: Arc::from(name), file: file.map(Arc::new), kind: ObjectKind::Elf });
        self.objects.by_key.insert(key, id);
        id
    }

    /// The perf map of `pid`'s JIT, `/tmp/perf-<pid in its namespace>.map` inside its root,
    /// opened there (never following a link out of it), once per process.
    fn perf_map(&mut self, pid: u32) -> Option<ObjectId> {
        if let Some(known) = self.pids.get(&pid).and_then(|p| p.perf_map) {
            return known;
        }
        let found = (|| {
            let (_, nspid) = procs::ids(&self.procfs, pid)?;
            let name = format!("perf-{nspid}.map");
            let file = procs::open_in_root(&self.procfs, pid, &Path::new("tmp").join(&name)).ok()?;
            let md = file.metadata().ok()?;
            let key = (md.dev(), md.ino());
            if let Some(id) = self.objects.by_key.get(&key) {
                return Some(*id);
            }
            if self.objects.list.len() >= MAX_OBJECTS {
                return None;
            }
            let id = ObjectId(self.objects.list.len() as u32);
            self.objects.list.push(Object { key, name: Arc::from(name), file: Some(Arc::new(file)), kind: ObjectKind::PerfMap });
            self.objects.by_key.insert(key, id);
            Some(id)
        })();
        if let Some(p) = self.pids.get_mut(&pid) {
            p.perf_map = Some(found);
        }
        found
    }

    fn frame(&mut self, pid: u32, addr: u64, reread: &mut bool) -> Frame {
        let unknown = Frame { object: ObjectId::UNKNOWN, offset: addr, main: false, jit: false };
        let Some((m, exe)) = self.mapping(pid, addr, reread) else { return unknown };
        let object = self.object(pid, &m);
        if object == ObjectId::UNKNOWN {
            // Anonymous executable memory: a JIT's code, named by its perf map if it keeps one.
            return match self.perf_map(pid) {
                Some(object) if m.inode == 0 => Frame { object, offset: addr, main: true, jit: true },
                _ => unknown,
            };
        }
        // The program's own code is in its executable, unless a JIT compiles it: then the
        // executable is the runtime (V8 in `node`), and the program's code is the JIT's.
        let main = exe.is_some_and(|e| self.objects.get(object).is_some_and(|o| o.key == e)) && self.perf_map(pid).is_none();
        Frame { object, offset: addr - m.start + m.offset, main, jit: false }
    }

    /// The frames of a sampled stack, leaf first, with the recovered caller put back where the
    /// instruction before it is a call; and the process's name.
    pub fn resolve(&mut self, s: &Sampled) -> (Vec<Frame>, Arc<str>) {
        let mut reread = true;
        let mut frames: Vec<Frame> = s.stack.iter().map(|a| self.frame(s.tgid, *a, &mut reread)).collect();
        if s.caller != 0 && !frames.is_empty() {
            let c = self.frame(s.tgid, s.caller, &mut reread);
            let next = frames.get(1).copied();
            if c.object != ObjectId::UNKNOWN
                && !c.jit
                && next.is_none_or(|n| (n.object, n.offset) != (c.object, c.offset))
                && self.is_return_address(c)
            {
                frames.insert(1, c);
            }
        }
        // Past the leaf, each address is a return address: the call is the instruction before
        // it (a call that never returns can be a function's last instruction).
        for f in frames.iter_mut().skip(1) {
            f.offset = f.offset.saturating_sub(1);
        }
        let comm = self.pids.get(&s.tgid).map(|p| p.comm.clone()).unwrap_or_else(|| Arc::from(""));
        (frames, comm)
    }

    /// Whether the instruction before `f` (a return address) is a call.
    fn is_return_address(&mut self, f: Frame) -> bool {
        if let Some(c) = self.confirmed.get(&(f.object, f.offset)) {
            return *c;
        }
        let mut before = [0u8; 8];
        let ok = f.offset >= 8
            && self
                .objects
                .get(f.object)
                .and_then(|o| o.file.as_ref())
                .is_some_and(|file| file.read_exact_at(&mut before, f.offset - 8).is_ok())
            && follows_call(&before);
        if self.confirmed.len() > 65_536 {
            self.confirmed.clear();
        }
        self.confirmed.insert((f.object, f.offset), ok);
        ok
    }

    /// Forgets processes that are gone (their maps).
    pub fn retain(&mut self, live: impl Fn(u32) -> bool) {
        self.pids.retain(|pid, _| live(*pid));
    }
}

/// Whether the 8 bytes before an address end with a call instruction: x86-64 `call rel32`
/// (`e8` + 4 bytes) or an indirect `call` (`ff /2`: register, memory with or without a
/// displacement); arm64 `bl` or `blr`.
pub fn follows_call(b: &[u8; 8]) -> bool {
    if cfg!(target_arch = "aarch64") {
        let insn = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        return insn & 0xfc00_0000 == 0x9400_0000 || insn & 0xffff_fc1f == 0xd63f_0000;
    }
    let reg = |modrm: u8| (modrm >> 3) & 7 == 2;
    b[3] == 0xe8
        || (b[6] == 0xff && reg(b[7]) && b[7] >> 6 == 3)
        || (b[5] == 0xff && reg(b[6]) && b[6] >> 6 == 1)
        || (b[2] == 0xff && reg(b[3]) && b[3] >> 6 == 2)
        || (b[6] == 0xff && reg(b[7]) && b[7] >> 6 == 0)
}

#[cfg(test)]
mod tests {
    use super::follows_call;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn calls_before_return_addresses() {
        assert!(follows_call(&[0, 0, 0, 0xe8, 1, 2, 3, 4]), "call rel32");
        assert!(follows_call(&[0, 0, 0, 0, 0, 0, 0xff, 0xd0]), "call *%rax");
        assert!(follows_call(&[0, 0, 0, 0, 0, 0xff, 0x50, 0x08]), "call *8(%rax)");
        assert!(!follows_call(&[0x48, 0x89, 0xe5, 0x5d, 0xc3, 0x90, 0x90, 0x90]), "mov, pop, ret, nops");
        assert!(!follows_call(&[0; 8]));
    }
}
