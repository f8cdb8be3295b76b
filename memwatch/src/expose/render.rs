//! Rendering as Prometheus text exposition (0.0.4) or OpenMetrics 1.0. Pure: data in, string
//! out. The container series are written straight from the [`Snapshot`] in one pass (as
//! kube-state-metrics does, for speed at thousands of series); memwatch's own instrumentation
//! comes from a `prometheus` crate registry ([`crate::selfmetrics`]), whose families are
//! written here in either format (the crate itself writes only the text format).

use std::fmt::Write as _;

use crate::{
    oom::{Constraint, OomView, event::VictimRole},
    probes::{ProbeId, ProbeState, maps::DropKind},
    snapshot::{Container, RuntimeHeap, Snapshot},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Picks the format from an HTTP `Accept` header: OpenMetrics only when asked for.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.split(',').any(|part| part.trim().starts_with("application/openmetrics-text")) => Format::OpenMetrics,
            _ => Format::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Gauge,
    Counter,
    Histogram,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Gauge => "gauge",
            Type::Counter => "counter",
            Type::Histogram => "histogram",
        }
    }
}

/// A family as its header says it and the reference page lists it: its sample name, type,
/// help, and its labels beyond the container's (comma-separated; empty for none).
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub name: &'static str,
    pub ty: Type,
    pub help: &'static str,
    pub labels: &'static str,
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(v: &str, out: &mut String) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

struct Writer {
    out: String,
    format: Format,
}

