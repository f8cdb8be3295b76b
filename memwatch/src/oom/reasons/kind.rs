//! The kinds of finding, as data: their wire names (the `kind` of each `explanation` entry in
//! the API and the journal) come from serde, and what a kind is for ([`Role`]) decides where
//! it goes in a summary, never a comparison of names.

use serde::{Deserialize, Serialize};

/// One kind of finding. Kinds a newer release wrote (read back from its journal) are kept as
/// [`ReasonKind::Other`], with their name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// The container hit its own memory limit.
    Limit,
    /// The limit hit was an ancestor's (a pod's), shared by its containers.
    InheritedLimit,
    /// No cgroup was at its limit: the machine ran out.
    Machine,
    /// Anonymous memory filled it (naming who held and grew it).
    AnonGrowth,
    /// tmpfs and shared memory.
    Shmem,
    /// Page cache that could not be reclaimed in time.
    PageCache,
    /// Kernel memory charged to the container.
    Kernel,
    Swap,
    /// The container was younger than a sample: the state at the kill is the kernel's.
    Young,
    GoGomemlimitUnset,
    GoGomemlimitAboveLimit,
    GoGomemlimitSet,
    GoGogcOff,
    /// A JVM's maximum heap and what it needs beside it do not fit the limit.
    JvmHeapAboveLimit,
    /// A JVM's heap was full at its maximum.
    JvmHeapFull,
    /// A JVM's heap was a small part of its memory: native memory grew.
    JvmNativeGrowth,
    /// A JVM ran with HotSpot's default heap.
    JvmDefaultHeap,
    /// V8's heap limit is above what the container leaves Node.js.
    NodeHeapAboveLimit,
    /// A .NET GC heap hard limit above the container's.
    DotnetHeapHardLimitAboveLimit,
    /// .NET's GC heap is capped below the limit: native memory took the rest.
    DotnetNativeGrowth,
    /// glibc's per-thread malloc arenas held a large share.
    GlibcArenas,
    /// The process killed was not the one that grew.
    GrowerNotVictim,
    /// The stack that faulted in most before the kill (the fault-stack sampler).
    GrowthStack,
    /// `memory.oom.group`: the kernel killed the whole container.
    OomGroup,
    /// Kills the kernel counted that the probe did not see.
    Missed,
    /// The victim was its container's main process: the container restarts.
    MainProcessKilled,
    /// The limit that would have held it (`memwatch recommend`'s rule after a kill).
    LimitThatHolds,
    /// The victim was a child of its container's main process: the container lives on.
    ChildKilled,
    /// A warning's: why the container is at risk of a kill, how soon, who grows.
    AtRisk,
    /// A warning's end: the container is no longer at risk.
    Cleared,
    /// A data store's (`crate::apps`): Redis's maxmemory against the limit.
    RedisMaxmemory,
    /// The child Redis forked to save was the one killed.
    RedisForkOnSave,
    /// A PostgreSQL backend was killed (the postmaster resets every session).
    PostgresBackendKilled,
    /// PostgreSQL's postmaster was killed (the server is down).
    PostgresPostmasterKilled,
    /// PostgreSQL's work_mem, by connections and the hash multiplier, against the limit.
    PostgresWorkMem,
    /// PostgreSQL's shared_buffers against the limit.
    PostgresSharedBuffers,
    /// PostgreSQL's maintenance_work_mem, by autovacuum workers, against the limit.
    PostgresMaintenanceWorkMem,
    /// MySQL's or MariaDB's InnoDB buffer pool against the limit.
    MysqlBufferPool,
    /// MySQL's or MariaDB's connections' buffers together against the limit.
    MysqlConnections,
    /// memcached's item memory (-m) against the limit.
    MemcachedMemoryLimit,
    /// A kind this release does not know (written by a newer one).
    #[serde(untagged)]
    Other(String),
}

/// What a finding is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Which limit was hit, when it was the container's own.
    Limit,
    /// Whose memory ran out, when it was not the container's own limit (a parent's, the
    /// machine's), or that who died is unknown.
    Scope,
    /// What filled the memory.
    Filled,
    /// What to change (a runtime's settings).
    Advice,
    /// How much the samples can say.
    Context,
    /// A kind this release does not know.
    Unknown,
}

impl ReasonKind {
    pub fn role(&self) -> Role {
        use ReasonKind::*;
        match self {
            Limit | AtRisk | Cleared => Role::Limit,
            InheritedLimit | Machine | Missed | GrowerNotVictim | OomGroup => Role::Scope,
            AnonGrowth | Shmem | PageCache | Kernel | Swap => Role::Filled,
            GoGomemlimitUnset | GoGomemlimitAboveLimit | GoGomemlimitSet | GoGogcOff => Role::Advice,
            JvmHeapAboveLimit
            | JvmHeapFull
            | JvmNativeGrowth
            | NodeHeapAboveLimit
            | DotnetHeapHardLimitAboveLimit
            | DotnetNativeGrowth
            | GlibcArenas => Role::Advice,
            RedisMaxmemory
            | PostgresWorkMem
            | PostgresSharedBuffers
            | PostgresMaintenanceWorkMem
            | MysqlBufferPool
            | MysqlConnections
            | MemcachedMemoryLimit => Role::Advice,
            RedisForkOnSave | PostgresBackendKilled | PostgresPostmasterKilled => Role::Context,
            Young | JvmDefaultHeap | GrowthStack | MainProcessKilled | ChildKilled | LimitThatHolds => Role::Context,
            Other(_) => Role::Unknown,
        }
    }

    /// Whether a one-line summary gives this kind beside what filled the memory: advice, or a
    /// scope other than the container's own limit.
    pub fn is_telling(&self) -> bool {
        matches!(self.role(), Role::Advice | Role::Scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_as_before_and_unknown_ones_survive() {
        let json = serde_json::to_string(&[ReasonKind::InheritedLimit, ReasonKind::GoGomemlimitUnset, ReasonKind::AnonGrowth]).unwrap();
        assert_eq!(json, r#"["inherited_limit","go_gomemlimit_unset","anon_growth"]"#);
        let back: Vec<ReasonKind> = serde_json::from_str(r#"["page_cache","jvm_heap_too_large"]"#).unwrap();
        assert_eq!(back, [ReasonKind::PageCache, ReasonKind::Other("jvm_heap_too_large".into())]);
        assert_eq!(serde_json::to_string(&back[1]).unwrap(), r#""jvm_heap_too_large""#, "written back as read");
    }
}
