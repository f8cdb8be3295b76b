//! OOM kill records from the kernel ring buffer, decoded into [`OomKill`].

use memwatch_common::{OomEvent, oom_present as has};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("OOM record is {got} bytes, expected {want}")]
    Size { got: usize, want: usize },
}

/// One OOM kill as the kernel reported it. Sizes are in bytes; `None` where this kernel's
/// tracepoint does not carry the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKill {
    /// True for the record sent when the victim exits (its cgroup ids are its own).
    pub victim_exit: bool,
    /// True for the record with the victim task's own cgroup at the kill (Linux 6.8+).
    pub victim_task: bool,
    pub boot_ns: u64,
    pub victim_pid: u32,
    pub victim_comm: Option<String>,
    pub victim_memcg_id: Option<u64>,
    pub total_vm_bytes: Option<u64>,
    pub anon_rss_bytes: Option<u64>,
    pub file_rss_bytes: Option<u64>,
    pub shmem_rss_bytes: Option<u64>,
    pub pgtables_bytes: Option<u64>,
    pub uid: Option<u32>,
    pub oom_score_adj: Option<i16>,
    pub trigger_pid: u32,
    pub trigger_tgid: u32,
    pub trigger_comm: String,
    pub trigger_cgroup_id: u64,
    pub trigger_memcg_id: u64,
    /// The trigger's memory cgroup and its ancestors at the kill, deepest first; empty where
    /// the kernel side could not read them.
    pub levels: Vec<Level>,
}

/// One memory cgroup's page counters at the kill, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub cgroup_id: u64,
    pub usage_bytes: u64,
    /// None when the cgroup has no limit.
    pub limit_bytes: Option<u64>,
    /// The second counter: swap on cgroup v2, memory + swap on v1; None where not read.
    pub swap_usage_bytes: Option<u64>,
    pub swap_limit_bytes: Option<u64>,
}

/// Page counters hold `PAGE_COUNTER_MAX` (about `LONG_MAX / PAGE_SIZE`) for "no limit".
const NO_LIMIT_PAGES: u64 = 1 << 50;

