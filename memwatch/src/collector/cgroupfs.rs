//! The memory hierarchy: every cgroup with memory accounting and what its files say, on v2,
//! v1 and hybrid hosts.
//!
//! Built to stay cheap at thousands of cgroups. The tree is kept between samples and changed by
//! inotify (a full walk only at start, on overflow, and every [`FULL_WALK_EVERY`]: reading a
//! directory costs as much as reading a file). Each cgroup's usage file (`memory.current`,
//! `memory.usage_in_bytes`) stays open and is re-read with one `pread` per sample. The other
//! files (`memory.stat`, which flushes per-CPU statistics; PSI; limits; events; `cgroup.procs`)
//! are read on the slow cadence when the usage changed meanwhile (else after [`IDLE_PERIODS`]
//! slow periods), and at once when the cgroup nears its limit or its usage moved a lot: so each
//! is at most `slow` old while the cgroup is busy, a minute when idle, and fresh where it matters. A cgroup that vanishes
//! mid-walk is skipped silently; a file that is unreadable or malformed skips that value and
//! counts an error.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ffi::CString,
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::fs::{FileExt, MetadataExt},
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use super::{CollectError, Collector, CollectorId, ErrorReason, RawCgroup, SampleInput, SnapshotBuilder};
use crate::{
    Roots,
    host::{
        self,
        cgroups::{LimitWalk, child_path, parent_path, tightest},
    },
    parse::cgroup as parse,
};

const NAME: CollectorId = CollectorId::Cgroupfs;

/// A full walk of the hierarchy at least this often, for what inotify cannot tell (a
/// controller enabled under an existing cgroup creates its files without an event).
pub const FULL_WALK_EVERY: Duration = Duration::from_secs(60);

/// A usage move at least this large (or [`BIG_MOVE_FRACTION`] of the usage) has the slow files
/// read at once.
const BIG_MOVE_BYTES: u64 = 4 << 20;
/// ... as a divisor of the usage: a sixteenth.
const BIG_MOVE_FRACTION: u64 = 16;
/// Usage at or above this share of the limit (in tenths) is "near the limit": nine tenths.
const NEAR_LIMIT_TENTHS: u64 = 9;
/// Cgroups first seen together have their slow reads spread over the period by their id modulo
/// this (a prime, so ids in steps do not bunch).
const SPREAD: u64 = 97;
/// The read buffer: larger than any cgroup file memwatch reads (memory.stat is about 1.5 KiB).
const READ_BUFFER: usize = 64 * 1024;

pub struct Cgroupfs {
    /// The most the slowly read files may age.
    slow: Duration,
    tree: Option<Tree>,
    buf: Vec<u8>,
}

impl Cgroupfs {
    pub fn new(slow: Duration) -> Self {
        Cgroupfs { slow, tree: None, buf: vec![0; READ_BUFFER] }
    }
}

/// The hierarchy as last seen, by path relative to its root (`/` for the root itself; a
/// parent's path sorts before its children's).
struct Tree {
    cgroupfs: PathBuf,
    mode: host::CgroupMode,
    root: PathBuf,
    v2: bool,
    nodes: BTreeMap<String, Node>,
    watch: Option<Watch>,
    walked_at: Instant,
    needs_walk: bool,
    /// Set after the first walk: cgroups found later are new.
    started: bool,
}

struct Watch {
    inotify: Inotify,
    by_wd: HashMap<WatchDescriptor, String>,
}

struct Node {
    dir: Arc<Path>,
    /// Its path relative to the root, as labels show it (lossy UTF-8).
    label: Arc<str>,
    id: u64,
    /// The directory, open, for reading its other files relative to it (one path step).
    dirfd: Option<File>,
    /// The usage file, open: one pread per sample.
    usage_file: Option<File>,
    wd: Option<WatchDescriptor>,
    /// The slowly read part, and when and at what usage memory.stat and the process list were
    /// read last.
    slow: Option<(Instant, u64, RawCgroup)>,
    /// When the files that rarely change (limits, events, swap, pressure) were read last.
    rare_at: Option<Instant>,
    /// When this cgroup appeared (None for those there when memwatch started): a young one
    /// (processes moving in) is re-read whenever its usage changes.
    born: Option<Instant>,
    /// Usage at the previous sample.
    last_usage: u64,
    /// Whether usage was moving when memory.stat was read last: then it is read once more
    /// when usage settles elsewhere (a sample caught mid-growth is not left standing).
    read_in_motion: bool,
}

