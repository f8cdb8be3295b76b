//! What to set: a container's memory request and limit, and the runtime setting that matches
//! that limit, from what its memory did over a window. Pure: the evidence comes from the
//! daemon's own history (`memwatch recommend --remote`, the API, the web view) or from
//! Prometheus's series (`--prometheus`, and the recording rules in `deploy/prometheus/`, which
//! compute the same rule), and each recommendation says its evidence in one line.
//!
//! The rule, and where it differs from VPA's recommender and KRR (the replay in
//! `benches/rightsize.rs` holds all three against real workloads):
//! - **need** is the highest *non-reclaimable* memory (anonymous, shmem/tmpfs and kernel) in
//!   the window, as the kernel charged it between samples (the daemon's 60 s maximum), not the
//!   working set at scrapes: page cache the kernel reclaims at the limit is not need, and a
//!   spike between two scrapes is not lost;
//! - **limit** = need + [`HEADROOM`], rounded up to [`ROUND`]; after an OOM kill at a limit,
//!   at least that limit × [`KILL_BUMP`] (the need was above it, by how much no one saw); for
//!   a JVM, never below what its own configuration takes (heap maximum + metaspace + the
//!   rest it needs outside the heap);
//! - **request** = the working set's 90th percentile, no more than the limit;
//! - a container that grew steadily through the whole window is a **leak**: its rate is said,
//!   and no number, since no limit holds a leak;
//! - the **runtime setting** matching the limit: GOMEMLIMIT (90%), -XX:MaxRAMPercentage=75,
//!   --max-old-space-size (75% less 64 MiB), DOTNET_GCHeapHardLimit (75%), as the OOM
//!   explanations advise.

use serde::{Deserialize, Serialize};

use crate::units::human;

const MIB: u64 = 1 << 20;
/// Room above the need, as a share of it.
pub const HEADROOM: f64 = 0.15;
/// After a kill at a limit, the next limit is at least this times it.
pub const KILL_BUMP: f64 = 1.25;
/// Limits and requests are rounded up to this.
pub const ROUND: u64 = 4 * MIB;
/// A limit below this is never recommended.
pub const MIN_LIMIT: u64 = 16 * MIB;
/// What a JVM takes outside its heap and metaspace at least: the code cache, thread stacks,
/// the collector's structures, direct buffers.
pub const JVM_OUTSIDE_HEAP: u64 = 64 * MIB;

/// The runtime a container's main process runs, as far as its memory ceiling goes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "runtime", rename_all = "snake_case")]
pub enum Runtime {
    Go,
    /// `heap_max`: its heap's maximum now; `fixed`: set by -Xmx (it does not follow the
    /// limit); `metaspace`: metaspace and class space committed.
    Jvm {
        heap_max: u64,
        fixed: bool,
        metaspace: u64,
    },
    Node,
    Dotnet,
}

/// What a container's memory did over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Where it comes from, for the evidence line ("15m of this node's history", "14d of Prometheus").
    pub source: String,
    /// The non-reclaimable memory's highest per step, (Unix seconds, bytes), oldest first.
    pub nonreclaimable: Vec<(f64, u64)>,
    /// The kernel's peak usage (page cache included), where known.
    pub peak_bytes: Option<u64>,
    /// The most page cache (reclaimable) it had in the window: the kernel's peak less this is
    /// non-reclaimable memory it surely had at its peak, even when no sample saw it.
    #[serde(default)]
    pub reclaimable_max_bytes: Option<u64>,
    pub working_set_p90_bytes: Option<u64>,
    /// OOM kills in the window, and the limit they happened at.
    pub kills: u64,
    pub kill_limit_bytes: Option<u64>,
    /// Its limit now (None: the machine's).
    pub limit_bytes: Option<u64>,
    pub runtime: Option<Runtime>,
}

/// A setting for the runtime, as an environment variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub request_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub runtime_setting: Option<Setting>,
    /// Bytes an hour it grew by, when it is a leak (then no request or limit).
    pub leak_bytes_per_hour: Option<f64>,
    /// What else the person must know (a JVM whose configuration exceeds its limit).
    pub notes: Vec<String>,
    /// The evidence in one line.
    pub evidence: String,
}

