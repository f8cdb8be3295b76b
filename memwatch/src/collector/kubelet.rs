//! Kubernetes names (namespace, pod, container) from the kubelet's on-node log layout:
//! `<logs>/containers/*.log` and `<logs>/pods/*/`. Absent on plain hosts, which is fine. A
//! directory is listed again only when its modification time changed.

use std::{io, time::SystemTime};

use super::{CollectError, Collector, CollectorId, KubeNames, SampleInput, SnapshotBuilder};
use crate::{Roots, parse::kubelet as parse};

#[derive(Default)]
pub struct Kubelet {
    /// Per directory (containers, pods): its modification time when last listed.
    listed: [Option<SystemTime>; 2],
    /// Shared with every sample's builder: cloning it is one reference count.
    names: std::sync::Arc<KubeNames>,
}

impl Kubelet {
    fn refresh(&mut self, roots: &Roots) -> Result<(), CollectError> {
        for (i, sub) in ["containers", "pods"].into_iter().enumerate() {
            let dir = roots.kubelet_logs.join(sub);
            let mtime = match std::fs::metadata(&dir).and_then(|m| m.modified()) {
                Ok(t) => Some(t),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(source) => return Err(CollectError::Read { path: dir, source }),
            };
            if mtime.is_some() && mtime == self.listed[i] {
                continue;
            }
            self.listed[i] = mtime;
            let names = std::sync::Arc::make_mut(&mut self.names);
            if i == 0 {
                names.containers.clear();
            } else {
                names.pods.clear();
            }
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    self.listed[i] = None;
                    return Err(CollectError::Read { path: dir, source });
                }
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if i == 1 {
                    if let Some(p) = parse::pod_dir(name) {
                        names.pods.insert(p.uid, (p.namespace.into(), p.pod.into()));
                    }
                } else if let Some(c) = parse::container_log(name) {
                    names.containers.insert(c.container_id, (c.namespace.into(), c.pod.into(), c.container.into()));
                }
            }
        }
        Ok(())
    }
}

impl Collector for Kubelet {
    fn id(&self) -> CollectorId {
        CollectorId::Kubelet
    }

    fn collect(&mut self, roots: &Roots, _: &SampleInput, out: &mut SnapshotBuilder) -> Result<(), CollectError> {
        let result = self.refresh(roots);
        out.names = self.names.clone();
        result
    }
}
