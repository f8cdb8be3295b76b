//! The HTTP endpoint: `/metrics`, `/api/v1/containers`, `/api/v1/events`, `/api/v1/trace`,
//! `/api/v1/profile` (fault stacks as pprof, folded or SVG), `/api/v1/stacks` (each container's
//! top stacks, for `top`), `/healthz`, `/readyz`. Handlers only load the latest published values; a panic in one request becomes a
//! 500 for that request alone. `/metrics` renders each snapshot once per format and lets
//! concurrent scrapes share that body.

pub mod recommend;
pub mod server;
pub mod tls;
pub mod view;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use bytes::Bytes;

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    expose::render::{self, Format},
    oom::OomView,
    sampler::Shared,
    selfmetrics::SelfMetrics,
    snapshot::Snapshot,
};

#[derive(Clone)]
pub struct AppState {
    pub shared: Shared,
    /// A snapshot older than this means the sampler is stuck: `/healthz` fails.
    pub stale_after: Duration,
    pub self_metrics: Arc<SelfMetrics>,
    /// The last rendered body per format, for the snapshot and OOM view it was made from.
    rendered: Arc<[ArcSwapOption<Rendered>; 2]>,
    /// The web view's own state.
    pub view: Arc<view::ViewState>,
    /// `--web.route-prefix`, normalised: empty, or `/a/b` (no trailing slash).
    route_prefix: Arc<str>,
}

impl AppState {
    pub fn new(shared: Shared, stale_after: Duration, self_metrics: Arc<SelfMetrics>) -> AppState {
        AppState { shared, stale_after, self_metrics, rendered: Arc::default(), view: Arc::default(), route_prefix: Arc::from("") }
    }

    /// The web view's by-class reports read processes under `roots`; the API door's routes
    /// (the view and the API) are served under `prefix` (`/memwatch`; `/` or empty: at the root).
    pub fn with_view(mut self, roots: Option<crate::Roots>, prefix: &str) -> Result<AppState, String> {
        self.view = Arc::new(view::ViewState::new(roots));
        self.route_prefix = Arc::from(normalise_prefix(prefix)?);
        Ok(self)
    }
}

/// `--web.route-prefix` as routes take it: `memwatch/`, `/memwatch/` and `/memwatch` are
/// `/memwatch`; `/` and empty are the root. A prefix with a query, a fragment or a `..` is an
/// error.
pub fn normalise_prefix(p: &str) -> Result<String, String> {
    let t = p.trim_matches('/');
    if t.is_empty() {
        return Ok(String::new());
    }
    if t.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..")
        || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
    {
        return Err(format!("--web.route-prefix {p:?}: a path like /memwatch (letters, digits, - . _ ~ and /)"));
    }
    Ok(format!("/{t}"))
}

/// A body rendered from one snapshot and OOM view.
struct Rendered {
    snapshot: Arc<Snapshot>,
    oom: Arc<OomView>,
    body: Bytes,
}

/// Every route on one listener, without authentication (tests, and a daemon whose two doors
/// are one address).
pub fn router(state: AppState) -> Router {
    door(state, Door::Both, None)
}

/// Which routes a listener serves: `--listen` the metrics and the health probes (for
/// Prometheus and the kubelet), `--listen.api` the API (containers, events, traces, profiles,
/// stacks: process names, runtime flags and code paths, for people and `memwatch` commands)
/// and the health probes; one address given both serves both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Metrics,
    Api,
    Both,
}

/// The routes of `door`, behind `web`'s basic authentication and headers where configured
/// (the health probes stay open: the kubelet has no password, and they say nothing).
pub fn door(state: AppState, door: Door, web: Option<Arc<tls::Web>>) -> Router {
    let prefix = state.route_prefix.clone();
    harden(routes(door, web, &prefix), state)
}

