//! The JVM's memory flags from its options, as the JVM and the JDK's launchers read them: from
//! `JAVA_TOOL_OPTIONS`, the launcher's own options and `_JAVA_OPTIONS`, later ones winning. Pure.
//! Only the memory flags are kept: an option string may carry secrets (`-Dpassword=…`), and
//! every other token is dropped as it is read.
//!
//! The JDK's launchers (its `libjli`) read the command line two ways ([`Launcher`]): `java`
//! takes `JDK_JAVA_OPTIONS` and the options before the main class (or `-jar`), with `@argfile`s
//! expanded; every other JDK tool (`javac`, `jshell`, `jar`, `keytool`, …) passes to the JVM only
//! its `-J` options (`javac -J-Xmx1g`), wherever they are, and ignores `JDK_JAVA_OPTIONS`.

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
    /// `-XX:+AlwaysPreTouch`: the whole initial heap is touched (made resident) at start.
    #[serde(default)]
    pub always_pre_touch: Option<bool>,
}

/// How a JDK launcher reads its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// `java`: `JDK_JAVA_OPTIONS`, then the options before the main class, `@argfile`s expanded.
    Java,
    /// Any other JDK tool (`javac`, `jshell`, …): only its `-J` options go to the JVM.
    Tool,
}

/// The most of an `@argfile` read.
pub const ARGFILE_LIMIT: usize = 64 << 10;

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
        } else if let Some(b) = boolean("AlwaysPreTouch") {
            self.always_pre_touch = Some(b);
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
    /// `JAVA_TOOL_OPTIONS`, then the launcher's (for `java`: `JDK_JAVA_OPTIONS` and the command
    /// line up to the main class or `-jar`, `@argfile`s read by `argfile`; for another tool: its
    /// `-J` options), then `_JAVA_OPTIONS`.
    pub fn from_sources(
        launcher: Launcher,
        tool: Option<&str>,
        jdk: Option<&str>,
        cmdline: &[&str],
        underscore: Option<&str>,
        argfile: impl Fn(&str) -> Option<String>,
    ) -> Flags {
        let mut f = Flags::default();
        f.apply_all(tool.unwrap_or("").split_whitespace());
        match launcher {
            Launcher::Java => {
                f.apply_all(jdk.unwrap_or("").split_whitespace());
                // The JVM's own options end where the program's begin: at the main class, `-jar
                // FILE` or `--module`; the launcher's path comes first, and some launcher
                // options take the next token as their value.
                let mut it = cmdline.iter().skip(1);
                while let Some(t) = it.next() {
                    if let Some(path) = t.strip_prefix('@').filter(|p| !p.is_empty() && !p.starts_with('@')) {
                        // An argument file: its options as if on the command line (quotes around
                        // a memory flag are dropped; none has a space).
                        if let Some(text) = argfile(path) {
                            f.apply_all(text.split_whitespace().map(|t| t.trim_matches(|c| c == '"' || c == '\'')));
                        }
                        continue;
                    }
                    if !t.starts_with('-') || matches!(*t, "-jar" | "-m" | "--module") {
                        break;
                    }
                    if LAUNCHER_OPTIONS_WITH_VALUE.contains(t) {
                        it.next();
                        continue;
                    }
                    f.apply(t);
                }
            }
            Launcher::Tool => {
                for t in cmdline.iter().skip(1) {
                    if let Some(o) = t.strip_prefix("-J") {
                        f.apply(o);
                    }
                }
            }
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
        let f =
            Flags::from_sources(Launcher::Java, Some("-Xmx1g -Xss512k -Dtoken=abc"), None, &cmd, Some("-XX:MaxDirectMemorySize=64m"), none);
        assert_eq!(f.max_heap_bytes, Some(256 << 20), "the command line over JAVA_TOOL_OPTIONS; the program's -Xmx is not the JVM's");
        assert_eq!(f.thread_stack_bytes, Some(512 << 10));
        assert_eq!(f.max_ram_percentage, Some(60.0));
        assert_eq!(f.max_direct_memory_bytes, Some(64 << 20));
        let json = serde_json::to_string(&f).unwrap();
        assert!(!json.contains("hunter2") && !json.contains("abc"), "{json}");
        let cmd = ["java", "-cp", "/app", "-XX:-UseContainerSupport", "-XX:ThreadStackSize=2048", "Main"];
        let f = Flags::from_sources(Launcher::Java, None, None, &cmd, None, none);
        assert_eq!((f.use_container_support, f.thread_stack_bytes), (Some(false), Some(2 << 20)));
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    /// `javac -J-Xmx1g -J-Xms512m -J-XX:+AlwaysPreTouch`, as a JDK tool passes them to its JVM;
    /// it ignores JDK_JAVA_OPTIONS, and its own arguments are not the JVM's.
    #[test]
    fn a_jdk_tool_passes_its_dash_j_options() {
        let cmd = [
            "/usr/lib/jvm/java-17-openjdk-amd64/bin/javac",
            "-J-Xmx1g",
            "-d",
            "out",
            "-J-Xms512m",
            "-J-XX:+AlwaysPreTouch",
            "-Xlint",
            "A.java",
        ];
        let f = Flags::from_sources(Launcher::Tool, None, Some("-Xmx64m"), &cmd, None, none);
        assert_eq!((f.max_heap_bytes, f.initial_heap_bytes, f.always_pre_touch), (Some(1 << 30), Some(512 << 20), Some(true)));
        // The same options given to `java` without -J are not the JVM's.
        let f = Flags::from_sources(Launcher::Java, None, None, &["java", "-J-Xmx1g", "Main"], None, none);
        assert_eq!(f.max_heap_bytes, None);
    }

    #[test]
    fn an_argfile_is_read_where_java_names_it() {
        let cmd = ["java", "@/app/jvm.opts", "-Xss1m", "Main", "@/not/the/jvms"];
        let read = |p: &str| (p == "/app/jvm.opts").then(|| "-Xmx300m\n\"-XX:MaxDirectMemorySize=32m\"\n-Dsecret=x".to_string());
        let f = Flags::from_sources(Launcher::Java, None, None, &cmd, None, read);
        assert_eq!((f.max_heap_bytes, f.max_direct_memory_bytes, f.thread_stack_bytes), (Some(300 << 20), Some(32 << 20), Some(1 << 20)));
    }
}
