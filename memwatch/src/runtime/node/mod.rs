//! Node.js: recognised by its executable (`node`, `nodejs`); its heap limit is V8's old
//! generation, from `--max-old-space-size` (MiB, on the command line before the script or in
//! `NODE_OPTIONS`) or V8's default, which depends on the memory V8 is told the machine has.
//! Node 20 and later tell it the container's limit (libuv's `uv_get_constrained_memory`);
//! Node 18 and earlier the host's memory. The version comes from the executable itself.

pub mod heap;

use serde::{Deserialize, Serialize};

use super::{Executable, Facts, Process, Runtime, RuntimeId};
use crate::{parse::smaps::Mapping, runtime::layout::Class};

/// What memwatch reads of a Node.js process.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeFacts {
    /// Node's version, `major.minor.patch`, from its executable.
    pub version: Option<String>,
    /// `--max-old-space-size` in MiB, from the command line or NODE_OPTIONS (the command line
    /// wins).
    pub max_old_space_mib: Option<u64>,
}

impl NodeFacts {
    pub fn major(&self) -> Option<u32> {
        self.version.as_deref()?.split('.').next()?.parse().ok()
    }

    /// V8's heap limit (old generation plus young) for a container limited to `limit` on a
    /// machine with `machine` bytes.
    pub fn heap_limit(&self, limit: Option<u64>, machine: u64) -> u64 {
        heap::limit(self.major(), self.max_old_space_mib, limit, machine)
    }
}

pub struct Node;

pub static NODE: Node = Node;

/// Node's executable names.
fn is_node_name(name: &str) -> bool {
    name == "node" || name == "nodejs"
}

/// `--max-old-space-size=N` (or `--max_old_space_size`) among Node's own options: the
/// command line's tokens before the script (the first that is not an option), or NODE_OPTIONS.
pub fn max_old_space_mib<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Option<u64> {
    let mut found = None;
    let mut it = tokens.into_iter();
    while let Some(t) = it.next() {
        let t = t.replace('_', "-");
        if let Some(v) = t.strip_prefix("--max-old-space-size=") {
            found = v.parse().ok().or(found);
        } else if t == "--max-old-space-size" {
            found = it.next().and_then(|v| v.parse().ok()).or(found);
        }
    }
    found
}

/// Node's options from its command line: after the executable, up to the script.
pub fn cmdline_options<'a>(cmdline: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    cmdline.iter().skip(1).take_while(|t| t.starts_with('-')).copied()
}

/// The version in a Node executable's read-only data, as its inspector reports it
/// (`node.js/v20.20.2`).
pub fn version_in(bytes: &[u8]) -> Option<String> {
    const MARK: &[u8] = b"node.js/v";
    let at = bytes.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let rest = &bytes[at..];
    let end = rest.iter().position(|b| !(b.is_ascii_digit() || *b == b'.')).unwrap_or(rest.len());
    let v = std::str::from_utf8(&rest[..end]).ok()?;
    (v.split('.').count() == 3 && v.split('.').all(|p| !p.is_empty())).then(|| v.to_string())
}

impl Runtime for Node {
    fn id(&self) -> RuntimeId {
        RuntimeId::Node
    }

    fn detect(&self, exe: &Executable<'_>) -> bool {
        exe.file_name().is_some_and(is_node_name)
    }

    fn detect_mapped(&self, libraries: &[String]) -> bool {
        libraries.iter().any(|l| l.starts_with("libnode.so"))
    }

    fn version(&self, exe: &Executable<'_>) -> Option<String> {
        const MARK: &[u8] = b"node.js/v";
        let tail = exe.find(".rodata", MARK, 16)?;
        version_in(&[MARK, &tail].concat())
    }

    fn read(&self, p: &Process<'_>) -> Option<Facts> {
        let cmdline = p.cmdline()?;
        let args: Vec<&str> = cmdline.iter().map(String::as_str).collect();
        let env = p.env();
        let from_env = env.as_ref().and_then(|e| e.get("NODE_OPTIONS")).and_then(|o| max_old_space_mib(o.split_whitespace()));
        let from_args = max_old_space_mib(cmdline_options(&args));
        Some(Facts::Node(NodeFacts { version: p.version.map(String::from), max_old_space_mib: from_args.or(from_env) }))
    }

    fn classify(&self, _: Option<&Facts>, _: &Mapping) -> Option<Class> {
        None
    }

    fn describe(&self, facts: &Facts) -> String {
        let Facts::Node(n) = facts else { return String::new() };
        format!(
            "It is Node.js{}: --max-old-space-size={}.",
            n.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default(),
            n.max_old_space_mib.map(|m| m.to_string()).unwrap_or_else(|| "unset (V8's default)".into())
        )
    }
}

/// The number for `--max-old-space-size`, in MiB, for a container limited to `limit`: three
/// quarters of the limit less 64 MiB, for V8's young generation (up to 48 MiB when the old
/// one is set by hand) and Node itself (its code, libuv, buffers outside the heap); at least
/// 16.
pub fn advised_mib(limit: u64) -> u64 {
    ((limit as f64 * 0.75) as u64 / (1 << 20)).saturating_sub(64).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_before_the_script_only() {
        assert_eq!(max_old_space_mib(cmdline_options(&["node", "--max-old-space-size=96", "app.js"])), Some(96));
        assert_eq!(max_old_space_mib(cmdline_options(&["node", "app.js", "--max-old-space-size=96"])), None, "the script's own");
        assert_eq!(max_old_space_mib(["--max_old_space_size", "200"]), Some(200));
        assert_eq!(max_old_space_mib("--inspect --max-old-space-size=50".split_whitespace()), Some(50));
        assert_eq!(max_old_space_mib(["--max-old-space-size=x"]), None);
    }

    #[test]
    fn version_from_the_executable() {
        assert_eq!(version_in(b"\0abc node.js/v20.20.2\0more"), Some("20.20.2".into()));
        assert_eq!(version_in(b"node.js/v1.2"), None);
        assert_eq!(version_in(b"nothing here"), None);
    }

    #[test]
    fn the_advised_heap_leaves_room_for_the_young_generation_and_node() {
        const MIB: u64 = 1 << 20;
        assert_eq!(advised_mib(128 * MIB), 32);
        assert_eq!(advised_mib(1024 * MIB), 704);
        assert_eq!(advised_mib(64 * MIB), 16);
    }
}