fn routes(door: Door, web: Option<Arc<tls::Web>>, prefix: &str) -> Router<AppState> {
    let mut r = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz));
    if door != Door::Api {
        r = r.route("/metrics", get(metrics));
    }
    if door != Door::Metrics {
        // Each route written out under the prefix (axum's `nest` would take `/memwatch` for the
        // view's root, not `/memwatch/`).
        let p = prefix;
        r = r
            .route(&format!("{p}/api/v1/containers"), get(containers))
            .route(&format!("{p}/api/v1/events"), get(events))
            .route(&format!("{p}/api/v1/trace"), get(trace))
            .route(&format!("{p}/api/v1/profile"), get(profile))
            .route(&format!("{p}/api/v1/stacks"), get(stacks))
            .route(&format!("{p}/api/v1/recommendations"), get(recommendations))
            .merge(view::routes(p));
    }
    let help: &'static str = match door {
        Door::Metrics => "not found: try /metrics, /healthz, /readyz (the API and the web view are on --listen.api)\n",
        Door::Api => {
            "not found: try / (the web view), /api/v1/containers, /api/v1/events, /api/v1/trace, /healthz, /readyz (metrics are on --listen)\n"
        }
        Door::Both => "not found: try / (the web view), /metrics, /api/v1/containers, /api/v1/events, /api/v1/trace, /healthz, /readyz\n",
    };
    let r = r.fallback(move || async move { (StatusCode::NOT_FOUND, help) });
    match web {
        Some(w) => r.layer(axum::middleware::from_fn_with_state(w, guard)),
        None => r,
    }
}

/// Basic authentication where users are configured, and the configured response headers.
async fn guard(State(web): State<Arc<tls::Web>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let open = matches!(req.uri().path(), "/healthz" | "/readyz");
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(String::from);
    let mut resp = if open || web.authorize(auth.as_deref()).await == tls::Auth::Allowed {
        next.run(req).await
    } else {
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"memwatch\"")], "unauthorized\n").into_response()
    };
    for (k, v) in &web.current().headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

/// A panic in a handler becomes a 500 for that request; the server and other requests go on.
fn harden(routes: Router<AppState>, state: AppState) -> Router {
    routes.layer(CatchPanicLayer::new()).with_state(state)
}

fn not_ready() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "no sample taken yet\n").into_response()
}

async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let Some(snap) = st.shared.snapshot.load_full() else { return not_ready() };
    let oom = st.shared.oom.load_full();
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let slot = &st.rendered[usize::from(format == Format::OpenMetrics)];
    let cached = slot.load_full().filter(|r| Arc::ptr_eq(&r.snapshot, &snap) && Arc::ptr_eq(&r.oom, &oom));
    let body = match cached {
        Some(r) => r.body.clone(),
        None => {
            let body = Bytes::from(render::render_body(&snap, &oom, format));
            slot.store(Some(Arc::new(Rendered { snapshot: snap, oom, body: body.clone() })));
            body
        }
    };
    let label = if format == Format::OpenMetrics { "openmetrics" } else { "text" };
    st.self_metrics.scrape_seconds.with_label_values(&[label]).observe(started.elapsed().as_secs_f64());
    let own = render::render_families(&st.self_metrics.gather(), format);
    let chunks = [body, Bytes::from(own), Bytes::from_static(render::end(format).as_bytes())];
    let stream = futures_util::stream::iter(chunks.map(Ok::<_, std::convert::Infallible>));
    ([(header::CONTENT_TYPE, format.content_type())], axum::body::Body::from_stream(stream)).into_response()
}

