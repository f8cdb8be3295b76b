//! `memwatch recommend`: the memory request, limit and runtime setting for each workload (or
//! container), from Prometheus's weeks of memwatch's series (`--prometheus`) or from one
//! daemon's own recent history (`--remote`), as a table, JSON, or a patch for `kubectl patch`.
use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use memwatch::rightsize::{self, Evidence, Recommendation, Runtime};
use serde::Serialize;

#[derive(Args)]
pub(crate) struct RecommendArgs {
    /// A Prometheus server that scrapes memwatch (the cluster's view over --window)
    #[arg(long, value_name = "URL", conflicts_with = "remote")]
    prometheus: Option<String>,
    /// Or one daemon's API (its --listen.api): that node's recent history only
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    #[command(flatten)]
    tls: super::client::RemoteTls,
    /// How far back to look in Prometheus (e.g. 14d, 24h)
    #[arg(long, default_value = "14d", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Only this namespace
    #[arg(long)]
    namespace: Option<String>,
    /// One line per workload (a Deployment's, StatefulSet's or DaemonSet's pods, by the pods'
    /// names and the container's) or per container
    #[arg(long, value_enum, default_value = "workload")]
    by: By,
    /// table, json, or yaml (a strategic-merge patch per workload for `kubectl patch`)
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum By {
    Workload,
    Container,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Output {
    Table,
    Json,
    Yaml,
}

/// One container's identity and evidence, from either source.
#[derive(Debug, Clone)]
struct Seen {
    namespace: String,
    pod: String,
    container: String,
    cgroup: String,
    evidence: Evidence,
}

/// What is printed: a workload's (or a container's) recommendation.
#[derive(Debug, Serialize)]
struct Line {
    namespace: String,
    /// The workload (or, by container, the pod), or the cgroup for a container outside Kubernetes.
    name: String,
    container: String,
    /// The pods (or cgroups) whose evidence it rests on.
    members: Vec<String>,
    recommendation: Recommendation,
}

pub(crate) fn run(args: &RecommendArgs) -> anyhow::Result<()> {
    let seen = match (&args.prometheus, &args.remote) {
        (Some(p), _) => from_prometheus(p, args.window)?,
        (None, Some(r)) => from_daemon(&args.tls, r)?,
        (None, None) => from_daemon(&args.tls, super::client::DEFAULT_API)?,
    };
    let seen: Vec<Seen> = seen.into_iter().filter(|s| args.namespace.as_ref().is_none_or(|n| *n == s.namespace)).collect();
    if seen.is_empty() {
        bail!("no container to recommend for (no memwatch series in the window, or none in that namespace)");
    }
    let lines = group(seen, args.by);
    let mut out = String::new();
    match args.output {
        Output::Table => out = table(&lines),
        Output::Json => out = serde_json::to_string_pretty(&lines)? + "\n",
        Output::Yaml => {
            for l in &lines {
                out += &patch(l);
            }
        }
    }
    print!("{out}");
    Ok(())
}

fn group(seen: Vec<Seen>, by: By) -> Vec<Line> {
    let mut groups: BTreeMap<(String, String, String), Vec<Seen>> = BTreeMap::new();
    for s in seen {
        let name = match (by, s.pod.is_empty()) {
            (_, true) => s.cgroup.clone(),
            (By::Workload, false) => rightsize::workload(&s.pod).to_string(),
            (By::Container, false) => s.pod.clone(),
        };
        groups.entry((s.namespace.clone(), name, s.container.clone())).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|((namespace, name, container), members)| {
            let evidence = rightsize::merge(&members.iter().map(|m| m.evidence.clone()).collect::<Vec<_>>());
            let mut names: Vec<String> = members.iter().map(|m| if m.pod.is_empty() { m.cgroup.clone() } else { m.pod.clone() }).collect();
            names.sort();
            names.dedup();
            Line { namespace, name, container, members: names, recommendation: rightsize::recommend(&evidence) }
        })
        .collect()
}

fn mi(b: u64) -> String {
    format!("{}Mi", b.div_ceil(1 << 20))
}

fn table(lines: &[Line]) -> String {
    let rows: Vec<[String; 5]> = lines
        .iter()
        .map(|l| {
            let r = &l.recommendation;
            let who = if l.namespace.is_empty() { l.name.clone() } else { format!("{}/{}/{}", l.namespace, l.name, l.container) };
            let setting = r.runtime_setting.as_ref().map(|s| format!("{}={}", s.name, s.value)).unwrap_or_else(|| "-".into());
            let (req, lim) = match (r.request_bytes, r.limit_bytes, r.leak_bytes_per_hour) {
                (_, _, Some(_)) => ("leak".to_string(), "leak".to_string()),
                (Some(q), Some(l), None) => (mi(q), mi(l)),
                _ => ("-".into(), "-".into()),
            };
            let mut why = r.evidence.clone();
            for n in &r.notes {
                why += " ";
                why += n;
            }
            [who, req, lim, setting, why]
        })
        .collect();
    let head = ["WORKLOAD", "REQUEST", "LIMIT", "RUNTIME SETTING", "EVIDENCE"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (k, c) in r.iter().enumerate().take(4) {
            w[k] = w[k].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: [&str; 5]| {
        format!(
            "{:<a$}  {:>b$}  {:>c$}  {:<d$}  {}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3]
        )
    };
    out += &line(head);
    for r in &rows {
        out += &line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    out
}

/// A strategic-merge patch of the workload's pod template: its container's memory request
/// and limit, and the runtime setting as an environment variable (merged by name).
fn patch(l: &Line) -> String {
    let r = &l.recommendation;
    let mut out = format!("# {}/{} container {}: {}\n", l.namespace, l.name, l.container, r.evidence);
    for n in &r.notes {
        out += &format!("# {n}\n");
    }
    let (Some(req), Some(lim)) = (r.request_bytes, r.limit_bytes) else {
        return out + "# no patch: no number holds it\n---\n";
    };
    if l.namespace.is_empty() {
        return out + &format!("# not a Kubernetes pod's: set the cgroup's memory limit to {} (memory.max)\n---\n", mi(lim));
    }
    let quote = |s: &str| serde_json::to_string(s).expect("a string");
    out += &format!(
        "# kubectl -n {} patch <deployment|statefulset|daemonset>/{} --patch-file <this file>\nspec:\n  template:\n    spec:\n      containers:\n      - name: {}\n        resources:\n          requests:\n            memory: {}\n          limits:\n            memory: {}\n",
        l.namespace,
        l.name,
        quote(&l.container),
        mi(req),
        mi(lim)
    );
    if let Some(s) = &r.runtime_setting {
        out += &format!("        env:\n        - name: {}\n          value: {}\n", s.name, quote(&s.value));
    }
    out + "---\n"
}

fn from_daemon(tls: &super::client::RemoteTls, url: &str) -> anyhow::Result<Vec<Seen>> {
    #[derive(serde::Deserialize)]
    struct Reply {
        containers: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        cgroup: String,
        namespace: String,
        pod: String,
        container: String,
        evidence: Evidence,
    }
    let r: Reply = tls.client(url)?.get_json("/api/v1/recommendations")?;
    Ok(r.containers
        .into_iter()
        .map(|e| Seen { namespace: e.namespace, pod: e.pod, container: e.container, cgroup: e.cgroup, evidence: e.evidence })
        .collect())
}

/// A series' labels.
type Labels = BTreeMap<String, String>;
/// A series Prometheus answered: its labels, and its (Unix seconds, value) points.
type Series = (Labels, Vec<(f64, f64)>);

/// A Prometheus instant or range query's series: their labels and values.
fn query(agent: &ureq::Agent, base: &str, path: &str, params: &[(&str, &str)]) -> anyhow::Result<Vec<Series>> {
    let mut req = agent.get(&format!("{}{path}", base.trim_end_matches('/'))).timeout(Duration::from_secs(60));
    for (k, v) in params {
        req = req.query(k, v);
    }
    let q = params.iter().find(|p| p.0 == "query").map_or("", |p| p.1);
    let body: serde_json::Value = match req.call() {
        Ok(r) => r.into_json()?,
        Err(ureq::Error::Status(code, r)) => bail!("Prometheus answered {code} to {q}: {}", r.into_string().unwrap_or_default()),
        Err(e) => return Err(e).with_context(|| format!("cannot reach Prometheus at {base}")),
    };
    let point = |p: &serde_json::Value| -> Option<(f64, f64)> { Some((p[0].as_f64()?, p[1].as_str()?.parse().ok()?)) };
    Ok(body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let labels =
                s["metric"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect();
            let values = match s["values"].as_array() {
                Some(vs) => vs.iter().filter_map(point).collect(),
                None => point(&s["value"]).into_iter().collect(),
            };
            (labels, values)
        })
        .collect())
}

fn from_prometheus(base: &str, window: Duration) -> anyhow::Result<Vec<Seen>> {
    let agent = ureq::AgentBuilder::new().build();
    let now = memwatch::unix_seconds(std::time::SystemTime::now());
    let w = format!("{}s", window.as_secs().max(60));
    // The non-reclaimable peak as a series of its highest per step (for the time of the peak
    // and the leak test), about 60 steps over the window.
    let step = (window.as_secs() / 60).max(15);
    let key = |l: &BTreeMap<String, String>| -> (String, String, String, String) {
        let g = |k: &str| l.get(k).cloned().unwrap_or_default();
        (g("namespace"), g("pod"), g("container"), g("cgroup"))
    };
    let mut seen: BTreeMap<(String, String, String, String), Evidence> = BTreeMap::new();
    let source = format!("{} of Prometheus", humantime::format_duration(window));
    let (start, end, step_s) = ((now - window.as_secs_f64()).to_string(), now.to_string(), step.to_string());
    let range = query(
        &agent,
        base,
        "/api/v1/query_range",
        &[
            (
                "query",
                &format!("max without (instance, job) (max_over_time(memwatch_container_memory_nonreclaimable_peak_bytes[{step}s]))"),
            ),
            ("start", &start),
            ("end", &end),
            ("step", &step_s),
        ],
    )?;
    for (l, v) in range {
        let e = seen.entry(key(&l)).or_insert_with(|| Evidence { source: source.clone(), ..Evidence::default() });
        e.nonreclaimable = v.into_iter().map(|(t, b)| (t, b as u64)).collect();
    }
    let instant = |q: String| query(&agent, base, "/api/v1/query", &[("query", &q), ("time", &end)]);
    let mut each = |q: String, set: &dyn Fn(&mut Evidence, f64, &Labels)| -> anyhow::Result<()> {
        for (l, v) in instant(q)? {
            if let (Some(e), Some((_, x))) = (seen.get_mut(&key(&l)), v.first()) {
                set(e, *x, &l);
            }
        }
        Ok(())
    };
    each(
        format!("max without (instance, job) (quantile_over_time(0.9, memwatch_container_memory_working_set_bytes[{w}]))"),
        &|e, x, _| e.working_set_p90_bytes = Some(x as u64),
    )?;
    each(format!("sum without (instance, job) (increase(memwatch_container_oom_kills_total[{w}]))"), &|e, x, _| {
        e.kills = x.round() as u64
    })?;
    each("max without (instance, job) (memwatch_container_memory_limit_bytes)".to_string(), &|e, x, _| {
        e.limit_bytes = Some(x as u64);
        e.kill_limit_bytes = (e.kills > 0).then_some(x as u64);
    })?;
    each("max without (instance, job) (memwatch_container_runtime_heap_limit_bytes)".to_string(), &|e, x, l| {
        e.runtime = match l.get("runtime").map(String::as_str) {
            Some("go") => Some(Runtime::Go),
            // Prometheus does not say whether -Xmx fixed it: taken as following the limit.
            Some("jvm") => Some(Runtime::Jvm { heap_max: x as u64, fixed: false, metaspace: 0 }),
            Some("node") => Some(Runtime::Node),
            Some("dotnet") => Some(Runtime::Dotnet),
            _ => e.runtime,
        }
    })?;
    Ok(seen
        .into_iter()
        .map(|((namespace, pod, container, cgroup), evidence)| Seen { namespace, pod, container, cgroup, evidence })
        .collect())
}
