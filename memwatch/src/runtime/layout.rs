//! A process's address space by class, from its mappings: why VSZ is large and RSS small, and
//! what of it counts against a container's memory limit. Pure: mappings in, classes and a
//! paragraph out (`memwatch explain` reads the files).
//!
//! The classes are recognised by shape, since the kernel does not say who mapped what:
//! - a runtime's own mappings, as the runtime tells them ([`crate::runtime::Runtime::classify`]):
//!   Go's heap arenas are anonymous mappings in the ranges Go's allocator hints at on 64-bit
//!   (`0x00c0 << 32` plus a multiple of 1 TiB), goroutine stacks among them; the rest of a Go
//!   program's anonymous memory is its runtime's (heap metadata, start-up reservations).
//! - glibc malloc arenas: the 64 MiB-aligned, 64 MiB-long reservations glibc makes for each
//!   thread that mallocs (a readable head, the rest PROT_NONE until used).
//! - thread stacks: a readable and writable mapping right above a PROT_NONE guard of at most
//!   64 KiB, as glibc's `pthread_create` makes them.
//! - the rest by file: the executable, shared libraries, other files, shared memory.

use serde::Serialize;

use crate::{
    parse::smaps::Mapping,
    runtime::{self, RuntimeId},
    units::human,
};

const MIB: u64 = 1 << 20;
/// glibc's `HEAP_MAX_SIZE` on 64-bit: the size and alignment of a per-thread arena.
const GLIBC_ARENA: u64 = 64 * MIB;
/// The largest guard glibc puts below a thread stack by default is a page; allow for larger
/// page sizes and `pthread_attr_setguardsize`.
const MAX_GUARD: u64 = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    GoHeapArenas,
    GoRuntime,
    GlibcMallocArenas,
    ThreadStacks,
    BrkHeap,
    MainStack,
    OtherAnonymous,
    ReservedProtNone,
    JavaHeap,
    JvmMetaspace,
    JvmCodeCache,
    JavaThreadStacks,
    Executable,
    SharedLibraries,
    FileMappings,
    SharedMemory,
    KernelVdso,
}

impl Class {
    pub const ALL: [Class; 17] = [
        Class::GoHeapArenas,
        Class::GoRuntime,
        Class::GlibcMallocArenas,
        Class::ThreadStacks,
        Class::BrkHeap,
        Class::MainStack,
        Class::OtherAnonymous,
        Class::ReservedProtNone,
        Class::JavaHeap,
        Class::JvmMetaspace,
        Class::JvmCodeCache,
        Class::JavaThreadStacks,
        Class::Executable,
        Class::SharedLibraries,
        Class::FileMappings,
        Class::SharedMemory,
        Class::KernelVdso,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::GoHeapArenas => "go_heap_arenas",
            Class::GoRuntime => "go_runtime",
            Class::GlibcMallocArenas => "glibc_malloc_arenas",
            Class::ThreadStacks => "thread_stacks",
            Class::BrkHeap => "brk_heap",
            Class::MainStack => "main_stack",
            Class::OtherAnonymous => "other_anonymous",
            Class::ReservedProtNone => "reserved_prot_none",
            Class::JavaHeap => "java_heap",
            Class::JvmMetaspace => "jvm_metaspace",
            Class::JvmCodeCache => "jvm_code_cache",
            Class::JavaThreadStacks => "java_thread_stacks",
            Class::Executable => "executable",
            Class::SharedLibraries => "shared_libraries",
            Class::FileMappings => "file_mappings",
            Class::SharedMemory => "shared_memory",
            Class::KernelVdso => "kernel_vdso",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Class::GoHeapArenas => "Go heap arenas (heap and goroutine stacks; reserved, then used as the heap grows)",
            Class::GoRuntime => "Go runtime metadata and address space it reserves at start-up (arena index, page-allocator summaries)",
            Class::GlibcMallocArenas => "glibc malloc's per-thread arenas (64 MiB reserved each; threads of cgo programs get them)",
            Class::ThreadStacks => "thread stacks (8 MiB reserved each by default) and their guard pages",
            Class::BrkHeap => "the brk heap (malloc's main arena)",
            Class::MainStack => "the main thread's stack",
            Class::OtherAnonymous => "other anonymous memory (large mallocs, private mmaps)",
            Class::ReservedProtNone => "reserved or guard address space (PROT_NONE: never resident)",
            Class::JavaHeap => "the Java heap (reserved to its maximum; committed and resident as it grows)",
            Class::JvmMetaspace => "the JVM's compressed class space (metaspace for class data; reserved, then committed as classes load)",
            Class::JvmCodeCache => "the JVM's code cache (JIT-compiled code, reserved to ReservedCodeCacheSize)",
            Class::JavaThreadStacks => "Java thread stacks (-Xss reserved each) and their guard zones",
            Class::Executable => "the program's executable file",
            Class::SharedLibraries => "shared libraries",
            Class::FileMappings => "other memory-mapped files",
            Class::SharedMemory => "shared memory and tmpfs (/dev/shm, memfd, SysV)",
            Class::KernelVdso => "vDSO and vvar pages from the kernel",
        }
    }

    /// Memory of this class that is resident is anonymous (counts against a limit and cannot
    /// be reclaimed without swap), as opposed to file-backed page cache.
    fn is_anonymous(self) -> bool {
        !matches!(self, Class::Executable | Class::SharedLibraries | Class::FileMappings | Class::SharedMemory | Class::KernelVdso)
    }
}

