//! Kubernetes names (namespace, pod, container) from the kubelet's on-node log layout:
//! `<logs>/containers/*.log` and `<logs>/pods/*/`. Absent on plain hosts, which is fine.

use std::io;

use super::{CollectError, Collector, SnapshotBuilder};
use crate::{Roots, parse::kubelet as parse};

pub struct Kubelet;

const NAME: &str = "kubelet";

impl Collector for Kubelet {
    fn name(&self) -> &'static str {
        NAME
    }

    fn collect(&mut self, roots: &Roots, out: &mut SnapshotBuilder) -> Result<(), CollectError> {
        for (sub, is_pods) in [("containers", false), ("pods", true)] {
            let dir = roots.kubelet_logs.join(sub);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(CollectError::Read { path: dir, source }),
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if is_pods {
                    if let Some(p) = parse::pod_dir(name) {
                        out.names.pods.insert(p.uid, (p.namespace, p.pod));
                    }
                } else if let Some(c) = parse::container_log(name) {
                    out.names.containers.insert(c.container_id, (c.namespace, c.pod, c.container));
                }
            }
        }
        Ok(())
    }
}
