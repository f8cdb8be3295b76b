//! How a JVM is told in `memwatch explain`: one paragraph of its figures, and its own mappings
//! named (the Java heap, the compressed class space, the code cache, Java threads' stacks).

use super::JvmFacts;
use crate::{
    parse::smaps::Mapping,
    runtime::{Facts, layout::Class},
    units::human,
};

const MIB: u64 = 1 << 20;

fn h(b: u64) -> String {
    human(b as f64)
}

/// One paragraph for `memwatch explain`.
pub fn describe(j: &JvmFacts) -> String {
    let mut s = format!("It is a JVM{}", j.version.as_deref().map(|v| format!(" (HotSpot {v})")).unwrap_or_default());
    match j.heap {
        Some(heap) => {
            s += &format!(
                ": its heap has {} used and {} committed of a {} maximum; metaspace {} committed",
                h(heap.used_bytes),
                h(heap.committed_bytes),
                h(heap.max_bytes),
                h(j.metaspace_committed())
            );
            if let Some(t) = j.threads {
                s += &format!("; {t} threads");
            }
        }
        None => s += &format!(" without performance data ({})", j.perfdata_error.as_deref().unwrap_or("none")),
    }
    s + ". Against the limit count the heap's resident part, metaspace, the code cache's compiled code, the touched part of each \
         thread's stack and native memory; the heap's and metaspace's reserved but uncommitted address space does not."
}

/// Names a JVM's own mappings after the shapes every program has were told: the Java heap (a
/// run of adjacent anonymous mappings as large as the maximum heap), the compressed class
/// space (one as large as its maximum), the code cache (executable anonymous memory and the
/// reservation after it) and Java threads' stacks.
pub fn refine_layout(facts: Option<&Facts>, maps: &[Mapping], classes: &mut [Option<Class>]) {
    let j = match facts {
        Some(Facts::Jvm(j)) => Some(j),
        _ => None,
    };
    let heap = j.and_then(|j| j.heap.map(|s| s.max_bytes).or(j.flags.max_heap_bytes));
    let class_space = j.and_then(|j| j.class_space.map(|s| s.max_bytes)).or(Some(1 << 30));
    for (want, class) in [(heap, Class::JavaHeap), (class_space, Class::JvmMetaspace)] {
        if let Some(want) = want.filter(|w| *w >= 4 * MIB) {
            mark_run(maps, classes, want, class);
        }
    }
    for i in 0..maps.len() {
        match classes[i] {
            Some(Class::ThreadStacks) => classes[i] = Some(Class::JavaThreadStacks),
            Some(Class::JvmCodeCache) if i + 1 < maps.len() && maps[i].end == maps[i + 1].start && maps[i + 1].is_prot_none() => {
                classes[i + 1] = Some(Class::JvmCodeCache);
            }
            _ => {}
        }
    }
}

/// Marks the first run of adjacent mappings whose sizes add up to `want` (within 2 MiB: the JVM
/// rounds to its region or page size) and which are anonymous and not executable, or the class
/// data sharing archive's regions mapped inside the heap (`classes.jsa`).
fn mark_run(maps: &[Mapping], classes: &mut [Option<Class>], want: u64, class: Class) {
    let part = |m: &Mapping| (m.is_anonymous() || m.path.ends_with(".jsa")) && !m.perms.contains('x') && !m.is_shared();
    let slack = 2 * MIB + 4096;
    for i in 0..maps.len() {
        if !maps[i].is_anonymous() || !part(&maps[i]) {
            continue;
        }
        // The run's end closest to `want`.
        let (mut total, mut best) = (0u64, None::<(u64, usize)>);
        for j in i..maps.len() {
            if j > i && (maps[j - 1].end != maps[j].start || !part(&maps[j])) {
                break;
            }
            total = total.saturating_add(maps[j].size());
            if total > want + slack {
                break;
            }
            let off = total.abs_diff(want);
            if off <= slack && best.is_none_or(|(b, _)| off < b) {
                best = Some((off, j));
            }
        }
        if let Some((_, j)) = best {
            for c in &mut classes[i..=j] {
                *c = Some(class);
            }
            return;
        }
    }
}
