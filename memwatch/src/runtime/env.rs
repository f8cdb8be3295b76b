//! The one place that decides which environment variables memwatch ever reads from a process.
//!
//! A process's environment often holds secrets (tokens, passwords, keys). memwatch reads
//! `/proc/<pid>/environ` only for programs a runtime recognised, and keeps exactly the
//! variables in [`ALLOWED`]: nothing else is parsed out, stored, logged or served. Adding a
//! runtime that needs a variable means adding it here, in review.

use std::path::Path;

/// Every variable memwatch may read, and which runtime reads it.
pub const ALLOWED: &[&str] = &[
    // Go: the heap limit and the collector's pacing.
    "GOMEMLIMIT",
    "GOGC",
    // The JVM's option variables: only their memory flags are kept (see `jvm::flags`).
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "_JAVA_OPTIONS",
    // Node.js's options: only --max-old-space-size is kept.
    "NODE_OPTIONS",
    // .NET's GC heap limit.
    "DOTNET_GCHeapHardLimit",
    "DOTNET_GCHeapHardLimitPercent",
    // glibc's malloc.
    "MALLOC_ARENA_MAX",
];

/// The allowed variables of one process, as it set them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env(Vec<(&'static str, String)>);

impl Env {
    /// The value of `name` (one of [`ALLOWED`]), when the process set it.
    pub fn get(&self, name: &str) -> Option<&str> {
        debug_assert!(ALLOWED.contains(&name), "{name} is not an allowed variable");
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// The allowed variables from a `/proc/<pid>/environ` (NUL-separated `NAME=value` entries).
/// Pure; everything not in [`ALLOWED`] is dropped unread. When a name repeats, the first one
/// counts, as glibc's `getenv` and Go's runtime both read it.
pub fn parse(environ: &[u8]) -> Env {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for var in environ.split(|&b| b == 0) {
        let Some(eq) = var.iter().position(|&b| b == b'=') else { continue };
        let (name, value) = (&var[..eq], &var[eq + 1..]);
        let Some(allowed) = ALLOWED.iter().find(|a| a.as_bytes() == name) else { continue };
        if !out.iter().any(|(n, _)| n == allowed) {
            out.push((allowed, String::from_utf8_lossy(value).into_owned()));
        }
    }
    Env(out)
}

/// The allowed variables of `pid` now; None when its environment cannot be read (gone, or
/// another user's process without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH).
pub fn read(procfs: &Path, pid: u32) -> Option<Env> {
    Some(parse(&std::fs::read(crate::host::procs::dir(procfs, pid).join("environ")).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_variables_come_out() {
        let env = parse(b"PATH=/usr/bin\0AWS_SECRET_ACCESS_KEY=hunter2\0GOMEMLIMIT=350MiB\0GOGC=50\0HOME=/root\0");
        assert_eq!(env, Env(vec![("GOMEMLIMIT", "350MiB".into()), ("GOGC", "50".into())]));
        assert_eq!(parse(b"GOMEMLIMITX=1\0XGOGC=2\0GOGC\0"), Env::default());
        assert_eq!(parse(b""), Env::default());
        assert_eq!(parse(b"GOGC=1\0GOGC=2\0").get("GOGC"), Some("1"), "the first, as getenv reads it");
    }
}
