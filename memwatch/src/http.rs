//! The HTTP endpoint: `/metrics`, `/api/v1/containers`, `/healthz`, `/readyz`. Handlers only
//! load the latest snapshot; a panic in one request becomes a 500 for that request alone.

use std::time::{Duration, SystemTime};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::catch_panic::CatchPanicLayer;

use crate::{
    render::{self, Format},
    sampler::Shared,
};

#[derive(Clone)]
pub struct AppState {
    pub shared: Shared,
    /// A snapshot older than this means the sampler is stuck: `/healthz` fails.
    pub stale_after: Duration,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/containers", get(containers))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found: try /metrics, /api/v1/containers, /healthz, /readyz\n") })
        .layer(CatchPanicLayer::new())
        .with_state(state)
}

fn not_ready() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "no sample taken yet\n").into_response()
}

async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(snap) = st.shared.load_full() else { return not_ready() };
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = render::render(&snap, format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn containers(State(st): State<AppState>) -> Response {
    let Some(snap) = st.shared.load_full() else { return not_ready() };
    Json(serde_json::json!({
        "taken_at": snap.taken_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
        "cgroup_mode": snap.cgroup_mode,
        "machine_memory_bytes": snap.machine_memory_bytes,
        "containers": &snap.containers,
    }))
    .into_response()
}

async fn healthz(State(st): State<AppState>) -> Response {
    match st.shared.load_full() {
        Some(snap) if snap.taken_at.elapsed().unwrap_or_default() > st.stale_after => {
            (StatusCode::SERVICE_UNAVAILABLE, "sampler is stuck: last sample too old\n").into_response()
        }
        _ => (StatusCode::OK, "ok\n").into_response(),
    }
}

async fn readyz(State(st): State<AppState>) -> Response {
    match st.shared.load_full() {
        Some(_) => (StatusCode::OK, "ready\n").into_response(),
        None => not_ready(),
    }
}
