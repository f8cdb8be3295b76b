//! Pure parsers: text and bytes in, typed values out. No I/O here; collectors read files and
//! hand their contents to these functions.
pub mod btf;
pub mod caps;
pub mod cgroup;
pub mod elf;
pub mod identity;
pub mod kubelet;
pub mod maps;
pub mod perfmap;
pub mod proc;
pub mod smaps;
pub mod tracefs_format;
pub mod webconfig;
