//! The kernel's BTF (`/sys/kernel/btf/vmlinux`), and the lookups memwatch makes in it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::parse::btf::Btf;

fuzz_target!(|data: &[u8]| {
    if let Ok(btf) = Btf::parse(data) {
        let _ = btf.member_offset("task_struct", "cgroups");
        let _ = btf.member_offset("mem_cgroup", "memory");
        let _ = btf.enum_value("cgroup_subsys_id", "memory_cgrp_id");
    }
});
