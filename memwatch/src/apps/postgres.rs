//! PostgreSQL: `shared_buffers`, `work_mem`, `hash_mem_multiplier`, `maintenance_work_mem`,
//! `max_connections` and `autovacuum_max_workers`, as the postmaster takes them: its
//! `postgresql.conf` (the `config_file` setting, else the data directory's; with `include`,
//! `include_if_exists` and `include_dir`), then `postgresql.auto.conf` in the data directory
//! (ALTER SYSTEM's), then its command line (`-c name=value`, `--name=value`, `-B`, `-N`), each
//! later one winning. Only the postmaster holds them: backends are forked from it and carry a
//! title (`postgres: 15/main: user db [local] SELECT`), not a command line.

use serde::{Deserialize, Serialize};

use super::{
    App, AppFacts, AppId,
    conf::{Budget, DEPTH_LIMIT, Files, dir_of, join, unquote},
};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// What memwatch reads of a PostgreSQL server (its postmaster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostgresFacts {
    pub shared_buffers_bytes: u64,
    pub work_mem_bytes: u64,
    pub hash_mem_multiplier: f64,
    pub maintenance_work_mem_bytes: u64,
    pub max_connections: u64,
    pub autovacuum_max_workers: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_directory: Option<String>,
    /// The configuration files read, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

impl Default for PostgresFacts {
    /// PostgreSQL 15's defaults.
    fn default() -> Self {
        PostgresFacts {
            shared_buffers_bytes: 128 * MIB,
            work_mem_bytes: 4 * MIB,
            hash_mem_multiplier: 2.0,
            maintenance_work_mem_bytes: 64 * MIB,
            max_connections: 100,
            autovacuum_max_workers: 3,
            data_directory: None,
            files: vec![],
        }
    }
}

impl PostgresFacts {
    /// The most one query's sort or hash node may take before it spills to disk.
    pub fn per_node_bytes(&self) -> u64 {
        (self.work_mem_bytes as f64 * self.hash_mem_multiplier.max(1.0)) as u64
    }

    pub fn describe(&self) -> String {
        let h = |b: u64| crate::units::human(b as f64);
        format!(
            "It is PostgreSQL: shared_buffers {}, work_mem {} (×{} for hashes, per sort or hash of each query, in each of up to {} \
             connections), maintenance_work_mem {} (in each of up to {} autovacuum workers).",
            h(self.shared_buffers_bytes),
            h(self.work_mem_bytes),
            self.hash_mem_multiplier,
            self.max_connections,
            h(self.maintenance_work_mem_bytes),
            self.autovacuum_max_workers,
        )
    }
}

pub struct Postgres;
pub static POSTGRES: Postgres = Postgres;

impl App for Postgres {
    fn id(&self) -> AppId {
        AppId::Postgres
    }

    fn detect(&self, exe_name: &str) -> bool {
        matches!(exe_name, "postgres" | "postmaster")
    }

    fn read(&self, argv: &[String], files: &dyn Files) -> Option<AppFacts> {
        parse(argv, files).map(AppFacts::Postgres)
    }
}

/// A backend's or helper's title, not a command line.
pub fn is_child_title(argv: &[String]) -> bool {
    argv.len() == 1 && argv[0].starts_with("postgres: ")
}

/// The postmaster's settings; None for a backend or helper process.
pub fn parse(argv: &[String], files: &dyn Files) -> Option<PostgresFacts> {
    if is_child_title(argv) {
        return None;
    }
    // The command line first, to find the files; applied last.
    let mut cmdline: Vec<(String, String)> = vec![];
    let mut data: Option<String> = None;
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-D" => data = args.next().cloned(),
            "-c" => {
                if let Some((k, v)) = args.next().and_then(|kv| kv.split_once('=')) {
                    cmdline.push((k.to_string(), v.to_string()));
                }
            }
            "-B" => cmdline.extend(args.next().map(|v| ("shared_buffers".to_string(), v.clone()))),
            "-N" => cmdline.extend(args.next().map(|v| ("max_connections".to_string(), v.clone()))),
            _ => {
                if let Some((k, v)) = a.strip_prefix("--").and_then(|kv| kv.split_once('=')) {
                    cmdline.push((k.replace('-', "_"), v.to_string()));
                } else if let Some(v) = a.strip_prefix("-D") {
                    data = Some(v.to_string());
                }
            }
        }
    }
    let setting = |name: &str| cmdline.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let mut budget = Budget::default();
    let mut all: Vec<(String, String)> = vec![];
    let config = setting("config_file").or_else(|| data.as_ref().map(|d| join(d, "postgresql.conf")));
    if let Some(c) = &config {
        read_file(c, files, &mut budget, 0, &mut all);
    }
    let data = setting("data_directory")
        .or_else(|| all.iter().rev().find(|(k, _)| k == "data_directory").map(|(_, v)| unquote(v).to_string()))
        .or(data);
    if let Some(d) = &data {
        read_file(&join(d, "postgresql.auto.conf"), files, &mut budget, 0, &mut all);
    }
    all.extend(cmdline.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)));
    let mut f = PostgresFacts { data_directory: data, ..PostgresFacts::default() };
    for (k, v) in &all {
        let v = unquote(v);
        match k.as_str() {
            "shared_buffers" => set(&mut f.shared_buffers_bytes, memory(v, 8 * KIB)),
            "work_mem" => set(&mut f.work_mem_bytes, memory(v, KIB)),
            "maintenance_work_mem" => set(&mut f.maintenance_work_mem_bytes, memory(v, KIB)),
            "max_connections" => set(&mut f.max_connections, v.parse().ok()),
            "autovacuum_max_workers" => set(&mut f.autovacuum_max_workers, v.parse().ok()),
            "hash_mem_multiplier" => {
                if let Some(m) = v.parse::<f64>().ok().filter(|m| m.is_finite() && *m >= 1.0) {
                    f.hash_mem_multiplier = m;
                }
            }
            _ => {}
        }
    }
    f.files = budget.read;
    Some(f)
}