impl Writer {
    /// `name` is the sample name; for counters it ends in `_total`, which OpenMetrics drops
    /// from the family name.
    fn header(&mut self, name: &str, ty: Type, help: &str) {
        let family = match (self.format, ty) {
            (Format::OpenMetrics, Type::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let _ = writeln!(self.out, "# HELP {family} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.out, "# TYPE {family} {}", ty.name());
    }

    fn meta(&mut self, m: &Meta) {
        self.header(m.name, m.ty, m.help);
    }

    /// One sample; `labels` is already escaped, without braces (may be empty).
    fn sample(&mut self, name: &str, labels: &str, extra: Option<(&str, &str)>, value: Value) {
        self.out.push_str(name);
        if !labels.is_empty() || extra.is_some() {
            self.out.push('{');
            self.out.push_str(labels);
            if let Some((k, v)) = extra {
                if !labels.is_empty() {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                escape_label(v, &mut self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value {
            Value::Int(v) => {
                let _ = write!(self.out, "{v}");
            }
            Value::Float(v) => {
                let _ = write!(self.out, "{v}");
            }
        }
        self.out.push('\n');
    }
}

#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

type Getter = fn(&Container) -> Option<Value>;

/// A per-container family: sample name, type, help, the probe it needs, and its value.
struct Family {
    name: &'static str,
    ty: Type,
    help: &'static str,
    needs_probe: Option<ProbeId>,
    /// Extra label name and, per value, its label value.
    kinds: &'static [(&'static str, Getter)],
    kind_label: &'static str,
}

macro_rules! int {
    ($e:expr) => {
        |c: &Container| -> Option<Value> { $e(c).map(Value::Int) }
    };
}

static FAMILIES: &[Family] = &[
    Family {
        name: "memwatch_container_memory_usage_bytes",
        ty: Type::Gauge,
        help: "Memory charged to the cgroup (memory.current, memory.usage_in_bytes).",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| Some(c.usage_bytes)))],
    },
    Family {
        name: "memwatch_container_memory_working_set_bytes",
        ty: Type::Gauge,
        help: "Usage minus inactive file cache, as the kubelet computes it.",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| Some(c.working_set_bytes)))],
    },
    Family {
        name: "memwatch_container_memory_rss_bytes",
        ty: Type::Gauge,
        help: "Anonymous memory (memory.stat anon, total_rss on v1).",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| Some(c.rss_bytes)))],
    },
    Family {
        name: "memwatch_container_memory_cache_bytes",
        ty: Type::Gauge,
        help: "File-backed memory (memory.stat file, total_cache on v1).",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| Some(c.cache_bytes)))],
    },
    Family {
        name: "memwatch_container_memory_swap_bytes",
        ty: Type::Gauge,
        help: "Swap used by the cgroup, where the kernel accounts it.",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.swap_bytes))],
    },
    Family {
        name: "memwatch_container_memory_vsz_bytes",
        ty: Type::Gauge,
        help: "Sum of the virtual sizes of the cgroup's processes.",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| Some(c.vsz_bytes)))],
    },
    Family {
        name: "memwatch_container_memory_limit_bytes",
        ty: Type::Gauge,
        help: "Effective memory limit: the tightest of the cgroup's and its ancestors', else the machine's memory.",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| Some(c.limit_bytes)))],
    },
    Family {
        name: "memwatch_container_memory_headroom_bytes",
        ty: Type::Gauge,
        help: "Effective limit minus working set.",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| Some(c.headroom_bytes)))],
    },
    Family {
        name: "memwatch_container_memory_headroom_ratio",
        ty: Type::Gauge,
        help: "Headroom as a fraction of the effective limit.",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", |c: &Container| Some(Value::Float(c.headroom_ratio)))],
    },
    Family {
        name: "memwatch_container_memory_nonreclaimable_peak_bytes",
        ty: Type::Gauge,
        help: "The highest non-reclaimable memory (anonymous, shmem/tmpfs and kernel: usage less the page cache reclaim can free) over the last 60 s: each sample's, and a spike between samples from the kernel's watermark of usage (memory.peak, memory.max_usage_in_bytes) less the page cache, so a scrape sees a spike between two scrapes.",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| Some(c.nonreclaimable_peak_bytes)))],
    },
    Family {
        name: "memwatch_container_memory_high_bytes",
        ty: Type::Gauge,
        help: "memory.high throttling threshold, when set (cgroup v2).",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.high_bytes))],
    },
    Family {
        name: "memwatch_container_page_faults_total",
        ty: Type::Counter,
        help: "Page faults (memory.stat pgfault; counted per event by eBPF with --ebpf-page-faults).",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.page_faults))],
    },
    Family {
        name: "memwatch_container_major_page_faults_total",
        ty: Type::Counter,
        help: "Major page faults (memory.stat pgmajfault).",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.major_page_faults))],
    },
    Family {
        name: "memwatch_container_mmap_calls_total",
        ty: Type::Counter,
        help: "Successful mmap calls (eBPF).",
        needs_probe: Some(ProbeId::Mmap),
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.ebpf.map(|e| e.mmap_calls)))],
    },
    Family {
        name: "memwatch_container_mmap_bytes_total",
        ty: Type::Counter,
        help: "Bytes mapped by successful mmap calls, page-rounded (eBPF).",
        needs_probe: Some(ProbeId::Mmap),
        kind_label: "kind",
        kinds: &[
            ("anon", int!(|c: &Container| c.ebpf.map(|e| e.mmap_anon_bytes))),
            ("file", int!(|c: &Container| c.ebpf.map(|e| e.mmap_file_bytes))),
        ],
    },
    Family {
        name: "memwatch_container_munmap_bytes_total",
        ty: Type::Counter,
        help: "Bytes unmapped by successful munmap calls (eBPF).",
        needs_probe: Some(ProbeId::Munmap),
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.ebpf.map(|e| e.munmap_bytes)))],
    },
    Family {
        name: "memwatch_container_brk_bytes_total",
        ty: Type::Counter,
        help: "Bytes the program break grew by (eBPF).",
        needs_probe: Some(ProbeId::Brk),
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.ebpf.map(|e| e.brk_grow_bytes)))],
    },
    Family {
        name: "memwatch_container_munmap_calls_total",
        ty: Type::Counter,
        help: "Successful munmap calls (eBPF).",
        needs_probe: Some(ProbeId::Munmap),
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.ebpf.map(|e| e.munmap_calls)))],
    },
    Family {
        name: "memwatch_container_brk_calls_total",
        ty: Type::Counter,
        help: "Successful brk calls, brk(0) included (eBPF).",
        needs_probe: Some(ProbeId::Brk),
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.ebpf.map(|e| e.brk_calls)))],
    },
    Family {
        name: "memwatch_container_brk_shrink_bytes_total",
        ty: Type::Counter,
        help: "Bytes the program break shrank by (eBPF); growth minus this is its net growth.",
        needs_probe: Some(ProbeId::Brk),
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.ebpf.map(|e| e.brk_shrink_bytes)))],
    },
    Family {
        name: "memwatch_container_mremap_calls_total",
        ty: Type::Counter,
        help: "Successful mremap calls (eBPF).",
        needs_probe: Some(ProbeId::Mremap),
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.ebpf.map(|e| e.mremap_calls)))],
    },
    Family {
        name: "memwatch_container_mremap_bytes_total",
        ty: Type::Counter,
        help: "Bytes mappings grew or shrank by in successful mremap calls, page-rounded (eBPF).",
        needs_probe: Some(ProbeId::Mremap),
        kind_label: "kind",
        kinds: &[
            ("grow", int!(|c: &Container| c.ebpf.map(|e| e.mremap_grow_bytes))),
            ("shrink", int!(|c: &Container| c.ebpf.map(|e| e.mremap_shrink_bytes))),
        ],
    },
    Family {
        name: "memwatch_container_process_exits_total",
        ty: Type::Counter,
        help: "Processes (thread groups) that exited in the cgroup or its descendants (eBPF).",
        needs_probe: Some(ProbeId::ProcessExit),
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.ebpf.map(|e| e.exits)))],
    },
    Family {
        name: "memwatch_container_memory_pressure_seconds_total",
        ty: Type::Counter,
        help: "Time tasks stalled on memory (PSI memory.pressure, cgroup v2).",
        needs_probe: None,
        kind_label: "kind",
        kinds: &[
            ("some", |c: &Container| c.pressure.map(|p| Value::Float(p.some_us as f64 / 1e6))),
            ("full", |c: &Container| c.pressure.and_then(|p| p.full_us).map(|us| Value::Float(us as f64 / 1e6))),
        ],
    },
    Family {
        name: "memwatch_container_oom_kills_total",
        ty: Type::Counter,
        help: "OOM kills in the cgroup, from the kernel's own counter.",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| c.oom_kills))],
    },
    Family {
        name: "memwatch_container_memory_limit_hits_total",
        ty: Type::Counter,
        help: "Times the cgroup pressed on its memory limit, from the kernel's counters: kind=\"max\" reclaim forced at the limit (v2 memory.events max, v1 memory.failcnt), kind=\"high\" throttled at memory.high (v2).",
        needs_probe: None,
        kind_label: "kind",
        kinds: &[("max", int!(|c: &Container| c.limit_hits_max)), ("high", int!(|c: &Container| c.limit_hits_high))],
    },
    Family {
        name: "memwatch_container_processes",
        ty: Type::Gauge,
        help: "Processes in the cgroup and its descendants.",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", int!(|c: &Container| Some(c.processes)))],
    },
    Family {
        name: "memwatch_container_time_to_oom_seconds",
        ty: Type::Gauge,
        help: "Predicted seconds until the working set reaches the limit at its recent growth rate; absent when not growing.",
        needs_probe: None,
        kind_label: "",
        kinds: &[("", |c: &Container| c.time_to_oom_seconds.map(Value::Float))],
    },
];

