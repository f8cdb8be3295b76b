//! Quantities for people: bytes in binary units, and durations.

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

/// A share as a percentage for people: whole above 10%, one decimal below ("0.5%").
pub fn percent(share: f64) -> String {
    let p = 100.0 * share;
    if p < 10.0 { format!("{p:.1}%") } else { format!("{p:.0}%") }
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
}
