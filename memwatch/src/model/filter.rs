//! Pass: which cgroups become series.

use crate::parse::identity::Kind;

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
}
