//! Pass: the series guard. Past `--max-series`, containers are dropped (Kubernetes containers
//! kept first, then by path) and the dropped series counted.

use crate::{parse::identity::Kind, snapshot::Container};

/// Series each exported container adds to `/metrics` at most.
pub const SERIES_PER_CONTAINER: usize = 33;

/// Keeps at most `max_series / SERIES_PER_CONTAINER` containers; returns the series dropped.
pub fn apply(containers: &mut Vec<Container>, max_series: usize) -> u64 {
    let max = max_series / SERIES_PER_CONTAINER;
    if containers.len() <= max {
        return 0;
    }
    containers.sort_by(|a, b| {
        let k8s = |c: &Container| c.kind != Kind::KubernetesContainer;
        k8s(a).cmp(&k8s(b)).then(a.cgroup.cmp(&b.cgroup))
    });
    let dropped = containers.len() - max;
    containers.truncate(max);
    containers.sort_by(|a, b| a.cgroup.cmp(&b.cgroup));
    (dropped * SERIES_PER_CONTAINER) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::fixture::container;

    #[test]
    fn kubernetes_containers_are_kept_first() {
        let mut cs = vec![container(1, "/a"), container(2, "/b"), container(3, "/kubepods/c")];
        cs[2].kind = Kind::KubernetesContainer;
        assert_eq!(apply(&mut cs, 2 * SERIES_PER_CONTAINER), SERIES_PER_CONTAINER as u64);
        let paths: Vec<&str> = cs.iter().map(|c| &*c.cgroup).collect();
        assert_eq!(paths, ["/a", "/kubepods/c"]);
        assert_eq!(apply(&mut cs, 10 * SERIES_PER_CONTAINER), 0);
    }
}
