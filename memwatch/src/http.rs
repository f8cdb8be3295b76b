//! The HTTP endpoint: `/metrics`, `/api/v1/containers`, `/api/v1/events`, `/healthz`,
//! `/readyz`. Handlers only load the latest published values; a panic in one request becomes a
//! 500 for that request alone. `/metrics` renders each snapshot once per format and lets
//! concurrent scrapes share that body.

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
    oom::OomView,
    render::{self, Format},
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
}

impl AppState {
    pub fn new(shared: Shared, stale_after: Duration, self_metrics: Arc<SelfMetrics>) -> AppState {
        AppState { shared, stale_after, self_metrics, rendered: Arc::default() }
    }
}

/// A body rendered from one snapshot and OOM view.
struct Rendered {
    snapshot: Arc<Snapshot>,
    oom: Arc<OomView>,
    body: Bytes,
}

pub fn router(state: AppState) -> Router {
    harden(routes(), state)
}

fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/containers", get(containers))
        .route("/api/v1/events", get(events))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found: try /metrics, /api/v1/containers, /api/v1/events, /healthz, /readyz\n") })
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
}

async fn events(State(st): State<AppState>, Query(q): Query<EventsQuery>) -> Response {
    if st.shared.snapshot.load().is_none() {
        return not_ready();
    }
    let oom = st.shared.oom.load_full();
    let events: Vec<_> = oom.events.iter().filter(|e| q.since.is_none_or(|s| e.time >= s) && q.after.is_none_or(|a| e.seq > a)).collect();
    Json(serde_json::json!({ "events": events, "missed_total": oom.missed_total })).into_response()
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
        let app = harden(routes().route("/boom", get(boom)), state());
        assert_eq!(status(&app, "/boom").await, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(&app, "/healthz").await, StatusCode::OK);
        assert_eq!(status(&app, "/boom").await, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(&app, "/healthz").await, StatusCode::OK);
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