fn comm(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Decodes one ring buffer record. `unit` is bytes per unit of the size fields
/// ([`crate::probes::Probes::oom_size_unit`]: KiB on kernels that print them as kB).
pub fn decode(record: &[u8], unit: u64) -> Result<OomKill, DecodeError> {
    let want = std::mem::size_of::<OomEvent>();
    if record.len() < want {
        return Err(DecodeError::Size { got: record.len(), want });
    }
    // SAFETY: OomEvent is plain old data and the slice holds at least size_of bytes.
    let e: OomEvent = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let opt = |bit: u16, v: u64| (e.present & bit != 0).then_some(v);
    Ok(OomKill {
        victim_exit: e.kind == memwatch_common::OOM_KIND_VICTIM_EXIT,
        victim_task: e.kind == memwatch_common::OOM_KIND_VICTIM_TASK,
        boot_ns: e.boot_ns,
        victim_pid: e.victim_pid,
        victim_comm: (e.present & has::COMM != 0).then(|| comm(&e.victim_comm)),
        victim_memcg_id: opt(has::VICTIM_MEMCG, e.victim_memcg_id),
        total_vm_bytes: opt(has::TOTAL_VM, e.total_vm_pages.saturating_mul(unit)),
        anon_rss_bytes: opt(has::ANON_RSS, e.anon_rss_pages.saturating_mul(unit)),
        file_rss_bytes: opt(has::FILE_RSS, e.file_rss_pages.saturating_mul(unit)),
        shmem_rss_bytes: opt(has::SHMEM_RSS, e.shmem_rss_pages.saturating_mul(unit)),
        pgtables_bytes: opt(has::PGTABLES, e.pgtables_bytes.saturating_mul(unit)),
        uid: (e.present & has::UID != 0).then_some(e.uid),
        oom_score_adj: (e.present & has::SCORE_ADJ != 0).then_some(e.oom_score_adj),
        trigger_pid: e.trigger_pid,
        trigger_tgid: e.trigger_tgid,
        trigger_comm: comm(&e.trigger_comm),
        trigger_cgroup_id: e.trigger_cgroup_id,
        trigger_memcg_id: e.trigger_memcg_id,
        levels: if e.present & has::LEVELS != 0 {
            let page = crate::host::page_size();
            let limit = |pages: u64| (pages < NO_LIMIT_PAGES).then_some(pages.saturating_mul(page));
            let n = (e.nlevels as usize).min(e.levels.len());
            e.levels[..n]
                .iter()
                .map(|l| Level {
                    cgroup_id: l.cgroup_id,
                    usage_bytes: l.usage_pages.saturating_mul(page),
                    limit_bytes: limit(l.max_pages),
                    swap_usage_bytes: (e.present & has::SWAP != 0).then_some(l.swap_usage_pages.saturating_mul(page)),
                    swap_limit_bytes: if e.present & has::SWAP != 0 { limit(l.swap_max_pages) } else { None },
                })
                .collect()
        } else {
            Vec::new()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_near_the_top_of_u64_saturate() {
        // Found by fuzzing (oom_record): counters times the page size overflowed.
        let mut raw = vec![0x97u8; std::mem::size_of::<OomEvent>()];
        raw[0] = 0x0a;
        let k = decode(&raw, 4096).unwrap();
        assert!(k.levels.iter().all(|l| l.usage_bytes == u64::MAX));
        assert_eq!(k.total_vm_bytes.unwrap_or(u64::MAX), u64::MAX);
    }

    fn bytes(e: &OomEvent) -> Vec<u8> {
        // SAFETY: reading a POD struct as bytes.
        unsafe { std::slice::from_raw_parts((e as *const OomEvent).cast::<u8>(), size_of::<OomEvent>()) }.to_vec()
    }

    #[test]
    fn decodes_full_record() {
        let mut e = OomEvent { victim_pid: 42, total_vm_pages: 10, anon_rss_pages: 3, trigger_tgid: 7, ..Default::default() };
        e.victim_comm[..4].copy_from_slice(b"hog\0");
        e.trigger_comm[..5].copy_from_slice(b"bash\0");
        e.present = has::COMM | has::TOTAL_VM | has::ANON_RSS;
        let k = decode(&bytes(&e), 4096).unwrap();
        assert_eq!(k.victim_pid, 42);
        assert_eq!(k.victim_comm.as_deref(), Some("hog"));
        assert_eq!(k.total_vm_bytes, Some(40960));
        assert_eq!(k.anon_rss_bytes, Some(12288));
        assert_eq!(k.file_rss_bytes, None);
        assert_eq!(k.trigger_comm, "bash");
        assert!(k.levels.is_empty(), "no levels without their bit");
    }

    #[test]
    fn decodes_the_cgroup_levels_at_the_kill() {
        let mut e = OomEvent { victim_pid: 42, present: has::LEVELS, nlevels: 2, ..Default::default() };
        e.levels[0] = memwatch_common::MemcgLevel { cgroup_id: 9, usage_pages: 8190, max_pages: 8192, ..Default::default() };
        e.levels[1] = memwatch_common::MemcgLevel { cgroup_id: 1, usage_pages: 100, max_pages: u64::MAX / 8192, ..Default::default() };
        e.levels[2].cgroup_id = 77; // beyond nlevels: ignored
        let k = decode(&bytes(&e), 1024).unwrap();
        let page = crate::host::page_size();
        assert_eq!(k.levels.len(), 2);
        assert_eq!((k.levels[0].cgroup_id, k.levels[0].usage_bytes, k.levels[0].limit_bytes), (9, 8190 * page, Some(8192 * page)));
        assert_eq!(k.levels[1].limit_bytes, None, "PAGE_COUNTER_MAX is no limit");
    }

    #[test]
    fn old_kernel_record_has_only_pid() {
        let e = OomEvent { victim_pid: 9, total_vm_pages: 99, present: 0, ..Default::default() };
        let k = decode(&bytes(&e), 4096).unwrap();
        assert_eq!((k.victim_pid, k.victim_comm, k.total_vm_bytes), (9, None, None));
    }

    #[test]
    fn short_record_is_an_error() {
        assert_eq!(decode(&[0u8; 10], 4096), Err(DecodeError::Size { got: 10, want: size_of::<OomEvent>() }));
    }
}
