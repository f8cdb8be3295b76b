//! The memory the containers' history costs: 1,000 containers over the default 15-minute
//! window at one sample a second, through the real `History` code, for idle containers and for
//! containers whose every memory figure moves every second. Also how long a sample's push and a
//! full trace take. Prints numbers, asserts nothing.
//!
//! `cargo bench -p memwatch-tests --bench history`
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use memwatch::{
    history::History,
    snapshot::{Container, Process, Snapshot},
};

const CONTAINERS: usize = 1000;
const SAMPLES: u64 = 900;

fn container(i: usize) -> Container {
    serde_json::from_value(serde_json::json!({
        "cgroup": format!("/kubepods.slice/pod{i}/cri-containerd-{i:064x}.scope"), "id": 10_000 + i as u64,
        "namespace": "default", "pod": format!("web-{i}"), "container": "app", "container_id": format!("{i:064x}"),
        "kind": "kubernetes_container", "qos": null, "usage_bytes": 100 << 20, "working_set_bytes": 90 << 20, "rss_bytes": 80 << 20,
        "cache_bytes": 20 << 20, "swap_bytes": null, "vsz_bytes": 1u64 << 30, "process_rss_bytes": 85 << 20, "limit_bytes": 512u64 << 20,
        "limit_is_machine": false, "headroom_bytes": 422u64 << 20, "headroom_ratio": 0.8, "high_bytes": null, "major_page_faults": 0,
        "page_faults": 1000, "ebpf": null, "pressure": null, "oom_kills": 0, "processes": 3, "time_to_oom_seconds": null,
        "top_processes": []
    }))
    .unwrap()
}

fn snapshot(t: u64, containers: Arc<Vec<Container>>) -> Snapshot {
    Snapshot {
        taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + t),
        cgroup_mode: memwatch::host::CgroupVersion::V2,
        machine_memory_bytes: 64 << 30,
        containers,
        cgroups: Arc::default(),
        probes: vec![],
        self_stats: Default::default(),
    }
}

fn run(name: &str, busy: bool) {
    let base: Vec<Container> = (0..CONTAINERS).map(container).collect();
    let mut h = History::default();
    let mut push = Duration::ZERO;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for t in 0..SAMPLES {
        let mut cs = base.clone();
        if busy {
            for (i, c) in cs.iter_mut().enumerate() {
                // A few pages up or down each second, faults and maps rising, cache every 10 s.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let wobble = (x % 64) * 4096;
                c.working_set_bytes += wobble;
                c.usage_bytes += wobble;
                c.rss_bytes += wobble;
                c.process_rss_bytes += wobble;
                c.page_faults = Some(1000 + t * (50 + i as u64 % 100));
                if t % 10 == 0 {
                    c.cache_bytes += t * 4096;
                }
                c.top_processes = (0..3)
                    .map(|p| Process {
                        pid: (i * 10 + p) as u32,
                        comm: Arc::from("app"),
                        vsz_bytes: 1 << 30,
                        rss_bytes: (20 << 20) + wobble * (p as u64 + 1),
                        faults: 0,
                        ebpf: None,
                    })
                    .collect();
            }
        }
        let snap = snapshot(t, Arc::new(cs));
        let started = Instant::now();
        h.push(&snap);
        push += started.elapsed();
    }
    let started = Instant::now();
    let all = h.range(0.0, |_, _, _| true);
    let events: Vec<&memwatch::oom::Event> = vec![];
    let trace = serde_json::to_vec(&memwatch::expose::trace::chrome_trace(&all, &events, 0.0)).unwrap();
    let trace_time = started.elapsed();
    println!(
        "{name:<5} {CONTAINERS} containers x {SAMPLES} samples: history {:.1} MiB ({:.0} bytes per container), push {:.2} ms per sample, \
         full trace {:.1} MiB in {:.2} s",
        h.heap_bytes() as f64 / (1 << 20) as f64,
        h.heap_bytes() as f64 / CONTAINERS as f64,
        push.as_secs_f64() * 1e3 / SAMPLES as f64,
        trace.len() as f64 / (1 << 20) as f64,
        trace_time.as_secs_f64()
    );
}

fn main() {
    run("idle", false);
    run("busy", true);
}