impl Collector for Cgroupfs {
    fn id(&self) -> CollectorId {
        CollectorId::Cgroupfs
    }

    fn collect(&mut self, roots: &Roots, input: &SampleInput, out: &mut SnapshotBuilder) -> Result<(), CollectError> {
        let now = Instant::now();
        let stale_tree = self.tree.as_ref().is_none_or(|t| t.cgroupfs != roots.cgroupfs);
        if stale_tree {
            let mode = host::cgroup_mode(&roots.cgroupfs);
            let Some(root) = mode.memory_root().map(Path::to_path_buf) else {
                out.mode = Some(mode);
                self.tree = None;
                return Err(CollectError::Unsupported(format!("no memory controller under {}", roots.cgroupfs.display())));
            };
            super::raise_nofile_limit();
            let watch = Inotify::init().ok().map(|inotify| Watch { inotify, by_wd: HashMap::new() });
            self.tree = Some(Tree {
                cgroupfs: roots.cgroupfs.clone(),
                v2: mode.is_v2(),
                mode,
                root,
                nodes: BTreeMap::new(),
                watch,
                walked_at: now,
                needs_walk: true,
                started: false,
            });
        }
        let tree = self.tree.as_mut().expect("tree set above");
        out.mode = Some(tree.mode.clone());
        tree.apply_events(&mut self.buf, out);
        // Without inotify (no instance left for us), walk on the slow cadence instead.
        let every = if tree.watch.is_some() { FULL_WALK_EVERY } else { self.slow };
        if tree.needs_walk || now.duration_since(tree.walked_at) >= every {
            let root = tree.root.clone();
            tree.walk("/", root, out);
            tree.walked_at = now;
            tree.needs_walk = false;
            tree.started = true;
        }
        tree.sample(now, self.slow, &input.oom_cgroups, &mut self.buf, out);
        Ok(())
    }
}

