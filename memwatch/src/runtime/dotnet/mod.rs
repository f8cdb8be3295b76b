//! .NET: recognised by its executable (`dotnet`) or the runtime it maps (`libcoreclr.so`); its
//! GC heap's hard limit is `DOTNET_GCHeapHardLimit` (bytes) or `DOTNET_GCHeapHardLimitPercent`
//! (a share of the container's limit), both in hexadecimal as .NET reads them, else .NET's
//! default in a memory-limited container: 75% of the limit (at least 20 MiB). Debian ships no
//! .NET runtime, so this is tested on recorded values only.

use serde::{Deserialize, Serialize};

use super::{Executable, Facts, Process, Runtime, RuntimeId};
use crate::{parse::smaps::Mapping, runtime::layout::Class};

/// What memwatch reads of a .NET process: the two settings, as given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DotnetFacts {
    pub gc_heap_hard_limit: Option<String>,
    pub gc_heap_hard_limit_percent: Option<String>,
}

/// .NET's default hard limit in a container: this share of the limit.
pub const DEFAULT_SHARE: f64 = 0.75;
const MIN_DEFAULT: u64 = 20 << 20;

/// A number as .NET reads its GC settings from the environment: hexadecimal, with or without
/// `0x`.
pub fn hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    (!digits.is_empty()).then(|| u64::from_str_radix(digits, 16).ok()).flatten()
}

impl DotnetFacts {
    /// The GC heap's hard limit in a container limited to `limit`, and whether it was set.
    pub fn hard_limit(&self, limit: Option<u64>) -> Option<(u64, bool)> {
        if let Some(b) = self.gc_heap_hard_limit.as_deref().and_then(hex).filter(|b| *b > 0) {
            return Some((b, true));
        }
        let limit = limit?;
        if let Some(p) = self.gc_heap_hard_limit_percent.as_deref().and_then(hex).filter(|p| (1..=100).contains(p)) {
            return Some((limit / 100 * p, true));
        }
        Some((((limit as f64 * DEFAULT_SHARE) as u64).max(MIN_DEFAULT), false))
    }
}

pub struct Dotnet;

pub static DOTNET: Dotnet = Dotnet;

impl Runtime for Dotnet {
    fn id(&self) -> RuntimeId {
        RuntimeId::Dotnet
    }

    fn detect(&self, exe: &Executable<'_>) -> bool {
        exe.file_name() == Some("dotnet")
    }

    fn detect_mapped(&self, libraries: &[String]) -> bool {
        libraries.iter().any(|l| l == "libcoreclr.so")
    }

    fn read(&self, p: &Process<'_>) -> Option<Facts> {
        let env = p.env()?;
        Some(Facts::Dotnet(DotnetFacts {
            gc_heap_hard_limit: env.get("DOTNET_GCHeapHardLimit").map(String::from),
            gc_heap_hard_limit_percent: env.get("DOTNET_GCHeapHardLimitPercent").map(String::from),
        }))
    }

    fn classify(&self, _: Option<&Facts>, _: &Mapping) -> Option<Class> {
        None
    }

    fn describe(&self, facts: &Facts) -> String {
        let Facts::Dotnet(d) = facts else { return String::new() };
        format!(
            "It is .NET: DOTNET_GCHeapHardLimit={}, DOTNET_GCHeapHardLimitPercent={}.",
            d.gc_heap_hard_limit.as_deref().unwrap_or("unset"),
            d.gc_heap_hard_limit_percent.as_deref().unwrap_or("unset")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn settings_are_hexadecimal() {
        assert_eq!(hex("0x10000000"), Some(256 * MIB));
        assert_eq!(hex("10000000"), Some(256 * MIB));
        assert_eq!(hex("4B"), Some(75));
        assert_eq!(hex("0x"), None);
        assert_eq!(hex("zz"), None);
    }

    #[test]
    fn hard_limits_set_and_defaulted() {
        let d = |limit: Option<&str>, pct: Option<&str>| DotnetFacts {
            gc_heap_hard_limit: limit.map(String::from),
            gc_heap_hard_limit_percent: pct.map(String::from),
        };
        assert_eq!(d(None, None).hard_limit(Some(512 * MIB)), Some((384 * MIB, false)));
        assert_eq!(d(None, Some("32")).hard_limit(Some(512 * MIB)), Some((512 * MIB / 100 * 50, true)), "0x32 = 50%");
        assert_eq!(d(Some("0x40000000"), Some("32")).hard_limit(Some(512 * MIB)), Some((1024 * MIB, true)), "bytes win");
    }
}
