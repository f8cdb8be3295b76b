//! What the fault-stack symbolizer reads that a container controls: a JIT's perf map (any
//! process may write its own /tmp), a Go binary's `.gopclntab` and program headers (any
//! executable), and `/proc/<pid>/maps` lines (file names are the container's).
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::{
    parse::{elf, maps, perfmap},
    stacks::gopclntab::GoTable,
};

fuzz_target!(|data: &[u8]| {
    let m = perfmap::PerfMap::parse(data);
    for a in [0, 0x1000, u64::MAX, data.len() as u64] {
        if let Some(n) = m.name(a) {
            let _ = perfmap::display(n);
            let _ = perfmap::is_runtime(n);
        }
    }
    if let Ok(t) = GoTable::parse(data.to_vec()) {
        for pc in [0, 0x401000, 0x1000_0000, u64::MAX] {
            let _ = t.name(pc);
        }
    }
    if let Some((off, entsize, count)) = elf::program_table(data) {
        let table = data.get(usize::try_from(off).unwrap_or(usize::MAX)..).unwrap_or(&[]);
        let _ = elf::loads(table, entsize, count);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = maps::maps(text);
    }
});
