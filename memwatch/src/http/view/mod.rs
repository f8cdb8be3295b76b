//! The web view, on the API door beside the API (same listener, same TLS and users): the node
//! (`./`), a container (`containers/<id>`), the stories (`events`, `events/<seq>`), and its
//! two assets (`static/app.css`, `static/app.js`, built into the binary: nothing is fetched
//! from elsewhere). Pages are rendered on the server ([`page`], [`svg`]); `app.js` only filters
//! the node's rows and fetches a page's live part again every few seconds.
//!
//! Cost: the node view's live part depends on the snapshot and the OOM view alone (the filter
//! runs in the browser), so it is rendered once per sample and shared by every viewer, as
//! `/metrics` is; a container's page reads that one container's history.

pub mod page;
pub mod svg;

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwapOption;
use axum::{
    Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;

use super::{AppState, not_ready};
use crate::{oom::OomView, snapshot::Snapshot};

const CSS: &str = include_str!("app.css");
const JS: &str = include_str!("app.js");

/// The view's Content-Security-Policy: its own scripts, styles and images only (inline SVG
/// and a `data:` favicon), no inline script or style, no frames, forms or other origins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                       base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// How far back the node view's sparklines reach (seconds).
const SPARK_SECONDS: f64 = 300.0;
/// Points per sparkline, at most.
const SPARK_POINTS: usize = 30;

/// The node view's live part as last rendered, for the snapshot and OOM view it was made from.
struct Rendered {
    snapshot: Arc<Snapshot>,
    oom: Arc<OomView>,
    body: Bytes,
}

/// What the view keeps between requests.
#[derive(Default)]
pub struct ViewState {
    node: ArcSwapOption<Rendered>,
    /// The roots `explain` reads a container's processes under; None: no by-class report.
    pub roots: Option<crate::Roots>,
}

impl ViewState {
    pub fn new(roots: Option<crate::Roots>) -> ViewState {
        ViewState { node: ArcSwapOption::empty(), roots }
    }
}

/// The view's routes under `prefix` (empty, or `/a/b`); `/a/b` itself leads to `/a/b/`,
/// relatively (a proxy in front may add a path of its own).
pub fn routes(prefix: &str) -> Router<AppState> {
    let p = prefix;
    let r = Router::new()
        .route(&format!("{p}/"), get(node))
        .route(&format!("{p}/containers/{{id}}"), get(container))
        .route(&format!("{p}/events"), get(events))
        .route(&format!("{p}/events/{{seq}}"), get(event))
        .route(&format!("{p}/static/app.css"), get(|| async { asset("text/css; charset=utf-8", CSS) }))
        .route(&format!("{p}/static/app.js"), get(|| async { asset("text/javascript; charset=utf-8", JS) }));
    match p.rsplit_once('/') {
        Some((_, last)) if !last.is_empty() => {
            let to = format!("{last}/");
            r.route(p, get(move || async move { (StatusCode::FOUND, [(header::LOCATION, to)]).into_response() }))
        }
        _ => r,
    }
}

fn asset(ct: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, ct), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

fn html(body: impl Into<axum::body::Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.into(),
    )
        .into_response()
}

fn not_found(what: String) -> Response {
    let body = page::page("../", "Not found", maud::html! { h1 { "Not found" } p { (what) } });
    (StatusCode::NOT_FOUND, html(body.into_string())).into_response()
}

#[derive(serde::Deserialize)]
pub struct ViewQuery {
    /// `live`: only the part that updates.
    part: Option<String>,
    /// The node view's filter, as typed.
    q: Option<String>,
}

/// Each container's working set over the last [`SPARK_SECONDS`], at most [`SPARK_POINTS`].
fn sparks(st: &AppState, since: f64) -> HashMap<u64, Vec<u64>> {
    let history = st.shared.history.read().unwrap_or_else(|e| e.into_inner());
    history.recent(crate::history::Field::WorkingSet, since, SPARK_POINTS)
}

