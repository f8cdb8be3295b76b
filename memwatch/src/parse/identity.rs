//! Who a cgroup is, from its path: a Kubernetes container or pod (systemd or cgroupfs
//! driver; containerd, CRI-O or Docker), a container runtime's scope, a systemd service.

/// Kubernetes QoS class, from the pod's slice or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    KubernetesContainer,
    KubernetesPod,
    RuntimeContainer,
    SystemdService,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: Kind,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    pub qos: Option<Qos>,
    pub runtime: Option<&'static str>,
}

fn is_id(s: &str) -> bool {
    s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The runtime and container id in a systemd scope name, e.g. `cri-containerd-<id>.scope`.
fn scope_container(name: &str) -> Option<(&'static str, String)> {
    let stem = name.strip_suffix(".scope")?;
    for (prefix, runtime) in [("cri-containerd-", "containerd"), ("crio-", "cri-o"), ("docker-", "docker"), ("libpod-", "podman")] {
        if let Some(id) = stem.strip_prefix(prefix) {
            return is_id(id).then(|| (runtime, id.to_string()));
        }
    }
    None
}

/// Pod uid and QoS from one path component, systemd (`kubepods-burstable-pod<uid>.slice`,
/// uid with `_` for `-`) or cgroupfs (`pod<uid>`) style. `parent` is the component above.
fn pod_component(name: &str, parent: &str) -> Option<(String, Qos)> {
    if let Some(stem) = name.strip_suffix(".slice") {
        let (qos, uid) = if let Some(u) = stem.strip_prefix("kubepods-burstable-pod") {
            (Qos::Burstable, u)
        } else if let Some(u) = stem.strip_prefix("kubepods-besteffort-pod") {
            (Qos::BestEffort, u)
        } else if let Some(u) = stem.strip_prefix("kubepods-pod") {
            (Qos::Guaranteed, u)
        } else {
            return None;
        };
        return Some((uid.replace('_', "-"), qos));
    }
    let uid = name.strip_prefix("pod")?;
    if uid.len() < 8 || !uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return None;
    }
    let qos = match parent {
        "burstable" => Qos::Burstable,
        "besteffort" => Qos::BestEffort,
        "kubepods" => Qos::Guaranteed,
        _ => return None,
    };
    Some((uid.to_string(), qos))
}