/// What is known of the process besides its mappings.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Its executable's path as smaps prints it (so they compare).
    pub exe: Option<String>,
    /// The runtime it runs, when memwatch knows it, and what the runtime said of it.
    pub runtime: Option<RuntimeId>,
    pub runtime_facts: Option<runtime::Facts>,
}

fn is_shared_memory(m: &Mapping) -> bool {
    let p = m.path.as_str();
    p.starts_with("/dev/shm/") || p.starts_with("/memfd:") || p.starts_with("/SYSV") || p.starts_with("/dev/zero") || p == "[anon_shmem]"
}

fn is_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let name = name.strip_suffix(" (deleted)").unwrap_or(name);
    name.ends_with(".so") || name.contains(".so.")
}

/// The class of each mapping (None for the `[vsyscall]` page, which is not part of VSZ).
pub fn classify(maps: &[Mapping], facts: &Facts) -> Vec<Option<Class>> {
    let rt = facts.runtime.map(runtime::get);
    let owned = |m: &Mapping| rt.and_then(|r| r.classify(facts.runtime_facts.as_ref(), m));
    let mut out: Vec<Option<Class>> = vec![None; maps.len()];
    let adjacent = |i: usize, j: usize| maps[i].end == maps[j].start;
    let mut i = 0;
    while i < maps.len() {
        let m = &maps[i];
        let class = match m.path.as_str() {
            "[vsyscall]" => {
                i += 1;
                continue;
            }
            "[vdso]" | "[vvar]" | "[vvar_vclock]" | "[uprobes]" => Class::KernelVdso,
            "[heap]" => Class::BrkHeap,
            "[stack]" => Class::MainStack,
            _ if is_shared_memory(m) => Class::SharedMemory,
            _ if !m.is_anonymous() => {
                if facts.exe.as_deref().is_some_and(|e| e == m.path) {
                    Class::Executable
                } else if is_library(&m.path) {
                    Class::SharedLibraries
                } else {
                    Class::FileMappings
                }
            }
            _ if let Some(c) = owned(m) => c,
            _ => {
                // A glibc arena: from a 64 MiB boundary, adjacent anonymous mappings (a
                // readable head, then PROT_NONE) that end exactly 64 MiB later.
                if m.start.is_multiple_of(GLIBC_ARENA) && !m.is_prot_none() && !m.is_shared() {
                    let mut j = i;
                    while j + 1 < maps.len()
                        && adjacent(j, j + 1)
                        && maps[j + 1].is_anonymous()
                        && maps[j].end < m.start.saturating_add(GLIBC_ARENA)
                    {
                        j += 1;
                    }
                    if maps[j].end == m.start.saturating_add(GLIBC_ARENA) {
                        for c in &mut out[i..=j] {
                            *c = Some(Class::GlibcMallocArenas);
                        }
                        i = j + 1;
                        continue;
                    }
                }
                // A thread stack right above its guard.
                let guard = i.checked_sub(1).filter(|&g| {
                    adjacent(g, i)
                        && maps[g].is_anonymous()
                        && maps[g].is_prot_none()
                        && maps[g].size() <= MAX_GUARD
                        && out[g] != Some(Class::GlibcMallocArenas)
                });
                if m.perms.starts_with("rw")
                    && !m.is_shared()
                    && let Some(g) = guard
                {
                    out[g] = Some(Class::ThreadStacks);
                    Class::ThreadStacks
                } else if let Some(c) = rt.and_then(|r| r.unexplained_anonymous()) {
                    c
                } else if m.is_prot_none() {
                    Class::ReservedProtNone
                } else {
                    Class::OtherAnonymous
                }
            }
        };
        out[i] = Some(class);
        i += 1;
    }
    if let Some(r) = rt {
        r.refine(facts.runtime_facts.as_ref(), maps, &mut out);
    }
    out
}

