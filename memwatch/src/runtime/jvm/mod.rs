//! The JVM (HotSpot): recognised by its launcher (`java`) or the library it maps (`libjvm.so`).
//! Its figures come from the performance-data file it keeps mapped ([`perfdata`]), found at
//! `/proc/<pid>/root/tmp/hsperfdata_<user>/<pid in its own namespace>` (the user from the
//! container's own `/etc/passwd`, the namespaced pid from `NSpid` in `/proc/<pid>/status`): the
//! heap's used, committed and maximum bytes, metaspace and the compressed class space, GC
//! counts and time, live threads. Its memory flags come from its option variables and command
//! line ([`flags`]); where the file is absent (`-XX:-UsePerfData`), they are all there is.

pub mod flags;
pub mod layout;
pub mod perfdata;

use std::{io::Read, path::Path};

use serde::{Deserialize, Serialize};

use super::{Executable, Facts, Process, Runtime, RuntimeId};
use crate::{host::procs, parse::smaps::Mapping, runtime::layout::Class};
pub use flags::{Flags, Launcher};
use perfdata::PerfData;

/// The most bytes of a performance-data file read (HotSpot's default is 64 KiB; a file larger
/// than this is refused, not read whole).
pub const PERFDATA_LIMIT: u64 = 1 << 20;

/// A space's bytes (used, committed, maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Space {
    pub used_bytes: u64,
    pub committed_bytes: u64,
    pub max_bytes: u64,
}

/// What memwatch reads of a JVM.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JvmFacts {
    /// Its memory flags (only those; never other options).
    pub flags: Flags,
    /// Whether the figures below come from its performance-data file (else it had none, or it
    /// was unreadable, and only the flags are known).
    pub perfdata: bool,
    /// Why the performance-data file was not used, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perfdata_error: Option<String>,
    /// The Java heap: the generations summed.
    pub heap: Option<Space>,
    pub metaspace: Option<Space>,
    pub class_space: Option<Space>,
    /// Collections so far, and the seconds spent in them.
    pub gc_collections: Option<u64>,
    pub gc_seconds: Option<f64>,
    pub threads: Option<u64>,
    pub version: Option<String>,
    /// Where its performance-data file was found, inside the process's root, to read it again.
    #[serde(skip)]
    pub perfdata_path: Option<std::path::PathBuf>,
    /// The figures were read after the JVM was killed, from the file HotSpot left behind.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub perfdata_left_behind: bool,
}

/// HotSpot's default `MaxRAMPercentage`, and the larger share (`MinRAMPercentage`) it takes on
/// small machines and containers.
pub const DEFAULT_MAX_RAM_PERCENTAGE: f64 = 25.0;
pub const SMALL_MAX_RAM_PERCENTAGE: f64 = 50.0;
/// Memory below which HotSpot uses `MinRAMPercentage` for the default heap (when that share is
/// under its built-in default maximum heap, about 124 MiB on 64-bit).
pub const SMALL_MEMORY: u64 = 248 << 20;

impl JvmFacts {
    /// The heap's maximum: as the JVM reports it, else as its flags set it, else HotSpot's
    /// default for the memory it sees (the container's `limit` unless container support is
    /// off, else the machine's).
    pub fn max_heap(&self, limit: Option<u64>, machine: u64) -> (u64, HeapSource) {
        if let Some(h) = self.heap.filter(|h| h.max_bytes > 0) {
            return (h.max_bytes, if self.flags.max_heap_bytes.is_some() { HeapSource::Flag } else { HeapSource::Reported });
        }
        if let Some(x) = self.flags.max_heap_bytes {
            return (x, HeapSource::Flag);
        }
        let seen = match (self.flags.max_ram_bytes, self.flags.use_container_support, limit) {
            (Some(m), _, _) => m,
            (None, Some(false), _) | (None, _, None) => machine,
            (None, _, Some(l)) => l.min(machine),
        };
        let pct = self.flags.max_ram_percentage.unwrap_or(if seen < SMALL_MEMORY {
            SMALL_MAX_RAM_PERCENTAGE
        } else {
            DEFAULT_MAX_RAM_PERCENTAGE
        });
        (
            (seen as f64 * pct / 100.0) as u64,
            if self.flags.max_ram_percentage.is_some() { HeapSource::Percentage } else { HeapSource::Default },
        )
    }

    /// Whether nothing sized the heap (no -Xmx, no MaxRAMPercentage).
    pub fn heap_defaulted(&self) -> bool {
        self.flags.max_heap_bytes.is_none() && self.flags.max_ram_percentage.is_none()
    }

    /// Committed memory outside the heap the JVM reports (metaspace and class space).
    pub fn metaspace_committed(&self) -> u64 {
        self.metaspace.map_or(0, |s| s.committed_bytes) + self.class_space.map_or(0, |s| s.committed_bytes)
    }
}

