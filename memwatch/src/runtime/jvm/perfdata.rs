//! HotSpot's performance-data file (`hsperfdata`), parsed: the counters a JVM keeps in a file it
//! maps (`/tmp/hsperfdata_<user>/<pid>`), which `jstat` reads. Pure and bounded: every offset
//! and size the file declares is checked against the bytes given, so a garbled, truncated or
//! hostile file gives an error, never a panic or a large allocation.
//!
//! Layout (HotSpot's `perfMemory.hpp`): a 32-byte prologue (magic `0xcafec0c0`, byte order,
//! version 2.0, an `accessible` flag, bytes used, the offset of the first entry and the entry
//! count), then entries, each with its own length, the offset of its NUL-terminated name, its
//! type (`J` a 64-bit number, `B` a byte vector: a string) and the offset of its data.

use std::collections::BTreeMap;

use thiserror::Error;

/// The most entries a file may declare (HotSpot 17 writes about 300).
const MAX_ENTRIES: u32 = 65_536;
/// The prologue's size.
const PROLOGUE: usize = 32;
/// An entry's fixed header.
const ENTRY_HEADER: usize = 20;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PerfDataError {
    #[error("shorter than its prologue ({0} bytes)")]
    Short(usize),
    #[error("not a performance-data file (magic {0:#010x})")]
    Magic(u32),
    #[error("version {0}.{1}, not 2.x")]
    Version(u8, u8),
    #[error("not accessible yet (the JVM is starting)")]
    NotAccessible,
    #[error("declares {used} bytes used but has {len}")]
    Truncated { used: u32, len: usize },
    #[error("declares {0} entries")]
    TooManyEntries(u32),
    #[error("entry {index} at {offset} lies outside the data")]
    Entry { index: u32, offset: usize },
}

/// One counter's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Long(i64),
    Str(String),
}

/// A file's counters by name (unknown types are skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerfData {
    pub counters: BTreeMap<String, Value>,
}

impl PerfData {
    pub fn long(&self, name: &str) -> Option<i64> {
        match self.counters.get(name)? {
            Value::Long(v) => Some(*v),
            Value::Str(_) => None,
        }
    }

    /// A non-negative count or size.
    pub fn unsigned(&self, name: &str) -> Option<u64> {
        self.long(name).and_then(|v| u64::try_from(v).ok())
    }

    pub fn string(&self, name: &str) -> Option<&str> {
        match self.counters.get(name)? {
            Value::Str(s) => Some(s),
            Value::Long(_) => None,
        }
    }

    /// The sum of `prefix.N.suffix` for N = 0, 1, ... while present (at most 64).
    pub fn sum_indexed(&self, prefix: &str, suffix: &str) -> Option<u64> {
        let mut total = None;
        for i in 0..64 {
            let Some(v) = self.unsigned(&format!("{prefix}.{i}.{suffix}")) else { break };
            total = Some(total.unwrap_or(0u64).saturating_add(v));
        }
        total
    }
}

/// Parses a whole file as read.
pub fn parse(data: &[u8]) -> Result<PerfData, PerfDataError> {
    parse_selected(data, |_| true)
}

