//! The JVM's memory flags from its options, as the JVM reads them: from `JAVA_TOOL_OPTIONS`,
//! `JDK_JAVA_OPTIONS`, the command line and `_JAVA_OPTIONS`, later ones winning. Pure. Only the
//! memory flags are kept: an option string may carry secrets (`-Dpassword=…`), and every other
//! token is dropped as it is read.

use serde::{Deserialize, Serialize};

/// The memory flags a JVM was given (None: not given).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Flags {
    /// `-Xmx` / `-XX:MaxHeapSize`.
    pub max_heap_bytes: Option<u64>,
    /// `-Xms` / `-XX:InitialHeapSize`.
    pub initial_heap_bytes: Option<u64>,
    /// `-XX:MaxRAMPercentage`.
    pub max_ram_percentage: Option<f64>,
    /// `-XX:MaxRAM`: the memory the JVM sizes itself from instead of the container's.
    pub max_ram_bytes: Option<u64>,
    /// `-XX:MaxDirectMemorySize`.
    pub max_direct_memory_bytes: Option<u64>,
    /// `-XX:MaxMetaspaceSize`.
    pub max_metaspace_bytes: Option<u64>,
    /// `-Xss` / `-XX:ThreadStackSize`.
    pub thread_stack_bytes: Option<u64>,
    /// `-XX:ReservedCodeCacheSize`.
    pub reserved_code_cache_bytes: Option<u64>,
    /// `-XX:-UseContainerSupport` turns the JVM's view of the container's limit off.
    pub use_container_support: Option<bool>,
    /// `-XX:-UsePerfData`: no performance-data file.
    pub use_perf_data: Option<bool>,
}

/// The `java` launcher's options whose value is the next token.
const LAUNCHER_OPTIONS_WITH_VALUE: &[&str] = &[
    "-cp",
    "-classpath",
    "--class-path",
    "-p",
    "--module-path",
    "--upgrade-module-path",
    "--add-modules",
    "--add-opens",
    "--add-exports",
    "--add-reads",
    "--patch-module",
    "--limit-modules",
    "--enable-native-access",
    "--source",
];

/// A size as the JVM reads one: digits and an optional `k`, `m`, `g` or `t` (either case).
pub fn size(s: &str) -> Option<u64> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        b't' | b'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

impl Flags {
    /// Applies one token (a later one overrides an earlier one, as in the JVM).
    fn apply(&mut self, t: &str) {
        let xx = |name: &str| t.strip_prefix("-XX:").and_then(|r| r.strip_prefix(name)).and_then(|r| r.strip_prefix('='));
        let boolean = |name: &str| match t.strip_prefix("-XX:") {
            Some(r) if r.strip_prefix('+') == Some(name) => Some(true),
            Some(r) if r.strip_prefix('-') == Some(name) => Some(false),
            _ => None,
        };
        if let Some(v) = t.strip_prefix("-Xmx").or_else(|| xx("MaxHeapSize")) {
            self.max_heap_bytes = size(v).or(self.max_heap_bytes);
        } else if let Some(v) = t.strip_prefix("-Xms").or_else(|| xx("InitialHeapSize")) {
            self.initial_heap_bytes = size(v).or(self.initial_heap_bytes);
        } else if let Some(v) = t.strip_prefix("-Xss") {
            self.thread_stack_bytes = size(v).or(self.thread_stack_bytes);
        } else if let Some(v) = xx("ThreadStackSize") {
            // In KiB.
            self.thread_stack_bytes = size(v).and_then(|k| k.checked_mul(1024)).or(self.thread_stack_bytes);
        } else if let Some(v) = xx("MaxRAMPercentage") {
            self.max_ram_percentage = v.parse::<f64>().ok().filter(|p| (0.0..=100.0).contains(p)).or(self.max_ram_percentage);
        } else if let Some(v) = xx("MaxRAM") {
            self.max_ram_bytes = size(v).or(self.max_ram_bytes);
        } else if let Some(v) = xx("MaxDirectMemorySize") {
            self.max_direct_memory_bytes = size(v).or(self.max_direct_memory_bytes);
        } else if let Some(v) = xx("MaxMetaspaceSize") {
            self.max_metaspace_bytes = size(v).or(self.max_metaspace_bytes);
        } else if let Some(v) = xx("ReservedCodeCacheSize") {
            self.reserved_code_cache_bytes = size(v).or(self.reserved_code_cache_bytes);
        } else if let Some(b) = boolean("UseContainerSupport") {
            self.use_container_support = Some(b);
        } else if let Some(b) = boolean("UsePerfData") {
            self.use_perf_data = Some(b);
        }
    }