/// The runtimes' heaps, per container and runtime (written only where a runtime is known).
fn render_runtime_heaps(snap: &Snapshot, labels: &[String], w: &mut Writer) {
    if snap.containers.iter().all(|c| c.runtime_heaps.is_empty()) {
        return;
    }
    let with_runtime = |l: &str, r: &RuntimeHeap| format!("{l},runtime=\"{}\"", r.runtime.name());
    w.meta(&RUNTIME_HEAP);
    for (c, l) in snap.containers.iter().zip(labels) {
        for r in &c.runtime_heaps {
            let l = with_runtime(l, r);
            for (kind, v) in [("used", r.used_bytes), ("committed", r.committed_bytes), ("max", r.max_bytes)] {
                if let Some(v) = v {
                    w.sample("memwatch_container_runtime_heap_bytes", &l, Some(("kind", kind)), Value::Int(v));
                }
            }
        }
    }
    w.meta(&RUNTIME_HEAP_LIMIT);
    for (c, l) in snap.containers.iter().zip(labels) {
        for r in c.runtime_heaps.iter().filter(|r| r.limit_bytes.is_some()) {
            w.sample("memwatch_container_runtime_heap_limit_bytes", &with_runtime(l, r), None, Value::Int(r.limit_bytes.unwrap_or(0)));
        }
    }
}

