//! The memory hierarchy: every cgroup with memory accounting and what its files say, on v2,
//! v1 and hybrid hosts. A cgroup that vanishes mid-walk is skipped silently; a file that is
//! unreadable or malformed skips that value and counts an error.

use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::{CollectError, Collector, RawCgroup, SnapshotBuilder, read_into};
use crate::{
    Roots,
    host,
    parse::cgroup as parse,
};

pub struct Cgroupfs;

const NAME: &str = "cgroupfs";

impl Collector for Cgroupfs {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collect(&mut self, roots: &Roots, out: &mut SnapshotBuilder) -> Result<(), CollectError> {
        let mode = host::cgroup_mode(&roots.cgroupfs);
        let Some(root) = mode.memory_root().map(Path::to_path_buf) else {
            out.mode = Some(mode);
            return Err(CollectError::Unsupported(format!("no memory controller under {}", roots.cgroupfs.display())));
        };
        let v2 = mode.is_v2();
        out.mode = Some(mode);
        let mut buf = String::new();
        // Depth-first, parents before children: (dir, relative path, parent index).
        let mut stack: Vec<(PathBuf, String, Option<usize>)> = vec![(root.clone(), "/".into(), None)];
        while let Some((dir, rel, parent)) = stack.pop() {
            let Some(cg) = read_cgroup(&dir, &rel, parent, v2, &mut buf, out) else { continue };
            let index = out.cgroups.len();
            out.cgroups.push(cg);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(_) => {
                    out.error(NAME, "read");
                    continue;
                }
            };
            let mut children: Vec<(PathBuf, String)> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (e.path(), child_path(&rel, &name))
                })
                .collect();
            // Pop order = sorted order, so walks are deterministic.
            children.sort_by(|a, b| b.1.cmp(&a.1));
            stack.extend(children.into_iter().map(|(d, r)| (d, r, Some(index))));
        }
        Ok(())
    }
}

/// The relative path of `name` under the cgroup at `rel` (`/` being the root).
fn child_path(rel: &str, name: &str) -> String {
    if rel == "/" { format!("/{name}") } else { format!("{rel}/{name}") }
}

enum Got<T> {
    Value(T),
    /// The file (or the cgroup) is not there.
    Absent,
}

/// Reads and parses one file; counts an error (and yields Absent) when it cannot.
fn get<T, E>(path: &Path, buf: &mut String, out: &mut SnapshotBuilder, parse: impl Fn(&str) -> Result<T, E>) -> Got<T> {
    match read_into(path, buf) {
        Ok(()) => match parse(buf) {
            Ok(v) => Got::Value(v),
            Err(_) => {
                out.error(NAME, "parse");
                Got::Absent
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Got::Absent,
        Err(_) => {
            out.error(NAME, "read");
            Got::Absent
        }
    }
}

fn opt<T>(g: Got<T>) -> Option<T> {
    match g {
        Got::Value(v) => Some(v),
        Got::Absent => None,
    }
}

fn read_cgroup(dir: &Path, rel: &str, parent: Option<usize>, v2: bool, buf: &mut String, out: &mut SnapshotBuilder) -> Option<RawCgroup> {
    let id = match std::fs::metadata(dir) {
        Ok(m) => m.ino(),
        Err(_) => return None, // vanished
    };
    let mut cg = RawCgroup { path: rel.to_string(), dir: dir.to_path_buf(), id, parent, ..Default::default() };
    let is_root = parent.is_none();
    let f = |name: &str| dir.join(name);
    if v2 {
        // The v2 root has no memory.current; other cgroups without it have no memory
        // controller enabled, and neither can their children.
        match get(&f("memory.current"), buf, out, parse::value) {
            Got::Value(v) => cg.usage = v,
            Got::Absent if is_root => {}
            Got::Absent => return None,
        }
        cg.own_limit = opt(get(&f("memory.max"), buf, out, parse::limit)).flatten();
        cg.high = opt(get(&f("memory.high"), buf, out, parse::limit)).flatten();
        cg.swap = opt(get(&f("memory.swap.current"), buf, out, parse::value));
        if let Some(ev) = opt(get(&f("memory.events"), buf, out, |t| Ok::<_, ()>(parse::flat_keyed(t)))) {
            cg.oom_kills = ev.get("oom_kill").copied();
            cg.limit_events = ev.get("oom").copied();
        }
        cg.pressure = opt(get(&f("memory.pressure"), buf, out, |t| parse::psi(t).ok_or(())));
        if let Some(stat) = opt(get(&f("memory.stat"), buf, out, |t| Ok::<_, ()>(parse::flat_keyed(t)))) {
            cg.anon = stat.get("anon").copied().unwrap_or(0);
            cg.file = stat.get("file").copied().unwrap_or(0);
            cg.inactive_file = stat.get("inactive_file").copied().unwrap_or(0);
            cg.major_faults = stat.get("pgmajfault").copied();
            cg.page_faults = stat.get("pgfault").copied();
        }
    } else {
        match get(&f("memory.usage_in_bytes"), buf, out, parse::value) {
            Got::Value(v) => cg.usage = v,
            Got::Absent => return None,
        }
        cg.own_limit = opt(get(&f("memory.limit_in_bytes"), buf, out, parse::limit)).flatten();
        if let Some(memsw) = opt(get(&f("memory.memsw.usage_in_bytes"), buf, out, parse::value)) {
            cg.swap = Some(memsw.saturating_sub(cg.usage));
        }
        cg.oom_kills = opt(get(&f("memory.oom_control"), buf, out, |t| Ok::<_, ()>(parse::flat_keyed(t).get("oom_kill").copied()))).flatten();
        cg.limit_events = opt(get(&f("memory.failcnt"), buf, out, parse::value));
        if let Some(stat) = opt(get(&f("memory.stat"), buf, out, |t| Ok::<_, ()>(parse::flat_keyed(t)))) {
            // The total_* keys include descendants, like v2's memory.stat.
            cg.anon = stat.get("total_rss").copied().unwrap_or(0);
            cg.file = stat.get("total_cache").copied().unwrap_or(0);
            cg.inactive_file = stat.get("total_inactive_file").copied().unwrap_or(0);
            cg.major_faults = stat.get("total_pgmajfault").copied();
            cg.page_faults = stat.get("total_pgfault").copied();
        }
    }
    cg.pids = opt(get(&f("cgroup.procs"), buf, out, |t| Ok::<_, ()>(parse::procs(t)))).unwrap_or_default();
    Some(cg)
}

/// The path (relative to `root`) of the cgroup whose directory has inode `id`, found by a
/// bounded walk: for cgroups created since the last sample.
pub fn find_by_id(root: &Path, id: u64) -> Option<String> {
    let mut stack = vec![(root.to_path_buf(), String::from("/"))];
    let mut seen = 0;
    while let Some((dir, rel)) = stack.pop() {
        seen += 1;
        if seen > 200_000 {
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
        cur = if p == "/" || p.is_empty() {
            None
        } else {
            Some(match p.rsplit_once('/') {
                Some(("", _)) | None => "/".to_string(),
                Some((parent, _)) => parent.to_string(),
            })
        };
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

#[cfg(test)]
mod tests {
    use super::*;

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