fn set(slot: &mut u64, v: Option<u64>) {
    if let Some(v) = v {
        *slot = v;
    }
}

/// Reads `name = value` lines (the `=` optional), following includes. A missing file is
/// skipped (PostgreSQL would refuse to start; memwatch says what it read).
fn read_file(path: &str, files: &dyn Files, budget: &mut Budget, depth: usize, out: &mut Vec<(String, String)>) {
    if depth > DEPTH_LIMIT {
        return;
    }
    let Some(text) = budget.read(files, path) else { return };
    for line in text.lines() {
        let line = strip_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => match line.split_once(char::is_whitespace) {
                Some((k, v)) => (k.trim(), v.trim()),
                None => continue,
            },
        };
        let k = k.to_ascii_lowercase();
        match k.as_str() {
            "include" | "include_if_exists" => read_file(&join(dir_of(path), unquote(v)), files, budget, depth + 1, out),
            "include_dir" => {
                let d = join(dir_of(path), unquote(v));
                for name in files.list(&d).into_iter().filter(|n| n.ends_with(".conf") && !n.starts_with('.')) {
                    read_file(&join(&d, &name), files, budget, depth + 1, out);
                }
            }
            _ => out.push((k, v.to_string())),
        }
    }
}

/// A line without its comment (`#` outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// A memory setting: a number in `unit` bytes, or with PostgreSQL's units (`B`, `kB`, `MB`,
/// `GB`, `TB`, 1024-based).
pub fn memory(v: &str, unit: u64) -> Option<u64> {
    // PostgreSQL allows spaces between the number and its unit.
    let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    super::conf::size(&v, &[("", unit), ("b", 1), ("kb", KIB), ("mb", MIB), ("gb", 1 << 30), ("tb", 1 << 40)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::conf::MapFiles;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn units_and_default_units() {
        assert_eq!(memory("2GB", KIB), Some(2 << 30));
        assert_eq!(memory("64kB", KIB), Some(64 << 10));
        assert_eq!(memory("4096", 8 * KIB), Some(32 * MIB), "shared_buffers in 8 kB blocks");
        assert_eq!(memory("1024", KIB), Some(MIB), "work_mem in kB");
        assert_eq!(memory("12 MB", KIB), Some(12 * MIB));
        assert_eq!(memory("lots", KIB), None);
    }

    #[test]
    fn debian_s_layout_the_auto_conf_and_the_command_line() {
        let files = MapFiles::of(&[
            (
                "/etc/postgresql/15/main/postgresql.conf",
                "data_directory = '/var/lib/postgresql/15/main'\nshared_buffers = 128MB  # min 128kB\nwork_mem = 8MB\n\
                 include_dir = 'conf.d'\nmax_connections 50\nprimary_conninfo = 'host=x password=hunter2#x'\n",
            ),
            ("/etc/postgresql/15/main/conf.d/tune.conf", "work_mem = '64MB'\nhash_mem_multiplier = 1.5\n"),
            ("/etc/postgresql/15/main/conf.d/notes.txt", "work_mem = 1TB\n"),
            ("/var/lib/postgresql/15/main/postgresql.auto.conf", "# Do not edit\nmaintenance_work_mem = '1GB'\n"),
        ]);
        let f = parse(
            &argv(&[
                "/usr/lib/postgresql/15/bin/postgres",
                "-D",
                "/var/lib/postgresql/15/main",
                "-c",
                "config_file=/etc/postgresql/15/main/postgresql.conf",
                "-B",
                "4096",
            ]),
            &files,
        )
        .unwrap();
        assert_eq!(f.shared_buffers_bytes, 32 * MIB, "-B wins, in blocks");
        assert_eq!(f.work_mem_bytes, 64 * MIB, "conf.d after the file");
        assert_eq!(f.hash_mem_multiplier, 1.5);
        assert_eq!(f.maintenance_work_mem_bytes, 1 << 30, "ALTER SYSTEM's file");
        assert_eq!(f.max_connections, 50);
        assert_eq!(f.files.len(), 3, "{:?}", f.files);
        assert!(!serde_json::to_string(&f).unwrap().contains("hunter2"));
    }

    #[test]
    fn a_backend_has_no_settings_and_defaults_stand_alone() {
        assert!(parse(&argv(&["postgres: 15/main: postgres postgres [local] SELECT"]), &MapFiles::default()).is_none());
        let f = parse(&argv(&["postgres", "-D", "/d", "-c", "work_mem=2GB"]), &MapFiles::default()).unwrap();
        assert_eq!((f.work_mem_bytes, f.shared_buffers_bytes, f.max_connections), (2 << 30, 128 * MIB, 100));
        assert_eq!(f.per_node_bytes(), 4 << 30, "hashes may take twice work_mem");
    }
}