/// The data stores' memory settings, per container, application and setting (one series each,
/// the first process's where several run one: a Redis and the child its save forked).
fn render_app_settings(snap: &Snapshot, labels: &[String], w: &mut Writer) {
    if snap.containers.iter().all(|c| c.runtimes.iter().all(|p| p.app.is_none())) {
        return;
    }
    w.meta(&APP_SETTING);
    for (c, l) in snap.containers.iter().zip(labels) {
        let mut seen: std::collections::BTreeMap<(&str, &str), u64> = std::collections::BTreeMap::new();
        for a in c.runtimes.iter().filter_map(|p| p.app.as_ref()) {
            for (setting, v) in a.settings() {
                seen.entry((a.id().name(), setting)).or_insert(v);
            }
        }
        for ((app, setting), v) in seen {
            w.sample("memwatch_container_app_setting_bytes", &format!("{l},app=\"{app}\""), Some(("setting", setting)), Value::Int(v));
        }
    }
}

fn container_labels(c: &Container) -> String {
    let mut s = String::with_capacity(96 + c.cgroup.len());
    for (i, (k, v)) in [
        ("namespace", &c.namespace),
        ("pod", &c.pod),
        ("container", &c.container),
        ("container_id", &c.container_id),
        ("cgroup", &c.cgroup),
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        escape_label(v, &mut s);
        s.push('"');
    }
    s
}

/// Renders the whole exposition of a snapshot and the OOM view (with the closing `# EOF` of
/// OpenMetrics).
pub fn render(snap: &Snapshot, oom: &OomView, format: Format) -> String {
    let mut out = render_body(snap, oom, format);
    out.push_str(end(format));
    out
}

/// What closes a document in `format`.
pub fn end(format: Format) -> &'static str {
    match format {
        Format::OpenMetrics => "# EOF\n",
        Format::Text => "",
    }
}

/// The snapshot's and the OOM view's series, without the closing line: the HTTP layer sends
/// this (rendered once per snapshot and format), then the self-instrumentation, then [`end`].
/// One writer per source: the containers' series, the OOM view's, the probes', the sampling's.
pub fn render_body(snap: &Snapshot, oom: &OomView, format: Format) -> String {
    let labels: Vec<String> = snap.containers.iter().map(container_labels).collect();
    let mut w = Writer { out: String::with_capacity(256 + snap.containers.len() * 3500), format };
    render_containers(snap, &labels, &mut w);
    render_runtime_heaps(snap, &labels, &mut w);
    render_app_settings(snap, &labels, &mut w);
    render_oom(snap, &labels, oom, &mut w);
    render_probes(snap, &mut w);
    render_sampling(snap, &mut w);
    render_kernel_costs(snap, &mut w);
    w.out
}

/// Every per-container family of [`FAMILIES`] whose probe (if any) is attached.
fn render_containers(snap: &Snapshot, labels: &[String], w: &mut Writer) {
    for f in FAMILIES {
        if f.needs_probe.is_some_and(|p| !snap.probe_attached(p)) {
            continue;
        }
        w.header(f.name, f.ty, f.help);
        for (c, l) in snap.containers.iter().zip(labels) {
            for (kind, get) in f.kinds {
                if let Some(v) = get(c) {
                    let extra = (!f.kind_label.is_empty()).then_some((f.kind_label, *kind));
                    w.sample(f.name, l, extra, v);
                }
            }
        }
    }
}

const LAST_OOM_KILL: Meta = Meta {
    name: "memwatch_container_last_oom_kill_timestamp_seconds",
    ty: Type::Gauge,
    help: "Unix time of the last OOM kill in the container or its descendants.",
    labels: "",
};
const WARNING_RAISED: Meta = Meta {
    name: "memwatch_container_memory_warning_timestamp_seconds",
    ty: Type::Gauge,
    help: "Unix time the container's memory warning in force was raised (at risk of an OOM kill: see /api/v1/events); absent when none is.",
    labels: "",
};
const VICTIMS: Meta = Meta {
    name: "memwatch_container_oom_kill_victims_total",
    ty: Type::Counter,
    help: "OOM kills the probe saw in the container, by what the victim was to it: main (its main process: the container stops and restarts) or child (the container lives on). Page on main.",
    labels: "victim",
};
const OOM_KILLS: Meta = Meta {
    name: "memwatch_oom_kills_total",
    ty: Type::Counter,
    help: "OOM kills recorded, by constraint (cgroup limit, whole machine, unknown for kills only the kernel counted).",
    labels: "constraint",
};
const MISSED: Meta = Meta {
    name: "memwatch_oom_kills_missed_by_probe_total",
    ty: Type::Counter,
    help: "OOM kills the kernel's cgroup counters show but the eBPF probe did not see (daemon down, buffer full).",
    labels: "",
};
const JOURNAL_ERRORS: Meta = Meta {
    name: "memwatch_journal_write_errors_total",
    ty: Type::Counter,
    help: "OOM events that could not be written to the journal (full or read-only disk): kept in memory only.",
    labels: "",
};
const WARNINGS_SUPPRESSED: Meta = Meta {
    name: "memwatch_memory_warnings_suppressed_total",
    ty: Type::Counter,
    help: "Memory warnings not said because the node gave 60 in the last minute (the containers are still at risk).",
    labels: "",
};