fn round_up(b: f64) -> u64 {
    ((b.max(0.0) as u64).div_ceil(ROUND) * ROUND).max(MIN_LIMIT)
}

fn mib(b: u64) -> u64 {
    b / MIB
}

/// A steady growth through the whole window, in bytes a second: at least six points, a line
/// that explains nine tenths of the variance, a rise of 16 MiB and a fifth of where it began,
/// and still growing in the window's second half. A GC's sawtooth, a start-up ramp that
/// levels off and a spike are none.
pub fn leak(points: &[(f64, u64)]) -> Option<f64> {
    if points.len() < 6 {
        return None;
    }
    let fit = |p: &[(f64, u64)]| -> Option<(f64, f64)> {
        let n = p.len() as f64;
        let (mx, my) = (p.iter().map(|q| q.0).sum::<f64>() / n, p.iter().map(|q| q.1 as f64).sum::<f64>() / n);
        let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
        for (x, y) in p {
            let (dx, dy) = (x - mx, *y as f64 - my);
            sxy += dx * dy;
            sxx += dx * dx;
            syy += dy * dy;
        }
        if sxx == 0.0 || syy == 0.0 {
            return None;
        }
        Some((sxy / sxx, sxy * sxy / (sxx * syy)))
    };
    let (slope, r2) = fit(points)?;
    let span = points.last()?.0 - points.first()?.0;
    let first = points[0].1 as f64;
    let rise = slope * span;
    let (late, _) = fit(&points[points.len() / 2..])?;
    (slope > 0.0 && r2 >= 0.9 && rise >= (16 * MIB) as f64 && rise >= 0.2 * first && late >= 0.5 * slope).then_some(slope)
}

/// The evidence of several containers as one (a workload's pods): every point, the highest
/// peaks and kill limit, the kills summed, the first runtime known.
pub fn merge(all: &[Evidence]) -> Evidence {
    let mut e = Evidence { source: all.first().map(|e| e.source.clone()).unwrap_or_default(), ..Evidence::default() };
    for x in all {
        e.nonreclaimable.extend_from_slice(&x.nonreclaimable);
        e.peak_bytes = e.peak_bytes.max(x.peak_bytes);
        e.reclaimable_max_bytes = e.reclaimable_max_bytes.max(x.reclaimable_max_bytes);
        e.working_set_p90_bytes = e.working_set_p90_bytes.max(x.working_set_p90_bytes);
        e.kills += x.kills;
        e.kill_limit_bytes = e.kill_limit_bytes.max(x.kill_limit_bytes);
        e.limit_bytes = e.limit_bytes.max(x.limit_bytes);
        e.runtime = e.runtime.or(x.runtime);
    }
    e.nonreclaimable.sort_by(|a, b| a.0.total_cmp(&b.0));
    e
}

/// A container's evidence from one snapshot alone (what `top` has): the daemon's 60 s
/// non-reclaimable maximum and the kernel's peak, the page cache now.
pub fn from_container(c: &crate::snapshot::Container, t: f64) -> Evidence {
    let limit = Some(c.limit_bytes).filter(|_| !c.limit_is_machine);
    Evidence {
        source: "its last minute".into(),
        nonreclaimable: vec![(t, c.nonreclaimable_peak_bytes)],
        peak_bytes: c.peak_bytes,
        reclaimable_max_bytes: c.peak_bytes.map(|_| c.cache_bytes.saturating_sub(c.shmem_bytes)),
        working_set_p90_bytes: Some(c.working_set_bytes),
        limit_bytes: limit,
        runtime: runtime_of(&c.runtimes, limit, c.limit_bytes),
        ..Evidence::default()
    }
}

/// One line for people: `limit 348 MiB, request 152 MiB, GOMEMLIMIT=313MiB`, or the leak.
pub fn short(r: &Recommendation) -> String {
    if let Some(rate) = r.leak_bytes_per_hour {
        return format!("a leak, {}/h: no limit holds it", human(rate));
    }
    let (Some(l), Some(q)) = (r.limit_bytes, r.request_bytes) else { return "not enough seen yet".into() };
    let s = r.runtime_setting.as_ref().map(|s| format!(", {}={}", s.name, s.value)).unwrap_or_default();
    format!("limit {}, request {}{s}", human(l as f64), human(q as f64))
}