impl Tree {
    /// Applies what inotify reported since the last sample: new cgroups are walked, removed
    /// ones forgotten. An overflowed queue asks for a full walk.
    fn apply_events(&mut self, buf: &mut [u8], out: &mut SnapshotBuilder) {
        let Some(w) = self.watch.as_mut() else { return };
        let mut created = Vec::new();
        let mut removed = Vec::new();
        loop {
            let events = match w.inotify.read_events(buf) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.needs_walk = true;
                    break;
                }
            };
            let mut any = false;
            for e in events {
                any = true;
                if e.mask.contains(EventMask::Q_OVERFLOW) {
                    self.needs_walk = true;
                    continue;
                }
                let Some(rel) = w.by_wd.get(&e.wd).cloned() else { continue };
                if e.mask.contains(EventMask::IGNORED) {
                    w.by_wd.remove(&e.wd);
                    removed.push(rel);
                    continue;
                }
                let Some(name) = e.name else { continue };
                let child = child_path(&rel, &name.to_string_lossy());
                if e.mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM) {
                    removed.push(child);
                } else if e.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO)
                    && let Some(parent) = self.nodes.get(&rel)
                {
                    created.push((child, parent.dir.join(name)));
                }
            }
            if !any {
                break;
            }
        }
        for rel in removed {
            self.forget(&rel);
        }
        for (rel, dir) in created {
            if parent_path(&rel).is_some_and(|p| self.nodes.contains_key(p)) {
                self.walk(&rel, dir, out);
            }
        }
    }

    /// Forgets the cgroup at `rel` and everything below it.
    fn forget(&mut self, rel: &str) {
        let prefix = format!("{rel}/");
        let gone: Vec<String> =
            self.nodes.range(rel.to_string()..).map(|(k, _)| k).take_while(|k| *k == rel || k.starts_with(&prefix)).cloned().collect();
        for k in gone {
            if let Some(n) = self.nodes.remove(&k)
                && let (Some(w), Some(wd)) = (self.watch.as_mut(), n.wd)
            {
                w.by_wd.remove(&wd);
                let _ = w.inotify.watches().remove(wd);
            }
        }
    }

    /// Walks the hierarchy from `start` (a full walk from `/`): new cgroups are added, ones no
    /// longer there forgotten, ones still there kept with their open files.
    /// Paths are kept as the kernel spells them (`dir`); `rel`, the label, is lossy UTF-8.
    fn walk(&mut self, start: &str, start_dir: PathBuf, out: &mut SnapshotBuilder) {
        let mut seen: Vec<String> = Vec::new();
        let mut stack = vec![(start.to_string(), start_dir)];
        while let Some((rel, dir)) = stack.pop() {
            let id = match std::fs::metadata(&dir) {
                Ok(m) => m.ino(),
                Err(_) => continue, // vanished
            };
            if self.nodes.get(&rel).is_none_or(|n| n.id != id) {
                match self.open_node(&rel, dir.clone(), id) {
                    Some(node) => {
                        self.nodes.insert(rel.clone(), node);
                    }
                    None => {
                        self.forget(&rel);
                        continue; // not a memory cgroup (v2, controller off), or gone
                    }
                }
            }
            seen.push(rel.clone());
            // Watch before listing: a child made after the listing still gives an event.
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    out.error(NAME, ErrorReason::Vanished);
                    continue;
                }
                Err(_) => {
                    out.error(NAME, ErrorReason::Read);
                    continue;
                }
            };
            for e in entries.filter_map(Result::ok) {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((child_path(&rel, &e.file_name().to_string_lossy()), e.path()));
                }
            }
        }
        // Whatever under `start` the walk did not meet is gone.
        let prefix = if start == "/" { "/".to_string() } else { format!("{start}/") };
        seen.sort();
        let stale: Vec<String> =
            self.nodes.keys().filter(|k| (*k == start || k.starts_with(&prefix)) && seen.binary_search(k).is_err()).cloned().collect();
        for k in stale {
            self.forget(&k);
        }
    }

    /// Opens a cgroup's directory and usage file and watches it; None when it is not a memory
    /// cgroup (or vanished).
    fn open_node(&mut self, rel: &str, dir: PathBuf, id: u64) -> Option<Node> {
        let is_root = rel == "/";
        let usage_name = if self.v2 { "memory.current" } else { "memory.usage_in_bytes" };
        let usage_file = File::open(dir.join(usage_name));
        match &usage_file {
            // The v2 root has no memory.current; other cgroups without it have no memory
            // controller enabled, and neither can their children.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !(self.v2 && is_root) => return None,
            _ => {}
        }
        let dirfd = File::open(&dir).ok();
        let wd = self.watch.as_mut().and_then(|w| {
            let wd = w
                .inotify
                .watches()
                .add(&dir, WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVE | WatchMask::ONLYDIR | WatchMask::DONT_FOLLOW)
                .ok()?;
            w.by_wd.insert(wd.clone(), rel.to_string());
            Some(wd)
        });
        Some(Node {
            dir: Arc::from(dir),
            label: Arc::from(rel),
            id,
            dirfd,
            usage_file: usage_file.ok(),
            wd,
            slow: None,
            rare_at: None,
            born: self.started.then(Instant::now),
            last_usage: 0,
            read_in_motion: false,
        })
    }

    /// One sample: every cgroup's usage, and the slow files of those that are due.
    fn sample(&mut self, now: Instant, slow: Duration, hinted: &HashSet<u64>, buf: &mut [u8], out: &mut SnapshotBuilder) {
        let v2 = self.v2;
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(self.nodes.len());
        // Effective limits as known from the last slow reads, parents first.
        let mut limits = LimitWalk::with_capacity(self.nodes.len());
        let mut vanished = Vec::new();
        for (rel, node) in self.nodes.iter_mut() {
            let parent = parent_path(rel);
            let usage = match read_usage(node, v2, buf) {
                Ok(u) => u,
                Err(Unusable::Gone) => {
                    out.error(NAME, ErrorReason::Vanished);
                    vanished.push(rel.clone());
                    continue;
                }
                Err(Unusable::Malformed) => {
                    out.error(NAME, ErrorReason::Parse);
                    continue;
                }
            };
            let limit = limits.visit(rel.as_str(), parent.as_ref(), node.slow.as_ref().and_then(|(_, _, r)| r.own_limit));
            let last = node.slow.as_ref().map(|(at, u, _)| (*at, *u));
            let young = node.born.is_some_and(|b| now.duration_since(b) < slow);
            let plan = read_plan(
                &Known {
                    last,
                    last_usage: node.last_usage,
                    read_in_motion: node.read_in_motion,
                    young,
                    rare_at: node.rare_at,
                    // Near its limit, or its own memory.high where it is throttled (v2).
                    pressed_at: tightest(limit, node.slow.as_ref().and_then(|(_, _, r)| r.high)),
                    killed: hinted.contains(&node.id),
                },
                usage,
                now,
                slow,
            );
            let moving = usage != node.last_usage;
            node.last_usage = usage;
            if plan.slow {
                let rare = plan.rare;
                let mut raw = node.slow.take().map(|(_, _, r)| r).unwrap_or_default();
                read_slow(node, v2, rare, buf, out, &mut raw);
                raw.pids_fresh = true;
                node.read_in_motion = moving;
                // Spread the next reads of cgroups seen together over the period.
                let phase = if last.is_none() && !young { slow.mul_f64((node.id % SPREAD) as f64 / SPREAD as f64) } else { Duration::ZERO };
                let at = now.checked_sub(phase).unwrap_or(now);
                if rare {
                    node.rare_at = Some(at);
                }
                node.slow = Some((at, usage, raw));
            } else if let Some((_, _, r)) = node.slow.as_mut() {
                r.pids_fresh = false;
            }
            let Some((_, _, cached)) = node.slow.as_ref() else { continue };
            let mut cg = cached.clone();
            cg.usage = usage;
            cg.path = node.label.clone();
            cg.dir = node.dir.clone();
            cg.id = node.id;
            cg.parent = parent.and_then(|p| index.get(p).copied());
            if parent.is_some() && cg.parent.is_none() {
                continue; // its parent is gone: so is it
            }
            index.insert(rel.as_str(), out.cgroups.len());
            out.cgroups.push(cg);
        }
        for rel in vanished {
            self.forget(&rel);
        }
    }
}