/// The OOM view's series: per container, its last kill and its warning in force; the node's
/// kill counts.
fn render_oom(snap: &Snapshot, labels: &[String], oom: &OomView, w: &mut Writer) {
    w.meta(&LAST_OOM_KILL);
    for (c, l) in snap.containers.iter().zip(labels) {
        if let Some(t) = oom.last_kill.get(&c.id) {
            w.sample(LAST_OOM_KILL.name, l, None, Value::Float(*t));
        }
    }
    w.meta(&WARNING_RAISED);
    for (c, l) in snap.containers.iter().zip(labels) {
        if let Some(warned) = oom.warned.get(&c.id) {
            w.sample(WARNING_RAISED.name, l, None, Value::Float(warned.time));
        }
    }
    w.meta(&VICTIMS);
    for (c, l) in snap.containers.iter().zip(labels) {
        if let Some(by) = oom.victims.get(&c.id) {
            for role in VictimRole::ALL {
                w.sample(VICTIMS.name, l, Some(("victim", role.label())), Value::Int(by.get(&role).copied().unwrap_or(0)));
            }
        }
    }
    w.meta(&OOM_KILLS);
    for constraint in Constraint::ALL {
        let n = oom.by_constraint.get(&constraint).copied().unwrap_or(0);
        w.sample(OOM_KILLS.name, "", Some(("constraint", constraint.label())), Value::Int(n));
    }
    w.meta(&MISSED);
    w.sample(MISSED.name, "", None, Value::Int(oom.missed_total));
    w.meta(&JOURNAL_ERRORS);
    w.sample(JOURNAL_ERRORS.name, "", None, Value::Int(oom.journal_write_errors));
    w.meta(&WARNINGS_SUPPRESSED);
    w.sample(WARNINGS_SUPPRESSED.name, "", None, Value::Int(oom.warnings_suppressed));
}

/// Families gathered from a `prometheus` registry (counters, gauges, histograms), in `format`.
pub fn render_families(families: &[prometheus::proto::MetricFamily], format: Format) -> String {
    use prometheus::proto::MetricType;
    let mut w = Writer { out: String::new(), format };
    for f in families {
        let ty = match f.get_field_type() {
            MetricType::COUNTER => Type::Counter,
            MetricType::GAUGE => Type::Gauge,
            MetricType::HISTOGRAM => Type::Histogram,
            _ => continue, // memwatch registers no summaries or untyped metrics
        };
        // The text format's counters carry `_total` in the family name too; OpenMetrics's not.
        w.header(f.name(), ty, f.help());
        for m in f.get_metric() {
            let mut labels = String::new();
            for (i, l) in m.get_label().iter().enumerate() {
                if i > 0 {
                    labels.push(',');
                }
                labels.push_str(l.name());
                labels.push_str("=\"");
                escape_label(l.value(), &mut labels);
                labels.push('"');
            }
            let name = f.name();
            match ty {
                Type::Counter => w.sample(name, &labels, None, Value::Float(m.get_counter().get_value())),
                Type::Gauge => w.sample(name, &labels, None, Value::Float(m.get_gauge().get_value())),
                Type::Histogram => {
                    let h = m.get_histogram();
                    let bucket = format!("{name}_bucket");
                    for b in h.get_bucket() {
                        w.sample(&bucket, &labels, Some(("le", &le(b.upper_bound()))), Value::Int(b.cumulative_count()));
                    }
                    w.sample(&bucket, &labels, Some(("le", "+Inf")), Value::Int(h.get_sample_count()));
                    w.sample(&format!("{name}_sum"), &labels, None, Value::Float(h.get_sample_sum()));
                    w.sample(&format!("{name}_count"), &labels, None, Value::Int(h.get_sample_count()));
                }
            }
        }
    }
    w.out
}

