//! Just enough ELF to tell which runtime built a program: section names from the section
//! header table.

/// Where the section headers are, from the 64-byte ELF64 little-endian file header:
/// (table offset, entry size, entry count, index of the section-name string table).
pub fn section_table(header: &[u8]) -> Option<(u64, u16, u16, u16)> {
    if header.len() < 64 || &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None; // not ELF, or not 64-bit little-endian
    }
    let u16_at = |o: usize| u16::from_le_bytes([header[o], header[o + 1]]);
    let shoff = u64::from_le_bytes(header[0x28..0x30].try_into().ok()?);
    Some((shoff, u16_at(0x3a), u16_at(0x3c), u16_at(0x3e)))
}

/// (offset, size) of section `index` in the section header table `table`.
pub fn section_range(table: &[u8], entsize: u16, index: u16) -> Option<(u64, u64)> {
    let e = table.get(index as usize * entsize as usize..(index as usize + 1) * entsize as usize)?;
    if e.len() < 0x28 {
        return None;
    }
    Some((u64::from_le_bytes(e[0x18..0x20].try_into().ok()?), u64::from_le_bytes(e[0x20..0x28].try_into().ok()?)))
}

/// Section names, given the header table and the section-name string table.
pub fn section_names<'a>(table: &[u8], entsize: u16, count: u16, strtab: &'a [u8]) -> Vec<&'a str> {
    (0..count as usize)
        .filter_map(|i| {
            let e = table.get(i * entsize as usize..i * entsize as usize + 4)?;
            let off = u32::from_le_bytes(e.try_into().ok()?) as usize;
            let s = strtab.get(off..)?;
            let end = s.iter().position(|&b| b == 0)?;
            std::str::from_utf8(&s[..end]).ok()
        })
        .collect()
}

/// A loadable segment: where its bytes are in the file and at which address they are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub executable: bool,
}

/// The `PT_LOAD` segments from the program header table `table` (read at the header's
/// `e_phoff`: see [`program_table`]).
pub fn loads(table: &[u8], entsize: u16, count: u16) -> Vec<Load> {
    (0..count as usize)
        .filter_map(|i| {
            let e = table.get(i * entsize as usize..i * entsize as usize + 56)?;
            let u64_at = |o: usize| u64::from_le_bytes(e[o..o + 8].try_into().unwrap_or([0; 8]));
            (u32::from_le_bytes(e[..4].try_into().ok()?) == 1).then(|| Load {
                offset: u64_at(8),
                vaddr: u64_at(16),
                filesz: u64_at(32),
                executable: u32::from_le_bytes(e[4..8].try_into().unwrap_or([0; 4])) & 1 != 0,
            })
        })
        .collect()
}

/// Where the program headers are: (offset, entry size, count), from the ELF64 header.
pub fn program_table(header: &[u8]) -> Option<(u64, u16, u16)> {
    section_table(header)?;
    let u16_at = |o: usize| u16::from_le_bytes([header[o], header[o + 1]]);
    Some((u64::from_le_bytes(header[0x20..0x28].try_into().ok()?), u16_at(0x36), u16_at(0x38)))
}

/// The build id in a `.note.gnu.build-id` section's bytes.
pub fn build_id(note: &[u8]) -> Option<Vec<u8>> {
    let u32_at = |o: usize| Some(u32::from_le_bytes(note.get(o..o + 4)?.try_into().ok()?) as usize);
    let (namesz, descsz, kind) = (u32_at(0)?, u32_at(4)?, u32_at(8)?);
    if kind != 3 || namesz != 4 || note.get(12..16)? != b"GNU\0" {
        return None;
    }
    note.get(16..16 + descsz).map(<[u8]>::to_vec).filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with three sections: null, .shstrtab and `extra`.
    fn elf(extra: &str) -> Vec<u8> {
        let strtab = format!("\0.shstrtab\0{extra}\0");
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let strtab_off = 64u64;
        let shoff = strtab_off + strtab.len() as u64;
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        f.extend(strtab.as_bytes());
        for (name, off, size) in [(0u32, 0u64, 0u64), (1, strtab_off, strtab.len() as u64), (11, 0, 0)] {
            let mut e = vec![0u8; 64];
            e[..4].copy_from_slice(&name.to_le_bytes());
            e[0x18..0x20].copy_from_slice(&off.to_le_bytes());
            e[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            f.extend(e);
        }
        f
    }

    fn names_of(file: &[u8]) -> Vec<String> {
        let (shoff, entsize, count, strndx) = section_table(file).unwrap();
        let table = &file[shoff as usize..shoff as usize + entsize as usize * count as usize];
        let (so, ss) = section_range(table, entsize, strndx).unwrap();
        section_names(table, entsize, count, &file[so as usize..(so + ss) as usize]).into_iter().map(String::from).collect()
    }

    #[test]
    fn section_names_of_a_small_elf() {
        assert_eq!(names_of(&elf(".go.buildinfo")), vec!["", ".shstrtab", ".go.buildinfo"]);
        assert_eq!(names_of(&elf(".eh_frame")), vec!["", ".shstrtab", ".eh_frame"]);
    }

    #[test]
    fn rejects_non_elf() {
        assert_eq!(section_table(b"#!/bin/sh\n"), None);
        assert_eq!(section_table(&[0u8; 64]), None);
    }
}
