//! A tracepoint's `format` file from tracefs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::parse::tracefs_format;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(f) = tracefs_format::parse(text) {
        let _ = format!("{f:?}");
    }
});