/// A bucket bound as both formats want it (OpenMetrics wants a float with a dot).
fn le(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.1}") } else { format!("{v}") }
}

const BUILD_INFO: Meta = Meta { name: "memwatch_build_info", ty: Type::Gauge, help: "memwatch's version; always 1.", labels: "version" };
const PROBE_ATTACHED: Meta = Meta {
    name: "memwatch_probe_attached",
    ty: Type::Gauge,
    help: "1 when the kernel probe is attached (method says how), 0 when it was asked for but is not: method=\"unavailable\" (the kernel lacks what it needs), \"fallback_declined\" (only the syscall tracepoints' fallback would work, and it is off), \"standby\" (the fault-stack sampler while no container is at risk); probes not asked for are absent.",
    labels: "probe, method",
};
const PROBE_RUNS: Meta = Meta {
    name: "memwatch_probe_runs_total",
    ty: Type::Counter,
    help: "Times the probe's kernel programs ran while BPF statistics were on (memwatch serve --bpf-stats, or the kernel.bpf_stats_enabled sysctl).",
    labels: "probe",
};
const PROBE_RUN_SECONDS: Meta = Meta {
    name: "memwatch_probe_run_seconds_total",
    ty: Type::Counter,
    help: "Time the probe's kernel programs ran while BPF statistics were on: divided by runs, its cost per event.",
    labels: "probe",
};
const EBPF_SLOTS: Meta = Meta {
    name: "memwatch_ebpf_cgroup_slots",
    ty: Type::Gauge,
    help: "Per-cgroup counter slots in the kernel: in use (highest memory css id seen plus one) and capacity (--ebpf-cgroup-slots).",
    labels: "state",
};
const EBPF_DROPS: Meta = Meta {
    name: "memwatch_ebpf_drops_total",
    ty: Type::Counter,
    help: "Events the kernel side could not record, by kind.",
    labels: "kind",
};
const LAST_SAMPLE: Meta = Meta {
    name: "memwatch_last_sample_timestamp_seconds",
    ty: Type::Gauge,
    help: "When the last sample was taken (Unix time).",
    labels: "",
};
const SAMPLE_ERRORS: Meta = Meta {
    name: "memwatch_sample_errors_total",
    ty: Type::Counter,
    help: "Items skipped while sampling, by collector and reason.",
    labels: "collector, reason",
};
const SERIES_DROPPED: Meta = Meta {
    name: "memwatch_series_dropped_total",
    ty: Type::Counter,
    help: "Container series not exported because of --max-series.",
    labels: "",
};

/// The probes' series: memwatch's build, and which probes are attached and how.
fn render_probes(snap: &Snapshot, w: &mut Writer) {
    w.meta(&BUILD_INFO);
    w.sample(BUILD_INFO.name, "", Some(("version", env!("CARGO_PKG_VERSION"))), Value::Int(1));
    w.meta(&PROBE_ATTACHED);
    for p in &snap.probes {
        let mut probe = String::from("probe=\"");
        escape_label(p.id.name(), &mut probe);
        probe.push('"');
        match &p.state {
            ProbeState::Attached { method } => w.sample(PROBE_ATTACHED.name, &probe, Some(("method", method)), Value::Int(1)),
            // Unavailable here; or available only by the fallback the user did not allow (a
            // choice: the alert on this family leaves it out, as it leaves out standby).
            ProbeState::Disabled(d) => {
                let method = if d.fallback_declined() { "fallback_declined" } else { "unavailable" };
                w.sample(PROBE_ATTACHED.name, &probe, Some(("method", method)), Value::Int(0))
            }
            // Loaded only when needed (the fault-stack sampler until a container is at risk).
            ProbeState::Standby(_) => w.sample(PROBE_ATTACHED.name, &probe, Some(("method", "standby")), Value::Int(0)),
            ProbeState::Off(_) => {}
        }
    }
}

