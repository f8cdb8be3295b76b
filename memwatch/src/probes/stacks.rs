//! The kernel side of the fault-stack sampler as the rest of memwatch sees it: when it runs
//! ([`Mode`]), the raw records drained from its maps ([`Sampled`], [`StackMaps`]), and the
//! at-risk control that attaches it while containers are at risk and counts only those
//! ([`Probes::apply_at_risk`]). Which containers are at risk is decided above, by
//! `crate::risk`; symbolizing and keeping the stacks, by `crate::stacks`.
//!
//! The maps are taken out of the loaded object and drained by the sample step (on the slow
//! cadence, and at once when an OOM record arrives, so the seconds before a kill are counted
//! while its victim's maps can still be read).

use std::collections::HashSet;

use aya::{
    Btf, Endianness,
    maps::{HashMap as BpfHashMap, MapData, StackTraceMap},
};
use memwatch_common::StackKey;
use serde::{Deserialize, Serialize};

use super::{PROBES, ProbeId, ProbeState, ProbeStatus, Probes, attach_first, unload};

/// When the fault-stack sampler runs (`--stacks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Only while some container is at risk, and only for those containers.
    #[default]
    AtRisk,
    /// For every container, all the time.
    Always,
    Off,
}

/// How long the at-risk sampler stays attached after the last container left risk.
pub const STACKS_LINGER: std::time::Duration = std::time::Duration::from_secs(60);

/// What the fault-stack sampler's state says while it waits.
pub(super) const STANDBY: &str =
    "--stacks at-risk: attached only while a container is at risk of an OOM kill, and only for those; none is now";

/// One drained count: a stack sampled `samples` times in a process of a memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sampled {
    pub cgroup_id: u64,
    pub tgid: u32,
    /// User addresses, leaf first (empty: no stack could be taken).
    pub stack: Vec<u64>,
    /// The word at the stack pointer, when the kernel side found it pointing into the
    /// executable's text: perhaps the return address a frameless leaf did not push.
    pub caller: u64,
    pub samples: u64,
}

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

impl Probes {
    /// The fault-stack sampler's maps; can be taken once (the sample step drains them).
    pub fn take_stack_maps(&mut self) -> Option<StackMaps> {
        self.stack_plan.as_ref()?;
        let counts = self.ebpf.take_map("STACK_COUNTS").and_then(|m| aya::maps::HashMap::try_from(m).ok())?;
        let stacks = self.ebpf.take_map("STACKS").and_then(|m| aya::maps::StackTraceMap::try_from(m).ok())?;
        Some(StackMaps { counts, stacks })
    }

    fn stack_status(&mut self) -> Option<&mut ProbeStatus> {
        self.status.iter_mut().find(|s| s.id == ProbeId::FaultStacks)
    }

    /// Attaches the fault-stack sampler (loading its program) or detaches it (unloading it, so
    /// nothing of it stays in the kernel): `--stacks at-risk` turns it on while a container is
    /// at risk. Its state says which, and why.
    pub fn set_fault_stacks(&mut self, on: bool) {
        let Some(mut plan) = self.stack_plan.clone() else { return };
        let attached = self.stack_status().is_some_and(|s| s.is_attached());
        if on == attached {
            return;
        }
        let spec = PROBES.iter().find(|s| s.id == ProbeId::FaultStacks).expect("the fault-stack probe is registered");
        let state = if on {
            let btf = Btf::parse_file(&self.btf_path, Endianness::default()).ok();
            let opts = self.stack_options;
            let state = attach_first(&mut self.ebpf, btf.as_ref(), spec, &mut plan, &opts);
            drop(btf);
            crate::allocator::give_back();
            match &state {
                ProbeState::Attached { method } => {
                    tracing::info!(
                        probe = "fault_stacks",
                        method = method.as_str(),
                        containers = self.stack_cgroups.len(),
                        "fault-stack sampler attached: containers at risk"
                    )
                }
                ProbeState::Disabled(why) => tracing::warn!(probe = "fault_stacks", "fault-stack sampler could not attach: {why}"),
                _ => {}
            }
            state
        } else {
            let method = match self.stack_status().map(|s| &s.state) {
                Some(ProbeState::Attached { method }) => method.clone(),
                _ => String::new(),
            };
            for m in spec.methods {
                unload(&mut self.ebpf, m.program());
            }
            tracing::info!(probe = "fault_stacks", "fault-stack sampler detached: no container at risk for {} s", STACKS_LINGER.as_secs());
            ProbeState::Standby(format!("{STANDBY} (attaches as {method} when needed)"))
        };
        if let Some(s) = self.stack_status() {
            s.state = state;
        }
    }

    /// `--stacks at-risk`: counts the containers at risk, attaching the sampler while there
    /// are any and detaching it once none has been for [`STACKS_LINGER`] (a container hovering
    /// at the threshold does not load and unload it every sample).
    pub fn apply_at_risk(&mut self, ids: &std::collections::HashSet<u64>, now: std::time::Instant) {
        if self.stack_options.stacks != Mode::AtRisk || self.stack_plan.is_none() {
            return;
        }
        if !ids.is_empty() {
            self.stacks_wanted_at = Some(now);
            self.set_stack_cgroups(ids);
            self.set_fault_stacks(true);
        } else if self.stacks_wanted_at.is_none_or(|t| now.duration_since(t) >= STACKS_LINGER) {
            self.set_fault_stacks(false);
            self.set_stack_cgroups(ids);
        }
    }

    /// The memory cgroups (kernfs ids) the at-risk sampler counts: those added, those gone
    /// removed.
    pub fn set_stack_cgroups(&mut self, ids: &std::collections::HashSet<u64>) {
        if *ids == self.stack_cgroups {
            return;
        }
        let Some(map) = self.ebpf.map_mut("STACK_CGROUPS") else { return };
        let Ok(mut m) = aya::maps::HashMap::<_, u64, u8>::try_from(map) else { return };
        for gone in self.stack_cgroups.difference(ids) {
            let _ = m.remove(gone);
        }
        let mut kept = std::collections::HashSet::new();
        for id in ids {
            if m.insert(id, 1, 0).is_ok() {
                kept.insert(*id);
            }
        }
        self.stack_cgroups = kept;
    }
}
