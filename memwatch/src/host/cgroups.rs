//! The memory cgroup hierarchy looked up by path or id, for any stage that needs it now (the
//! OOM stage, `memwatch explain`), not on the sampling cadence: the cgroupfs collector keeps
//! its own open files for that. Roots are parameters.

use std::{collections::HashMap, hash::Hash, os::unix::fs::MetadataExt, path::Path};

use crate::parse::cgroup as parse;

/// The tighter of two limits, either of which may be absent.
pub fn tightest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Effective memory limits along a walk of the hierarchy that visits parents before children:
/// a cgroup's is the tightest of its own limit and its parent's effective one. The one walk the
/// collectors (keyed by path or by their list's index) and the model share.
#[derive(Debug)]
pub struct LimitWalk<K> {
    limits: HashMap<K, Option<u64>>,
}

impl<K: Eq + Hash> LimitWalk<K> {
    pub fn with_capacity(n: usize) -> Self {
        LimitWalk { limits: HashMap::with_capacity(n) }
    }

    /// The effective limit of `key`, a child of `parent` (None: the root, or a cgroup whose
    /// parent was not visited) limited to `own`; remembered for its children.
    pub fn visit(&mut self, key: K, parent: Option<&K>, own: Option<u64>) -> Option<u64> {
        let inherited = parent.and_then(|p| self.limits.get(p).copied().flatten());
        let limit = tightest(own, inherited);
        self.limits.insert(key, limit);
        limit
    }
}

/// The most directories `find_by_id` looks at before giving up.
const FIND_BY_ID_LIMIT: usize = 200_000;

/// The relative path of `name` under the cgroup at `rel` (`/` being the root).
pub fn child_path(rel: &str, name: &str) -> String {
    if rel == "/" { format!("/{name}") } else { format!("{rel}/{name}") }
}

/// The relative path of the parent of the cgroup at `rel`; None for the root.
pub fn parent_path(rel: &str) -> Option<&str> {
    match rel.rsplit_once('/') {
        _ if rel == "/" => None,
        Some(("", _)) => Some("/"),
        Some((p, _)) => Some(p),
        None => None,
    }
}

/// The path (relative to `root`) of the cgroup whose directory has inode `id`, found by a
/// bounded walk: for cgroups created since the last sample.
pub fn find_by_id(root: &Path, id: u64) -> Option<String> {
    let mut stack = vec![(root.to_path_buf(), String::from("/"))];
    let mut seen = 0;
    while let Some((dir, rel)) = stack.pop() {
        seen += 1;
        if seen > FIND_BY_ID_LIMIT {
            return None;
        }
        if std::fs::metadata(&dir).is_ok_and(|m| m.ino() == id) {
            return Some(rel);
        }
        for e in std::fs::read_dir(&dir).into_iter().flatten().filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let name = e.file_name().to_string_lossy().into_owned();
                stack.push((e.path(), child_path(&rel, &name)));
            }
        }
    }
    None
}

/// The id (directory inode) of the cgroup at `rel` under `root`.
pub fn id_of(root: &Path, rel: &str) -> Option<u64> {
    std::fs::metadata(root.join(rel.trim_start_matches('/'))).ok().map(|m| m.ino())
}

/// (id, path) of the cgroup at `rel` and of each ancestor up to the root, deepest first.
/// Ancestors that cannot be read are left out.
pub fn ancestry(root: &Path, rel: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut cur = Some(rel.to_string());
    while let Some(p) = cur {
        if let Some(id) = id_of(root, &p) {
            out.push((id, p.clone()));
        }
        cur = if p == "/" || p.is_empty() { None } else { Some(parent_path(&p).unwrap_or("/").to_string()) };
    }
    out
}

/// How often this cgroup's own limit was hit: v2 `oom` in memory.events, v1 memory.failcnt.
pub fn limit_events(dir: &Path, v2: bool) -> Option<u64> {
    if v2 {
        let text = std::fs::read_to_string(dir.join("memory.events")).ok()?;
        parse::flat_keyed(&text).get("oom").copied()
    } else {
        parse::value(&std::fs::read_to_string(dir.join("memory.failcnt")).ok()?).ok()
    }
}

/// Whether `memory.oom.group` is set on a cgroup (v2): an OOM kill there kills all its tasks.
pub fn oom_group(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("memory.oom.group")).is_ok_and(|t| t.trim() == "1")
}

/// The parts of a cgroup's memory, read now: memory.stat, and on v1 the kernel memory from
/// `memory.kmem.usage_in_bytes` (v1's memory.stat has none).
pub fn memory_parts(dir: &Path, v2: bool) -> Option<parse::MemoryStat> {
    let mut m = parse::memory_stat(&std::fs::read_to_string(dir.join("memory.stat")).ok()?, v2);
    if !v2 {
        m.kernel = std::fs::read_to_string(dir.join("memory.kmem.usage_in_bytes")).ok().and_then(|t| parse::value(&t).ok());
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_limit_on_the_path_wins() {
        assert_eq!((tightest(Some(1), Some(2)), tightest(None, Some(2)), tightest(None, None)), (Some(1), Some(2), None));
        // root -> a (100) -> b (500); root -> c.
        let mut w = LimitWalk::with_capacity(4);
        assert_eq!(w.visit("/", None, None), None);
        assert_eq!(w.visit("/a", Some(&"/"), Some(100)), Some(100));
        assert_eq!(w.visit("/a/b", Some(&"/a"), Some(500)), Some(100), "the parent's is tighter");
        assert_eq!(w.visit("/c", Some(&"/"), None), None);
        assert_eq!(w.visit("/c/d", Some(&"/c"), Some(50)), Some(50));
    }

    #[test]
    fn ancestry_by_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        let chain = ancestry(dir.path(), "/a/b/c");
        let paths: Vec<&str> = chain.iter().map(|(_, p)| p.as_str()).collect();
        assert_eq!(paths, vec!["/a/b/c", "/a/b", "/a", "/"]);
        assert_eq!(find_by_id(dir.path(), chain[1].0).as_deref(), Some("/a/b"));
        assert_eq!(find_by_id(dir.path(), 1), None);
    }
}