/// The sampling's own series: when it last ran, what it skipped, the kernel's slots it found
/// in use, the series it dropped.
fn render_sampling(snap: &Snapshot, w: &mut Writer) {
    let s = &snap.self_stats;
    w.meta(&LAST_SAMPLE);
    w.sample(LAST_SAMPLE.name, "", None, Value::Float(crate::unix_seconds(snap.taken_at)));
    w.meta(&SAMPLE_ERRORS);
    for ((collector, reason), n) in &s.sample_errors {
        let mut l = String::from("collector=\"");
        escape_label(collector.name(), &mut l);
        l.push('"');
        w.sample(SAMPLE_ERRORS.name, &l, Some(("reason", reason.label())), Value::Int(*n));
    }
    w.meta(&EBPF_SLOTS);
    w.sample(EBPF_SLOTS.name, "", Some(("state", "used")), Value::Int(s.ebpf_slots_used.into()));
    w.sample(EBPF_SLOTS.name, "", Some(("state", "capacity")), Value::Int(s.ebpf_slots_capacity.into()));
    w.meta(&SERIES_DROPPED);
    w.sample(SERIES_DROPPED.name, "", None, Value::Int(s.series_dropped_total));
}

/// What the kernel side costs and could not record: its programs' runs (with BPF statistics
/// on) and its drops.
fn render_kernel_costs(snap: &Snapshot, w: &mut Writer) {
    let s = &snap.self_stats;
    if let Some(runs) = &s.probe_runs {
        w.meta(&PROBE_RUNS);
        for (probe, n, _) in runs {
            w.sample(PROBE_RUNS.name, "", Some(("probe", probe)), Value::Int(*n));
        }
        w.meta(&PROBE_RUN_SECONDS);
        for (probe, _, secs) in runs {
            w.sample(PROBE_RUN_SECONDS.name, "", Some(("probe", probe)), Value::Float(*secs));
        }
    }
    w.meta(&EBPF_DROPS);
    for kind in DropKind::ALL {
        w.sample(EBPF_DROPS.name, "", Some(("kind", kind.label())), Value::Int(s.ebpf_drops[kind]));
    }
}

const RUNTIME_HEAP: Meta = Meta {
    name: "memwatch_container_runtime_heap_bytes",
    ty: Type::Gauge,
    help: "A language runtime's heap in the container, where the runtime publishes it (the JVM's performance data): used, committed, max.",
    labels: "runtime, kind",
};
const RUNTIME_HEAP_LIMIT: Meta = Meta {
    name: "memwatch_container_runtime_heap_limit_bytes",
    ty: Type::Gauge,
    help: "The limit a language runtime sets its heap in the container (GOMEMLIMIT, the JVM's maximum heap, V8's heap limit, .NET's GC hard limit).",
    labels: "runtime",
};
const APP_SETTING: Meta = Meta {
    name: "memwatch_container_app_setting_bytes",
    ty: Type::Gauge,
    help: "A data store's memory setting in the container, as configured (Redis's maxmemory, PostgreSQL's shared_buffers and work_mem, MySQL's buffer pool, memcached's -m).",
    labels: "app, setting",
};

/// Every family this module writes, in the order it writes them, for the reference page:
/// (meta, whether it carries the container labels).
pub fn families() -> Vec<(Meta, bool)> {
    let per_container = FAMILIES.iter().map(|f| (Meta { name: f.name, ty: f.ty, help: f.help, labels: f.kind_label }, true));
    per_container
        .chain([RUNTIME_HEAP, RUNTIME_HEAP_LIMIT, APP_SETTING, LAST_OOM_KILL, WARNING_RAISED, VICTIMS].map(|m| (m, true)))
        .chain(
            [
                OOM_KILLS,
                MISSED,
                JOURNAL_ERRORS,
                WARNINGS_SUPPRESSED,
                BUILD_INFO,
                PROBE_ATTACHED,
                EBPF_SLOTS,
                PROBE_RUNS,
                PROBE_RUN_SECONDS,
                EBPF_DROPS,
                LAST_SAMPLE,
                SAMPLE_ERRORS,
                SERIES_DROPPED,
            ]
            .map(|m| (m, false)),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        let mut s = String::new();
        escape_label("a\"b\\c\nd", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn negotiates_openmetrics_only_when_asked() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
    }

    #[test]
    fn series_per_container_bounds_the_families() {
        let n: usize = FAMILIES.iter().map(|f| f.kinds.len()).sum();
        // Plus the last OOM kill timestamp, written apart.
        assert!(n < crate::model::SERIES_PER_CONTAINER, "{n} series per container");
    }
}