/// Where a JVM's maximum heap comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapSource {
    /// -Xmx.
    Flag,
    /// -XX:MaxRAMPercentage of the memory the JVM sees.
    Percentage,
    /// HotSpot's default share of it.
    Default,
    /// The JVM's own report, no flag known.
    Reported,
}

/// The figures of a parsed performance-data file.
pub fn figures(p: &PerfData, flags: Flags) -> JvmFacts {
    let space = |prefix: &str| {
        Some(Space {
            used_bytes: p.unsigned(&format!("{prefix}.used"))?,
            committed_bytes: p.unsigned(&format!("{prefix}.capacity")).unwrap_or(0),
            max_bytes: p.unsigned(&format!("{prefix}.maxCapacity")).unwrap_or(0),
        })
    };
    // The generations (young, old): their spaces' use, their own capacities. G1's
    // generations each report the whole heap as their maximum.
    let g1 = p.string("sun.gc.policy.name") == Some("GarbageFirst");
    let gens = (0..4).filter(|g| p.unsigned(&format!("sun.gc.generation.{g}.capacity")).is_some());
    let heap = gens.fold(None, |acc: Option<Space>, g| {
        let prefix = format!("sun.gc.generation.{g}");
        let s = Space {
            used_bytes: p.sum_indexed(&format!("{prefix}.space"), "used").unwrap_or(0),
            committed_bytes: p.unsigned(&format!("{prefix}.capacity")).unwrap_or(0),
            max_bytes: p.unsigned(&format!("{prefix}.maxCapacity")).unwrap_or(0),
        };
        let a = acc.unwrap_or_default();
        Some(Space {
            used_bytes: a.used_bytes + s.used_bytes,
            committed_bytes: a.committed_bytes + s.committed_bytes,
            max_bytes: if g1 { a.max_bytes.max(s.max_bytes) } else { a.max_bytes + s.max_bytes },
        })
    });
    let ticks = p.unsigned("sun.os.hrt.frequency").filter(|f| *f > 0);
    JvmFacts {
        flags,
        perfdata: true,
        perfdata_error: None,
        heap,
        metaspace: space("sun.gc.metaspace"),
        class_space: space("sun.gc.compressedclassspace"),
        gc_collections: p.sum_indexed("sun.gc.collector", "invocations"),
        gc_seconds: p.sum_indexed("sun.gc.collector", "time").zip(ticks).map(|(t, f)| t as f64 / f as f64),
        threads: p.unsigned("java.threads.live"),
        version: p.string("java.property.java.vm.version").map(String::from),
        perfdata_path: None,
        perfdata_left_behind: false,
    }
}

/// `name`'s uid in a passwd file's text.
pub fn user_of(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then_some(name)
    })
}

/// Finds the performance-data file of the JVM whose root directory is `root` (`uid` and
/// `nspid` from its status): its path inside that root, opened there (never following a link out
/// of it). The root may outlive the process: HotSpot cannot remove its file when it is killed.
fn find_perfdata(root: &std::fs::File, uid: u32, nspid: u32) -> Result<(std::path::PathBuf, std::fs::File), String> {
    use std::os::fd::AsRawFd as _;
    let open = |rel: std::path::PathBuf| procs::open_in(root, &rel).ok().map(|f| (rel, f));
    let passwd = procs::open_in(root, Path::new("etc/passwd")).ok().and_then(|f| {
        let mut text = String::new();
        f.take(PASSWD_LIMIT).read_to_string(&mut text).ok().map(|_| text)
    });
    let by_user = passwd.and_then(|pw| user_of(&pw, uid).map(|u| Path::new("tmp").join(format!("hsperfdata_{u}")).join(nspid.to_string())));
    // Without a passwd entry (distroless images), the file is in some hsperfdata_* directory
    // (only the names are listed through the root; each file is opened inside it).
    by_user
        .and_then(open)
        .or_else(|| {
            std::fs::read_dir(format!("/proc/self/fd/{}/tmp", root.as_raw_fd()))
                .ok()?
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("hsperfdata_"))
                .find_map(|e| open(Path::new("tmp").join(e.file_name()).join(nspid.to_string())))
        })
        .ok_or_else(|| "no performance-data file (-XX:-UsePerfData, or not created yet)".to_string())
}

/// The most of a container's passwd file read to find a user's name.
const PASSWD_LIMIT: u64 = 1 << 20;

/// The counters memwatch uses (the rest, the JVM's arguments among them, are never copied).
fn wanted(name: &[u8]) -> bool {
    const PREFIXES: [&[u8]; 8] = [
        b"sun.gc.generation.",
        b"sun.gc.metaspace.",
        b"sun.gc.compressedclassspace.",
        b"sun.gc.collector.",
        b"sun.gc.policy.name",
        b"sun.os.hrt.frequency",
        b"java.threads.live",
        b"java.property.java.vm.version",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) && !name.windows(9).any(|w| w == b".agetable")
}

