//! The flags that choose which cgroups become containers, shared by `serve` and `top`.
use clap::Args;
use memwatch::model::{self, CgroupFilter, PathFilter, filter::parse_pattern};

#[derive(Args, Debug, Clone)]
pub(crate) struct CgroupArgs {
    /// Which cgroups are containers: `default` (Kubernetes and runtime containers, systemd
    /// services, other cgroups with a limit of their own) or `all`
    #[arg(long, value_enum, default_value = "default")]
    pub cgroups: CgroupFilter,
    /// Only cgroups whose whole path (the `cgroup` label) matches this regular expression, e.g.
    /// '/kubepods.*' (cAdvisor's raw cgroup prefix list, node_exporter's include flags)
    #[arg(long = "cgroups.include", value_name = "REGEX", value_parser = parse_pattern)]
    pub include: Option<String>,
    /// No cgroup whose whole path matches this regular expression
    #[arg(long = "cgroups.exclude", value_name = "REGEX", value_parser = parse_pattern)]
    pub exclude: Option<String>,
}

impl CgroupArgs {
    /// The model's options for these flags (patterns were checked when parsed).
    pub(crate) fn options(&self) -> model::Options {
        let paths = PathFilter::new(self.include.as_deref(), self.exclude.as_deref()).expect("patterns checked by clap");
        model::Options { filter: self.cgroups, paths, ..model::Options::default() }
    }
}
