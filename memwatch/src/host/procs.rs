//! Processes looked up in `/proc` by pid, now, for any stage that needs them outside the
//! sampling cadence (the OOM stage, runtime facts at exec, `memwatch explain`): what
//! `/proc/<pid>/stat` and `/proc/<pid>/cgroup` say, the processes of a cgroup, and which
//! executable a process runs. The procfs collector reads `stat` on its own cadence.

use std::{
    fs::File,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use crate::parse::{cgroup, proc as parse, proc::ProcStat};

/// How many pids of one cgroup are looked at, at most.
const PIDS_LIMIT: usize = 10_000;

/// `/proc/<pid>` under `procfs`.
pub fn dir(procfs: &Path, pid: u32) -> PathBuf {
    procfs.join(pid.to_string())
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

/// The section names of an open ELF executable (64-bit little-endian); None when it is not
/// one or its tables are unreadable or absurd.
pub fn elf_section_names(exe: &File) -> Option<Vec<String>> {
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
    Some(elf::section_names(&table, entsize, count, &strtab).into_iter().map(String::from).collect())
}