/// Reads and parses a performance-data file, bounded (`path` is inside the process's root, for
/// messages).
fn read_perfdata(file: std::fs::File, path: &Path) -> Result<PerfData, String> {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > PERFDATA_LIMIT {
        return Err(format!("{} is {len} bytes, more than the {PERFDATA_LIMIT} read", path.display()));
    }
    let mut data = Vec::with_capacity(len as usize);
    file.take(PERFDATA_LIMIT).read_to_end(&mut data).map_err(|e| format!("{}: {e}", path.display()))?;
    perfdata::parse_selected(&data, wanted).map_err(|e| format!("{}: {e}", path.display()))
}

pub struct Jvm;

pub static JVM: Jvm = Jvm;

impl Runtime for Jvm {
    fn id(&self) -> RuntimeId {
        RuntimeId::Jvm
    }

    /// `java`, and every JDK tool (`javac`, `jshell`, …): the JDK's launchers all link its
    /// launcher library, so they are known at exec, before they map `libjvm.so`.
    fn detect(&self, exe: &Executable<'_>) -> bool {
        exe.file_name() == Some("java") || exe.find(".dynstr", b"\0libjli.so\0", 0).is_some()
    }

    fn detect_mapped(&self, libraries: &[String]) -> bool {
        libraries.iter().any(|l| l == "libjvm.so")
    }

    fn live(&self) -> bool {
        true
    }

    fn settled(&self, facts: &Facts) -> bool {
        !matches!(facts, Facts::Jvm(j) if !j.perfdata && j.flags.use_perf_data != Some(false))
    }

    fn read(&self, p: &Process<'_>) -> Option<Facts> {
        let cmdline = p.cmdline()?;
        let args: Vec<&str> = cmdline.iter().map(String::as_str).collect();
        let env = p.env().unwrap_or_default();
        let launcher = if p.exe_name.is_none_or(|n| n == "java") { Launcher::Java } else { Launcher::Tool };
        // An @argfile by its absolute path, inside the container's root; bounded.
        let argfile = |path: &str| {
            let rel = path.strip_prefix('/')?;
            let mut text = String::new();
            p.open_in_root(Path::new(rel)).ok()?.take(flags::ARGFILE_LIMIT as u64).read_to_string(&mut text).ok()?;
            Some(text)
        };
        let flags = Flags::from_sources(
            launcher,
            env.get("JAVA_TOOL_OPTIONS"),
            env.get("JDK_JAVA_OPTIONS"),
            &args,
            env.get("_JAVA_OPTIONS"),
            argfile,
        );
        drop(env);
        let (uid, nspid) = p.ids()?;
        let found = p
            .root_dir()
            .map_err(|e| e.to_string())
            .and_then(|root| find_perfdata(&root, uid, nspid))
            .and_then(|(rel, f)| read_perfdata(f, &rel).map(|d| (rel, d)));
        Some(Facts::Jvm(Box::new(match found {
            Ok((rel, data)) => JvmFacts { perfdata_path: Some(rel), ..figures(&data, flags) },
            Err(why) => JvmFacts { flags, perfdata_error: Some(why), ..JvmFacts::default() },
        })))
    }

    /// A JVM killed before its performance-data file was read: HotSpot could not remove the
    /// file, so its last figures are still in the container (the file is left where it is).
    fn read_left_behind(&self, old: &Facts, kept: &super::Kept) -> Option<Facts> {
        let Facts::Jvm(j) = old else { return None };
        let (rel, f) = find_perfdata(&kept.root, kept.uid, kept.nspid).ok()?;
        let data = read_perfdata(f, &rel).ok()?;
        Some(Facts::Jvm(Box::new(JvmFacts { perfdata_path: Some(rel), perfdata_left_behind: true, ..figures(&data, j.flags.clone()) })))
    }

    fn refresh(&self, p: &Process<'_>, old: &Facts) -> Option<Facts> {
        let Facts::Jvm(j) = old else { return self.read(p) };
        let Some(path) = j.perfdata_path.as_deref() else { return self.read(p) };
        match p.open_in_root(path).map_err(|e| e.to_string()).and_then(|f| read_perfdata(f, path)) {
            Ok(data) => Some(Facts::Jvm(Box::new(JvmFacts { perfdata_path: j.perfdata_path.clone(), ..figures(&data, j.flags.clone()) }))),
            // Gone or replaced: look for it afresh.
            Err(_) => self.read(p),
        }
    }

    fn classify(&self, _: Option<&Facts>, m: &Mapping) -> Option<Class> {
        // JIT-compiled code: the code cache is anonymous and executable.
        (m.is_anonymous() && m.perms.contains('x') && m.path.is_empty()).then_some(Class::JvmCodeCache)
    }

