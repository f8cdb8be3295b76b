//! The containers' history and OOM kills as a Chrome trace event file (JSON), which Perfetto's
//! UI and `chrome://tracing` load: one process per container (named through metadata events),
//! a counter track per quantity, an instant event per OOM kill with the event's facts.
//! Pure: history and events in, JSON out.
//!
//! Counters are written when their value changes (a counter holds its value until the next
//! event), so an idle container costs a few events however long the window.

use serde_json::{Value, json};

use crate::{
    history::{ContainerHistory, Field},
    oom::{Event, reasons},
};

/// The counter tracks of each container: (track name, what it draws).
const GAUGES: [(&str, Field); 4] =
    [("working_set_bytes", Field::WorkingSet), ("rss_bytes", Field::Anon), ("limit_bytes", Field::Limit), ("vsz_bytes", Field::Vsz)];
const RATES: [(&str, Field); 2] = [("page_faults_per_second", Field::PageFaults), ("mmap_bytes_per_second", Field::MmapBytes)];

fn idx(f: Field) -> usize {
    Field::ALL.iter().position(|x| *x == f).expect("every field is in ALL")
}

fn us(unix_seconds: f64) -> f64 {
    (unix_seconds * 1e6).round()
}

/// The thread every container's tracks and instants are on.
const TID: u64 = 1;

/// The trace of `containers` and `events` (events of containers not in the trace go on a
/// process of their own).
pub fn chrome_trace(containers: &[ContainerHistory], events: &[&Event], since: f64) -> Value {
    let mut out: Vec<Value> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let pid = i as u64 + 1;
        out.push(json!({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": &*c.name}}));
        out.push(json!({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}));
        out.push(json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": TID, "args": {"name": format!("memory of {}", c.cgroup)}}));
        for (name, field) in GAUGES {
            let mut last = None;
            for (t, values) in &c.samples {
                let v = values[idx(field)];
                if v.is_some() && v != last {
                    out.push(json!({"ph": "C", "name": name, "pid": pid, "tid": TID, "ts": us(*t), "args": {name: v}}));
                    last = v;
                }
            }
        }
        for (name, field) in RATES {
            let mut last_rate = None;
            for w in c.samples.windows(2) {
                let ((t0, a), (t1, b)) = (&w[0], &w[1]);
                let (Some(a), Some(b)) = (a[idx(field)], b[idx(field)]) else { continue };
                let dt = t1 - t0;
                if dt <= 0.0 {
                    continue;
                }
                let rate = (b.saturating_sub(a) as f64 / dt).round() as u64;
                if Some(rate) != last_rate {
                    out.push(json!({"ph": "C", "name": name, "pid": pid, "tid": TID, "ts": us(*t1), "args": {name: rate}}));
                    last_rate = Some(rate);
                }
            }
        }
    }
    let lost_pid = containers.len() as u64 + 1;
    let mut lost = false;
    for e in events.iter().filter(|e| e.time >= since) {
        let pid = match containers.iter().position(|c| c.id == e.cgroup_id) {
            Some(i) => i as u64 + 1,
            None => {
                lost = true;
                lost_pid
            }
        };
        let name = match (e.kind, &e.victim) {
            (crate::oom::EventKind::Warning, _) => "memory warning: at risk of an OOM kill".to_string(),
            (crate::oom::EventKind::Cleared, _) => "memory warning cleared".to_string(),
            (_, Some(v)) => format!("OOM kill: {} (pid {})", v.comm, v.pid),
            (_, None) => format!("OOM kill(s): {} missed by the probe", e.count),
        };
        out.push(json!({"ph": "i", "s": "p", "name": name, "pid": pid, "tid": TID, "ts": us(e.time), "args": facts(e)}));
    }
    if lost {
        out.push(
            json!({"ph": "M", "name": "process_name", "pid": lost_pid, "tid": 0, "args": {"name": "OOM kills in cgroups without history"}}),
        );
    }
    json!({
        "traceEvents": out,
        "displayTimeUnit": "ms",
        "otherData": {"generator": concat!("memwatch ", env!("CARGO_PKG_VERSION")), "since_unix_seconds": since},
    })
}

/// An OOM event's facts as an instant's arguments.
fn facts(e: &Event) -> Value {
    json!({
        "seq": e.seq,
        "cgroup": e.cgroup,
        "namespace": e.namespace,
        "pod": e.pod,
        "container": e.container,
        "constraint": e.constraint.label(),
        "constrained_by": e.constrained_by,
        "victim": e.victim,
        "at_kill": e.at_kill,
        "why": reasons::summary(&e.explanation),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::oom::event::tests::event;

    fn history() -> ContainerHistory {
        let mut samples = Vec::new();
        for s in 0..5u64 {
            let mut v = [None; Field::ALL.len()];
            v[idx(Field::WorkingSet)] = Some(if s < 3 { 100 } else { 200 });
            v[idx(Field::Limit)] = Some(1000);
            v[idx(Field::PageFaults)] = Some(s * 50);
            samples.push((1000.0 + s as f64, v));
        }
        ContainerHistory {
            id: 10,
            name: Arc::from("ns/pod/app"),
            cgroup: Arc::from("/c10"),
            namespace: Arc::from("ns"),
            pod: Arc::from("pod"),
            container: Arc::from("app"),
            first_seen: 1000.0,
            samples,
        }
    }

    #[test]
    fn counters_change_only_and_instants_at_the_kill() {
        let mut e = event(1, 10);
        e.time = 1003.5;
        let other = event(2, 99);
        let t = chrome_trace(&[history()], &[&e, &other], 0.0);
        let evs = t["traceEvents"].as_array().unwrap();
        let named = |ph: &str, name: &str| evs.iter().filter(|x| x["ph"] == ph && x["name"] == name).collect::<Vec<_>>();
        assert_eq!(named("M", "process_name")[0]["args"]["name"], "ns/pod/app");
        let ws = named("C", "working_set_bytes");
        assert_eq!(ws.len(), 2, "written on change: {ws:?}");
        assert_eq!((ws[1]["ts"].as_f64(), ws[1]["args"]["working_set_bytes"].as_u64()), (Some(1003.0e6), Some(200)));
        let faults = named("C", "page_faults_per_second");
        assert_eq!(faults.len(), 1, "a steady 50/s is one event");
        assert_eq!(faults[0]["args"]["page_faults_per_second"], 50);
        let kills: Vec<_> = evs.iter().filter(|x| x["ph"] == "i").collect();
        assert_eq!(kills.len(), 2);
        assert_eq!((kills[0]["pid"].as_u64(), kills[0]["ts"].as_f64()), (Some(1), Some(1003.5e6)));
        assert_eq!(kills[0]["s"], "p");
        assert_eq!(kills[1]["pid"], 2, "a kill outside the traced containers has a process of its own");
        for x in evs {
            assert!(x["ph"].is_string() && x["pid"].is_u64() && x["tid"].is_u64() && x["name"].is_string(), "{x}");
            if x["ph"] != "M" {
                assert!(x["ts"].is_f64() && x["args"].is_object(), "{x}");
            }
        }
    }
}
