//! An executable's ELF header, section table and section names (is it a Go program?).
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::parse::elf;

fuzz_target!(|data: &[u8]| {
    let Some((off, entsize, count, strndx)) = elf::section_table(data) else { return };
    let table = data.get(usize::try_from(off).unwrap_or(usize::MAX)..).unwrap_or(&[]);
    if let Some((s, len)) = elf::section_range(table, entsize, strndx) {
        let start = usize::try_from(s).unwrap_or(usize::MAX).min(data.len());
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)).min(data.len());
        let names: Vec<String> = elf::section_names(table, entsize, count, &data[start..end]).into_iter().map(String::from).collect();
        let _ = memwatch::runtime::go::is_go(&names);
    }
});