    fn refine(&self, facts: Option<&Facts>, maps: &[Mapping], classes: &mut [Option<Class>]) {
        layout::refine_layout(facts, maps, classes);
    }

    fn describe(&self, facts: &Facts) -> String {
        let Facts::Jvm(j) = facts else { return String::new() };
        layout::describe(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfdata::Value;

    #[test]
    fn users_from_passwd() {
        let pw = "root:x:0:0:root:/root:/bin/bash\napp:x:1000:1000::/home/app:/bin/sh\n";
        assert_eq!(user_of(pw, 1000), Some("app"));
        assert_eq!(user_of(pw, 0), Some("root"));
        assert_eq!(user_of(pw, 5), None);
    }

    #[test]
    fn the_figures_of_a_g1_jvm() {
        const M: i64 = 1 << 20;
        const MIB: u64 = 1 << 20;
        let file = perfdata::build(&[
            ("sun.gc.generation.0.capacity", Value::Long(20 * M)),
            ("sun.gc.generation.0.maxCapacity", Value::Long(256 * M)),
            ("sun.gc.generation.0.space.0.used", Value::Long(4 * M)),
            ("sun.gc.generation.0.space.1.used", Value::Long(0)),
            ("sun.gc.generation.0.space.2.used", Value::Long(M)),
            ("sun.gc.generation.1.capacity", Value::Long(100 * M)),
            ("sun.gc.generation.1.maxCapacity", Value::Long(256 * M)),
            ("sun.gc.generation.1.space.0.used", Value::Long(90 * M)),
            ("sun.gc.metaspace.used", Value::Long(10 * M)),
            ("sun.gc.metaspace.capacity", Value::Long(11 * M)),
            ("sun.gc.collector.0.invocations", Value::Long(7)),
            ("sun.gc.collector.1.invocations", Value::Long(1)),
            ("sun.gc.collector.0.time", Value::Long(2_000_000)),
            ("sun.os.hrt.frequency", Value::Long(1_000_000_000)),
            ("java.threads.live", Value::Long(12)),
            ("java.property.java.vm.version", Value::Str("17.0.15+6-Debian-1deb12u1".into())),
        ]);
        let j = figures(&perfdata::parse(&file).unwrap(), Flags::default());
        assert_eq!(j.heap, Some(Space { used_bytes: 95 * MIB, committed_bytes: 120 * MIB, max_bytes: 512 * MIB }));
        assert_eq!(j.metaspace.map(|m| m.committed_bytes), Some(11 * MIB));
        assert_eq!((j.gc_collections, j.threads), (Some(8), Some(12)));
        assert!((j.gc_seconds.unwrap() - 0.002).abs() < 1e-9);
        assert_eq!(j.max_heap(Some(256 * MIB), 1 << 34), (512 * MIB, HeapSource::Reported));
        // G1 (HotSpot 17's default): each generation's maximum is the whole heap.
        let g1 = perfdata::build(&[
            ("sun.gc.policy.name", Value::Str("GarbageFirst".into())),
            ("sun.gc.generation.0.capacity", Value::Long(13 * M)),
            ("sun.gc.generation.0.maxCapacity", Value::Long(256 * M + 24)),
            ("sun.gc.generation.1.capacity", Value::Long(243 * M)),
            ("sun.gc.generation.1.maxCapacity", Value::Long(256 * M + 8)),
        ]);
        let j = figures(&perfdata::parse(&g1).unwrap(), Flags::default());
        assert_eq!(j.heap.map(|h| (h.committed_bytes, h.max_bytes / MIB)), Some((256 * MIB, 256)));
    }

    #[test]
    fn the_maximum_heap_without_the_file() {
        const MIB: u64 = 1 << 20;
        let j = |f: Flags| JvmFacts { flags: f, ..JvmFacts::default() };
        assert_eq!(j(Flags::default()).max_heap(Some(1024 * MIB), 1 << 34), (256 * MIB, HeapSource::Default), "25%");
        assert_eq!(j(Flags::default()).max_heap(Some(128 * MIB), 1 << 34), (64 * MIB, HeapSource::Default), "50% when small");
        let pct = Flags { max_ram_percentage: Some(75.0), ..Flags::default() };
        assert_eq!(j(pct).max_heap(Some(1024 * MIB), 1 << 34), (768 * MIB, HeapSource::Percentage));
        let x = Flags { max_heap_bytes: Some(512 * MIB), ..Flags::default() };
        assert_eq!(j(x).max_heap(Some(256 * MIB), 1 << 34), (512 * MIB, HeapSource::Flag));
        let off = Flags { use_container_support: Some(false), ..Flags::default() };
        assert_eq!(j(off).max_heap(Some(256 * MIB), 16 << 30), (4 << 30, HeapSource::Default), "the machine's memory");
    }
}
