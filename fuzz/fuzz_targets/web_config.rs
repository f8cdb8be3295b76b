//! `--web.config.file` (exporter-toolkit's format): an operator's file, parsed strictly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::parse::webconfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = webconfig::parse(text, std::path::Path::new("/etc/memwatch"));
});
