//! The JVM's performance-data file (hostile: any process may write its own /tmp) and the
//! runtimes' option parsers (a JVM's flags, Node's options, .NET's hexadecimal settings).
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::runtime::{dotnet, jvm, node};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = jvm::perfdata::parse(data) {
        let j = jvm::figures(&p, jvm::Flags::default());
        let _ = j.max_heap(Some(1 << 30), 1 << 34);
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let tokens: Vec<&str> = text.split_whitespace().collect();
    for launcher in [jvm::flags::Launcher::Java, jvm::flags::Launcher::Tool] {
        let _ = jvm::Flags::from_sources(launcher, Some(text), Some(text), &tokens, Some(text), |_| Some(text.to_string()));
    }
    let _ = node::max_old_space_mib(tokens.iter().copied());
    let _ = node::version_in(data);
    let _ = dotnet::hex(text);
});
