//! `/proc/<pid>/smaps`, and the classification `memwatch explain` does with what it parsed
//! (address arithmetic on untrusted ranges).
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::{
    runtime::layout::{Breakdown, Facts},
    parse::smaps,
    runtime::RuntimeId,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(maps) = smaps::parse(text) {
        for runtime in [None, Some(RuntimeId::Go)] {
            let b = Breakdown::of(&maps, &Facts { exe: Some("/bin/x".into()), runtime, runtime_facts: None });
            let mut total = b.clone();
            total.merge(&b);
        }
    }
});
