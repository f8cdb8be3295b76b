//! Processes: for each cgroup's pids, `/proc/<pid>/stat` (comm, VSZ, RSS); and the machine's
//! memory from `/proc/meminfo`. A process that exits mid-walk is skipped silently.

use std::io;

use super::{CollectError, Collector, SnapshotBuilder, read_into};
use crate::{Roots, parse::proc as parse};

pub struct Procfs;

const NAME: &str = "procfs";

impl Collector for Procfs {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collect(&mut self, roots: &Roots, out: &mut SnapshotBuilder) -> Result<(), CollectError> {
        let mut buf = String::new();
        let meminfo = roots.procfs.join("meminfo");
        read_into(&meminfo, &mut buf).map_err(|source| CollectError::Read { path: meminfo, source })?;
        out.machine_memory = parse::mem_total(&buf);
        if out.machine_memory.is_none() {
            out.error(NAME, "parse");
        }
        let mut path = roots.procfs.clone();
        for i in 0..out.cgroups.len() {
            let pids = std::mem::take(&mut out.cgroups[i].pids);
            let mut procs = Vec::with_capacity(pids.len());
            for pid in &pids {
                path.push(pid.to_string());
                path.push("stat");
                match read_into(&path, &mut buf) {
                    Ok(()) => match parse::stat(&buf) {
                        Some(s) => procs.push(s),
                        None => out.error(NAME, "parse"),
                    },
                    // ESRCH / ENOENT: it exited between listing and reading.
                    Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(_) => out.error(NAME, "read"),
                }
                path.pop();
                path.pop();
            }
            out.cgroups[i].pids = pids;
            out.cgroups[i].procs = procs;
        }
        Ok(())
    }
}

/// For a Go program, its GOMEMLIMIT and GOGC (each None when unset); None when the process is
/// not a Go program or is gone. Reads the ELF section headers of `/proc/<pid>/exe` and then,
/// only for Go programs, the environment, of which only those two variables are kept.
pub fn go_info(procfs: &std::path::Path, pid: u32) -> Option<(Option<String>, Option<String>)> {
    use std::os::unix::fs::FileExt;
    use crate::parse::elf;
    let exe = std::fs::File::open(procfs.join(format!("{pid}/exe"))).ok()?;
    let mut header = [0u8; 64];
    exe.read_exact_at(&mut header, 0).ok()?;
    let (shoff, entsize, count, strndx) = elf::section_table(&header)?;
    let table_len = entsize as usize * count as usize;
    if table_len > 1 << 20 {
        return None;
    }
    let mut table = vec![0u8; table_len];
    exe.read_exact_at(&mut table, shoff).ok()?;
    let (str_off, str_len) = elf::section_range(&table, entsize, strndx)?;
    if str_len > 1 << 20 {
        return None;
    }
    let mut strtab = vec![0u8; str_len as usize];
    exe.read_exact_at(&mut strtab, str_off).ok()?;
    if !elf::is_go(&elf::section_names(&table, entsize, count, &strtab)) {
        return None;
    }
    let environ = std::fs::read(procfs.join(format!("{pid}/environ"))).ok()?;
    Some(parse::go_env(&environ))
}
