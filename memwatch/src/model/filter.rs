//! Pass: which cgroups become series.

use regex::Regex;

use crate::parse::identity::Kind;

/// Which cgroup paths may become series (`--cgroups.include`, `--cgroups.exclude`): regular
/// expressions matched against the whole path below the memory hierarchy's root (the `cgroup`
/// label), as node_exporter's include and exclude flags are. Applied after [`CgroupFilter`].
#[derive(Debug, Clone, Default)]
pub struct PathFilter {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

impl PathFilter {
    /// From the flags' patterns; an invalid pattern is an error that names it.
    pub fn new(include: Option<&str>, exclude: Option<&str>) -> Result<PathFilter, regex::Error> {
        let anchored = |p: &str| Regex::new(&format!("^(?:{p})$"));
        Ok(PathFilter { include: include.map(anchored).transpose()?, exclude: exclude.map(anchored).transpose()? })
    }

    /// Whether a cgroup at `path` may be exported.
    pub fn allows(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|r| r.is_match(path)) && self.exclude.as_ref().is_none_or(|r| !r.is_match(path))
    }
}

/// A clap value parser for a `--cgroups.include`/`--cgroups.exclude` pattern.
pub fn parse_pattern(s: &str) -> Result<String, String> {
    // The pattern as given first, so an error shows it and not its anchored form.
    Regex::new(s).and_then(|_| PathFilter::new(Some(s), None)).map(|_| s.to_string()).map_err(|e| format!("not a regular expression: {e}"))
}

/// Which cgroups become series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CgroupFilter {
    /// Kubernetes containers, container-runtime scopes, systemd services, and any other
    /// cgroup with a memory limit of its own outside the kubepods tree.
    Default,
    /// Every memory cgroup but the root.
    All,
}

/// Whether a (non-root) cgroup of this kind, path and own limit is exported.
pub fn exported(filter: CgroupFilter, kind: Kind, path: &str, own_limit: Option<u64>) -> bool {
    match filter {
        CgroupFilter::All => true,
        CgroupFilter::Default => match kind {
            Kind::KubernetesContainer | Kind::RuntimeContainer | Kind::SystemdService => true,
            Kind::KubernetesPod => false,
            Kind::Other => own_limit.is_some() && !path.contains("kubepods"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_services_and_limited_cgroups() {
        let d = CgroupFilter::Default;
        assert!(exported(d, Kind::KubernetesContainer, "/kubepods/x/y", None));
        assert!(!exported(d, Kind::KubernetesPod, "/kubepods/x", Some(1)), "pods are not containers");
        assert!(exported(d, Kind::SystemdService, "/system.slice/a.service", None));
        assert!(exported(d, Kind::Other, "/batch", Some(1)), "a limit of its own");
        assert!(!exported(d, Kind::Other, "/batch", None));
        assert!(!exported(d, Kind::Other, "/kubepods/besteffort", Some(1)), "QoS cgroups are not containers");
        assert!(exported(CgroupFilter::All, Kind::Other, "/anything", None));
    }

    #[test]
    fn paths_included_and_excluded_as_whole_matches() {
        let f = PathFilter::new(Some("/kubepods/.*|/memwatch-test-a-\\d+"), Some(".*/besteffort/.*")).unwrap();
        assert!(f.allows("/kubepods/burstable/pod1/c1"));
        assert!(f.allows("/memwatch-test-a-12"));
        assert!(!f.allows("/memwatch-test-a-12/child"), "anchored at the end");
        assert!(!f.allows("/x/kubepods/y"), "anchored at the start");
        assert!(!f.allows("/kubepods/besteffort/pod2/c"), "excluded");
        assert!(PathFilter::default().allows("/anything"));
        assert!(parse_pattern("(").unwrap_err().contains("not a regular expression"));
    }
}
