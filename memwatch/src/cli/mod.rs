//! Subcommand handlers: the edge where errors become messages and exit codes.
pub mod check;
pub mod client;
pub mod events;
pub mod probe_args;
pub mod serve;
pub mod top;
