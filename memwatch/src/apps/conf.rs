//! Reading an application's configuration files from outside: inside the process's own root
//! (resolved as the process would, never into the host's tree; see
//! `crate::host::procs::open_in_root`), bounded in size, count and include depth, so a
//! container cannot make the daemon read much or loop.

use std::{collections::BTreeMap, io::Read, path::Path};

use crate::host::procs;

/// The most bytes read of one configuration file (a larger one is not read).
pub const FILE_LIMIT: u64 = 1 << 20;
/// The most files one process's configuration reads, includes and directories' files together.
pub const FILES_LIMIT: usize = 64;
/// How deep includes are followed.
pub const DEPTH_LIMIT: usize = 8;
/// The most entries of an include directory looked at.
const DIR_LIMIT: usize = 256;

/// Where an application's files are read from: a process's root, or (in tests) a map.
pub trait Files {
    /// The text of the file at `path` (absolute inside the root); None when it is absent,
    /// unreadable, not a regular file or larger than [`FILE_LIMIT`].
    fn read(&self, path: &str) -> Option<String>;
    /// The names in the directory at `path`, sorted (none when it is absent).
    fn list(&self, path: &str) -> Vec<String>;
}

/// A live process's files.
pub struct ProcFiles<'a> {
    procfs: &'a Path,
    pid: u32,
}

impl<'a> ProcFiles<'a> {
    pub fn new(procfs: &'a Path, pid: u32) -> Self {
        ProcFiles { procfs, pid }
    }
}

fn rel(path: &str) -> &Path {
    Path::new(path.trim_start_matches('/'))
}

impl Files for ProcFiles<'_> {
    fn read(&self, path: &str) -> Option<String> {
        let f = procs::open_in_root(self.procfs, self.pid, rel(path)).ok()?;
        let mut text = String::new();
        f.take(FILE_LIMIT + 1).read_to_string(&mut text).ok()?;
        (text.len() as u64 <= FILE_LIMIT).then_some(text)
    }

    fn list(&self, path: &str) -> Vec<String> {
        procs::list_in_root(self.procfs, self.pid, rel(path), DIR_LIMIT).unwrap_or_default()
    }
}

/// Files held in memory: for tests of the parsers, and of the advice on recorded facts.
#[derive(Debug, Default, Clone)]
pub struct MapFiles(pub BTreeMap<String, String>);

impl MapFiles {
    pub fn of(files: &[(&str, &str)]) -> Self {
        MapFiles(files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect())
    }
}

impl Files for MapFiles {
    fn read(&self, path: &str) -> Option<String> {
        self.0.get(path).filter(|t| t.len() as u64 <= FILE_LIMIT).cloned()
    }

    fn list(&self, path: &str) -> Vec<String> {
        let dir = format!("{}/", path.trim_end_matches('/'));
        self.0.keys().filter_map(|k| k.strip_prefix(&dir)).filter(|n| !n.contains('/')).map(String::from).collect()
    }
}

/// `path` resolved against the directory `base` when it is relative.
pub fn join(base: &str, path: &str) -> String {
    if path.starts_with('/') { path.to_string() } else { format!("{}/{}", base.trim_end_matches('/'), path) }
}

/// The directory part of `path`.
pub fn dir_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    }
}

/// A budget of files for one process's configuration.
#[derive(Debug)]
pub struct Budget {
    left: usize,
    /// The files read, in order (paths only: said in `memwatch explain`).
    pub read: Vec<String>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { left: FILES_LIMIT, read: vec![] }
    }
}

impl Budget {
    /// Reads `path` if the budget allows, recording it.
    pub fn read(&mut self, files: &dyn Files, path: &str) -> Option<String> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let text = files.read(path)?;
        self.read.push(path.to_string());
        Some(text)
    }
}

/// A size: a whole number followed at once by one of `units` (compared without case; `""` is
/// the bare number's unit), e.g. Redis's `100mb`, MySQL's `128M`, PostgreSQL's `64kB`. None for
/// another unit, a missing number, or a product past `u64`.
pub fn size(v: &str, units: &[(&str, u64)]) -> Option<u64> {
    let v = v.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..digits].parse().ok()?;
    let unit = &v[digits..];
    let (_, mult) = units.iter().find(|(u, _)| u.eq_ignore_ascii_case(unit))?;
    n.checked_mul(*mult)
}

/// Splits a value off its quotes: `'x'` or `"x"` → `x`.
pub fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_files_list_only_a_directory_s_own_entries() {
        let f = MapFiles::of(&[("/etc/a/x.conf", "1"), ("/etc/a/b/y.conf", "2"), ("/etc/ab", "3")]);
        assert_eq!(f.list("/etc/a"), ["x.conf"]);
        assert_eq!(f.read("/etc/ab").as_deref(), Some("3"));
        assert_eq!(join("/etc/a", "b.conf"), "/etc/a/b.conf");
        assert_eq!(join("/etc/a", "/x"), "/x");
        assert_eq!(dir_of("/etc/a/b.conf"), "/etc/a");
        assert_eq!(dir_of("/b.conf"), "/");
        assert_eq!(unquote(" '2GB' "), "2GB");
        let units = [("", 1), ("k", 1000), ("kb", 1024)];
        assert_eq!(size("3KB", &units), Some(3072));
        assert_eq!(size(" 7 ", &units), Some(7));
        assert_eq!(size("k", &units), None);
        assert_eq!(size("3 kb", &units), None, "no space before the unit");
        assert_eq!(size("99999999999999999999kb", &units), None);
    }

    #[test]
    fn the_budget_stops_reading() {
        let f = MapFiles::of(&[("/a", "x")]);
        let mut b = Budget::default();
        for _ in 0..FILES_LIMIT {
            assert!(b.read(&f, "/a").is_some());
        }
        assert!(b.read(&f, "/a").is_none(), "past the budget");
    }
}
