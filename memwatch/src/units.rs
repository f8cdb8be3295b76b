//! Quantities for people: bytes in binary units, durations, and the sizes Go reads.

/// Bytes in binary units: `512 B`, `4.0 KiB`, `1.5 GiB`.
pub fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{v:.0} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// A duration for people: `45s`, `3m20s`, `2h05m`.
pub fn human_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

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
    fn units() {
        assert_eq!(human(512.0), "512 B");
        assert_eq!(human(4096.0), "4.0 KiB");
        assert_eq!(human(64.0 * 1048576.0), "64.0 MiB");
        assert_eq!(human(1.5 * 1073741824.0), "1.5 GiB");
        assert_eq!(human_secs(45.2), "45s");
        assert_eq!(human_secs(200.0), "3m20s");
        assert_eq!(human_secs(7500.0), "2h05m");
    }

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