/// The node view's live part for the current snapshot: rendered by the first request after a
/// sample, shared by the rest.
fn node_live(st: &AppState, snap: Arc<Snapshot>, oom: Arc<OomView>) -> Bytes {
    let last = st.view.node.load_full();
    if let Some(r) = last.as_ref().filter(|r| Arc::ptr_eq(&r.snapshot, &snap) && Arc::ptr_eq(&r.oom, &oom)) {
        return r.body.clone();
    }
    let before = last.as_ref().map(|r| r.snapshot.clone()).filter(|b| !Arc::ptr_eq(b, &snap));
    let rates = page::rates(&snap, before.as_deref());
    let sparks = sparks(st, crate::unix_seconds(snap.taken_at) - SPARK_SECONDS);
    let n = page::Node { snap: &snap, oom: &oom, rates: &rates, sparks: &sparks };
    let body = Bytes::from(page::node_live(&n, "").into_string());
    // A newer render may have landed meanwhile; keep whichever is of the newer snapshot.
    let keep = before.is_none_or(|b| b.taken_at <= snap.taken_at);
    if keep {
        st.view.node.store(Some(Arc::new(Rendered { snapshot: snap, oom, body: body.clone() })));
    }
    body
}

async fn node(State(st): State<AppState>, Query(q): Query<ViewQuery>) -> Response {
    let Some(snap) = st.shared.snapshot.load_full() else { return not_ready() };
    let oom = st.shared.oom.load_full();
    let live = {
        let st = st.clone();
        match tokio::task::spawn_blocking(move || node_live(&st, snap, oom)).await {
            Ok(b) => b,
            Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "cannot render the view\n").into_response(),
        }
    };
    if q.part.as_deref() == Some("live") {
        return html(live);
    }
    html(page::node_page(std::str::from_utf8(&live).unwrap_or(""), q.q.as_deref().unwrap_or("")).into_string())
}

async fn container(State(st): State<AppState>, Path(id): Path<String>, Query(q): Query<ViewQuery>) -> Response {
    let Some(snap) = st.shared.snapshot.load_full() else { return not_ready() };
    let Ok(id) = id.parse::<u64>() else { return not_found(format!("{id:?} is not a container id")) };
    let Some(c) = snap.containers.iter().find(|c| c.id == id).cloned() else {
        return not_found(format!("no container {id} is exported now (it may have gone: its stories stay under Stories)"));
    };
    let oom = st.shared.oom.load_full();
    let live = q.part.as_deref() == Some("live");
    let st2 = st.clone();
    let built = tokio::task::spawn_blocking(move || {
        let now = crate::unix_seconds(snap.taken_at);
        let (hist, window) = {
            let history = st2.shared.history.read().unwrap_or_else(|e| e.into_inner());
            (history.range(0.0, |i, _, _| i == id).into_iter().next(), history.window())
        };
        let has_stacks = st2.shared.stacks.read().unwrap_or_else(|e| e.into_inner()).has_since(id, now - 900.0);
        // The by-class report reads the processes' smaps: on the page's first load only.
        let classes = match (&st2.view.roots, live) {
            (Some(roots), false) => crate::explain::report::container(roots, &c.cgroup).ok(),
            _ => None,
        };
        let recommendation = hist.as_ref().map(|h| {
            let source = super::recommend::source(window);
            crate::rightsize::recommend(&super::recommend::evidence(&c, h, &oom, snap.machine_memory_bytes, &source))
        });
        let x =
            page::ContainerExtra { history: hist.as_ref(), classes: classes.as_ref(), has_stacks, recommendation: recommendation.as_ref() };
        if live { page::container_live(&c, &oom, &x, now) } else { page::container_page(&c, &oom, &x, now) }.into_string()
    })
    .await;
    match built {
        Ok(body) => html(body),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot render the view\n").into_response(),
    }
}

async fn events(State(st): State<AppState>) -> Response {
    if st.shared.snapshot.load().is_none() {
        return not_ready();
    }
    html(page::events_page(&st.shared.oom.load_full()).into_string())
}

async fn event(State(st): State<AppState>, Path(seq): Path<String>) -> Response {
    let Some(snap) = st.shared.snapshot.load_full() else { return not_ready() };
    let oom = st.shared.oom.load_full();
    let Some(e) = seq.parse::<u64>().ok().and_then(|s| oom.events.iter().find(|e| e.seq == s)) else {
        return not_found(format!("no story {seq:?} is kept (the daemon keeps the last --events.max)"));
    };
    let known = snap.containers.iter().any(|c| c.id == e.cgroup_id);
    html(page::event_page(e, &oom, known).into_string())
}
