//! Sizes as Go reads and writes them.

/// What Go's runtime makes of a GOMEMLIMIT value (its `parseByteCount`): a whole number with
/// an optional unit `B`, `KiB`, `MiB`, `GiB` or `TiB`; `off` is no limit (Some(u64::MAX) here).
/// None for anything Go would reject (it then runs with no limit and says so on stderr).
pub fn go_byte_count(s: &str) -> Option<u64> {
    if s == "off" {
        return Some(u64::MAX);
    }
    let units = [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)];
    let (digits, mult) = units.iter().find_map(|(u, m)| s.strip_suffix(u).map(|d| (d, *m))).unwrap_or((s, 1));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(mult).filter(|v| *v <= i64::MAX as u64)
}

/// Bytes as Go's GOMEMLIMIT would be written, in whole MiB (rounded to nearest).
pub fn go_mib(bytes: u64) -> String {
    format!("{}MiB", (bytes as f64 / (1u64 << 20) as f64).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_byte_counts_as_go_reads_them() {
        assert_eq!(go_byte_count("58MiB"), Some(58 << 20));
        assert_eq!(go_byte_count("1GiB"), Some(1 << 30));
        assert_eq!(go_byte_count("123"), Some(123));
        assert_eq!(go_byte_count("512B"), Some(512));
        assert_eq!(go_byte_count("off"), Some(u64::MAX));
        for bad in ["", "MiB", "58MB", "58 MiB", "-1", "1.5GiB", "58mib", "99999999999TiB"] {
            assert_eq!(go_byte_count(bad), None, "{bad}");
        }
        assert_eq!(go_mib(60397977), "58MiB");
    }
}
