//! Redis (and Valkey): `maxmemory`, `maxmemory-policy` and persistence (RDB snapshots, the
//! append-only file), from the command line and the configuration file it names, read inside
//! the container's root. Redis takes its options as configuration lines: `redis-server
//! [file] [--name value…]` is the file's lines followed by one line per `--name`, the later
//! winning; `include` pulls in another file. Both persistence modes save by forking, and the
//! child's copy-on-write pages count against the same limit.
//!
//! Redis rewrites its command line into a title (`redis-server 127.0.0.1:6379`) once it runs:
//! its settings are read when it starts (the exec hook) or, for one started before memwatch,
//! said to be unknown rather than guessed.

use serde::{Deserialize, Serialize};

use super::{
    App, AppFacts, AppId,
    conf::{Budget, DEPTH_LIMIT, Files, dir_of, join},
};

/// Redis 7's default save points, in effect unless `save ""` is configured.
const DEFAULT_SAVE: bool = true;

/// What memwatch reads of a Redis server.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RedisFacts {
    /// `redis` or `valkey`.
    pub server: String,
    /// False for a server whose command line was already rewritten into its title when memwatch
    /// first saw it (started before the daemon): its settings are not known.
    pub settings_known: bool,
    /// The configuration file it was started with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    /// `maxmemory` in bytes; 0: no limit of its own (Redis's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmemory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmemory_policy: Option<String>,
    /// RDB snapshots on (save points configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdb_snapshots: Option<bool>,
    /// The append-only file on (its rewrite forks too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appendonly: Option<bool>,
}

impl RedisFacts {
    /// Whether it saves by forking (snapshots or append-only rewrites); None: not known.
    pub fn forks_to_save(&self) -> Option<bool> {
        Some(self.rdb_snapshots? || self.appendonly?)
    }

    pub fn name(&self) -> &str {
        if self.server == "valkey" { "Valkey" } else { "Redis" }
    }

    pub fn describe(&self) -> String {
        if !self.settings_known {
            return format!(
                "It is {}; its command line is now its title, so its maxmemory is not known from outside (memwatch's daemon reads \
                 it as Redis starts; CONFIG GET maxmemory tells).",
                self.name()
            );
        }
        let max = match self.maxmemory_bytes {
            Some(0) | None => "maxmemory unset (no limit of its own)".to_string(),
            Some(b) => format!("maxmemory {}", crate::units::human(b as f64)),
        };
        let policy = self.maxmemory_policy.as_deref().unwrap_or("noeviction");
        let save = match self.forks_to_save() {
            Some(true) => "saves by forking (RDB snapshots or append-only rewrites)",
            _ => "no persistence",
        };
        let file = self.config_file.as_deref().map(|f| format!(" (from {f})")).unwrap_or_default();
        format!("It is {}: {max}, policy {policy}, {save}{file}; its used memory is not knowable without a connection.", self.name())
    }
}

pub struct Redis;
pub static REDIS: Redis = Redis;

impl App for Redis {
    fn id(&self) -> AppId {
        AppId::Redis
    }

    /// Debian's `redis-server` is a link to `redis-check-rdb` (one binary that acts by the name
    /// it is run as), so the executable may bear either name.
    fn detect(&self, exe_name: &str) -> bool {
        matches!(exe_name, "redis-server" | "valkey-server" | "redis-check-rdb" | "valkey-check-rdb")
    }

    fn read(&self, argv: &[String], files: &dyn Files) -> Option<AppFacts> {
        let run_as = argv.first().map(|a| a.rsplit('/').next().unwrap_or(a)).unwrap_or_default();
        if run_as.contains("-check-") {
            return None; // the checking tools, not a server
        }
        let server = if run_as.contains("valkey") { "valkey" } else { "redis" };
        Some(AppFacts::Redis(parse(server, argv, files)))
    }
}

/// Its title, once Redis has rewritten its command line: one argument holding spaces
/// (`redis-server 127.0.0.1:6379`), or the save child's (`redis-rdb-bgsave …`).
fn is_title(argv: &[String]) -> bool {
    argv.len() == 1 && argv[0].contains(' ')
}

/// The settings from a command line and the files it names.
pub fn parse(server: &str, argv: &[String], files: &dyn Files) -> RedisFacts {
    let mut f = RedisFacts { server: server.to_string(), ..RedisFacts::default() };
    if is_title(argv) {
        return f;
    }
    f.settings_known = true;
    let mut lines: Vec<Vec<String>> = vec![];
    let mut rest = argv.get(1..).unwrap_or_default();
    if let Some(file) = rest.first().filter(|a| !a.starts_with("--") && *a != "-") {
        f.config_file = Some(file.clone());
        let mut budget = Budget::default();
        read_file(file, files, &mut budget, 0, &mut lines);
        rest = &rest[1..];
    }
    // `--name v1 v2 --other v`: one line per `--name`. (Empty arguments, `--save ""`, are gone
    // from /proc's cmdline: a `--save` with no values is that.)
    for a in rest {
        match a.strip_prefix("--") {
            Some(name) => lines.push(vec![name.to_string()]),
            None => {
                if let Some(l) = lines.last_mut() {
                    l.push(a.clone());
                }
            }
        }
    }
    let (mut save, mut save_seen) = (DEFAULT_SAVE, false);
    for l in &lines {
        let Some((name, values)) = l.split_first() else { continue };
        match name.to_ascii_lowercase().as_str() {
            "maxmemory" => f.maxmemory_bytes = values.first().and_then(|v| bytes(v)),
            "maxmemory-policy" => f.maxmemory_policy = values.first().map(|v| v.to_ascii_lowercase()),
            "appendonly" => f.appendonly = values.first().map(|v| v.eq_ignore_ascii_case("yes")),
            "save" => {
                // A `save` line with points adds to those of earlier lines; `save ""` clears.
                let points = values.iter().any(|v| !v.is_empty());
                save = if save_seen { save || points } else { points };
                save_seen = true;
            }
            _ => {}
        }
    }
    f.maxmemory_bytes.get_or_insert(0);
    f.maxmemory_policy.get_or_insert_with(|| "noeviction".into());
    f.appendonly.get_or_insert(false);
    f.rdb_snapshots = Some(save);
    f
}

