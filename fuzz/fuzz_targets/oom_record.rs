//! A record from the kernel's OOM ring buffer.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = memwatch::oom::decode(data, 4096);
    let _ = memwatch::oom::decode(data, 1024);
});