/// The runtime of a container's processes as far as its memory ceiling goes: the first
/// process with one (its main process comes first where it has one). `limit`: the container's.
pub fn runtime_of(procs: &[crate::runtime::ProcessFacts], limit: Option<u64>, machine: u64) -> Option<Runtime> {
    use crate::runtime::Facts;
    procs.iter().filter_map(|p| p.runtime.as_ref()).find_map(|f| match f {
        Facts::Go(_) => Some(Runtime::Go),
        Facts::Jvm(j) => {
            let (heap_max, _) = j.max_heap(limit, machine);
            Some(Runtime::Jvm { heap_max, fixed: j.flags.max_heap_bytes.is_some(), metaspace: j.metaspace_committed() })
        }
        Facts::Node(_) => Some(Runtime::Node),
        Facts::Dotnet(_) => Some(Runtime::Dotnet),
        Facts::Python(_) => None,
    })
}

/// The setting that makes the runtime keep to `limit`.
pub fn setting(runtime: Runtime, limit: u64) -> Setting {
    let (name, value) = match runtime {
        Runtime::Go => ("GOMEMLIMIT", format!("{}MiB", mib((limit as f64 * crate::runtime::go::GOMEMLIMIT_SHARE) as u64))),
        Runtime::Jvm { .. } => ("JAVA_TOOL_OPTIONS", "-XX:MaxRAMPercentage=75".to_string()),
        Runtime::Node => ("NODE_OPTIONS", format!("--max-old-space-size={}", crate::runtime::node::advised_mib(limit))),
        Runtime::Dotnet => ("DOTNET_GCHeapHardLimit", format!("{:#x}", (limit as f64 * crate::runtime::dotnet::DEFAULT_SHARE) as u64)),
    };
    Setting { name: name.into(), value }
}

/// The recommendation for one container (or one workload's containers, their evidence merged).
pub fn recommend(e: &Evidence) -> Recommendation {
    let peak = e.nonreclaimable.iter().copied().max_by_key(|p| p.1);
    // What the kernel's peak proves, page cache taken out at its most (nothing, where the page
    // cache is not known).
    let proven = e.peak_bytes.zip(e.reclaimable_max_bytes).map(|(p, c)| p.saturating_sub(c));
    let mut said = Vec::new();
    if let Some((t, b)) = peak {
        said.push(format!("non-reclaimable peak {} at {}", human(b as f64), crate::rfc3339(t)));
    }
    if let Some(p) = e.peak_bytes {
        let between = proven
            .filter(|b| peak.is_none_or(|(_, s)| *b > s))
            .map(|b| format!(", {} of it non-reclaimable, between samples", human(b as f64)));
        said.push(format!("kernel's peak {} with page cache{}", human(p as f64), between.unwrap_or_default()));
    }
    if e.kills > 0 {
        let at = e.kill_limit_bytes.map(|l| format!(" at {}", human(l as f64))).unwrap_or_default();
        said.push(format!("{} OOM kill{}{at}", e.kills, if e.kills == 1 { "" } else { "s" }));
    }
    if let Some(w) = e.working_set_p90_bytes {
        said.push(format!("p90 working set {}", human(w as f64)));
    }
    let evidence = format!("{} (over {})", said.join(", "), e.source);
    let mut r = Recommendation {
        request_bytes: None,
        limit_bytes: None,
        runtime_setting: None,
        leak_bytes_per_hour: None,
        notes: Vec::new(),
        evidence,
    };
    if let Some(rate) = leak(&e.nonreclaimable) {
        r.leak_bytes_per_hour = Some(rate * 3600.0);
        r.notes.push(format!(
            "A leak: it grew {}/h steadily through the whole window; no limit holds it, fix the growth (memwatch profile shows where it \
             is faulted in).",
            human(rate * 3600.0)
        ));
        return r;
    }
    let Some(need) = peak.map(|p| p.1).max(proven) else { return r };
    let mut limit = round_up(need as f64 * (1.0 + HEADROOM));
    if let (true, Some(at)) = (e.kills > 0, e.kill_limit_bytes) {
        limit = limit.max(round_up(at as f64 * KILL_BUMP));
    }
    if let Some(Runtime::Jvm { heap_max, fixed, metaspace }) = e.runtime {
        let own = heap_max + metaspace + JVM_OUTSIDE_HEAP;
        if fixed {
            // Its heap may grow to its fixed maximum whatever the limit: the limit must take it.
            limit = limit.max(round_up(own as f64));
            if let Some(l) = e.limit_bytes.filter(|l| own > *l) {
                r.notes.push(format!(
                    "Its JVM's own configuration needs about {} (heap maximum {} by -Xmx, metaspace {}, at least {} outside both), \
                     more than its {} limit: the kernel kills it before its heap is full.",
                    human(own as f64),
                    human(heap_max as f64),
                    human(metaspace as f64),
                    human(JVM_OUTSIDE_HEAP as f64),
                    human(l as f64)
                ));
            }
        }
    }
    r.limit_bytes = Some(limit);
    r.request_bytes = Some(e.working_set_p90_bytes.map_or(limit, |w| round_up(w as f64).min(limit)));
    r.runtime_setting = match e.runtime {
        Some(Runtime::Jvm { fixed: true, .. }) => None,
        Some(rt) => Some(setting(rt, limit)),
        None => None,
    };
    r
}