async fn containers(State(st): State<AppState>) -> Response {
    let Some(snap) = st.shared.snapshot.load_full() else { return not_ready() };
    Json(serde_json::json!({
        "taken_at": crate::unix_seconds(snap.taken_at),
        "cgroup_mode": snap.cgroup_mode,
        "machine_memory_bytes": snap.machine_memory_bytes,
        "containers": &snap.containers,
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
pub struct EventsQuery {
    /// Only events at or after this Unix time.
    since: Option<f64>,
    /// Only events with a sequence number above this one (for following).
    after: Option<u64>,
    /// Only events of these kinds, comma-separated: `oom_kill`, `warning`, `cleared`.
    kind: Option<String>,
}

/// The kinds `?kind=` names; an unknown one is an error that lists the known.
fn event_kinds(q: &str) -> Result<Vec<crate::oom::EventKind>, String> {
    q.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            serde_json::from_value(serde_json::Value::String(k.to_string()))
                .map_err(|_| format!("unknown event kind {k:?} (oom_kill, warning or cleared)"))
        })
        .collect()
}

async fn events(State(st): State<AppState>, Query(q): Query<EventsQuery>) -> Response {
    if st.shared.snapshot.load().is_none() {
        return not_ready();
    }
    let kinds = match q.kind.as_deref().map(event_kinds).transpose() {
        Ok(k) => k,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let oom = st.shared.oom.load_full();
    let events: Vec<_> = oom
        .events
        .iter()
        .filter(|e| q.since.is_none_or(|s| e.time >= s) && q.after.is_none_or(|a| e.seq > a))
        .filter(|e| kinds.as_ref().is_none_or(|k| k.contains(&e.kind)))
        .collect();
    Json(serde_json::json!({ "events": events, "missed_total": oom.missed_total })).into_response()
}

#[derive(serde::Deserialize)]
pub struct TraceQuery {
    /// A Unix time, or how far back from now (`15m`, `90s`); the whole history when absent.
    since: Option<String>,
    /// One container: `namespace/pod/container`, a pod's `namespace/pod`, or a cgroup path.
    container: Option<String>,
}

/// What `since` means: a Unix time, or a duration back from `now`.
pub fn parse_since(s: &str, now: f64) -> Result<f64, String> {
    if let Ok(t) = s.parse::<f64>() {
        return Ok(t);
    }
    humantime::parse_duration(s).map(|d| now - d.as_secs_f64()).map_err(|e| format!("since={s:?}: {e} (a Unix time, or e.g. 15m)"))
}

async fn trace(State(st): State<AppState>, Query(q): Query<TraceQuery>) -> Response {
    if st.shared.snapshot.load().is_none() {
        return not_ready();
    }
    let now = crate::unix_seconds(std::time::SystemTime::now());
    let since = match q.since.as_deref().map(|s| parse_since(s, now)).transpose() {
        Ok(s) => s.unwrap_or(0.0),
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let shared = st.shared.clone();
    // Building a long trace takes a while: off the async workers.
    let built = tokio::task::spawn_blocking(move || {
        let containers = {
            let history = shared.history.read().unwrap_or_else(|e| e.into_inner());
            history.range(since, |_, name, cgroup| q.container.as_deref().is_none_or(|w| crate::snapshot::names(w, name, cgroup)))
        };
        let oom = shared.oom.load_full();
        let ids: std::collections::HashSet<u64> = containers.iter().map(|c| c.id).collect();
        let events: Vec<&crate::oom::Event> = oom.events.iter().filter(|e| q.container.is_none() || ids.contains(&e.cgroup_id)).collect();
        serde_json::to_vec(&crate::expose::trace::chrome_trace(&containers, &events, since))
    })
    .await;
    match built {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "cannot build the trace\n").into_response(),
    }
}

#[derive(serde::Deserialize)]
pub struct ProfileQuery {
    /// A container, as `trace` takes it.
    container: Option<String>,
    /// Or one process.
    pid: Option<u32>,
    /// How far back, in seconds (30 unless told).
    seconds: Option<f64>,
    /// `pprof` (the default), `folded`, `svg` or `json`.
    format: Option<String>,
    /// Record for this many seconds from now instead of looking back (the sampler counts the
    /// subject meanwhile, at risk or not), as `go tool pprof -seconds` does.
    record: Option<f64>,
}

/// The longest recording asked for, in seconds.
pub const MAX_RECORD_SECONDS: f64 = 600.0;

/// A profile's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileFormat {
    /// pprof's protobuf, gzipped: `go tool pprof` opens it.
    Pprof,
    /// One line per stack, root first: the flame-graph tools' input.
    Folded,
    /// A flame graph.
    Svg,
    /// The top stacks as JSON.
    Json,
}

impl std::str::FromStr for ProfileFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        <Self as clap::ValueEnum>::from_str(s, true).map_err(|_| format!("format={s:?}: one of pprof, folded, svg, json"))
    }
}