/// One class's share of a process (or of a container's processes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassUse {
    pub class: Class,
    pub vsz_bytes: u64,
    pub rss_bytes: u64,
    pub description: &'static str,
}

/// The classes in use, largest VSZ first; and the totals (VSZ, RSS, anonymous RSS, shmem RSS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Breakdown {
    pub vsz_bytes: u64,
    pub rss_bytes: u64,
    /// Resident anonymous memory (smaps `Anonymous`): what a limit cannot get back.
    pub anon_rss_bytes: u64,
    pub shmem_rss_bytes: u64,
    pub classes: Vec<ClassUse>,
}

impl Breakdown {
    pub fn of(maps: &[Mapping], facts: &Facts) -> Breakdown {
        let mut b = Breakdown::default();
        for (m, c) in maps.iter().zip(classify(maps, facts)) {
            let Some(c) = c else { continue };
            b.add(c, m.size(), m.rss_bytes);
            b.anon_rss_bytes = b.anon_rss_bytes.saturating_add(m.anon_bytes);
            if c == Class::SharedMemory {
                b.shmem_rss_bytes = b.shmem_rss_bytes.saturating_add(m.rss_bytes);
            }
        }
        b.sort();
        b
    }

    fn add(&mut self, class: Class, vsz: u64, rss: u64) {
        self.vsz_bytes = self.vsz_bytes.saturating_add(vsz);
        self.rss_bytes = self.rss_bytes.saturating_add(rss);
        match self.classes.iter_mut().find(|u| u.class == class) {
            Some(u) => {
                u.vsz_bytes = u.vsz_bytes.saturating_add(vsz);
                u.rss_bytes = u.rss_bytes.saturating_add(rss);
            }
            None => self.classes.push(ClassUse { class, vsz_bytes: vsz, rss_bytes: rss, description: class.description() }),
        }
    }

    fn sort(&mut self) {
        self.classes.sort_by(|a, b| b.vsz_bytes.cmp(&a.vsz_bytes).then(a.class.cmp(&b.class)));
    }

    /// Adds another breakdown (a container's processes summed).
    pub fn merge(&mut self, other: &Breakdown) {
        for u in &other.classes {
            self.add(u.class, u.vsz_bytes, u.rss_bytes);
        }
        self.anon_rss_bytes = self.anon_rss_bytes.saturating_add(other.anon_rss_bytes);
        self.shmem_rss_bytes = self.shmem_rss_bytes.saturating_add(other.shmem_rss_bytes);
        self.sort();
    }

    /// The class with the most VSZ.
    pub fn largest(&self) -> Option<Class> {
        self.classes.first().map(|c| c.class)
    }

    /// What the numbers mean, in one paragraph: where the VSZ is, and what counts against a
    /// limit (resident memory) and what does not (reserved address space).
    pub fn summary(&self, who: &str) -> String {
        let h = |b: u64| human(b as f64);
        let mut s = format!("{who} has {} of virtual memory (VSZ) and {} resident (RSS).", h(self.vsz_bytes), h(self.rss_bytes));
        let unused: Vec<String> = self
            .classes
            .iter()
            .filter(|c| c.vsz_bytes >= MIB && c.rss_bytes * 4 < c.vsz_bytes)
            .take(4)
            .map(|c| format!("{} {} ({} resident)", c.class.name(), h(c.vsz_bytes), h(c.rss_bytes)))
            .collect();
        let unused_vsz: u64 = self.classes.iter().map(|c| c.vsz_bytes - c.rss_bytes).sum();
        if self.vsz_bytes > 0 && unused_vsz * 2 > self.vsz_bytes {
            s += &format!(
                " {:.0}% of the VSZ is address space reserved but not resident: {}.",
                unused_vsz as f64 * 100.0 / self.vsz_bytes as f64,
                unused.join(", ")
            );
        }
        if let Some(reason) = self.why_reserved() {
            s += &format!(" {reason}");
        }
        let file = self.rss_bytes.saturating_sub(self.anon_rss_bytes + self.shmem_rss_bytes);
        s += &format!(
            " Reserved address space costs nothing and does not count against a container's memory limit. What counts is what is \
             resident: anonymous memory (here {}: heaps, stacks, malloc) in full and for good; shared memory and tmpfs ({}) in full, \
             and it cannot be reclaimed without swap; file-backed pages ({}: the executable, libraries, mapped files) as page \
             cache, which the kernel reclaims under pressure (a container's working set counts only the active part).",
            h(self.anon_rss_bytes),
            h(self.shmem_rss_bytes),
            h(file)
        );
        s
    }

