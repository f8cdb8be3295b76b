//! Processes: for each cgroup's pids, `/proc/<pid>/stat` (comm, VSZ, RSS, faults); and the
//! machine's memory from `/proc/meminfo`. Read when the cgroupfs collector re-read the
//! cgroup's process list (its slow cadence), else the last reading is kept. A process that
//! exits mid-walk is skipped silently.

use std::{collections::HashMap, io, sync::Arc};

use super::{CollectError, Collector, CollectorId, ErrorReason, SampleInput, SnapshotBuilder, read_into};
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

const NAME: CollectorId = CollectorId::Procfs;

impl Collector for Procfs {
    fn id(&self) -> CollectorId {
        CollectorId::Procfs
    }

    fn collect(&mut self, roots: &Roots, _: &SampleInput, out: &mut SnapshotBuilder) -> Result<(), CollectError> {
        let buf = &mut self.buf;
        if self.machine_memory.is_none() {
            let meminfo = roots.procfs.join("meminfo");
            read_into(&meminfo, buf).map_err(|source| CollectError::Read { path: meminfo, source })?;
            self.machine_memory = parse::mem_total(buf);
            if self.machine_memory.is_none() {
                out.error(NAME, ErrorReason::Parse);
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
        out.errors_n(NAME, ErrorReason::Parse, parse_errors);
        out.errors_n(NAME, ErrorReason::Read, read_errors);
        out.errors_n(NAME, ErrorReason::Vanished, vanished);
        Ok(())
    }
}