/// What is known of a cgroup before this sample reads more than its usage.
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    /// When its slow files were last read, and its usage then.
    last: Option<(Instant, u64)>,
    /// Its usage in the sample before.
    last_usage: u64,
    /// The last slow read caught its usage moving.
    read_in_motion: bool,
    /// It appeared less than a slow period ago.
    young: bool,
    /// When its rare files were last read.
    rare_at: Option<Instant>,
    /// Where the kernel presses on it: its effective limit or its own memory.high.
    pressed_at: Option<u64>,
    /// The OOM stage saw a kill in it.
    killed: bool,
}

/// What one sample reads of a cgroup beyond its usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadPlan {
    /// memory.stat and the process list.
    slow: bool,
    /// With them, the files that rarely change (limits, events, swap, pressure).
    rare: bool,
}

/// The read plan for a cgroup whose usage is `usage` now (pure): the slow files when they are
/// due ([`slow_due`]), after a kill, when its usage settled away from where a read in motion saw
/// it, or when it is young and its usage moved; the rare ones with them after a kill, near the
/// limit, after a big fall (what an OOM kill leaves), or every [`IDLE_PERIODS`] slow periods.
fn read_plan(k: &Known, usage: u64, now: Instant, slow: Duration) -> ReadPlan {
    let moved_since_read = k.last.is_some_and(|(_, u)| u != usage);
    let settled = k.read_in_motion && usage == k.last_usage && moved_since_read;
    let due = k.killed || settled || slow_due(k.last, usage, k.pressed_at, now, slow) || k.young && moved_since_read;
    if !due {
        return ReadPlan { slow: false, rare: false };
    }
    let fell = k.last.is_some_and(|(_, u)| u.saturating_sub(usage) >= BIG_MOVE_BYTES.max(u / BIG_MOVE_FRACTION));
    let rare =
        k.killed || near_limit(usage, k.pressed_at) || fell || k.rare_at.is_none_or(|at| now.duration_since(at) >= slow * IDLE_PERIODS);
    ReadPlan { slow: true, rare }
}

