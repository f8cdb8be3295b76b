//! Applications: the data stores that hold most of a cluster's memory (Redis and Valkey,
//! PostgreSQL, MySQL and MariaDB, memcached), recognised from outside as the language runtimes
//! are (`crate::runtime`), behind one small contract ([`App`]): detect the program by its
//! executable's name, read the settings that size its memory from its command line and the
//! configuration files inside its own root, never connecting to the server, and describe them.
//! Their advice on a kill is in `crate::oom::reasons::apps`, pure functions of these facts.
//!
//! Only the named memory settings are kept of any file or command line: a password next to
//! them (`requirepass`, a connection string) is never stored, so it can appear in no output.
//! Below the runtimes: their reader and watcher read these facts at exec and at each sample.

pub mod conf;
pub mod memcached;
pub mod mysql;
pub mod postgres;
pub mod redis;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use conf::{Files, ProcFiles};

/// Which application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppId {
    Redis,
    Postgres,
    Mysql,
    Memcached,
}

impl AppId {
    /// Its name: the `app` label and the facts' tag.
    pub fn name(self) -> &'static str {
        match self {
            AppId::Redis => "redis",
            AppId::Postgres => "postgres",
            AppId::Mysql => "mysql",
            AppId::Memcached => "memcached",
        }
    }
}

/// What is read of one application process: the settings that size its memory. Tagged by
/// application (`"name": "redis"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum AppFacts {
    Redis(redis::RedisFacts),
    Postgres(postgres::PostgresFacts),
    Mysql(mysql::MysqlFacts),
    Memcached(memcached::MemcachedFacts),
}

impl AppFacts {
    pub fn id(&self) -> AppId {
        match self {
            AppFacts::Redis(_) => AppId::Redis,
            AppFacts::Postgres(_) => AppId::Postgres,
            AppFacts::Mysql(_) => AppId::Mysql,
            AppFacts::Memcached(_) => AppId::Memcached,
        }
    }

    /// One sentence for `memwatch explain` and the events: the settings that size its memory,
    /// and what cannot be known from outside.
    pub fn describe(&self) -> String {
        match self {
            AppFacts::Redis(r) => r.describe(),
            AppFacts::Postgres(p) => p.describe(),
            AppFacts::Mysql(m) => m.describe(),
            AppFacts::Memcached(m) => m.describe(),
        }
    }

    /// Its settings that are sizes, as the `memwatch_container_app_setting_bytes` series show
    /// them (a setting not known is left out).
    pub fn settings(&self) -> Vec<(&'static str, u64)> {
        match self {
            AppFacts::Redis(r) => r.maxmemory_bytes.map(|b| ("maxmemory", b)).into_iter().collect(),
            AppFacts::Postgres(p) => vec![
                ("shared_buffers", p.shared_buffers_bytes),
                ("work_mem", p.work_mem_bytes),
                ("maintenance_work_mem", p.maintenance_work_mem_bytes),
            ],
            AppFacts::Mysql(m) => {
                vec![("innodb_buffer_pool_size", m.innodb_buffer_pool_bytes), ("per_connection_buffers", m.per_connection_bytes())]
            }
            AppFacts::Memcached(m) => vec![("memory_limit", m.memory_limit_bytes)],
        }
    }
}

/// The contract every application implements.
pub trait App: Sync {
    fn id(&self) -> AppId;
    /// Recognises the application by its executable's file name.
    fn detect(&self, exe_name: &str) -> bool;
    /// Reads its settings from its command line (`argv`, as `/proc/<pid>/cmdline` has it) and
    /// its files; None for a process of it that holds no settings of its own (a PostgreSQL
    /// backend, forked from the postmaster).
    fn read(&self, argv: &[String], files: &dyn Files) -> Option<AppFacts>;
}

/// Every application memwatch knows.
pub static APPS: &[&dyn App] = &[&redis::REDIS, &postgres::POSTGRES, &mysql::MYSQL, &memcached::MEMCACHED];

/// The application an executable runs, if memwatch knows it.
pub fn detect(exe_name: &str) -> Option<AppId> {
    APPS.iter().find(|a| a.detect(exe_name)).map(|a| a.id())
}

/// Reads the settings of process `pid`, which runs `id`, now: its command line and the files
/// inside its root. None when it is gone or holds no settings of its own.
pub fn read(procfs: &Path, pid: u32, id: AppId) -> Option<AppFacts> {
    let argv = crate::host::procs::cmdline(procfs, pid)?;
    let app = APPS.iter().find(|a| a.id() == id)?;
    app.read(&argv, &ProcFiles::new(procfs, pid))
}
