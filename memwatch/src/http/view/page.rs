//! The web view's pages, pure: from a snapshot, the OOM view and the history already read,
//! to HTML (maud escapes every value: cgroup and process names are hostile input). Every URL
//! is relative to the page (`root` leads from the page to the view's root), so the view works
//! under `--web.route-prefix`, behind `kubectl port-forward` and through `kubectl proxy`'s
//! path alike.

use std::collections::HashMap;

use maud::{DOCTYPE, Markup, html};

use super::svg::{self, Line, Marker};
use crate::{
    history::{ContainerHistory, Field},
    oom::{Event, EventKind, OomView},
    probes::ProbeState,
    snapshot::{Container, Snapshot},
    units::{human, human_secs, percent},
};

fn h(b: u64) -> String {
    human(b as f64)
}

/// A time for people: `2026-12-07 12:12:04 UTC`.
fn clock(t: f64) -> String {
    crate::rfc3339(t).replace('T', " ").replace('Z', " UTC")
}

/// A whole page: `title`, the view's navigation, and `body`; `root` leads to the view's root.
pub fn page(root: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · memwatch" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(format!("{root}static/app.css"));
                script src=(format!("{root}static/app.js")) defer {}
            }
            body {
                header {
                    a.brand href=(format!("{root}./")) { "memwatch" }
                    nav {
                        a href=(format!("{root}./")) { "Node" }
                        a href=(format!("{root}events")) { "Stories" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// `used` against `of` as HTML's `<meter>`: green, amber from 80%, red from 90% (the browser
/// colours it by `low`, `high` and `optimum`; no inline style).
pub fn meter(used: u64, of: u64) -> Markup {
    let share = if of > 0 { (used as f64 / of as f64).clamp(0.0, 1.0) } else { 0.0 };
    html! { meter value=(format!("{share:.3}")) low="0.8" high="0.9" optimum="0" {} }
}

/// Per-second rates between two snapshots of a container: PSI "some" (share of time stalled
/// on memory) and page faults.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub psi_some: Option<f64>,
    pub faults_per_second: Option<f64>,
}

pub fn rates(now: &Snapshot, before: Option<&Snapshot>) -> HashMap<u64, Rates> {
    let Some(before) = before else { return HashMap::new() };
    let dt = now.taken_at.duration_since(before.taken_at).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    if dt <= 0.0 {
        return HashMap::new();
    }
    let old: HashMap<u64, &Container> = before.containers.iter().map(|c| (c.id, c)).collect();
    now.containers
        .iter()
        .filter_map(|c| {
            let b = old.get(&c.id)?;
            let rate = |n: Option<u64>, o: Option<u64>| match (n, o) {
                (Some(n), Some(o)) if n >= o => Some((n - o) as f64 / dt),
                _ => None,
            };
            Some((
                c.id,
                Rates {
                    psi_some: rate(c.pressure.map(|p| p.some_us), b.pressure.map(|p| p.some_us)).map(|us| us / 1e6),
                    faults_per_second: rate(c.page_faults, b.page_faults),
                },
            ))
        })
        .collect()
}

/// The runtimes of a container's processes, named for people, each once.
fn runtimes(c: &Container) -> String {
    let mut names: Vec<&str> = c
        .runtimes
        .iter()
        .filter_map(|p| p.runtime.as_ref())
        .map(|f| match f.runtime().name() {
            "go" => "Go",
            "jvm" => "JVM",
            "node" => "Node.js",
            "dotnet" => ".NET",
            _ => "Python",
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}

/// Closest to its limit first (least headroom as a share), then by name.
pub fn order(containers: &[Container]) -> Vec<(&Container, std::sync::Arc<str>)> {
    let mut v: Vec<(&Container, std::sync::Arc<str>)> = containers.iter().map(|c| (c, c.display_name())).collect();
    let share = |c: &Container| if c.limit_is_machine { 2.0 } else { c.headroom_ratio };
    v.sort_by(|(a, an), (b, bn)| share(a).total_cmp(&share(b)).then_with(|| an.cmp(bn)).then(a.id.cmp(&b.id)));
    v
}

/// What the node view shows, read once per sample.
pub struct Node<'a> {
    pub snap: &'a Snapshot,
    pub oom: &'a OomView,
    pub rates: &'a HashMap<u64, Rates>,
    /// Each container's working set over the last minutes, oldest first.
    pub sparks: &'a HashMap<u64, Vec<u64>>,
}

/// The part of the node view that updates live: the node, the probes, and a row per container.
pub fn node_live(n: &Node, root: &str) -> Markup {
    let s = n.snap;
    let at = crate::unix_seconds(s.taken_at);
    let warned = n.oom.warned.len();
    let kills: u64 = s.containers.iter().filter(|c| !c.limit_is_machine).filter_map(|c| c.oom_kills).sum();
    let ws: u64 = s.containers.iter().filter(|c| c.pod.is_empty() || !c.container.is_empty()).map(|c| c.working_set_bytes).sum();
    html! {
        section.node {
            p {
                "Node memory " strong { (h(s.machine_memory_bytes)) } "; " (s.containers.len()) " containers, whose working sets sum to "
                strong { (h(ws)) } "; "
                @if warned > 0 { strong.warnmark { (warned) " at risk" } } @else { "none at risk" }
                "; " (kills) " OOM kills counted; sampled " (clock(at)) "."
            }
            details.probes {
                summary { "Probes: " (s.probes.iter().filter(|p| p.is_attached()).count()) " of " (s.probes.len()) " attached" }
                ul {
                    @for p in &s.probes {
                        li {
                            code { (p.id.name()) } ": "
                            @match &p.state {
                                ProbeState::Attached { method } => { "attached (" (method) ")" }
                                ProbeState::Off(why) => { "off: " (why) }
                                ProbeState::Disabled(d) => { "unavailable: " (d.to_string()) }
                                ProbeState::Standby(why) => { "standby: " (why) }
                            }
                        }
                    }
                }
            }
        }
        table.containers {
            thead {
                tr {
                    th { "Container" } th { "Working set / limit" } th { "Recent" } th { "Anon" } th { "Page cache" }
                    th { "Headroom" } th { "Time to OOM" } th { "PSI some" } th { "Faults/s" } th { "Runtime" } th { "Kills" }
                }
            }
            tbody {
                @for (c, name) in order(&s.containers) {
                    (row(c, &name, n, root))
                }
            }
        }
    }
}

fn row(c: &Container, name: &str, n: &Node, root: &str) -> Markup {
    let r = n.rates.get(&c.id).copied().unwrap_or_default();
    let warning = n.oom.warned.get(&c.id);
    let limit = if c.limit_is_machine { "no limit".to_string() } else { h(c.limit_bytes) };
    html! {
        // The filter matches the row's text, and the cgroup path where the name is another.
        tr id=(format!("c{}", c.id)) data-cgroup=[(name != &*c.cgroup).then_some(&*c.cgroup)] class=[warning.map(|_| "warned")] {
            td {
                @if let Some(w) = warning {
                    a.warnmark href=(format!("{root}events/{}", w.seq)) title=(w.text) { "⚠ " }
                }
                a href=(format!("{root}containers/{}", c.id)) { (name) }
            }
            td {
                (meter(c.working_set_bytes, c.limit_bytes))
                " " (h(c.working_set_bytes)) " / " (limit)
            }
            td { (svg::sparkline(n.sparks.get(&c.id).map(Vec::as_slice).unwrap_or(&[]), if c.limit_is_machine { 0 } else { c.limit_bytes })) }
            // Right-aligned by the table's CSS (columns 4 to 9 and 11): no class a cell.
            td { (h(c.rss_bytes)) }
            td { (h(c.cache_bytes)) }
            td { @if c.limit_is_machine { "–" } @else { (h(c.headroom_bytes)) " (" (percent(c.headroom_ratio)) ")" } }
            td { @match c.time_to_oom_seconds { Some(t) => (human_secs(t)), None => "–" } }
            td { @match r.psi_some { Some(p) => (percent(p)), None => "–" } }
            td { @match r.faults_per_second { Some(f) => (format!("{f:.0}")), None => "–" } }
            td { (runtimes(c)) }
            td { (c.oom_kills.unwrap_or(0)) }
        }
    }
}

/// The node view: a filter, and the live part `live` (rendered once per sample, shared by
/// every viewer; `app.js` fetches it again every few seconds with `?part=live`). `filter` is
/// the `?q=` given: rows are filtered in the page.
pub fn node_page(live: &str, filter: &str) -> Markup {
    page(
        "",
        "Node",
        html! {
            div.toolbar {
                label { "Filter " input #filter type="search" name="q" value=(filter) placeholder="namespace/pod/container or cgroup" autocomplete="off"; }
                span #updated {}
            }
            div #live data-live="?part=live" { (maud::PreEscaped(live)) }
        },
    )
}

fn kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::OomKill => "OOM kill",
        EventKind::Warning => "Warning",
        EventKind::Cleared => "Cleared",
    }
}

fn kind_class(k: EventKind) -> &'static str {
    match k {
        EventKind::OomKill => "kill",
        EventKind::Warning => "warning",
        EventKind::Cleared => "cleared",
    }
}

fn event_name(e: &Event) -> String {
    if e.pod.is_empty() { e.cgroup.clone() } else { format!("{}/{}/{}", e.namespace, e.pod, e.container) }
}

/// A line for an event in a list: its kind, time, container and first sentence.
fn event_item(e: &Event, root: &str) -> Markup {
    let first = e.explanation.first().map(|r| r.text.as_str()).unwrap_or("");
    html! {
        li class=(kind_class(e.kind)) {
            a href=(format!("{root}events/{}", e.seq)) { strong { (kind_name(e.kind)) } " #" (e.seq) }
            " " (clock(e.time)) " · " (event_name(e))
            @if let Some(v) = &e.victim { " · killed " (v.comm) " (pid " (v.pid) ")" }
            br; span.summary { (first) }
        }
    }
}

/// The stories: every event kept, newest first.
pub fn events_page(oom: &OomView) -> Markup {
    page(
        "",
        "Stories",
        html! {
            h1 { "Warnings, kills and clears" }
            @if oom.events.is_empty() { p { "No warning, kill or clear yet." } }
            ul.events { @for e in oom.events.iter().rev() { (event_item(e, "")) } }
        },
    )
}

/// A part of a composition: its label, its CSS class, its bytes.
type Part = (&'static str, &'static str, u64);

/// One story, at its own URL: what happened, why, what memory held at the kill, who grew,
/// where the memory was faulted in, and the warning (or kill) it is linked to.
pub fn event_page(e: &Event, oom: &OomView, container_known: bool) -> Markup {
    let root = "../";
    let kill_after = oom.events.iter().find(|k| k.warned.as_ref().is_some_and(|w| w.seq == e.seq));
    let parts: Option<(Vec<Part>, Option<u64>)> = match (&e.at_kill, &e.warning) {
        (Some(a), _) => Some((
            [
                ("anon", "anon", a.anon_bytes),
                ("page cache", "file", a.file_bytes),
                ("shmem/tmpfs", "shmem", a.shmem_bytes),
                ("kernel", "kernel", a.kernel_bytes),
            ]
            .into_iter()
            .filter_map(|(l, c, b)| Some((l, c, b?)))
            .collect(),
            a.limit_bytes,
        )),
        (None, Some(w)) => w.parts.as_ref().map(|p| {
            let mut v = vec![("anon", "anon", p.anon_bytes), ("page cache", "file", p.file_bytes), ("shmem/tmpfs", "shmem", p.shmem_bytes)];
            v.extend(p.kernel_bytes.map(|k| ("kernel", "kernel", k)));
            (v, Some(w.state.limit_bytes))
        }),
        _ => None,
    };
    let title = format!("{} #{}", kind_name(e.kind), e.seq);
    page(
        root,
        &title,
        html! {
            h1 class=(kind_class(e.kind)) { (title) }
            p.meta {
                (clock(e.time)) " · "
                @if container_known { a href=(format!("{root}containers/{}", e.cgroup_id)) { (event_name(e)) } } @else { (event_name(e)) }
                @if !e.pod.is_empty() { " · cgroup " code { (e.cgroup) } }
                @if let Some(v) = &e.victim {
                    " · killed " strong { (v.comm) } " (pid " (v.pid) ")"
                    @if let Some(r) = v.rss_bytes { ", " (h(r)) " resident" }
                }
            }
            @if let Some(w) = &e.warned {
                p.link { "Warned " (human_secs(w.seconds_before)) " before: " a href=(format!("{root}events/{}", w.seq)) { "warning #" (w.seq) } " — " (w.text) }
            }
            @if let Some(k) = kill_after {
                p.link { "Followed by " a href=(format!("{root}events/{}", k.seq)) { "OOM kill #" (k.seq) } " " (human_secs(k.time - e.time)) " later." }
            }
            section.explanation {
                h2 { "Why" }
                @for r in &e.explanation { p { (r.text) } }
            }
            @if let Some((parts, limit)) = &parts {
                section {
                    h2 { @if e.at_kill.is_some() { "Memory at the kill" } @else { "Memory when warned" } }
                    (svg::composition(parts, *limit))
                }
            }
            @if let Some(r) = e.recent.as_ref().filter(|r| !r.processes.is_empty()) {
                section {
                    h2 { "Who grew (last " (format!("{:.0}", r.window_seconds)) " s)" }
                    table {
                        thead { tr { th { "Process" } th.num { "From" } th.num { "To" } th.num { "Change" } } }
                        tbody {
                            @for p in &r.processes {
                                tr {
                                    td { (p.comm) " (pid " (p.pid) ")" }
                                    td.num { @match p.from_rss_bytes { Some(b) => (h(b)), None => "new" } }
                                    td.num { (h(p.to_rss_bytes)) }
                                    td.num { (human(p.delta_bytes as f64)) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(st) = &e.stacks {
                section.stacks {
                    h2 { "Where its memory was faulted in" }
                    p { (st.samples) " samples over the last " (format!("{:.0}", st.window_seconds)) " s, about " (h(st.bytes)) "." }
                    @for s in &st.top {
                        details open {
                            summary { strong { (s.own.as_deref().or(s.frames.first().map(String::as_str)).unwrap_or("(no user stack read)")) } " — " (h(s.bytes)) }
                            ol.frames { @for f in &s.frames { li { code { (f) } } } }
                        }
                    }
                }
            }
            @if !e.top_processes.is_empty() {
                section {
                    h2 { "Largest processes" }
                    table {
                        thead { tr { th { "Process" } th.num { "RSS" } th.num { "VSZ" } } }
                        tbody { @for p in &e.top_processes { tr { td { (p.comm) " (pid " (p.pid) ")" } td.num { (h(p.rss_bytes)) } td.num { (h(p.vsz_bytes)) } } } }
                    }
                }
            }
            p.raw { a href=(format!("{root}api/v1/events?after={}", e.seq.saturating_sub(1))) { "This story as JSON" } }
        },
    )
}

/// What a container's page shows besides its snapshot: its history and the by-class report
/// (`explain`), when they could be read.
pub struct ContainerExtra<'a> {
    pub history: Option<&'a ContainerHistory>,
    pub classes: Option<&'a crate::explain::report::ContainerReport>,
    /// Fault stacks were sampled in it (the flame graph can be drawn).
    pub has_stacks: bool,
    /// What to set, from its history here (`memwatch recommend --remote`'s).
    pub recommendation: Option<&'a crate::rightsize::Recommendation>,
}

fn series(hist: &ContainerHistory, f: Field) -> Vec<(f64, f64)> {
    let k = Field::ALL.iter().position(|x| *x == f).expect("a field of ALL");
    hist.samples.iter().filter_map(|(t, v)| Some((*t, v[k]? as f64))).collect()
}

/// The part of a container's page that updates live: its state, chart and processes.
pub fn container_live(c: &Container, oom: &OomView, x: &ContainerExtra, now: f64) -> Markup {
    let root = "../";
    let events: Vec<&Event> = oom.events.iter().filter(|e| e.cgroup_ids.contains(&c.id) || e.cgroup_id == c.id).collect();
    let markers: Vec<Marker> = events
        .iter()
        .map(|e| Marker {
            t: e.time,
            href: format!("{root}events/{}", e.seq),
            title: format!("{} #{}: {}", kind_name(e.kind), e.seq, e.explanation.first().map(|r| r.text.as_str()).unwrap_or("")),
            class: kind_class(e.kind),
        })
        .collect();
    let chart = x.history.map(|hist| {
        let mut lines = vec![
            Line { label: "usage", class: "usage", points: series(hist, Field::Usage), step: false },
            Line { label: "working set", class: "ws", points: series(hist, Field::WorkingSet), step: false },
            Line { label: "anon", class: "anon", points: series(hist, Field::Anon), step: false },
            Line { label: "page cache (with shmem)", class: "file", points: series(hist, Field::File), step: false },
            Line { label: "shmem/tmpfs", class: "shmem", points: series(hist, Field::Shmem), step: false },
        ];
        if !c.limit_is_machine {
            lines.push(Line { label: "limit", class: "limit", points: series(hist, Field::Limit), step: true });
        }
        if let (Some(high), Some(first)) = (c.high_bytes.filter(|_| !c.limit_is_machine), hist.samples.first()) {
            lines.push(Line { label: "memory.high", class: "high", points: vec![(first.0, high as f64), (now, high as f64)], step: true });
        }
        let t0 = hist.samples.first().map(|s| s.0).unwrap_or(now).min(now - 60.0);
        (svg::chart(&lines, &markers, t0, now), lines.into_iter().map(|l| (l.label, l.class)).collect::<Vec<_>>())
    });
    html! {
        p.meta {
            "Working set " strong { (h(c.working_set_bytes)) } " of "
            @if c.limit_is_machine { "no limit of its own (the machine's " (h(c.limit_bytes)) ")" } @else { strong { (h(c.limit_bytes)) } " limit" }
            @if let Some(hi) = c.high_bytes { ", memory.high " (h(hi)) }
            "; headroom " (h(c.headroom_bytes)) " (" (percent(c.headroom_ratio)) ")"
            @if let Some(t) = c.time_to_oom_seconds { "; at the limit in about " strong { (human_secs(t)) } }
            "; usage " (h(c.usage_bytes)) ", anon " (h(c.rss_bytes)) ", page cache " (h(c.cache_bytes)) ", shmem " (h(c.shmem_bytes))
            @if let Some(k) = c.kernel_bytes { ", kernel " (h(k)) }
            "; " (c.oom_kills.unwrap_or(0)) " OOM kills."
        }
        @if let Some(w) = oom.warned.get(&c.id) {
            p.warnmark { "⚠ " a href=(format!("{root}events/{}", w.seq)) { "Warning #" (w.seq) } ": " (w.text) }
        }
        @if let Some((chart, legend)) = &chart {
            figure {
                (chart)
                figcaption.legend {
                    @for (label, class) in legend { span.key { span class=(format!("swatch {class}")) {} (label) } }
                    span.key { span class="swatch kill" {} "OOM kill" } span.key { span class="swatch warning" {} "warning" }
                }
            }
        } @else {
            p { "No history of it yet." }
        }
        @if let Some(r) = x.recommendation {
            h2 { "What to set" }
            p.recommend { strong { (crate::rightsize::short(r)) } }
            p.meta { (r.evidence) }
            @for n in &r.notes { p { (n) } }
        }
        @if !c.runtime_heaps.is_empty() {
            h2 { "Runtime heaps" }
            table {
                thead { tr { th { "Runtime" } th.num { "Used" } th.num { "Committed" } th.num { "Ceiling" } th { "" } } }
                tbody {
                    @for r in &c.runtime_heaps {
                        @let ceiling = r.max_bytes.or(r.limit_bytes);
                        tr {
                            td { (r.runtime.name()) }
                            td.num { @match r.used_bytes { Some(b) => (h(b)), None => "–" } }
                            td.num { @match r.committed_bytes { Some(b) => (h(b)), None => "–" } }
                            td.num { @match ceiling { Some(b) => (h(b)), None => "none" } }
                            td { @if let (Some(u), Some(m)) = (r.used_bytes.or(r.committed_bytes), ceiling) { (meter(u, m)) } }
                        }
                    }
                }
            }
        }
        h2 { "Processes" }
        @if c.top_processes.is_empty() {
            p { "No process runs in it now." }
        } @else {
            table {
                thead { tr { th { "Process" } th.num { "RSS" } th.num { "VSZ" } } }
                tbody { @for p in &c.top_processes { tr { td { (p.comm) " (pid " (p.pid) ")" } td.num { (h(p.rss_bytes)) } td.num { (h(p.vsz_bytes)) } } } }
            }
        }
        @if !events.is_empty() {
            h2 { "Its stories" }
            ul.events { @for e in events.iter().rev() { (event_item(e, root)) } }
        }
    }
}

/// A container's page: the live part, where its VSZ and RSS are by class, and its flame graph.
pub fn container_page(c: &Container, oom: &OomView, x: &ContainerExtra, now: f64) -> Markup {
    let name = c.display_name();
    let root = "../";
    let target = percent_encode(&c.cgroup);
    page(
        root,
        &name,
        html! {
            h1 { (name) }
            p.sub { "cgroup " code { (c.cgroup) } " · id " (c.id) @if let Some(q) = &c.qos { " · QoS " (format!("{q:?}")) } }
            div #live data-live="?part=live" { (container_live(c, oom, x, now)) }
            @if let Some(r) = x.classes {
                h2 { "Where its VSZ and RSS are" }
                p { (r.summary) }
                @if !r.classes.is_empty() { table {
                    thead { tr { th { "Class" } th.num { "VSZ" } th.num { "RSS" } } }
                    tbody { @for k in &r.classes { tr { td { (k.class.name()) } td.num { (h(k.vsz_bytes)) } td.num { (h(k.rss_bytes)) } } } }
                } }
            }
            @if x.has_stacks {
                h2 { "Where its memory was faulted in" }
                p { a href=(format!("{root}api/v1/profile?container={target}&format=svg&seconds=900")) {
                    img.flame src=(format!("{root}api/v1/profile?container={target}&format=svg&seconds=900")) alt="flame graph of the stacks that faulted its memory in";
                } }
            }
        },
    )
}

/// What a query value keeps as it is: RFC 3986's unreserved characters, and `/` (cgroup paths).
const QUERY_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// Percent-encodes a query value (cgroup paths carry `/`, and hostile ones anything).
pub fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_civil_utc() {
        assert_eq!(clock(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(clock(1796645524.2), "2026-12-07 12:12:04 UTC");
        assert_eq!(clock(951782400.0), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn a_query_value_is_encoded() {
        assert_eq!(percent_encode("/kubepods/a b&c=<x>"), "/kubepods/a%20b%26c%3D%3Cx%3E");
    }
}
