//! Node.js's advice: V8's heap limit (read by `crate::runtime::node`) against what the
//! container's limit leaves it, with the `--max-old-space-size` to set.

use crate::{
    oom::{
        event::{Event, Reason},
        reasons::{ReasonKind, h, reason},
    },
    runtime::{
        Facts,
        node::{NodeFacts, advised_mib, heap},
    },
};

/// The advice for every Node.js process of an event.
pub fn advise(e: &Event, limit: Option<u64>) -> Vec<Reason> {
    let Some(limit) = limit else { return vec![] };
    e.runtimes
        .iter()
        .filter_map(|p| match &p.runtime {
            Some(Facts::Node(n)) => one(&p.who(), n, limit, e.machine_memory_bytes.unwrap_or(u64::MAX)),
            _ => None,
        })
        .collect()
}

fn one(who: &str, n: &NodeFacts, limit: u64, machine: u64) -> Option<Reason> {
    let heap = n.heap_limit(Some(limit), machine);
    let advice = advised_mib(limit);
    if n.max_old_space_mib.is_some() && heap < limit {
        return None;
    }
    let whence = match (n.max_old_space_mib, n.major()) {
        (Some(m), _) => format!("--max-old-space-size={m} sets it"),
        (None, Some(v)) if v >= heap::CONSTRAINED_FROM => {
            format!("Node {v} sizes it from the container's limit, but never below {} of old space", h(heap::MIN_OLD))
        }
        (None, Some(v)) => format!("Node {v} sizes it from the host's memory ({}), not the container's", h(machine)),
        (None, None) => "V8 sizes it from the memory it is told the machine has".to_string(),
    };
    (heap > limit * 3 / 4).then(|| {
        reason(
            ReasonKind::NodeHeapAboveLimit,
            format!(
                "{who} is Node.js and V8's heap limit is {} ({whence}), above what the container's {} limit leaves it: V8 collects \
                 garbage hard only near its own limit, so the kernel kills the process first; set --max-old-space-size≈{advice} (MiB: \
                 75% of the limit less 64 MiB for V8's young generation and Node itself), and Node stops with its own \"JavaScript heap \
                 out of memory\" instead.",
                h(heap),
                h(limit),
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advice_leaves_room_for_the_young_generation_and_node() {
        const MIB: u64 = 1 << 20;
        let node20 = NodeFacts { version: Some("20.20.2".into()), max_old_space_mib: None };
        let r = one("node (pid 9)", &node20, 128 * MIB, 24 << 30).expect("259 MiB of heap in 128 MiB");
        assert!(r.text.contains("259.0 MiB") && r.text.contains("--max-old-space-size≈32"), "{}", r.text);
        let node18 = NodeFacts { version: Some("18.19.0".into()), ..node20.clone() };
        let r = one("node (pid 9)", &node18, 128 * MIB, 24 << 30).unwrap();
        assert!(r.text.contains("from the host's memory"), "{}", r.text);
        let set = NodeFacts { max_old_space_mib: Some(32), ..node20 };
        assert!(one("node (pid 9)", &set, 128 * MIB, 24 << 30).is_none(), "32 + 48 MiB fits");
    }
}
