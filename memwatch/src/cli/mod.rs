//! Subcommand handlers: the edge where errors become messages and exit codes.
pub(crate) mod cgroup_args;
pub(crate) mod check;
pub(crate) mod client;
pub(crate) mod events;
pub(crate) mod explain;
pub(crate) mod probe_args;
pub(crate) mod profile;
pub(crate) mod recommend;
pub(crate) mod serve;
pub(crate) mod top;
pub(crate) mod trace;