enum Unusable {
    /// The cgroup was removed.
    Gone,
    /// Its usage file does not hold a number: the cgroup is skipped this sample.
    Malformed,
}

/// The usage file's value by pread on the open file (by path where it could not be kept open).
fn read_usage(node: &mut Node, v2: bool, buf: &mut [u8]) -> Result<u64, Unusable> {
    let n = match &node.usage_file {
        Some(f) => f.read_at(buf, 0),
        None => {
            let name = if v2 { "memory.current" } else { "memory.usage_in_bytes" };
            match File::open(node.dir.join(name)) {
                Ok(f) => f.read_at(buf, 0),
                // The v2 root has no usage file: its usage is not needed.
                Err(e) if e.kind() == io::ErrorKind::NotFound && node.dir.exists() => return Ok(0),
                Err(e) => Err(e),
            }
        }
    };
    match n {
        Ok(n) => std::str::from_utf8(&buf[..n]).ok().and_then(|t| parse::value(t).ok()).ok_or(Unusable::Malformed),
        // ENODEV: the cgroup was removed while its file was open.
        Err(_) => Err(Unusable::Gone),
    }
}

/// An idle cgroup (usage unchanged since its slow files were read) has them read again after
/// this many slow periods.
pub const IDLE_PERIODS: u32 = 6;

/// Within 10% of its (effective) limit: where the working set must be right.
fn near_limit(usage: u64, limit: Option<u64>) -> bool {
    limit.is_some_and(|l| usage.saturating_mul(10) >= l.saturating_mul(NEAR_LIMIT_TENTHS))
}

/// Whether a cgroup's memory.stat and process list are due: never read; near its limit (or its
/// memory.high); usage
/// moved a lot since; older than `slow` with usage changed since (the cheap file says something
/// happened); or older than [`IDLE_PERIODS`] × `slow` in any case. The files that rarely change
/// (limits, events, swap, pressure) are read with them every [`IDLE_PERIODS`] × `slow`, and
/// every sample near the limit.
fn slow_due(last: Option<(Instant, u64)>, usage: u64, limit: Option<u64>, now: Instant, slow: Duration) -> bool {
    let Some((at, then)) = last else { return true };
    if near_limit(usage, limit) {
        return true;
    }
    if usage.abs_diff(then) >= BIG_MOVE_BYTES.max(then / BIG_MOVE_FRACTION) {
        return true;
    }
    let age = now.duration_since(at);
    age >= slow * IDLE_PERIODS || (age >= slow && usage != then)
}

enum Got<T> {
    Value(T),
    /// The file (or the cgroup) is not there.
    Absent,
}

