//! Parser for the capability masks in `/proc/<pid>/status`.

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// The effective capability mask (`CapEff:`), if present and well formed.
pub fn effective(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

pub fn has(mask: u64, cap: u32) -> bool {
    mask & (1u64 << cap) != 0
}

/// What loading and attaching tracepoint programs needs that `mask` lacks. Before CAP_BPF
/// existed (Linux < 5.8) CAP_SYS_ADMIN covered both.
pub fn missing_for_bpf(mask: u64) -> Vec<&'static str> {
    if has(mask, CAP_SYS_ADMIN) {
        return vec![];
    }
    let mut missing = vec![];
    if !has(mask, CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(mask, CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unprivileged() {
        let root = "Name:\tbash\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(missing_for_bpf(effective(root).unwrap()), Vec::<&str>::new());
        let user = "CapEff:\t0000000000000000\n";
        assert_eq!(missing_for_bpf(effective(user).unwrap()), vec!["CAP_BPF", "CAP_PERFMON"]);
        // CAP_BPF alone is not enough for tracepoints.
        let bpf_only = format!("CapEff:\t{:016x}\n", 1u64 << CAP_BPF);
        assert_eq!(missing_for_bpf(effective(&bpf_only).unwrap()), vec!["CAP_PERFMON"]);
        assert_eq!(effective("CapEff:\tzz\n"), None);
    }
}
