//! What filled the memory at the kill: one table row per part of the usage (anonymous memory,
//! tmpfs and shared memory, page cache, kernel memory), each named when it held a notable
//! share.

use super::{Finding, ReasonKind, h, reason};
use crate::oom::event::{AtKill, Event, GrowthField, Reason};

/// A part of the usage at the kill worth naming when it is at least this share of it.
const NOTABLE_SHARE: f64 = 0.25;

/// One part of a container's memory.
struct Part {
    kind: ReasonKind,
    /// Named when at least this share of the usage.
    share: f64,
    bytes: fn(&AtKill) -> Option<u64>,
    text: fn(&Event, &AtKill, u64) -> String,
}

/// The parts, in the order they are given.
static PARTS: [Part; 4] = [
    Part { kind: ReasonKind::AnonGrowth, share: 0.5, bytes: |a| a.anon_bytes, text: |e, _, b| anon_text(e, b) },
    Part {
        kind: ReasonKind::Shmem,
        share: NOTABLE_SHARE,
        bytes: |a| a.shmem_bytes,
        text: |_, a, b| {
            format!(
                "tmpfs and shared memory held {} of the {} used. Files written to a tmpfs (an emptyDir with medium Memory, /dev/shm) \
                 are charged to the container and stay until deleted: killing a process does not free them.",
                h(b),
                h(a.usage_bytes)
            )
        },
    },
    Part {
        kind: ReasonKind::PageCache,
        share: NOTABLE_SHARE,
        bytes: |a| a.file_bytes,
        text: |_, a, b| {
            format!(
                "Page cache held {} of the {} used and could not be reclaimed in time (dirty, or in active use): large writes or \
                 memory-mapped files count against the limit until written back.",
                h(b),
                h(a.usage_bytes)
            )
        },
    },
    Part {
        kind: ReasonKind::Kernel,
        share: NOTABLE_SHARE,
        bytes: |a| a.kernel_bytes,
        text: |_, a, b| {
            format!(
                "Kernel memory charged to the container (slab, socket buffers, page tables, kernel stacks) was {} of the {} used: \
                 look for many sockets, files or threads.",
                h(b),
                h(a.usage_bytes)
            )
        },
    },
];

pub struct Composition;

impl Finding for Composition {
    fn find(&self, e: &Event, _: Option<u64>) -> Vec<Reason> {
        let Some(a) = &e.at_kill else {
            // Without the state at the kill, the victim's own anonymous memory says what it can.
            return match e.victim.as_ref().and_then(|v| v.anon_rss_bytes).filter(|anon| *anon > 0) {
                Some(anon) => vec![reason(ReasonKind::AnonGrowth, anon_text(e, anon))],
                None => vec![],
            };
        };
        let usage = a.usage_bytes.max(1) as f64;
        PARTS
            .iter()
            .filter_map(|p| {
                let b = (p.bytes)(a);
                (b.map_or(0.0, |v| v as f64 / usage) >= p.share).then(|| reason(p.kind.clone(), (p.text)(e, a, b.unwrap_or(0))))
            })
            .collect()
    }
}

/// Anonymous memory, who held it and how it grew.
fn anon_text(e: &Event, anon: u64) -> String {
    let mut s = format!("Anonymous memory (heap, stacks, private mappings) was {}", h(anon));
    if let Some(v) = &e.victim
        && let Some(rss) = v.anon_rss_bytes.or(v.rss_bytes)
        && rss > 0
    {
        s += &format!("; {} (pid {}) held {} of it at the kill", v.comm, v.pid, h(rss));
    }
    // Growth over the window, where there was one (a container never sampled has none).
    if let Some(r) = e.recent.as_ref().filter(|r| r.window_seconds >= 1.0) {
        let secs = r.window_seconds;
        if let Some(p) = r.processes.first().filter(|p| p.growing() > 0) {
            s += &match p.from_rss_bytes {
                Some(from) => {
                    format!("; {} (pid {}) grew from {} to {} in the last {secs:.0} s", p.comm, p.pid, h(from), h(p.to_rss_bytes))
                }
                None => format!("; {} (pid {}) appeared in the last {secs:.0} s and reached {}", p.comm, p.pid, h(p.to_rss_bytes)),
            };
        } else if let Some(g) = r.growth.iter().find(|g| g.what == GrowthField::Anon && g.delta_bytes > 0) {
            s += &format!("; it grew by {} in the last {secs:.0} s", h(g.delta_bytes as u64));
        }
    }
    s + "."
}