/// Classifies a cgroup by its path relative to the memory hierarchy's root.
pub fn classify(path: &str) -> Identity {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut id = Identity { kind: Kind::Other, pod_uid: None, container_id: None, qos: None, runtime: None };
    let Some(last) = parts.last() else { return id };
    for (i, part) in parts.iter().enumerate() {
        let parent = if i > 0 { parts[i - 1] } else { "" };
        if let Some((uid, qos)) = pod_component(part, parent) {
            id.pod_uid = Some(uid);
            id.qos = Some(qos);
        }
    }
    let parent = if parts.len() > 1 { parts[parts.len() - 2] } else { "" };
    if let Some((runtime, cid)) = scope_container(last) {
        id.runtime = Some(runtime);
        id.container_id = Some(cid);
    } else if let Some(cid) = last.strip_prefix("libpod-").filter(|c| parent == "libpod_parent" && is_id(c)) {
        // podman with the cgroupfs manager: /libpod_parent/libpod-<id>.
        id.runtime = Some("podman");
        id.container_id = Some(cid.to_string());
    } else if is_id(last)
        && (id.pod_uid.is_some() && pod_component(parent, parts.get(parts.len().wrapping_sub(3)).copied().unwrap_or("")).is_some()
            || parent == "docker")
    {
        // cgroupfs driver: /kubepods/<qos>/pod<uid>/<id>, or Docker's /docker/<id>.
        id.runtime = Some(if parent == "docker" { "docker" } else { "unknown" });
        id.container_id = Some(last.to_string());
    }
    let last_is_pod = pod_component(last, parent).is_some();
    id.kind = match (&id.pod_uid, &id.container_id) {
        (Some(_), Some(_)) => Kind::KubernetesContainer,
        (Some(_), None) if last_is_pod => Kind::KubernetesPod,
        (None, Some(_)) => Kind::RuntimeContainer,
        _ if last.ends_with(".service") => Kind::SystemdService,
        _ => Kind::Other,
    };
    if id.kind == Kind::Other || id.kind == Kind::SystemdService {
        id.pod_uid = None;
        id.qos = None;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd";

    #[test]
    fn systemd_driver_containerd() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_4a1b_9c2d_3e4f5a6b7c8d.slice/cri-containerd-{CID}.scope"
        );
        let id = classify(&p);
        assert_eq!(id.kind, Kind::KubernetesContainer);
        assert_eq!(id.pod_uid.as_deref(), Some("1b2c3d4e-5f60-4a1b-9c2d-3e4f5a6b7c8d"));
        assert_eq!(id.container_id.as_deref(), Some(CID));
        assert_eq!((id.qos, id.runtime), (Some(Qos::Burstable), Some("containerd")));
    }

    #[test]
    fn systemd_driver_crio_guaranteed_and_pod_level() {
        let p = format!("/kubepods.slice/kubepods-pod0a1b2c3d_0000_1111_2222_333344445555.slice/crio-{CID}.scope");
        let id = classify(&p);
        assert_eq!((id.kind, id.qos, id.runtime), (Kind::KubernetesContainer, Some(Qos::Guaranteed), Some("cri-o")));
        let pod = classify("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b2c3d_0000_1111_2222_333344445555.slice");
        assert_eq!((pod.kind, pod.qos), (Kind::KubernetesPod, Some(Qos::BestEffort)));
        assert_eq!(classify("/kubepods.slice/kubepods-burstable.slice").kind, Kind::Other);
    }

    #[test]
    fn cgroupfs_driver() {
        let id = classify(&format!("/kubepods/burstable/pod1b2c3d4e-5f60-4a1b-9c2d-3e4f5a6b7c8d/{CID}"));
        assert_eq!((id.kind, id.qos), (Kind::KubernetesContainer, Some(Qos::Burstable)));
        assert_eq!(id.pod_uid.as_deref(), Some("1b2c3d4e-5f60-4a1b-9c2d-3e4f5a6b7c8d"));
        let g = classify(&format!("/kubepods/pod1b2c3d4e-5f60-4a1b-9c2d-3e4f5a6b7c8d/{CID}"));
        assert_eq!((g.kind, g.qos), (Kind::KubernetesContainer, Some(Qos::Guaranteed)));
        assert_eq!(classify("/kubepods/besteffort/pod1b2c3d4e-5f60-4a1b-9c2d-3e4f5a6b7c8d").kind, Kind::KubernetesPod);
    }

    #[test]
    fn docker_and_plain_hosts() {
        let p = classify(&format!("/libpod_parent/libpod-{CID}"));
        assert_eq!((p.kind, p.runtime, p.container_id.as_deref()), (Kind::RuntimeContainer, Some("podman"), Some(CID)));
        assert_eq!(classify("/libpod_parent/conmon").kind, Kind::Other);
        assert_eq!(classify(&format!("/elsewhere/libpod-{CID}")).kind, Kind::Other);
        let d = classify(&format!("/system.slice/docker-{CID}.scope"));
        assert_eq!((d.kind, d.runtime, d.pod_uid), (Kind::RuntimeContainer, Some("docker"), None));
        let d = classify(&format!("/docker/{CID}"));
        assert_eq!((d.kind, d.runtime), (Kind::RuntimeContainer, Some("docker")));
        assert_eq!(classify("/system.slice/nginx.service").kind, Kind::SystemdService);
        assert_eq!(classify("/user.slice/user-1000.slice/session-2.scope").kind, Kind::Other);
        assert_eq!(classify("/").kind, Kind::Other);
        assert_eq!(classify("").kind, Kind::Other);
        // Not ids: too short, or not hex.
        assert_eq!(classify("/system.slice/docker-xyz.scope").kind, Kind::Other);
        assert_eq!(classify("/kubepods/burstable/podzz/abc").kind, Kind::Other);
    }
}
