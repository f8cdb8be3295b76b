//! MySQL and MariaDB: `innodb_buffer_pool_size` (the server's cache, filled as data is read
//! and kept) and the buffers each connection may take (`sort_buffer_size`, `join_buffer_size`,
//! `read_buffer_size`, `read_rnd_buffer_size`, the thread's stack) with `max_connections`,
//! as the server takes them: the option files (`/etc/my.cnf`, `/etc/mysql/my.cnf`, or only
//! `--defaults-file`, then `--defaults-extra-file`; `!include` and `!includedir`), the groups
//! a server reads (`[mysqld]`, `[server]`, `[mariadb]`, `[mariadbd]` and their versioned
//! forms), then its command line, each later one winning.

use serde::{Deserialize, Serialize};

use super::{
    App, AppFacts, AppId,
    conf::{Budget, DEPTH_LIMIT, Files, dir_of, join, unquote},
};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// What memwatch reads of a MySQL or MariaDB server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MysqlFacts {
    /// `mariadb` or `mysql`.
    pub server: String,
    pub innodb_buffer_pool_bytes: u64,
    pub max_connections: u64,
    pub sort_buffer_bytes: u64,
    pub join_buffer_bytes: u64,
    pub read_buffer_bytes: u64,
    pub read_rnd_buffer_bytes: u64,
    pub thread_stack_bytes: u64,
    /// The option files read, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

impl MysqlFacts {
    /// The defaults of MariaDB 10.11 (MySQL 8's differ only in the stack).
    pub fn defaults(server: &str) -> Self {
        MysqlFacts {
            server: server.to_string(),
            innodb_buffer_pool_bytes: 128 * MIB,
            max_connections: 151,
            sort_buffer_bytes: 2 * MIB,
            join_buffer_bytes: 256 * KIB,
            read_buffer_bytes: 128 * KIB,
            read_rnd_buffer_bytes: 256 * KIB,
            thread_stack_bytes: 292 * KIB,
            files: vec![],
        }
    }

    /// What one busy connection may take: its buffers and its thread's stack.
    pub fn per_connection_bytes(&self) -> u64 {
        self.sort_buffer_bytes + self.join_buffer_bytes + self.read_buffer_bytes + self.read_rnd_buffer_bytes + self.thread_stack_bytes
    }

    pub fn name(&self) -> &str {
        if self.server == "mysql" { "MySQL" } else { "MariaDB" }
    }

    pub fn describe(&self) -> String {
        let h = |b: u64| crate::units::human(b as f64);
        format!(
            "It is {}: innodb_buffer_pool_size {}, and up to {} connections of up to {} each (sort, join and read buffers and the \
             thread's stack).",
            self.name(),
            h(self.innodb_buffer_pool_bytes),
            self.max_connections,
            h(self.per_connection_bytes()),
        )
    }
}

pub struct Mysql;
pub static MYSQL: Mysql = Mysql;

impl App for Mysql {
    fn id(&self) -> AppId {
        AppId::Mysql
    }

    fn detect(&self, exe_name: &str) -> bool {
        matches!(exe_name, "mysqld" | "mariadbd")
    }

    fn read(&self, argv: &[String], files: &dyn Files) -> Option<AppFacts> {
        let server = if argv.first().is_some_and(|a| a.contains("mariadb")) || files.read("/etc/mysql/mariadb.cnf").is_some() {
            "mariadb"
        } else {
            "mysql"
        };
        Some(AppFacts::Mysql(parse(server, argv, files)))
    }
}

/// An option's name as the server compares them: `loose-` dropped, `-` as `_`, lower case.
fn option_name(n: &str) -> String {
    let n = n.trim().to_ascii_lowercase().replace('-', "_");
    n.strip_prefix("loose_").map(String::from).unwrap_or(n)
}

/// The settings from a command line and the option files it leads to.
pub fn parse(server: &str, argv: &[String], files: &dyn Files) -> MysqlFacts {
    let mut cmdline: Vec<(String, String)> = vec![];
    let (mut defaults_file, mut extra, mut no_defaults) = (None, None, false);
    let mut args = argv.iter().skip(1).peekable();
    while let Some(a) = args.next() {
        let Some(opt) = a.strip_prefix("--") else { continue };
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (option_name(n), Some(v.to_string())),
            None => {
                let v = args.next_if(|n| !n.starts_with('-')).cloned();
                (option_name(opt), v)
            }
        };
        match (name.as_str(), value) {
            ("no_defaults", _) => no_defaults = true,
            ("defaults_file", v) => defaults_file = v,
            ("defaults_extra_file", v) => extra = v,
            (_, Some(v)) => cmdline.push((name, v)),
            _ => {}
        }
    }
    let mut budget = Budget::default();
    let mut all = vec![];
    if !no_defaults {
        let list: Vec<String> = match defaults_file {
            Some(f) => vec![f],
            None => ["/etc/my.cnf", "/etc/mysql/my.cnf"].iter().map(|s| s.to_string()).chain(extra).collect(),
        };
        for f in list {
            read_file(&f, files, &mut budget, 0, &mut all);
        }
    }
    all.extend(cmdline);
    let mut f = MysqlFacts::defaults(server);
    for (k, v) in &all {
        let slot = match k.as_str() {
            "innodb_buffer_pool_size" => &mut f.innodb_buffer_pool_bytes,
            "max_connections" => &mut f.max_connections,
            "sort_buffer_size" => &mut f.sort_buffer_bytes,
            "join_buffer_size" => &mut f.join_buffer_bytes,
            "read_buffer_size" => &mut f.read_buffer_bytes,
            "read_rnd_buffer_size" => &mut f.read_rnd_buffer_bytes,
            "thread_stack" => &mut f.thread_stack_bytes,
            _ => continue,
        };
        if let Some(b) = bytes(unquote(v)) {
            *slot = b;
        }
    }
    f.files = budget.read;
    f
}

