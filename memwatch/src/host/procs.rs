//! Processes looked up in `/proc` by pid, now, for any stage that needs them outside the
//! sampling cadence (the OOM stage, runtime facts at exec, `memwatch explain`): what
//! `/proc/<pid>/stat` and `/proc/<pid>/cgroup` say, the processes of a cgroup, and which
//! executable a process runs. The procfs collector reads `stat` on its own cadence.

use std::{
    ffi::CString,
    fs::File,
    io,
    os::unix::{
        ffi::OsStrExt,
        fs::MetadataExt,
        io::{AsRawFd, FromRawFd},
    },
    path::{Path, PathBuf},
};

use crate::parse::{cgroup, proc as parse, proc::ProcStat};

/// How many pids of one cgroup are looked at, at most.
const PIDS_LIMIT: usize = 10_000;

/// `/proc/<pid>` under `procfs`.
pub fn dir(procfs: &Path, pid: u32) -> PathBuf {
    procfs.join(pid.to_string())
}

/// Opens the regular file `rel` (relative) inside `pid`'s root directory as the process sees
/// it: its symbolic links, absolute ones too, and `..` resolve inside that root, never into the
/// host's (`openat2` with `RESOLVE_IN_ROOT`, Linux 5.6+; a plain `/proc/<pid>/root/...` path
/// would follow a container's `/tmp/x -> /etc/shadow` to the host's file). Non-blocking, so a
/// FIFO planted there cannot stall the daemon; anything but a regular file is refused.
pub fn open_in_root(procfs: &Path, pid: u32, rel: &Path) -> io::Result<File> {
    open_in(&root(procfs, pid)?, rel)
}

/// `pid`'s root directory, held open: a container's files stay reachable through it after the
/// process is gone (a JVM's performance-data file left behind by its kill).
pub fn root(procfs: &Path, pid: u32) -> io::Result<File> {
    File::open(dir(procfs, pid).join("root"))
}

