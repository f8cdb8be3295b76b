//! `/proc/<pid>/stat`, `status` (capabilities), `cgroup`, `environ` and `/proc/meminfo`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::{
    parse::{caps, proc},
    runtime::env,
};

fuzz_target!(|data: &[u8]| {
    let _ = env::parse(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = proc::stat(text);
    let _ = proc::mem_total(text);
    let _ = proc::memory_cgroup_path(text);
    if let Some(mask) = caps::effective(text) {
        let _ = caps::missing_for_bpf(mask);
    }
});