/// Reads a configuration file's lines into `out`, following `include`.
fn read_file(path: &str, files: &dyn Files, budget: &mut Budget, depth: usize, out: &mut Vec<Vec<String>>) {
    if depth > DEPTH_LIMIT {
        return;
    }
    let Some(text) = budget.read(files, path) else { return };
    for line in text.lines() {
        let words = split(line);
        match words.first().map(|w| w.to_ascii_lowercase()) {
            None => {}
            Some(w) if w.starts_with('#') => {}
            Some(w) if w == "include" => {
                for inc in &words[1..] {
                    read_file(&join(dir_of(path), inc), files, budget, depth + 1, out);
                }
            }
            Some(_) => out.push(words),
        }
    }
}

/// A configuration line's words: split at spaces, `"…"` and `'…'` one word each.
fn split(line: &str) -> Vec<String> {
    let mut words = vec![];
    let mut chars = line.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            for d in chars.by_ref() {
                if d == c {
                    break;
                }
                w.push(d);
            }
        } else {
            while let Some(&d) = chars.peek() {
                if d.is_whitespace() {
                    break;
                }
                w.push(d);
                chars.next();
            }
        }
        words.push(w);
    }
    words
}

/// A Redis memory size: bytes, `1k` (1000), `1kb` (1024), `m`, `mb`, `g`, `gb`, any case.
pub fn bytes(v: &str) -> Option<u64> {
    const UNITS: &[(&str, u64)] =
        &[("", 1), ("b", 1), ("k", 1000), ("kb", 1 << 10), ("m", 1_000_000), ("mb", 1 << 20), ("g", 1_000_000_000), ("gb", 1 << 30)];
    super::conf::size(v, UNITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::conf::MapFiles;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn units_are_redis_s() {
        assert_eq!(bytes("100mb"), Some(100 << 20));
        assert_eq!(bytes("1GB"), Some(1 << 30));
        assert_eq!(bytes("5m"), Some(5_000_000));
        assert_eq!(bytes("123"), Some(123));
        assert_eq!(bytes("12x"), None);
        assert_eq!(bytes("99999999999999999999gb"), None);
    }

    #[test]
    fn a_file_its_include_and_the_command_line_the_later_winning() {
        let files = MapFiles::of(&[
            ("/etc/redis/redis.conf", "# comment\nmaxmemory 1gb\nrequirepass \"hunter2 secret\"\ninclude local.conf\nsave 900 1\n"),
            ("/etc/redis/local.conf", "maxmemory-policy allkeys-lru\nappendonly yes\n"),
        ]);
        let f = parse("redis", &argv(&["/usr/bin/redis-server", "/etc/redis/redis.conf", "--maxmemory", "64mb"]), &files);
        assert!(f.settings_known);
        assert_eq!(f.maxmemory_bytes, Some(64 << 20));
        assert_eq!(f.maxmemory_policy.as_deref(), Some("allkeys-lru"));
        assert_eq!(f.forks_to_save(), Some(true));
        let json = serde_json::to_string(&f).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!f.describe().contains("hunter2"));
    }

    #[test]
    fn defaults_an_emptied_save_and_a_rewritten_title() {
        let none = MapFiles::default();
        let f = parse("redis", &argv(&["redis-server", "--port", "7000", "--save", "--appendonly", "no"]), &none);
        assert_eq!((f.maxmemory_bytes, f.forks_to_save()), (Some(0), Some(false)), "save \"\" and no AOF");
        assert_eq!(f.maxmemory_policy.as_deref(), Some("noeviction"));
        let f = parse("redis", &argv(&["redis-server"]), &none);
        assert_eq!(f.forks_to_save(), Some(true), "Redis 7 saves by default");
        let f = parse("redis", &argv(&["redis-server 127.0.0.1:6379"]), &none);
        assert!(!f.settings_known && f.maxmemory_bytes.is_none());
        assert!(f.describe().contains("not known"), "{}", f.describe());
    }

    #[test]
    fn the_binary_run_as_a_checking_tool_is_no_server() {
        assert!(REDIS.detect("redis-check-rdb"));
        assert!(REDIS.read(&argv(&["redis-check-rdb", "dump.rdb"]), &MapFiles::default()).is_none());
        assert!(REDIS.read(&argv(&["/usr/bin/redis-server", "--port", "1"]), &MapFiles::default()).is_some());
    }

    #[test]
    fn includes_that_loop_end() {
        let files = MapFiles::of(&[("/a.conf", "include /a.conf\nmaxmemory 1mb\n")]);
        let f = parse("redis", &argv(&["redis-server", "/a.conf"]), &files);
        assert_eq!(f.maxmemory_bytes, Some(1 << 20));
    }
}