    /// Applies every token of an option string split at white space (as the JVM splits the
    /// option variables; quotes are not interpreted for the memory flags, which have none).
    pub fn apply_all<'a>(&mut self, tokens: impl IntoIterator<Item = &'a str>) {
        for t in tokens {
            self.apply(t);
        }
    }

    /// The flags from the option variables and the command line, in the JVM's order:
    /// `JAVA_TOOL_OPTIONS`, then `JDK_JAVA_OPTIONS` (the `java` launcher's), then the command
    /// line up to the main class or `-jar`, then `_JAVA_OPTIONS`.
    pub fn from_sources(tool: Option<&str>, jdk: Option<&str>, cmdline: &[&str], underscore: Option<&str>) -> Flags {
        let mut f = Flags::default();
        f.apply_all(tool.unwrap_or("").split_whitespace());
        f.apply_all(jdk.unwrap_or("").split_whitespace());
        // The JVM's own options end where the program's begin: at the main class, `-jar FILE`
        // or `--module`; the launcher's path comes first, and some launcher options take the
        // next token as their value.
        let mut it = cmdline.iter().skip(1);
        while let Some(t) = it.next() {
            if !t.starts_with('-') || matches!(*t, "-jar" | "-m" | "--module") {
                break;
            }
            if LAUNCHER_OPTIONS_WITH_VALUE.contains(t) {
                it.next();
                continue;
            }
            f.apply(t);
        }
        f.apply_all(underscore.unwrap_or("").split_whitespace());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_the_jvm_reads_them() {
        assert_eq!(size("512m"), Some(512 << 20));
        assert_eq!(size("2G"), Some(2 << 30));
        assert_eq!(size("1024k"), Some(1 << 20));
        assert_eq!(size("4096"), Some(4096));
        for bad in ["", "m", "1.5g", "-1m", "12mb", "99999999999999999999"] {
            assert_eq!(size(bad), None, "{bad}");
        }
    }

    #[test]
    fn later_sources_win_and_nothing_else_is_kept() {
        let cmd = ["/usr/bin/java", "-Xmx256m", "-Dpassword=hunter2", "-XX:MaxRAMPercentage=60.0", "-jar", "app.jar", "-Xmx1g"];
        let f = Flags::from_sources(Some("-Xmx1g -Xss512k -Dtoken=abc"), None, &cmd, Some("-XX:MaxDirectMemorySize=64m"));
        assert_eq!(f.max_heap_bytes, Some(256 << 20), "the command line over JAVA_TOOL_OPTIONS; the program's -Xmx is not the JVM's");
        assert_eq!(f.thread_stack_bytes, Some(512 << 10));
        assert_eq!(f.max_ram_percentage, Some(60.0));
        assert_eq!(f.max_direct_memory_bytes, Some(64 << 20));
        let json = serde_json::to_string(&f).unwrap();
        assert!(!json.contains("hunter2") && !json.contains("abc"), "{json}");
        let f =
            Flags::from_sources(None, None, &["java", "-cp", "/app", "-XX:-UseContainerSupport", "-XX:ThreadStackSize=2048", "Main"], None);
        assert_eq!((f.use_container_support, f.thread_stack_bytes), (Some(false), Some(2 << 20)));
    }
}