/// Whether a server reads options of group `g`.
fn server_group(g: &str) -> bool {
    let g = g.trim().to_ascii_lowercase();
    matches!(g.as_str(), "mysqld" | "server" | "mariadb" | "mariadbd")
        || ["mysqld-", "mariadb-", "mariadbd-", "server-"].iter().any(|p| g.starts_with(p))
}

/// Reads an option file's server groups into `out`, following `!include` and `!includedir`.
fn read_file(path: &str, files: &dyn Files, budget: &mut Budget, depth: usize, out: &mut Vec<(String, String)>) {
    if depth > DEPTH_LIMIT {
        return;
    }
    let Some(text) = budget.read(files, path) else { return };
    let mut in_server = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(inc) = line.strip_prefix("!includedir") {
            let d = join(dir_of(path), inc.trim());
            for name in files.list(&d).into_iter().filter(|n| n.ends_with(".cnf") || n.ends_with(".ini")) {
                read_file(&join(&d, &name), files, budget, depth + 1, out);
            }
            continue;
        }
        if let Some(inc) = line.strip_prefix("!include") {
            read_file(&join(dir_of(path), inc.trim()), files, budget, depth + 1, out);
            continue;
        }
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(g) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_server = server_group(g);
            continue;
        }
        if in_server && let Some((k, v)) = line.split_once('=') {
            let v = v.split(" #").next().unwrap_or(v);
            out.push((option_name(k), v.trim().to_string()));
        }
    }
}

/// A size as the server reads it: a number with an optional `K`, `M`, `G`, `T` (1024-based,
/// any case).
pub fn bytes(v: &str) -> Option<u64> {
    super::conf::size(v, &[("", 1), ("k", KIB), ("m", MIB), ("g", 1 << 30), ("t", 1 << 40)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::conf::MapFiles;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn debian_s_option_files_groups_and_the_command_line() {
        let files = MapFiles::of(&[
            (
                "/etc/mysql/my.cnf",
                "[client-server]\nsocket = /run/mysqld/mysqld.sock\n!includedir /etc/mysql/conf.d/\n!includedir /etc/mysql/mariadb.conf.d/\n",
            ),
            ("/etc/mysql/conf.d/mysql.cnf", "[mysql]\nsort_buffer_size = 1G\n"),
            (
                "/etc/mysql/mariadb.conf.d/50-server.cnf",
                "[mysqld]\ninnodb-buffer-pool-size = 1G\nloose-max_connections=500 # many\n[client]\npassword=hunter2\n",
            ),
            ("/etc/mysql/mariadb.conf.d/README", "[mysqld]\ninnodb_buffer_pool_size = 1T\n"),
        ]);
        let f = parse("mariadb", &argv(&["/usr/sbin/mariadbd", "--join-buffer-size", "1M", "--sort_buffer_size=4M"]), &files);
        assert_eq!(f.innodb_buffer_pool_bytes, 1 << 30);
        assert_eq!(f.max_connections, 500);
        assert_eq!(f.sort_buffer_bytes, 4 * MIB, "the command line wins; [mysql] is the client's");
        assert_eq!(f.join_buffer_bytes, MIB);
        assert_eq!(f.files.len(), 3, "{:?}", f.files);
        assert!(!serde_json::to_string(&f).unwrap().contains("hunter2"));
        let only = parse("mariadb", &argv(&["mariadbd", "--defaults-file=/etc/mysql/conf.d/mysql.cnf"]), &files);
        assert_eq!(only.innodb_buffer_pool_bytes, 128 * MIB, "only that file");
        let none = parse("mariadb", &argv(&["mariadbd", "--no-defaults", "--innodb-buffer-pool-size=256M"]), &files);
        assert_eq!((none.innodb_buffer_pool_bytes, none.files.len()), (256 * MIB, 0));
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes("128M"), Some(128 * MIB));
        assert_eq!(bytes("2g"), Some(2 << 30));
        assert_eq!(bytes("262144"), Some(256 * KIB));
        assert_eq!(bytes("2 GB"), None);
        assert_eq!(MysqlFacts::defaults("mariadb").per_connection_bytes(), 2 * MIB + 256 * KIB + 128 * KIB + 256 * KIB + 292 * KIB);
    }
}
