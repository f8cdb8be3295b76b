//! V8's default heap limit, as Node sets it up, measured on this project's machines with Node 20
//! (`v8.getHeapStatistics().heap_size_limit` in cgroups of 128 MiB to 8 GiB and on a 24 GiB host,
//! with and without `--max-old-space-size`) and matching V8's `Heap::HeapSizeFromPhysicalMemory`
//! on 64-bit without pointer compression:
//! - old generation: half the memory V8 is told of, at least 256 MiB, at most 2 GiB (4 GiB on
//!   machines of 16 GiB or more); or `--max-old-space-size`;
//! - young generation: three semi-spaces of the old generation / 256 (old ≤ 256 MiB) or / 128,
//!   between 1 and 16 MiB each; 48 MiB when the old generation was set by hand.

const MIB: u64 = 1 << 20;
/// The smallest default old generation.
pub const MIN_OLD: u64 = 256 * MIB;
/// The Node major version from which V8 is told the container's limit.
pub const CONSTRAINED_FROM: u32 = 20;

/// V8's heap limit in bytes: old generation plus young.
pub fn limit(major: Option<u32>, max_old_space_mib: Option<u64>, container: Option<u64>, machine: u64) -> u64 {
    if let Some(m) = max_old_space_mib {
        return m.saturating_mul(MIB).saturating_add(48 * MIB);
    }
    let told = match (major, container) {
        (Some(v), Some(l)) if v >= CONSTRAINED_FROM && l < machine => l,
        _ => machine,
    };
    let max_old = if told >= 16 << 30 { 4096 * MIB } else { 2048 * MIB };
    let old = (told / 2).clamp(MIN_OLD, max_old);
    let ratio = if old <= MIN_OLD { 256 } else { 128 };
    let semi = (old / ratio).clamp(MIB, 16 * MIB);
    old + 3 * semi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_measured_with_node_20() {
        let host = 24_683_652 * 1024; // this machine's MemTotal
        let node20 = Some(20);
        for (container_mib, heap_mib) in [(128, 259), (256, 259), (512, 259), (1024, 524), (2048, 1048), (8192, 2096)] {
            assert_eq!(limit(node20, None, Some(container_mib * MIB), host), heap_mib * MIB, "{container_mib} MiB");
        }
        assert_eq!(limit(node20, None, None, host), 4144 * MIB, "no container limit");
        for (set, heap_mib) in [(50, 98), (100, 148), (256, 304), (3000, 3048)] {
            assert_eq!(limit(node20, Some(set), Some(128 * MIB), host), heap_mib * MIB);
        }
        assert_eq!(limit(Some(18), None, Some(128 * MIB), host), 4144 * MIB, "Node 18: the host's memory");
    }
}