async fn profile(State(st): State<AppState>, Query(q): Query<ProfileQuery>) -> Response {
    let Some(mut snap) = st.shared.snapshot.load_full() else { return not_ready() };
    let bad = |m: String| (StatusCode::BAD_REQUEST, format!("{m}\n")).into_response();
    let format = match q.format.as_deref().unwrap_or("pprof").parse::<ProfileFormat>() {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let subject = match (q.container, q.pid) {
        (Some(c), None) => crate::stacks::Subject::Container(c),
        (None, Some(p)) => crate::stacks::Subject::Pid(p),
        _ => return bad("give one of container= or pid=".into()),
    };
    let mut seconds = q.seconds.unwrap_or(30.0);
    if !(seconds > 0.0 && seconds.is_finite()) {
        return bad(format!("seconds={seconds}: a positive number"));
    }
    if let Some(record) = q.record {
        if !(record > 0.0 && record <= MAX_RECORD_SECONDS) {
            return bad(format!("record={record}: a number of seconds, at most {MAX_RECORD_SECONDS:.0}"));
        }
        let Some(tx) = st.shared.record.clone() else {
            return (StatusCode::CONFLICT, "no fault-stack sampler runs here (--stacks off, or no eBPF): nothing can be recorded\n")
                .into_response();
        };
        let ids = match crate::stacks::subject_ids(&snap, &subject) {
            Ok(ids) if !ids.is_empty() => ids,
            Ok(_) => return (StatusCode::NOT_FOUND, "no container holds that process now\n").into_response(),
            Err(e) => return (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
        };
        let until = Instant::now() + Duration::from_secs_f64(record);
        let _ = tx.send(crate::sampler::Record { ids, until });
        // The sampler attaches at its next sample and drains every sample while it counts: the
        // last seconds' samples are in once the time is up and one more sample is taken.
        let asked = snap.taken_at;
        tokio::time::sleep(Duration::from_secs_f64(record)).await;
        for _ in 0..50 {
            match st.shared.snapshot.load_full() {
                Some(s) if s.taken_at.duration_since(asked).is_ok_and(|d| d.as_secs_f64() > record) => {
                    snap = s;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        seconds = record;
    }
    let shared = st.shared.clone();
    let built = tokio::task::spawn_blocking(move || {
        let store = shared.stacks.read().unwrap_or_else(|e| e.into_inner());
        let now = crate::unix_seconds(snap.taken_at);
        let since = now - seconds;
        let entries = crate::stacks::select(&store, &snap, &subject, since).map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))?;
        let p = crate::stacks::profile::Profile::of(entries, store.period, store.page_size);
        let covered = crate::stacks::subject_ids(&snap, &subject).ok().and_then(|ids| store.covered_since(&ids));
        let note = crate::stacks::coverage_note(p.samples, covered, since, now);
        let names = &shared.names;
        let title = match &subject {
            crate::stacks::Subject::Container(c) => format!("memory faulted in: {c}, last {seconds:.0} s"),
            crate::stacks::Subject::Pid(pid) => format!("memory faulted in: pid {pid}, last {seconds:.0} s"),
        };
        let failed = |e: String| (StatusCode::INTERNAL_SERVER_ERROR, e);
        let body = match format {
            ProfileFormat::Pprof => ("application/octet-stream", p.pprof(names, seconds)),
            ProfileFormat::Folded => ("text/plain; charset=utf-8", p.folded(names).into_bytes()),
            ProfileFormat::Svg => ("image/svg+xml", p.svg(names, &title).map_err(failed)?),
            ProfileFormat::Json => (
                "application/json",
                serde_json::to_vec(&serde_json::json!({
                    "period": p.period,
                    "samples": p.samples,
                    "bytes": p.samples.saturating_mul(p.unit),
                    "short_share": p.short_share(),
                    "top": p.top(20, names),
                    "covered_since": covered,
                    "note": note,
                }))
                .map_err(|e| failed(e.to_string()))?,
            ),
        };
        Ok::<_, (StatusCode, String)>((body, p.samples, note))
    })
    .await;
    match built {
        Ok(Ok(((ct, body), samples, note))) => {
            let mut r = ([(header::CONTENT_TYPE, ct)], body).into_response();
            let h = r.headers_mut();
            h.insert("x-memwatch-samples", samples.into());
            // What the profile holds, where it is less than asked (ASCII, for a header).
            if let Some(v) = note.and_then(|n| header::HeaderValue::from_str(&n.replace(|c: char| !c.is_ascii(), "-")).ok()) {
                h.insert("x-memwatch-note", v);
            }
            r
        }
        Ok(Err((status, e))) => (status, format!("{e}\n")).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot build the profile\n").into_response(),
    }
}

#[derive(serde::Deserialize)]
pub struct StacksQuery {
    seconds: Option<f64>,
}

/// Each container's top 3 stacks of the last minute (unless told), by cgroup id.
async fn stacks(State(st): State<AppState>, Query(q): Query<StacksQuery>) -> Response {
    let Some(snap) = st.shared.snapshot.load_full() else { return not_ready() };
    let since = crate::unix_seconds(snap.taken_at) - q.seconds.unwrap_or(60.0);
    let store = st.shared.stacks.read().unwrap_or_else(|e| e.into_inner());
    let top = crate::stacks::top_per_container(&store, &st.shared.names, since, 3);
    drop(store);
    let by_id: std::collections::BTreeMap<String, _> = top.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    Json(serde_json::json!({ "stacks": by_id })).into_response()
}

/// Each container's recommended request, limit and runtime setting, from this daemon's history.
async fn recommendations(State(st): State<AppState>) -> Response {
    let Some(snap) = st.shared.snapshot.load_full() else { return not_ready() };
    let shared = st.shared.clone();
    let built = tokio::task::spawn_blocking(move || {
        let (histories, window) = {
            let history = shared.history.read().unwrap_or_else(|e| e.into_inner());
            (history.range(0.0, |_, _, _| true), history.window())
        };
        let entries = recommend::entries(&snap, &histories, &shared.oom.load_full(), window);
        serde_json::to_vec(&serde_json::json!({ "window_seconds": window.as_secs_f64(), "containers": entries }))
    })
    .await;
    match built {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "cannot build the recommendations\n").into_response(),
    }
}

async fn healthz(State(st): State<AppState>) -> Response {
    match st.shared.snapshot.load_full() {
        Some(snap) if snap.taken_at.elapsed().unwrap_or_default() > st.stale_after => {
            (StatusCode::SERVICE_UNAVAILABLE, "sampler is stuck: last sample too old\n").into_response()
        }
        _ => (StatusCode::OK, "ok\n").into_response(),
    }
}

async fn readyz(State(st): State<AppState>) -> Response {
    match st.shared.snapshot.load_full() {
        Some(_) => (StatusCode::OK, "ready\n").into_response(),
        None => not_ready(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt as _;

    fn state() -> AppState {
        AppState::new(Default::default(), Duration::from_secs(30), Arc::default())
    }

    async fn status(app: &Router, path: &str) -> StatusCode {
        let req = axum::http::Request::get(path).body(Body::empty()).unwrap();
        app.clone().oneshot(req).await.unwrap().status()
    }

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_panicking_request_does_not_wedge_the_others() {
        // The real routes and layers, plus a route that panics.
        let app = harden(routes(Door::Both, None, "").route("/boom", get(boom)), state());
        assert_eq!(status(&app, "/boom").await, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(&app, "/healthz").await, StatusCode::OK);
        assert_eq!(status(&app, "/boom").await, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(&app, "/healthz").await, StatusCode::OK);
    }

    #[tokio::test]
    async fn each_door_serves_its_routes_and_the_health_probes() {
        let metrics = door(state(), Door::Metrics, None);
        let api = door(state(), Door::Api, None);
        assert_eq!(status(&metrics, "/api/v1/events").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&metrics, "/api/v1/profile").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&api, "/metrics").await, StatusCode::NOT_FOUND);
        for app in [&metrics, &api] {
            assert_eq!(status(app, "/healthz").await, StatusCode::OK);
        }
        assert_ne!(status(&api, "/api/v1/events").await, StatusCode::NOT_FOUND);
        assert_ne!(status(&metrics, "/metrics").await, StatusCode::NOT_FOUND);
    }

    #[test]
    fn trace_queries() {
        assert_eq!(parse_since("1700000000.5", 0.0), Ok(1700000000.5));
        assert_eq!(parse_since("15m", 2000.0), Ok(1100.0));
        assert!(parse_since("soon", 0.0).is_err());
        assert!(crate::snapshot::names("ns/pod/app", "ns/pod/app", "/x"));
        assert!(crate::snapshot::names("ns/pod", "ns/pod/app", "/x"), "a pod's containers");
        assert!(!crate::snapshot::names("ns/po", "ns/pod/app", "/x"));
        assert!(crate::snapshot::names("/x", "ns/pod/app", "/x"));
    }

    async fn get_text(app: &Router, path: &str) -> (StatusCode, HeaderMap, String) {
        let req = axum::http::Request::get(path).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
        (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn sampled(st: AppState) -> AppState {
        let mut c = crate::snapshot::fixture::container(7, "/<img src=x onerror=alert(1)>");
        c.limit_bytes = 64 << 20;
        st.shared.snapshot.store(Some(Arc::new(crate::snapshot::fixture::snapshot(1000.0, vec![c]))));
        st
    }

    #[tokio::test]
    async fn the_view_is_on_the_api_door_under_its_prefix_with_relative_links() {
        assert_eq!(normalise_prefix("/"), Ok(String::new()));
        assert_eq!(normalise_prefix("memwatch/"), Ok("/memwatch".into()));
        assert_eq!(normalise_prefix("/a/b"), Ok("/a/b".into()));
        assert!(normalise_prefix("/a/../b").is_err() && normalise_prefix("/a?x").is_err() && normalise_prefix("/a//b").is_err());

        let st = sampled(state().with_view(None, "/mw/x").unwrap());
        let api = door(st.clone(), Door::Api, None);
        let metrics = door(st, Door::Metrics, None);
        assert_eq!(status(&metrics, "/mw/x/").await, StatusCode::NOT_FOUND, "no view on the metrics door");
        assert_eq!(status(&api, "/").await, StatusCode::NOT_FOUND, "nothing outside the prefix");
        assert_ne!(status(&api, "/healthz").await, StatusCode::NOT_FOUND, "the probes stay at the root");
        let (code, headers, _) = get_text(&api, "/mw/x").await;
        assert_eq!((code, headers.get(header::LOCATION).unwrap().to_str().unwrap()), (StatusCode::FOUND, "x/"));
        assert_eq!(status(&api, "/mw/x/api/v1/containers").await, StatusCode::OK);
        let (code, headers, body) = get_text(&api, "/mw/x/").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap().contains("script-src 'self'"));
        // The hostile name as text, the links relative.
        assert!(!body.contains("<img src=x"), "{body}");
        assert!(body.contains("/&lt;img src=x onerror=alert(1)&gt;"), "{body}");
        assert!(body.contains(r#"href="static/app.css""#) && body.contains(r#"href="containers/7""#), "{body}");
        assert!(!body.contains("href=\"/"), "no absolute link: {body}");
        let (code, _, body) = get_text(&api, "/mw/x/containers/7").await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(body.contains(r#"href="../static/app.css""#) && !body.contains("<img src=x"), "{body}");
        let (code, _, live) = get_text(&api, "/mw/x/?part=live").await;
        assert_eq!(code, StatusCode::OK);
        assert!(live.starts_with("<section") && !live.contains("<html"), "{live}");
        assert_eq!(status(&api, "/mw/x/containers/8").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&api, "/mw/x/events/99").await, StatusCode::NOT_FOUND);
        assert_eq!(status(&api, "/mw/x/static/app.js").await, StatusCode::OK);
    }

    #[tokio::test]
    async fn before_the_first_sample() {
        let app = router(state());
        assert_eq!(status(&app, "/readyz").await, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(&app, "/metrics").await, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(&app, "/healthz").await, StatusCode::OK);
        assert_eq!(status(&app, "/elsewhere").await, StatusCode::NOT_FOUND);
    }
}
