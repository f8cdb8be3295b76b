//! Names from the kubelet's on-node log layout: `/var/log/containers/<pod>_<namespace>_<container>-<id>.log`
//! and `/var/log/pods/<namespace>_<pod>_<uid>/`. Kubernetes names cannot contain `_`, so the
//! underscores are unambiguous.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLog {
    pub pod: String,
    pub namespace: String,
    pub container: String,
    pub container_id: String,
}

/// A file name in `/var/log/containers`.
pub fn container_log(file_name: &str) -> Option<ContainerLog> {
    let stem = file_name.strip_suffix(".log")?;
    let mut parts = stem.splitn(3, '_');
    let (pod, namespace, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (container, id) = rest.rsplit_once('-')?;
    if [pod, namespace, container, id].iter().any(|s| s.is_empty()) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(ContainerLog { pod: pod.into(), namespace: namespace.into(), container: container.into(), container_id: id.into() })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDir {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
}

/// A directory name in `/var/log/pods`.
pub fn pod_dir(name: &str) -> Option<PodDir> {
    let mut parts = name.splitn(3, '_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if [namespace, pod, uid].iter().any(|s| s.is_empty()) || uid.contains('_') {
        return None;
    }
    Some(PodDir { namespace: namespace.into(), pod: pod.into(), uid: uid.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_log_names() {
        let l = container_log("web-7d4b9c-x2x9z_shop_nginx-proxy-3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd.log")
            .unwrap();
        assert_eq!((l.pod.as_str(), l.namespace.as_str(), l.container.as_str()), ("web-7d4b9c-x2x9z", "shop", "nginx-proxy"));
        assert_eq!(l.container_id.len(), 64);
        assert_eq!(container_log("notalog.txt"), None);
        assert_eq!(container_log("a_b_c.log"), None, "no id");
        assert_eq!(container_log("a_b_c-xyz.log"), None, "id not hex");
    }

    #[test]
    fn pod_dirs() {
        let p = pod_dir("kube-system_coredns-5d78c9869d-abcde_1b2c3d4e-5f60-4a1b-9c2d-3e4f5a6b7c8d").unwrap();
        assert_eq!((p.namespace.as_str(), p.pod.as_str()), ("kube-system", "coredns-5d78c9869d-abcde"));
        assert_eq!(pod_dir("justonepart"), None);
    }
}