/// [`open_in_root`] with the root directory already open.
pub fn open_in(root: &File, rel: &Path) -> io::Result<File> {
    let file = openat2_in(root, rel, libc::O_NOCTTY | libc::O_NONBLOCK)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// `rel` opened read-only under `root` with `flags` added, resolved inside that root
/// (`RESOLVE_IN_ROOT`, no magic links).
fn openat2_in(root: &File, rel: &Path, flags: i32) -> io::Result<File> {
    let rel = CString::new(rel.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC | flags) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 reads `how` (of the size given) and the NUL-terminated path, both live
    // for the call; it returns a new descriptor or -1.
    let fd =
        unsafe { libc::syscall(libc::SYS_openat2, root.as_raw_fd(), rel.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor openat2 just returned, owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// The names of the entries of directory `rel` inside `pid`'s root, resolved as
/// [`open_in_root`] resolves (never into the host's tree), sorted; at most `max` of them.
pub fn list_in_root(procfs: &Path, pid: u32, rel: &Path, max: usize) -> io::Result<Vec<String>> {
    let dir = openat2_in(&root(procfs, pid)?, rel, libc::O_DIRECTORY)?;
    // The directory is already resolved: listing it through its descriptor follows nothing.
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .take(max)
        .collect();
    names.sort();
    Ok(names)
}

/// `struct open_how` of `linux/openat2.h` (libc's is non-exhaustive, so not constructible).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `/proc/<pid>/stat`, parsed; None when the process is gone or the file is garbled.
pub fn stat(procfs: &Path, pid: u32) -> Option<ProcStat> {
    parse::stat(&std::fs::read_to_string(dir(procfs, pid).join("stat")).ok()?)
}

/// The path of `pid`'s memory cgroup (relative to the memory hierarchy's root).
pub fn memory_cgroup(procfs: &Path, pid: u32) -> Option<String> {
    parse::memory_cgroup_path(&std::fs::read_to_string(dir(procfs, pid).join("cgroup")).ok()?)
}

/// Which executable a process runs: its (device, inode), stable while the file exists.
pub type ExeId = (u64, u64);

/// `pid`'s executable, open, and its identity, while the process lives.
pub fn exe(procfs: &Path, pid: u32) -> Option<(File, ExeId)> {
    let f = File::open(dir(procfs, pid).join("exe")).ok()?;
    let m = f.metadata().ok()?;
    let id = (m.dev(), m.ino());
    Some((f, id))
}

/// The processes in the cgroup whose directory is `cgroup_dir` (its own, not its children's),
/// largest RSS first, at most `max`. Zombies (no memory, as a victim is for a moment) are left
/// out.
pub fn of_cgroup(procfs: &Path, cgroup_dir: &Path, max: usize) -> Vec<ProcStat> {
    let Ok(text) = std::fs::read_to_string(cgroup_dir.join("cgroup.procs")) else { return vec![] };
    let mut procs: Vec<ProcStat> =
        cgroup::procs(&text).into_iter().take(PIDS_LIMIT).filter_map(|pid| stat(procfs, pid)).filter(|p| p.vsize_bytes > 0).collect();
    procs.sort_by(|a, b| b.rss_pages.cmp(&a.rss_pages).then(a.pid.cmp(&b.pid)));
    procs.truncate(max);
    procs
}

/// The most bytes of an ELF section table or name table read: real ones are a few KiB, and a
/// bigger claim is garbage.
const ELF_TABLE_LIMIT: usize = 1 << 20;

/// One ELF section: its name and where its bytes are in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// The sections of an open ELF executable (64-bit little-endian); None when it is not one or
/// its tables are unreadable or absurd.
pub fn elf_sections(exe: &File) -> Option<Vec<Section>> {
    use std::os::unix::fs::FileExt;

    use crate::parse::elf;
    let mut header = [0u8; 64];
    exe.read_exact_at(&mut header, 0).ok()?;
    let (shoff, entsize, count, strndx) = elf::section_table(&header)?;
    let table_len = entsize as usize * count as usize;
    if table_len > ELF_TABLE_LIMIT {
        return None;
    }
    let mut table = vec![0u8; table_len];
    exe.read_exact_at(&mut table, shoff).ok()?;
    let (str_off, str_len) = elf::section_range(&table, entsize, strndx)?;
    if str_len > ELF_TABLE_LIMIT as u64 {
        return None;
    }
    let mut strtab = vec![0u8; str_len as usize];
    exe.read_exact_at(&mut strtab, str_off).ok()?;
    let names = elf::section_names(&table, entsize, count, &strtab);
    Some(
        names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let (offset, size) = elf::section_range(&table, entsize, i as u16).unwrap_or((0, 0));
                Section { name: name.to_string(), offset, size }
            })
            .collect(),
    )
}

/// How much of a file [`find_in`] reads at a time.
const SCAN_CHUNK: usize = 1 << 20;
/// The most a scan reads in all.
const SCAN_LIMIT: u64 = 256 << 20;

/// The `len` bytes after the first `needle` in the `size` bytes of `file` at `offset`, read a
/// chunk at a time (memory stays bounded whatever the file's size).
pub fn find_in(file: &File, offset: u64, size: u64, needle: &[u8], len: usize) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    if needle.is_empty() || needle.len() + len > SCAN_CHUNK {
        return None;
    }
    let end = offset.saturating_add(size.min(SCAN_LIMIT));
    let mut buf = vec![0u8; SCAN_CHUNK];
    let mut at = offset;
    while at < end {
        let want = ((end - at) as usize).min(SCAN_CHUNK);
        let n = file.read_at(&mut buf[..want], at).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(i) = buf[..n].windows(needle.len()).position(|w| w == needle) {
            let start = at + (i + needle.len()) as u64;
            let mut out = vec![0u8; len];
            let got = file.read_at(&mut out, start).ok()?;
            out.truncate(got);
            return Some(out);
        }
        // Overlap by the needle's length, so a needle across two chunks is found.
        at += (n.saturating_sub(needle.len()).max(1)) as u64;
    }
    None
}

/// The path of `pid`'s executable, as the kernel names it.
pub fn exe_path(procfs: &Path, pid: u32) -> Option<PathBuf> {
    let p = std::fs::read_link(dir(procfs, pid).join("exe")).ok()?;
    // A replaced executable reads as "path (deleted)".
    let s = p.to_string_lossy();
    Some(s.strip_suffix(" (deleted)").map(PathBuf::from).unwrap_or(p))
}

/// `pid`'s command line, split at its NULs. Callers keep only what they need of it: it may
/// carry secrets.
pub fn cmdline(procfs: &Path, pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(dir(procfs, pid).join("cmdline")).ok()?;
    Some(raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

/// The thread group (process) task `pid` belongs to.
pub fn tgid(procfs: &Path, pid: u32) -> Option<u32> {
    parse::tgid(&std::fs::read_to_string(dir(procfs, pid).join("status")).ok()?)
}

/// `pid`'s effective uid and its pid in its own (innermost) pid namespace, from its status.
pub fn ids(procfs: &Path, pid: u32) -> Option<(u32, u32)> {
    parse::ids(&std::fs::read_to_string(dir(procfs, pid).join("status")).ok()?)
}

/// The file names of the shared libraries `pid` maps (`libjvm.so`, `libc.so.6`).
pub fn mapped_libraries(procfs: &Path, pid: u32) -> Option<Vec<String>> {
    let maps = std::fs::read_to_string(dir(procfs, pid).join("maps")).ok()?;
    let mut libs: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter_map(|p| p.rsplit('/').next())
        .filter(|n| n.contains(".so"))
        .map(String::from)
        .collect();
    libs.sort();
    libs.dedup();
    Some(libs)
}

/// `pid`'s mappings with their sizes (`/proc/<pid>/smaps`: costly, read only when needed).
pub fn smaps(procfs: &Path, pid: u32) -> Option<Vec<crate::parse::smaps::Mapping>> {
    crate::parse::smaps::parse(&std::fs::read_to_string(dir(procfs, pid).join("smaps")).ok()?).ok()
}