/// The letters Kubernetes writes generated name suffixes and pod-template hashes in (no
/// vowels, no 0, 1 or 3: no words), which tells them from a name's own words.
pub const SAFE_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

/// The workload a pod belongs to, from its name alone (no API server): a Deployment's pods
/// are `<name>-<replicaset hash>-<5>`, a DaemonSet's or a Job's `<name>-<5>`, a StatefulSet's
/// `<name>-<ordinal>`, the generated parts in [`SAFE_ALPHABET`]. The recording rules'
/// `label_replace` does the same.
pub fn workload(pod: &str) -> &str {
    let alnum = |s: &str, lo: usize, hi: usize| (lo..=hi).contains(&s.len()) && s.bytes().all(|b| SAFE_ALPHABET.as_bytes().contains(&b));
    if let Some((rest, last)) = pod.rsplit_once('-') {
        if alnum(last, 5, 5) {
            return match rest.rsplit_once('-') {
                Some((name, hash)) if alnum(hash, 6, 10) => name,
                _ => rest,
            };
        }
        if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
            return rest;
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(mib_each: &[u64]) -> Vec<(f64, u64)> {
        mib_each.iter().enumerate().map(|(k, m)| (1_796_000_000.0 + 60.0 * k as f64, m * MIB)).collect()
    }

    #[test]
    fn the_limit_is_the_non_reclaimable_peak_and_room_not_the_page_cache() {
        let e = Evidence {
            source: "15m of this node's history".into(),
            nonreclaimable: flat(&[40, 42, 41, 160, 43, 40]),
            peak_bytes: Some(500 * MIB),
            working_set_p90_bytes: Some(300 * MIB),
            ..Evidence::default()
        };
        let r = recommend(&e);
        // 160 MiB × 1.15 = 184 MiB; the page cache in the kernel's peak is not need.
        assert_eq!(r.limit_bytes, Some(184 * MIB));
        assert_eq!(r.request_bytes, Some(184 * MIB), "the working set's p90 is page cache: no more than the limit");
        assert!(r.evidence.starts_with("non-reclaimable peak 160.0 MiB at 2026-"), "{}", r.evidence);
        assert!(
            r.evidence.contains("kernel's peak 500.0 MiB with page cache") && r.evidence.ends_with("(over 15m of this node's history)")
        );
        assert_eq!(r.leak_bytes_per_hour, None);
    }

    #[test]
    fn a_spike_no_sample_saw_counts_from_the_kernels_peak_less_the_page_cache() {
        let e = Evidence {
            nonreclaimable: flat(&[40, 41, 40]),
            peak_bytes: Some(150 * MIB),
            reclaimable_max_bytes: Some(10 * MIB),
            ..Evidence::default()
        };
        let r = recommend(&e);
        assert_eq!(r.limit_bytes, Some(164 * MIB), "140 MiB × 1.15");
        assert!(
            r.evidence.contains("kernel's peak 150.0 MiB with page cache, 140.0 MiB of it non-reclaimable, between samples"),
            "{}",
            r.evidence
        );
        // A reader's page cache is not need.
        let e = Evidence { reclaimable_max_bytes: Some(300 * MIB), peak_bytes: Some(340 * MIB), ..e };
        assert_eq!(recommend(&e).limit_bytes, Some(48 * MIB), "41 MiB × 1.15");
    }

    #[test]
    fn a_kill_raises_the_limit_above_the_one_it_happened_at() {
        let e = Evidence { nonreclaimable: flat(&[100, 120, 128]), kills: 2, kill_limit_bytes: Some(128 * MIB), ..Evidence::default() };
        let r = recommend(&e);
        assert_eq!(r.limit_bytes, Some(160 * MIB), "128 MiB × 1.25");
        assert!(r.evidence.contains("2 OOM kills at 128.0 MiB"), "{}", r.evidence);
    }

    #[test]
    fn each_runtime_gets_the_setting_for_its_limit() {
        let e = |rt| Evidence { nonreclaimable: flat(&[200]), runtime: Some(rt), ..Evidence::default() };
        let s = |rt| recommend(&e(rt)).runtime_setting.unwrap();
        // A limit of 232 MiB.
        assert_eq!(s(Runtime::Go), Setting { name: "GOMEMLIMIT".into(), value: "208MiB".into() });
        assert_eq!(s(Runtime::Node).value, "--max-old-space-size=110");
        assert_eq!(s(Runtime::Dotnet).value, format!("{:#x}", (232.0 * 0.75 * MIB as f64) as u64));
        let jvm = Runtime::Jvm { heap_max: 64 * MIB, fixed: false, metaspace: 20 * MIB };
        assert_eq!(s(jvm).value, "-XX:MaxRAMPercentage=75");
    }

    #[test]
    fn a_jvm_whose_fixed_heap_does_not_fit_its_limit_is_told_so() {
        let e = Evidence {
            nonreclaimable: flat(&[200, 210]),
            limit_bytes: Some(512 * MIB),
            runtime: Some(Runtime::Jvm { heap_max: 512 * MIB, fixed: true, metaspace: 40 * MIB }),
            ..Evidence::default()
        };
        let r = recommend(&e);
        assert_eq!(r.limit_bytes, Some(616 * MIB), "heap 512 + metaspace 40 + 64 outside: what it may take");
        assert!(r.notes[0].contains("needs about 616.0 MiB") && r.notes[0].contains("more than its 512.0 MiB limit"), "{:?}", r.notes);
        assert_eq!(r.runtime_setting, None, "-Xmx stays; the limit takes it");
    }

    #[test]
    fn a_steady_growth_is_a_leak_not_a_number_and_a_sawtooth_is_not() {
        let grow: Vec<u64> = (0..30).map(|k| 100 + 2 * k).collect();
        let r = recommend(&Evidence { nonreclaimable: flat(&grow), ..Evidence::default() });
        assert_eq!(r.limit_bytes, None);
        let rate = r.leak_bytes_per_hour.unwrap();
        assert!((rate - 120.0 * MIB as f64).abs() < MIB as f64, "2 MiB a minute: {rate}");
        assert!(r.notes[0].starts_with("A leak: it grew 120.0 MiB/h"), "{:?}", r.notes);
        // A GC's sawtooth, and a start-up ramp that levels off.
        let saw: Vec<u64> = (0..30).map(|k| 100 + (k % 5) * 20).collect();
        assert_eq!(leak(&flat(&saw)), None);
        let ramp: Vec<u64> = (0..30).map(|k| 100 + 10 * k.min(8)).collect();
        assert_eq!(leak(&flat(&ramp)), None);
    }

    #[test]
    fn a_pods_workload_from_its_name() {
        assert_eq!(workload("web-7d4b9c6f5-x2x9z"), "web");
        assert_eq!(workload("my-service-5c8f9d7b4-x2x9z"), "my-service");
        assert_eq!(workload("api-gateway-x2x9z"), "api-gateway", "gateway has vowels: not a hash");
        assert_eq!(workload("node-exporter-7xk2p"), "node-exporter");
        assert_eq!(workload("postgres-0"), "postgres");
        assert_eq!(workload("standalone"), "standalone");
    }
}
