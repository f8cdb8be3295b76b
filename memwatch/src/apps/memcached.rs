//! memcached: its item memory (`-m`, `--memory-limit`, in MiB; 64 by default) and connection
//! limit (`-c`, `--conn-limit`; 1024), from its command line (Debian's `/etc/memcached.conf`
//! is turned into one by its init script; memcached reads no file itself). The item memory is
//! allocated in 1 MiB slab pages as items arrive and kept; the hash table and each connection's
//! buffers come on top.

use serde::{Deserialize, Serialize};

use super::{App, AppFacts, AppId, conf::Files};

const MIB: u64 = 1 << 20;

/// What memwatch reads of a memcached server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemcachedFacts {
    pub memory_limit_bytes: u64,
    pub max_connections: u64,
}

impl MemcachedFacts {
    pub fn describe(&self) -> String {
        format!(
            "It is memcached: -m {} MiB of item memory (plus its hash table and connection buffers), up to {} connections.",
            self.memory_limit_bytes / MIB,
            self.max_connections
        )
    }
}

pub struct Memcached;
pub static MEMCACHED: Memcached = Memcached;

impl App for Memcached {
    fn id(&self) -> AppId {
        AppId::Memcached
    }

    fn detect(&self, exe_name: &str) -> bool {
        exe_name == "memcached"
    }

    fn read(&self, argv: &[String], _: &dyn Files) -> Option<AppFacts> {
        Some(AppFacts::Memcached(parse(argv)))
    }
}

/// The settings from a command line.
pub fn parse(argv: &[String]) -> MemcachedFacts {
    let mut f = MemcachedFacts { memory_limit_bytes: 64 * MIB, max_connections: 1024 };
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        let mut value = |short: &str, long: &str| -> Option<String> {
            if a == short || a == long {
                return args.next().cloned();
            }
            a.strip_prefix(&format!("{long}=")).or_else(|| a.strip_prefix(short).filter(|v| !v.is_empty())).map(String::from)
        };
        if let Some(m) = value("-m", "--memory-limit") {
            if let Some(b) = megabytes(&m) {
                f.memory_limit_bytes = b;
            }
        } else if let Some(c) = value("-c", "--conn-limit")
            && let Ok(c) = c.parse()
        {
            f.max_connections = c;
        }
    }
    f
}

/// `-m`'s value: MiB, or with a `k`, `m`, `g` unit.
fn megabytes(v: &str) -> Option<u64> {
    super::conf::size(v, &[("", MIB), ("m", MIB), ("k", 1 << 10), ("g", 1 << 30)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn short_long_and_default() {
        assert_eq!(
            parse(&argv(&["memcached", "-m", "1024", "-c", "10"])),
            MemcachedFacts { memory_limit_bytes: 1 << 30, max_connections: 10 }
        );
        assert_eq!(parse(&argv(&["memcached", "--memory-limit=2g"])).memory_limit_bytes, 2 << 30);
        assert_eq!(parse(&argv(&["memcached", "-m256"])).memory_limit_bytes, 256 * MIB);
        assert_eq!(parse(&argv(&["memcached", "-u", "nobody"])).memory_limit_bytes, 64 * MIB);
        assert_eq!(parse(&argv(&["memcached", "-m", "lots"])).memory_limit_bytes, 64 * MIB);
    }
}