/// Parses a file, keeping only the counters whose names `keep` accepts (the others are
/// checked and skipped without being copied).
pub fn parse_selected(data: &[u8], keep: impl Fn(&[u8]) -> bool) -> Result<PerfData, PerfDataError> {
    if data.len() < PROLOGUE {
        return Err(PerfDataError::Short(data.len()));
    }
    let magic = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    if magic != 0xcafe_c0c0 {
        return Err(PerfDataError::Magic(magic));
    }
    let little = data[4] == 1;
    let (major, minor) = (data[5], data[6]);
    if major != 2 {
        return Err(PerfDataError::Version(major, minor));
    }
    if data[7] == 0 {
        return Err(PerfDataError::NotAccessible);
    }
    let u32_at = |o: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(o..o + 4)?.try_into().ok()?;
        Some(if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    };
    let i64_at = |o: usize| -> Option<i64> {
        let b: [u8; 8] = data.get(o..o + 8)?.try_into().ok()?;
        Some(if little { i64::from_le_bytes(b) } else { i64::from_be_bytes(b) })
    };
    let used = u32_at(8).unwrap_or(0);
    if used as usize > data.len() {
        return Err(PerfDataError::Truncated { used, len: data.len() });
    }
    let data = &data[..used as usize];
    let (first, count) = (u32_at(24).unwrap_or(0) as usize, u32_at(28).unwrap_or(0));
    if count > MAX_ENTRIES {
        return Err(PerfDataError::TooManyEntries(count));
    }
    let mut out = PerfData::default();
    let mut at = first;
    for index in 0..count {
        let bad = PerfDataError::Entry { index, offset: at };
        let header = data.get(at..at + ENTRY_HEADER).ok_or_else(|| bad.clone())?;
        let field = |o: usize| u32_at(at + o).map(|v| v as usize);
        let (len, name_off, vector_len, data_off) =
            (field(0).unwrap_or(0), field(4).unwrap_or(0), field(8).unwrap_or(0), field(16).unwrap_or(0));
        let entry = data.get(at..at.checked_add(len).ok_or_else(|| bad.clone())?).filter(|_| len >= ENTRY_HEADER).ok_or(bad.clone())?;
        let name = entry.get(name_off..).and_then(|n| n.split(|&b| b == 0).next()).ok_or(bad.clone())?;
        if !keep(name) {
            at += len;
            continue;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        match header[12] {
            b'J' => {
                let v = entry.get(data_off..data_off + 8).and_then(|_| i64_at(at + data_off)).ok_or(bad.clone())?;
                out.counters.insert(name, Value::Long(v));
            }
            b'B' => {
                let bytes = entry.get(data_off..data_off.checked_add(vector_len).ok_or(bad.clone())?).ok_or(bad.clone())?;
                let s = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
                out.counters.insert(name, Value::Str(String::from_utf8_lossy(s).into_owned()));
            }
            _ => {}
        }
        at += len;
    }
    Ok(out)
}

/// Builds a file the way HotSpot lays one out, for tests and benchmarks (little-endian).
pub fn build(counters: &[(&str, Value)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in counters {
        let name_off = ENTRY_HEADER;
        let mut name_bytes = name.as_bytes().to_vec();
        name_bytes.push(0);
        while !(ENTRY_HEADER + name_bytes.len()).is_multiple_of(8) {
            name_bytes.push(0);
        }
        let data_off = ENTRY_HEADER + name_bytes.len();
        let (kind, data, vector) = match value {
            Value::Long(v) => (b'J', v.to_le_bytes().to_vec(), 0),
            Value::Str(s) => {
                let mut d = s.as_bytes().to_vec();
                d.push(0);
                let n = d.len();
                while !d.len().is_multiple_of(8) {
                    d.push(0);
                }
                (b'B', d, n)
            }
        };
        let len = data_off + data.len();
        for v in [len as u32, name_off as u32, vector as u32] {
            body.extend(v.to_le_bytes());
        }
        body.extend([kind, 0, 0, 0]);
        body.extend((data_off as u32).to_le_bytes());
        body.extend(name_bytes);
        body.extend(data);
    }
    let mut f = vec![0xca, 0xfe, 0xc0, 0xc0, 1, 2, 0, 1];
    f.extend(((PROLOGUE + body.len()) as u32).to_le_bytes());
    f.extend(0u32.to_le_bytes());
    f.extend(0i64.to_le_bytes());
    f.extend((PROLOGUE as u32).to_le_bytes());
    f.extend((counters.len() as u32).to_le_bytes());
    f.extend(body);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        build(&[
            ("sun.gc.generation.0.space.0.used", Value::Long(3 << 20)),
            ("sun.gc.generation.0.space.1.used", Value::Long(1 << 20)),
            ("java.rt.vmArgs", Value::Str("-Xmx512m -Dsecret=x".into())),
        ])
    }

    #[test]
    fn reads_longs_and_strings() {
        let p = parse(&sample()).unwrap();
        assert_eq!(p.unsigned("sun.gc.generation.0.space.0.used"), Some(3 << 20));
        assert_eq!(p.sum_indexed("sun.gc.generation.0.space", "used"), Some(4 << 20));
        assert_eq!(p.string("java.rt.vmArgs"), Some("-Xmx512m -Dsecret=x"));
        assert_eq!(p.long("java.rt.vmArgs"), None);
    }

    #[test]
    fn garbled_truncated_and_oversized_claims_are_errors() {
        let good = sample();
        assert_eq!(parse(&good[..10]), Err(PerfDataError::Short(10)));
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(matches!(parse(&bad), Err(PerfDataError::Magic(_))));
        assert!(matches!(parse(&good[..good.len() - 4]), Err(PerfDataError::Truncated { .. })));
        let mut many = good.clone();
        many[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&many), Err(PerfDataError::TooManyEntries(u32::MAX)));
        // An entry whose length runs past the end, and one whose name offset does.
        let mut long = good.clone();
        long[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&long), Err(PerfDataError::Entry { index: 0, .. })));
        let mut name = good.clone();
        name[36..40].copy_from_slice(&5000u32.to_le_bytes());
        assert!(matches!(parse(&name), Err(PerfDataError::Entry { .. })));
        let mut starting = good;
        starting[7] = 0;
        assert_eq!(parse(&starting), Err(PerfDataError::NotAccessible));
    }
}
