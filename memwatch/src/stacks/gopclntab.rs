//! Function names from a Go binary's `.gopclntab`, which Go's linker writes even into binaries
//! stripped with `-ldflags="-s -w"` (no symbol table left): the table maps each function's entry
//! PC to its name. Pure and bounded; Go 1.16-1.17 (magic `0xfffffffa`) and 1.18+ (`0xfffffff0`,
//! `0xfffffff1`) layouts, 64-bit little-endian.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PclntabError {
    #[error("too short")]
    Short,
    #[error("unknown magic {0:#x}")]
    Magic(u32),
    #[error("not a 64-bit table")]
    PtrSize,
    #[error("an offset lies outside the table")]
    Bounds,
}

/// A parsed table: the functions' entry PCs, sorted, and where their names are.
#[derive(Debug, Clone)]
pub struct GoTable {
    data: Vec<u8>,
    /// (entry PC, offset of the name in `data`), by entry.
    funcs: Vec<(u64, u32)>,
}

fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(o..o.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(o..o.checked_add(8)?)?.try_into().ok()?))
}

/// The most functions a table may declare (a large Go binary has a few hundred thousand).
const MAX_FUNCS: u64 = 4_000_000;

impl GoTable {
    pub fn parse(data: Vec<u8>) -> Result<GoTable, PclntabError> {
        let magic = u32_at(&data, 0).ok_or(PclntabError::Short)?;
        let new = match magic {
            0xffff_fff0 | 0xffff_fff1 => true,
            0xffff_fffa => false,
            m => return Err(PclntabError::Magic(m)),
        };
        if data.get(7) != Some(&8) {
            return Err(PclntabError::PtrSize);
        }
        let word = |i: usize| u64_at(&data, 8 + 8 * i).ok_or(PclntabError::Short);
        let nfunc = word(0)?;
        if nfunc > MAX_FUNCS {
            return Err(PclntabError::Bounds);
        }
        let (text_start, funcname, pcln) = if new { (word(2)?, word(3)?, word(7)?) } else { (0, word(2)?, word(6)?) };
        let pcln = usize::try_from(pcln).map_err(|_| PclntabError::Bounds)?;
        let funcname = u32::try_from(funcname).map_err(|_| PclntabError::Bounds)?;
        // Each function takes at least 8 bytes of the table: a count beyond that is a lie.
        if nfunc as usize > data.len() / 8 {
            return Err(PclntabError::Bounds);
        }
        let mut funcs = Vec::with_capacity(nfunc as usize);
        for i in 0..nfunc as usize {
            let row = |width: usize| i.checked_mul(width).and_then(|o| o.checked_add(pcln)).ok_or(PclntabError::Bounds);
            let (entry, funcoff) = if new {
                let at = row(8)?;
                (
                    text_start.checked_add(u32_at(&data, at).ok_or(PclntabError::Bounds)? as u64).ok_or(PclntabError::Bounds)?,
                    u32_at(&data, at.checked_add(4).ok_or(PclntabError::Bounds)?).ok_or(PclntabError::Bounds)? as usize,
                )
            } else {
                let at = row(16)?;
                let funcoff = u64_at(&data, at.checked_add(8).ok_or(PclntabError::Bounds)?).ok_or(PclntabError::Bounds)?;
                (u64_at(&data, at).ok_or(PclntabError::Bounds)?, usize::try_from(funcoff).map_err(|_| PclntabError::Bounds)?)
            };
            // The _func record: its entry (32 or 64 bits), then the name's offset.
            let name_at = pcln.checked_add(funcoff).and_then(|f| f.checked_add(if new { 4 } else { 8 })).ok_or(PclntabError::Bounds)?;
            let name_off = u32_at(&data, name_at).ok_or(PclntabError::Bounds)?;
            let name = funcname.checked_add(name_off).ok_or(PclntabError::Bounds)?;
            if name as usize >= data.len() {
                return Err(PclntabError::Bounds);
            }
            funcs.push((entry, name));
        }
        funcs.sort_unstable_by_key(|f| f.0);
        Ok(GoTable { data, funcs })
    }

    /// The function whose code holds `pc` (the last entry at or below it).
    pub fn name(&self, pc: u64) -> Option<&str> {
        let i = self.funcs.partition_point(|f| f.0 <= pc).checked_sub(1)?;
        let at = self.funcs[i].1 as usize;
        let rest = self.data.get(at..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..end]).ok()
    }

    pub fn functions(&self) -> usize {
        self.funcs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Go 1.18+ table with two functions at text + 0x100 and + 0x200.
    fn table() -> Vec<u8> {
        let mut t = vec![0u8; 72];
        t[..4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        t[6] = 1;
        t[7] = 8;
        let words: [u64; 8] = [2, 0, 0x400000, 72, 0, 0, 0, 100];
        for (i, w) in words.iter().enumerate() {
            t[8 + 8 * i..16 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        t.extend(b"main.main\0main.handleExport\0"); // names at 72 (+0 and +10)
        t.resize(100, 0);
        // functab at 100: (entryoff, funcoff) x 2, then _func records at 100 + 24.
        for (entry, funcoff) in [(0x100u32, 24u32), (0x200, 32)] {
            t.extend(entry.to_le_bytes());
            t.extend(funcoff.to_le_bytes());
        }
        t.extend([0u8; 8]); // the end entry
        for name in [0u32, 10] {
            t.extend(0u32.to_le_bytes());
            t.extend(name.to_le_bytes());
        }
        t
    }

    #[test]
    fn names_by_pc() {
        let g = GoTable::parse(table()).unwrap();
        assert_eq!(g.functions(), 2);
        assert_eq!(g.name(0x400100), Some("main.main"));
        assert_eq!(g.name(0x4001ff), Some("main.main"));
        assert_eq!(g.name(0x400250), Some("main.handleExport"));
        assert_eq!(g.name(0x4000ff), None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(GoTable::parse(vec![1, 2]).unwrap_err(), PclntabError::Short);
        assert!(matches!(GoTable::parse(vec![0; 64]), Err(PclntabError::Magic(0))));
        let mut t = table();
        t[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(GoTable::parse(t).unwrap_err(), PclntabError::Bounds);
        let mut t = table();
        t[64..72].copy_from_slice(&9999u64.to_le_bytes());
        assert_eq!(GoTable::parse(t).unwrap_err(), PclntabError::Bounds);
        // Offsets near the end of the address space (found by the fuzzer): an error, no overflow.
        let mut t = table();
        t[64..72].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
        assert_eq!(GoTable::parse(t).unwrap_err(), PclntabError::Bounds);
        let mut t = table();
        t[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(GoTable::parse(t).unwrap_err(), PclntabError::Bounds);
    }

    #[test]
    fn the_fuzzers_findings_are_errors() {
        for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/fuzz-regressions/gopclntab")).unwrap() {
            let _ = GoTable::parse(std::fs::read(f.unwrap().path()).unwrap());
        }
    }
}