/// Reads one file of a cgroup, relative to its open directory where it has one.
fn read_file<'b>(node: &Node, name: &str, buf: &'b mut [u8]) -> io::Result<&'b str> {
    let file = match &node.dirfd {
        Some(d) => {
            let c = CString::new(name).expect("file names have no NUL");
            // SAFETY: openat with a valid directory fd and a NUL-terminated name.
            let fd = unsafe { libc::openat(d.as_raw_fd(), c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh fd we own.
            unsafe { File::from_raw_fd(fd) }
        }
        None => File::open(node.dir.join(name))?,
    };
    // A cgroup file comes whole in one read when the buffer has room (it is generated at
    // once); read on only when a read filled the buffer.
    let mut len = 0;
    loop {
        let n = file.read_at(&mut buf[len..], len as u64)?;
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
    }
    // Cgroup files are ASCII; anything else is malformed and parses as such.
    Ok(std::str::from_utf8(&buf[..len]).unwrap_or(""))
}

/// Reads and parses one file; counts an error (and yields Absent) when it cannot.
fn get<T, E>(node: &Node, name: &str, buf: &mut [u8], out: &mut SnapshotBuilder, parse: impl Fn(&str) -> Result<T, E>) -> Got<T> {
    match read_file(node, name, buf) {
        Ok(text) => match parse(text) {
            Ok(v) => Got::Value(v),
            Err(_) => {
                out.error(NAME, ErrorReason::Parse);
                Got::Absent
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV) => Got::Absent,
        Err(_) => {
            out.error(NAME, ErrorReason::Read);
            Got::Absent
        }
    }
}

fn opt<T>(g: Got<T>) -> Option<T> {
    match g {
        Got::Value(v) => Some(v),
        Got::Absent => None,
    }
}

/// The files that cost more to read, into `cg`: memory.stat and the process list always, the
/// files that rarely change (limits, events, swap, pressure) when `rare`.
fn read_slow(node: &Node, v2: bool, rare: bool, buf: &mut [u8], out: &mut SnapshotBuilder, cg: &mut RawCgroup) {
    if v2 {
        if rare {
            cg.own_limit = opt(get(node, "memory.max", buf, out, parse::limit)).flatten();
            cg.high = opt(get(node, "memory.high", buf, out, parse::limit)).flatten();
            cg.swap = opt(get(node, "memory.swap.current", buf, out, parse::value));
            [cg.oom_kills, cg.limit_events, cg.limit_hits_max, cg.limit_hits_high] =
                opt(get(node, "memory.events", buf, out, |t| Ok::<_, ()>(parse::pick(t, ["oom_kill", "oom", "max", "high"]))))
                    .unwrap_or_default();
            cg.pressure = opt(get(node, "memory.pressure", buf, out, |t| parse::psi(t).ok_or(())));
        }
    } else {
        if rare {
            cg.own_limit = opt(get(node, "memory.limit_in_bytes", buf, out, parse::limit)).flatten();
            cg.swap = opt(get(node, "memory.memsw.usage_in_bytes", buf, out, parse::value)).map(|memsw| {
                // The v1 swap figure needs usage; read it beside memsw, both now.
                let usage = opt(get(node, "memory.usage_in_bytes", buf, out, parse::value)).unwrap_or(0);
                memsw.saturating_sub(usage)
            });
            cg.oom_kills = opt(get(node, "memory.oom_control", buf, out, |t| Ok::<_, ()>(parse::pick(t, ["oom_kill"])[0]))).flatten();
            cg.limit_events = opt(get(node, "memory.failcnt", buf, out, parse::value));
            // v1 counts each time usage hit the limit (reclaim forced there): v2's `max`.
            cg.limit_hits_max = cg.limit_events;
        }
    }
    // The kernel's watermark of usage: never lower than any usage between two reads.
    cg.peak = opt(get(node, if v2 { "memory.peak" } else { "memory.max_usage_in_bytes" }, buf, out, parse::value));
    // v1's total_* keys include descendants, like v2's memory.stat.
    if let Some(m) = opt(get(node, "memory.stat", buf, out, |t| Ok::<_, ()>(parse::memory_stat(t, v2)))) {
        (cg.anon, cg.file, cg.inactive_file) = (m.anon.unwrap_or(0), m.file.unwrap_or(0), m.inactive_file.unwrap_or(0));
        (cg.shmem, cg.kernel) = (m.shmem.unwrap_or(0), m.kernel);
        (cg.major_faults, cg.page_faults) = (m.major_faults, m.faults);
    }
    cg.pids = opt(get(node, "cgroup.procs", buf, out, |t| Ok::<_, ()>(parse::procs(t)))).unwrap_or_default().into();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_plan_of_a_cgroup() {
        let t0 = Instant::now();
        let slow = Duration::from_secs(10);
        let now = t0 + Duration::from_secs(1);
        let mib = 1 << 20;
        let idle = Known {
            last: Some((t0, 100 * mib)),
            last_usage: 100 * mib,
            rare_at: Some(t0),
            pressed_at: Some(1024 * mib),
            ..Known::default()
        };
        let nothing = ReadPlan { slow: false, rare: false };
        assert_eq!(read_plan(&idle, 100 * mib, now, slow), nothing, "idle, read a second ago");
        assert_eq!(
            read_plan(&Known { last: None, rare_at: None, ..idle }, 100 * mib, now, slow),
            ReadPlan { slow: true, rare: true },
            "never read"
        );
        assert_eq!(read_plan(&Known { killed: true, ..idle }, 100 * mib, now, slow), ReadPlan { slow: true, rare: true }, "a kill in it");
        assert_eq!(read_plan(&idle, 1000 * mib, now, slow), ReadPlan { slow: true, rare: true }, "near its limit");
        assert_eq!(read_plan(&idle, 10 * mib, now, slow), ReadPlan { slow: true, rare: true }, "a big fall, as a kill leaves");
        assert_eq!(read_plan(&idle, 101 * mib, now, slow), nothing, "a small move within the slow period");
        assert_eq!(
            read_plan(&Known { young: true, ..idle }, 101 * mib, now, slow),
            ReadPlan { slow: true, rare: false },
            "young and moving"
        );
        let settled = Known { read_in_motion: true, last_usage: 101 * mib, ..idle };
        assert_eq!(read_plan(&settled, 101 * mib, now, slow), ReadPlan { slow: true, rare: false }, "settled away from the read");
    }

    #[test]
    fn slow_files_are_due_when_old_near_the_limit_or_moved() {
        let t0 = Instant::now();
        let slow = Duration::from_secs(10);
        let later = t0 + Duration::from_secs(1);
        let mib = 1 << 20;
        assert!(slow_due(None, 0, None, t0, slow), "never read");
        assert!(!slow_due(Some((t0, 100 * mib)), 100 * mib, Some(1024 * mib), later, slow), "fresh and far from the limit");
        assert!(slow_due(Some((t0, 100 * mib)), 101 * mib, None, t0 + slow, slow), "old, and usage changed");
        assert!(!slow_due(Some((t0, 100 * mib)), 100 * mib, None, t0 + slow, slow), "old, but idle");
        assert!(slow_due(Some((t0, 100 * mib)), 100 * mib, None, t0 + slow * IDLE_PERIODS, slow), "idle for long");
        assert!(slow_due(Some((t0, 950 * mib)), 950 * mib, Some(1024 * mib), later, slow), "within 10% of the limit");
        assert!(slow_due(Some((t0, 100 * mib)), 107 * mib, None, later, slow), "moved by more than a sixteenth");
        assert!(slow_due(Some((t0, 10 * mib)), 14 * mib, None, later, slow), "moved by 4 MiB");
        assert!(!slow_due(Some((t0, 100 * mib)), 103 * mib, None, later, slow), "small moves wait");
    }

    /// A fake v1 memory hierarchy with the files the collector reads.
    fn v1_cgroup(dir: &Path, usage: u64) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("memory.usage_in_bytes"), format!("{usage}\n")).unwrap();
        std::fs::write(dir.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(dir.join("memory.stat"), "total_rss 1\ntotal_cache 2\ntotal_inactive_file 0\ntotal_pgfault 7\n").unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
    }

    fn paths(out: &SnapshotBuilder) -> Vec<&str> {
        out.cgroups.iter().map(|c| &*c.path).collect()
    }

    #[test]
    fn the_tree_follows_creations_and_removals_between_samples() {
        let dir = tempfile::tempdir().unwrap();
        let memory = dir.path().join("memory");
        v1_cgroup(&memory, 10);
        v1_cgroup(&memory.join("a"), 20);
        let roots = Roots { cgroupfs: dir.path().to_path_buf(), ..Roots::default() };
        let mut c = Cgroupfs::new(Duration::from_secs(10));
        let mut out = SnapshotBuilder::new(4096);
        c.collect(&roots, &SampleInput::default(), &mut out).unwrap();
        assert_eq!(paths(&out), ["/", "/a"]);
        assert_eq!(out.cgroups[1].parent, Some(0));
        assert_eq!(out.cgroups[1].page_faults, Some(7));

        // A new cgroup appears (by inotify, without a full walk), one goes, a value changes.
        v1_cgroup(&memory.join("a/b"), 30);
        v1_cgroup(&memory.join("c"), 40);
        std::fs::write(memory.join("a/memory.usage_in_bytes"), "25\n").unwrap();
        let mut out = SnapshotBuilder::new(4096);
        c.collect(&roots, &SampleInput::default(), &mut out).unwrap();
        assert_eq!(paths(&out), ["/", "/a", "/a/b", "/c"]);
        assert_eq!(out.cgroups[2].parent, Some(1));
        assert_eq!(out.cgroups[1].usage, 25, "usage is read every sample");

        for f in ["memory.usage_in_bytes", "memory.limit_in_bytes", "memory.stat", "cgroup.procs"] {
            std::fs::remove_file(memory.join("a/b").join(f)).unwrap();
        }
        std::fs::remove_dir(memory.join("a/b")).unwrap();
        let mut out = SnapshotBuilder::new(4096);
        c.collect(&roots, &SampleInput::default(), &mut out).unwrap();
        assert_eq!(paths(&out), ["/", "/a", "/c"]);
    }

    #[test]
    fn a_read_caught_mid_growth_is_read_again_once_usage_settles() {
        let dir = tempfile::tempdir().unwrap();
        let memory = dir.path().join("memory");
        v1_cgroup(&memory, 10);
        let mib: u64 = 1 << 20;
        v1_cgroup(&memory.join("a"), 100 * mib);
        let roots = Roots { cgroupfs: dir.path().to_path_buf(), ..Roots::default() };
        let mut c = Cgroupfs::new(Duration::from_secs(10));
        let mut sample = |usage: u64, faults: u64| {
            std::fs::write(memory.join("a/memory.usage_in_bytes"), format!("{usage}\n")).unwrap();
            let stat = format!("total_rss 1\ntotal_cache 2\ntotal_inactive_file 0\ntotal_pgfault {faults}\n");
            std::fs::write(memory.join("a/memory.stat"), stat).unwrap();
            let mut out = SnapshotBuilder::new(4096);
            c.collect(&roots, &SampleInput::default(), &mut out).unwrap();
            out.cgroups.iter().find(|g| &*g.path == "/a").unwrap().page_faults
        };
        assert_eq!(sample(100 * mib, 1), Some(1));
        assert_eq!(sample(150 * mib, 2), Some(2), "a big move: read, usage still moving");
        assert_eq!(sample(152 * mib, 3), Some(2), "a small move: not read");
        assert_eq!(sample(152 * mib, 4), Some(4), "settled away from the read: read once more");
        assert_eq!(sample(152 * mib, 5), Some(4), "and not again");
    }

    #[test]
    fn a_kill_the_probe_saw_has_the_counter_read_at_the_next_sample() {
        let dir = tempfile::tempdir().unwrap();
        let memory = dir.path().join("memory");
        v1_cgroup(&memory, 10);
        v1_cgroup(&memory.join("a"), 20);
        std::fs::write(memory.join("a/memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").unwrap();
        let roots = Roots { cgroupfs: dir.path().to_path_buf(), ..Roots::default() };
        let mut c = Cgroupfs::new(Duration::from_secs(10));
        let sample = |c: &mut Cgroupfs, input: &SampleInput| {
            let mut out = SnapshotBuilder::new(4096);
            c.collect(&roots, input, &mut out).unwrap();
            out.cgroups.iter().find(|g| &*g.path == "/a").unwrap().oom_kills
        };
        assert_eq!(sample(&mut c, &SampleInput::default()), Some(3));
        // A process grew and was killed within one interval: usage is where it was.
        std::fs::write(memory.join("a/memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n").unwrap();
        assert_eq!(sample(&mut c, &SampleInput::default()), Some(3), "nothing says the counter moved");
        let id = std::fs::metadata(memory.join("a")).unwrap().ino();
        let told = SampleInput { oom_cgroups: HashSet::from([id]), ..SampleInput::default() };
        assert_eq!(sample(&mut c, &told), Some(4), "the probe's kill has the counter read");
    }
}
