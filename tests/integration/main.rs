//! memwatch's integration tests, in one binary: the real eBPF programs in the real kernel,
//! real workloads in real cgroups. They need root; see `util::require_root`.
mod datastores;
mod deploy;
mod docs;
mod explain;
mod golden;
mod hostile;
mod image;
mod oom;
mod privilege;
mod probes;
mod realworld;
mod recommend;
mod runtimes;
mod serve;
mod stacks;
mod top;
mod trace;
mod util;
mod v2vm;
mod warning;
mod web;
mod webview;
mod why;

// The corpus of real software, shared with the warnings bench (it names `cgroup` from its parent).
#[path = "../corpus.rs"]
mod corpus;
use util::cgroup;

#[allow(dead_code)]
mod plan {
    include!("../plan.rs");
}
