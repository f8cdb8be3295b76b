//! Names from the filesystem: kubelet log files and pod directories, cgroup paths.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::parse::{identity, kubelet};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = kubelet::container_log(&text);
    let _ = kubelet::pod_dir(&text);
    let _ = identity::classify(&text);
});
