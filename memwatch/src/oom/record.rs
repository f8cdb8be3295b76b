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
}

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
        total_vm_bytes: opt(has::TOTAL_VM, e.total_vm_pages * unit),
        anon_rss_bytes: opt(has::ANON_RSS, e.anon_rss_pages * unit),
        file_rss_bytes: opt(has::FILE_RSS, e.file_rss_pages * unit),
        shmem_rss_bytes: opt(has::SHMEM_RSS, e.shmem_rss_pages * unit),
        pgtables_bytes: opt(has::PGTABLES, e.pgtables_bytes * unit),
        uid: (e.present & has::UID != 0).then_some(e.uid),
        oom_score_adj: (e.present & has::SCORE_ADJ != 0).then_some(e.oom_score_adj),
        trigger_pid: e.trigger_pid,
        trigger_tgid: e.trigger_tgid,
        trigger_comm: comm(&e.trigger_comm),
        trigger_cgroup_id: e.trigger_cgroup_id,
        trigger_memcg_id: e.trigger_memcg_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn old_kernel_record_has_only_pid() {
        let e = OomEvent { victim_pid: 9, total_vm_pages: 99, present: 0, ..Default::default() };
        let k = decode(&bytes(&e), 4096).unwrap();
        assert_eq!((k.victim_pid, k.victim_comm, k.total_vm_bytes), (9, None, None));
    }

    #[test]
    fn short_record_is_an_error() {
        assert_eq!(decode(&[0u8; 10], 4096), Err(DecodeError::Size { got: 10, want: 128 }));
    }
}
