//! The fault-stack sampler's maps, taken out of the loaded object and drained by the sample
//! step (on the slow cadence, and at once when an OOM record arrives, so the seconds before a
//! kill are counted while its victim's maps can still be read).

use std::collections::HashSet;

use aya::maps::{HashMap as BpfHashMap, MapData, StackTraceMap};
use memwatch_common::StackKey;

use super::Sampled;

/// The sampler's stack and count maps.
pub struct StackMaps {
    pub counts: BpfHashMap<MapData, StackKey, u64>,
    pub stacks: StackTraceMap<MapData>,
}

impl StackMaps {
    /// Takes every count out, with its stack; stacks no longer counted are freed. A count that
    /// came between the read and the delete is lost (and a stack freed under a new count reads
    /// as empty): both rare, both cheap.
    pub fn drain(&mut self) -> Vec<Sampled> {
        let keys: Vec<StackKey> = self.counts.keys().filter_map(Result::ok).collect();
        let mut out = Vec::with_capacity(keys.len());
        let mut ids = HashSet::new();
        for k in keys {
            let Ok(samples) = self.counts.get(&k, 0) else { continue };
            let _ = self.counts.remove(&k);
            let stack = if k.stack_id >= 0 {
                ids.insert(k.stack_id as u32);
                self.stacks.get(&(k.stack_id as u32), 0).map(|s| s.frames().iter().map(|f| f.ip).collect()).unwrap_or_default()
            } else {
                Vec::new()
            };
            out.push(Sampled { cgroup_id: k.cgroup_id, tgid: k.tgid, stack, caller: k.caller, samples });
        }
        // A stack sampled again while this drain ran has a count again, made after its count
        // was taken: its stack stays for the next drain (removed now, that count would come
        // back with no stack, unless a later sample happened to store it again).
        let again: HashSet<u32> =
            self.counts.keys().filter_map(Result::ok).filter(|k| k.stack_id >= 0).map(|k| k.stack_id as u32).collect();
        for id in ids.difference(&again) {
            let _ = self.stacks.remove(id);
        }
        out
    }
}
