//! The OOM event journal (`oom-events.jsonl`), which a crash or a full disk may leave garbled.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::oom::journal;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = journal::parse(text);
});
