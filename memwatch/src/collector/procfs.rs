//! Processes: for each cgroup's pids, `/proc/<pid>/stat` (comm, VSZ, RSS, faults); and the
//! machine's memory from `/proc/meminfo`. Read when the cgroupfs collector re-read the
//! cgroup's process list (its slow cadence), else the last reading is kept. A process that
//! exits mid-walk is skipped silently.

use std::{collections::HashMap, io, sync::Arc};

use super::{CollectError, Collector, SnapshotBuilder, read_into};
use crate::{
    Roots,
    parse::{proc as parse, proc::ProcStat},
};

#[derive(Default)]
pub struct Procfs {
    /// Per cgroup id, its processes as last read.
    cache: HashMap<u64, Arc<[ProcStat]>>,
    machine_memory: Option<u64>,
    buf: String,
}

const NAME: &str = "procfs";

impl Collector for Procfs {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collect(&mut self, roots: &Roots, out: &mut SnapshotBuilder) -> Result<(), CollectError> {
        let buf = &mut self.buf;
        if self.machine_memory.is_none() {
            let meminfo = roots.procfs.join("meminfo");
            read_into(&meminfo, buf).map_err(|source| CollectError::Read { path: meminfo, source })?;
            self.machine_memory = parse::mem_total(buf);
            if self.machine_memory.is_none() {
                out.error(NAME, "parse");
            }
        }
        out.machine_memory = self.machine_memory;
        let mut path = roots.procfs.clone();
        let mut live = std::collections::HashSet::with_capacity(out.cgroups.len());
        let (mut parse_errors, mut read_errors, mut vanished) = (0, 0, 0);
        for cg in out.cgroups.iter_mut() {
            live.insert(cg.id);
            if !cg.pids_fresh
                && let Some(procs) = self.cache.get(&cg.id)
            {
                cg.procs = procs.clone();
                continue;
            }
            let mut procs = Vec::with_capacity(cg.pids.len());
            for pid in cg.pids.iter() {
                path.push(pid.to_string());
                path.push("stat");
                match read_into(&path, buf) {
                    Ok(()) => match parse::stat(buf) {
                        Some(s) => procs.push(s),
                        None => parse_errors += 1,
                    },
                    // ESRCH / ENOENT: it exited between listing and reading.
                    Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => vanished += 1,
                    Err(_) => read_errors += 1,
                }
                path.pop();
                path.pop();
            }
            let procs: Arc<[ProcStat]> = procs.into();
            self.cache.insert(cg.id, procs.clone());
            cg.procs = procs;
        }
        self.cache.retain(|id, _| live.contains(id));
        for _ in 0..parse_errors {
            out.error(NAME, "parse");
        }
        for _ in 0..read_errors {
            out.error(NAME, "read");
        }
        for _ in 0..vanished {
            out.error(NAME, super::cgroupfs::VANISHED);
        }
        Ok(())
    }
}

/// The most bytes of an ELF section table or name table read to tell a Go program: real ones
/// are a few KiB, and a bigger claim is garbage.
const ELF_TABLE_LIMIT: usize = 1 << 20;

/// For a Go program, its GOMEMLIMIT and GOGC (each None when unset); None when the process is
/// not a Go program or is gone. Reads the ELF section headers of `/proc/<pid>/exe` and then,
/// only for Go programs, the environment, of which only those two variables are kept.
pub fn go_info(procfs: &std::path::Path, pid: u32) -> Option<(Option<String>, Option<String>)> {
    let exe = std::fs::File::open(procfs.join(format!("{pid}/exe"))).ok()?;
    if !is_go_binary(&exe) {
        return None;
    }
    go_env(procfs, pid)
}

/// GOMEMLIMIT and GOGC from `/proc/<pid>/environ`; nothing else is kept.
pub fn go_env(procfs: &std::path::Path, pid: u32) -> Option<(Option<String>, Option<String>)> {
    let environ = std::fs::read(procfs.join(format!("{pid}/environ"))).ok()?;
    Some(parse::go_env(&environ))
}

/// Whether an executable is a Go program, from its ELF section names.
pub fn is_go_binary(exe: &std::fs::File) -> bool {
    is_go_elf(exe).unwrap_or(false)
}

fn is_go_elf(exe: &std::fs::File) -> Option<bool> {
    use crate::parse::elf;
    use std::os::unix::fs::FileExt;
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
    Some(elf::is_go(&elf::section_names(&table, entsize, count, &strtab)))
}
