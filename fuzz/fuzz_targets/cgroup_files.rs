//! Every cgroup file parser, on any text (the daemon reads them as UTF-8).
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::parse::cgroup;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = cgroup::flat_keyed(text);
    let _ = cgroup::pick(text, ["anon", "file", "shmem", "oom_kill"]);
    let _ = cgroup::limit(text);
    let _ = cgroup::value(text);
    let _ = cgroup::psi(text);
    let _ = cgroup::memory_stat(text, true);
    let _ = cgroup::memory_stat(text, false);
    let _ = cgroup::procs(text);
});
