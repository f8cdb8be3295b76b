//! Go: recognised by the sections Go's linker writes (`.go.buildinfo`, `.gopclntab`); its
//! settings are `GOMEMLIMIT` and `GOGC`, the only two variables read from a Go program's
//! environment. A limit set in code with `debug.SetMemoryLimit` lives in the runtime's memory
//! and cannot be read without a debugger; the advice says so. Its heap arenas are told by the
//! addresses Go's allocator hints at.

pub mod units;

use serde::{Deserialize, Serialize};

use super::{Executable, Facts, Process, Runtime, RuntimeId};
use crate::{parse::smaps::Mapping, runtime::layout::Class};

/// GOMEMLIMIT advice: this share of the container's limit, leaving room for memory outside
/// Go's heap (stacks, runtime metadata, cgo).
pub const GOMEMLIMIT_SHARE: f64 = 0.9;

/// A Go program's memory settings, as its environment gives them (None: unset).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Settings {
    pub gomemlimit: Option<String>,
    pub gogc: Option<String>,
}

pub struct Go;

/// The registered Go runtime.
pub static GO: Go = Go;

/// Go's linker writes `.go.buildinfo` (Go >= 1.13) into every binary it makes, and
/// `.gopclntab` even into stripped ones.
pub fn is_go(section_names: &[String]) -> bool {
    section_names.iter().any(|n| n == ".go.buildinfo" || n == ".gopclntab")
}

/// Whether `addr` is in one of the ranges Go's heap uses on 64-bit Linux: `i << 40 | 0xc0 << 32`
/// upwards, tried from i = 0 on. The ranges of the largest `i` are where the kernel puts
/// ordinary mappings (from 0x7e.. up), so they are left out.
pub fn in_arena_hints(addr: u64) -> bool {
    let low = addr & ((1 << 40) - 1);
    low >= 0xc0 << 32 && addr >> 40 < 0x7e
}

impl Runtime for Go {
    fn id(&self) -> RuntimeId {
        RuntimeId::Go
    }

    fn detect(&self, exe: &Executable<'_>) -> bool {
        is_go(&exe.section_names())
    }

    fn read(&self, p: &Process<'_>) -> Option<Facts> {
        let env = p.env()?;
        Some(Facts::Go(Settings { gomemlimit: env.get("GOMEMLIMIT").map(String::from), gogc: env.get("GOGC").map(String::from) }))
    }

    fn classify(&self, _: Option<&Facts>, m: &Mapping) -> Option<Class> {
        (m.is_anonymous() && in_arena_hints(m.start)).then_some(Class::GoHeapArenas)
    }

    fn unexplained_anonymous(&self) -> Option<Class> {
        Some(Class::GoRuntime)
    }

    fn describe(&self, facts: &Facts) -> String {
        let Facts::Go(s) = facts else { return String::new() };
        format!(
            "It is a Go program: GOMEMLIMIT={}, GOGC={}.",
            s.gomemlimit.as_deref().unwrap_or("unset"),
            s.gogc.as_deref().unwrap_or("unset (100)")
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn tells_go_from_c() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_go(&names(&["", ".shstrtab", ".go.buildinfo"])));
        assert!(is_go(&names(&[".text", ".gopclntab"])), "stripped with -s -w");
        assert!(!is_go(&names(&["", ".eh_frame"])));
    }

    #[test]
    fn arena_ranges_and_not_the_mmap_area() {
        assert!(in_arena_hints(0xc000000000));
        assert!(in_arena_hints(0x1c000400000));
        assert!(!in_arena_hints(0xb000000000));
        assert!(!in_arena_hints(0x7fc1dbc07000), "where libraries go");
    }
}