    fn why_reserved(&self) -> Option<String> {
        let vsz = |c: Class| self.classes.iter().find(|u| u.class == c).map_or(0, |u| u.vsz_bytes);
        let mut why = Vec::new();
        if vsz(Class::GoRuntime) + vsz(Class::GoHeapArenas) >= 64 * MIB {
            why.push("Go's runtime reserves address space for its heap and its metadata up front and maps it in as the heap grows");
        }
        if vsz(Class::GlibcMallocArenas) >= 64 * MIB {
            why.push("glibc gives each thread that mallocs (in a Go program: each cgo thread) its own 64 MiB arena");
        }
        if vsz(Class::ThreadStacks) >= 16 * MIB {
            why.push("each thread reserves a stack (8 MiB by default) of which it touches a few pages");
        }
        (!why.is_empty()).then(|| {
            let mut s = why.join("; ");
            s[..1].make_ascii_uppercase();
            s + "."
        })
    }

    /// Resident memory that is anonymous.
    pub fn anonymous_classes(&self) -> impl Iterator<Item = &ClassUse> {
        self.classes.iter().filter(|c| c.class.is_anonymous())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_overflow_saturate() {
        // Found by fuzzing (smaps): many huge mappings summed past u64::MAX; and ranges at
        // the top of the address space.
        let top = u64::MAX - 64 * MIB + 1;
        let maps = vec![
            m(0, u64::MAX / 2, "rw-p", "", u64::MAX / 2),
            m(u64::MAX / 2, u64::MAX / 2, "rw-p", "", u64::MAX / 2),
            m(top & !(64 * MIB - 1), 4 * K, "rw-p", "", 0),
        ];
        let b = Breakdown::of(&maps, &Facts::default());
        let mut twice = b.clone();
        twice.merge(&b);
        assert_eq!(twice.rss_bytes, u64::MAX);
    }

    fn m(start: u64, size: u64, perms: &str, path: &str, rss: u64) -> Mapping {
        let file = path.starts_with('/');
        Mapping {
            start,
            end: start + size,
            perms: perms.into(),
            inode: if file { 7 } else { 0 },
            path: path.into(),
            rss_bytes: rss,
            anon_bytes: if file { 0 } else { rss },
            swap_bytes: 0,
        }
    }

    const K: u64 = 1024;

    /// The layout of a cgo Go HTTP server as this machine showed it (sizes rounded).
    fn cgo_server() -> Vec<Mapping> {
        vec![
            m(0x400000, 2128 * K, "r-xp", "/tmp/gomem", 1024 * K),
            m(0x614000, 2036 * K, "r--p", "/tmp/gomem", 900 * K),
            m(0x0f58e000, 132 * K, "rw-p", "[heap]", 8 * K),
            m(0xc000000000, 4 * MIB, "rw-p", "", 3 * MIB),
            m(0xc000400000, 60 * MIB, "---p", "", 0),
            m(0x7f7fc0000000, 132 * K, "rw-p", "", 12 * K),
            m(0x7f7fc0000000 + 132 * K, 64 * MIB - 132 * K, "---p", "", 0),
            m(0x7f7fd2ffe000, 4 * K, "---p", "", 0),
            m(0x7f7fd2fff000, 8 * MIB, "rw-p", "", 16 * K),
            m(0x7f7fdbc07000, 267748 * K, "---p", "", 0),
            m(0x7f8000b84000, 8 * K, "r-xp", "[vdso]", 4 * K),
            m(0x7f8000b91000, 1368 * K, "r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6", 800 * K),
            m(0x7ffc9416b000, 132 * K, "rw-p", "[stack]", 12 * K),
            m(0xffffffffff600000, 4 * K, "--xp", "[vsyscall]", 0),
        ]
    }

    #[test]
    fn a_cgo_go_server_by_class() {
        let maps = cgo_server();
        let facts = Facts { exe: Some("/tmp/gomem".into()), runtime: Some(RuntimeId::Go), runtime_facts: None };
        let c = classify(&maps, &facts);
        use Class::*;
        assert_eq!(
            c,
            vec![
                Some(Executable),
                Some(Executable),
                Some(BrkHeap),
                Some(GoHeapArenas),
                Some(GoHeapArenas),
                Some(GlibcMallocArenas),
                Some(GlibcMallocArenas),
                Some(ThreadStacks),
                Some(ThreadStacks),
                Some(GoRuntime),
                Some(KernelVdso),
                Some(SharedLibraries),
                Some(MainStack),
                None,
            ]
        );
        let b = Breakdown::of(&maps, &facts);
        let vsz: u64 = maps.iter().filter(|m| m.path != "[vsyscall]").map(Mapping::size).sum();
        assert_eq!(b.vsz_bytes, vsz, "every byte of VSZ in a class");
        assert_eq!(b.rss_bytes, maps.iter().map(|m| m.rss_bytes).sum::<u64>());
        assert_eq!(b.classes.iter().map(|c| c.vsz_bytes).sum::<u64>(), b.vsz_bytes);
        assert_eq!(b.largest(), Some(GoRuntime));
        let s = b.summary("gomem (pid 1)");
        assert!(s.contains("Go's runtime reserves address space"), "{s}");
        assert!(s.contains("64 MiB arena"), "{s}");
        assert!(s.contains("does not count against a container's memory limit"), "{s}");
    }

    #[test]
    fn the_same_mappings_in_a_c_program() {
        let maps = cgo_server();
        let b = Breakdown::of(&maps, &Facts { exe: Some("/tmp/gomem".into()), ..Facts::default() });
        let class = |c: Class| b.classes.iter().find(|u| u.class == c).map(|u| u.vsz_bytes);
        // No Go ranges: the 0xc0... run (aligned to 64 MiB, a readable head and PROT_NONE to
        // exactly 64 MiB later) has a glibc arena's shape, which in a C program is what it is.
        assert_eq!(class(Class::GoHeapArenas), None);
        assert_eq!(class(Class::GlibcMallocArenas), Some(2 * 64 * MIB));
        assert_eq!(class(Class::ReservedProtNone), Some(267748 * K));
        assert_eq!(class(Class::OtherAnonymous), None);
    }

    #[test]
    fn a_misaligned_or_short_run_is_no_glibc_arena() {
        let maps = vec![m(64 * MIB * 3, 132 * K, "rw-p", "", 0), m(64 * MIB * 3 + 132 * K, 32 * MIB, "---p", "", 0)];
        let c = classify(&maps, &Facts::default());
        assert_eq!(c, vec![Some(Class::OtherAnonymous), Some(Class::ReservedProtNone)]);
        // A stack with no guard below is not a thread stack.
        let maps = vec![m(0x1000_0000, 8 * MIB, "rw-p", "", 0)];
        assert_eq!(classify(&maps, &Facts::default()), vec![Some(Class::OtherAnonymous)]);
    }

    #[test]
    fn shared_memory_and_files() {
        let maps = vec![
            m(0x1000, 4 * K, "rw-s", "/dev/shm/x", 4 * K),
            m(0x3000, 4 * K, "rw-s", "/memfd:buf (deleted)", 4 * K),
            m(0x5000, 4 * K, "r--p", "/var/data.db", 4 * K),
            m(0x7000, 4 * K, "r--p", "/usr/lib/libfoo.so.1.2", 4 * K),
        ];
        let c = classify(&maps, &Facts::default());
        use Class::*;
        assert_eq!(c, vec![Some(SharedMemory), Some(SharedMemory), Some(FileMappings), Some(SharedLibraries)]);
        let b = Breakdown::of(&maps, &Facts::default());
        assert_eq!(b.shmem_rss_bytes, 8 * K);
    }
}
