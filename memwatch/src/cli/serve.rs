//! `memwatch serve`: the daemon. Samples every container on the node and serves the result.
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::Args;
use memwatch::{
    Roots,
    http::{self, AppState, Door, tls::Web},
    model::Options,
    pipeline::{self, Pipeline},
    probes::ProbeState,
    selfmetrics::SelfMetrics,
};
use tokio::io::unix::AsyncFd;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to serve /metrics and the health probes on, for Prometheus (loopback unless told
    /// otherwise)
    #[arg(long, default_value = "127.0.0.1:9753")]
    listen: SocketAddr,
    /// Address to serve the API on (containers, events, traces, profiles, stacks: process names,
    /// runtime flags and code paths), for people and memwatch's commands; loopback unless told
    /// otherwise. The same address as --listen serves both on one port
    #[arg(long = "listen.api", default_value = "127.0.0.1:9754")]
    listen_api: SocketAddr,
    /// TLS and basic authentication for both addresses, in the format of Prometheus's
    /// exporter-toolkit (as node_exporter's --web.config.file); re-read when it or a file it names
    /// changes
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
    /// Path the web view and the API are served under on --listen.api (as Prometheus's
    /// --web.route-prefix), for a proxy that forwards a path: /memwatch serves the view at
    /// /memwatch/ and the API at /memwatch/api/v1/. /metrics and the health probes stay at the root
    #[arg(long = "web.route-prefix", value_name = "PATH", default_value = "/")]
    web_route_prefix: String,
    /// Sampling period, e.g. 1s, 500ms
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
    /// How old the files that are costly to read (memory.stat, PSI, limits, process lists and
    /// /proc/<pid>/stat) may get; cgroups near their limit are read every interval anyway
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    slow_interval: Duration,
    #[command(flatten)]
    cgroups: super::cgroup_args::CgroupArgs,
    /// At most this many container series; the rest are dropped and counted
    #[arg(long, default_value_t = 200_000)]
    max_series: usize,
    /// Run without the eBPF probes (cgroup and /proc data only)
    #[arg(long)]
    no_ebpf: bool,
    #[command(flatten)]
    probes: super::probe_args::ProbeArgs,
    /// Keep the kernel's BPF run-time statistics on while the daemon runs, so /metrics reports
    /// each probe's runs and run time (costs a clock read per program run)
    #[arg(long)]
    bpf_stats: bool,
    /// Directory for the OOM event journal, so recent kills survive a restart
    #[arg(long, default_value = "/var/lib/memwatch")]
    state_dir: PathBuf,
    /// How many OOM events the journal and the API keep
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_events: u64,
    /// How long each container's history is kept at sample resolution, for OOM events (what
    /// grew before a kill) and `/api/v1/trace`; at least 1m
    #[arg(long, default_value = "15m", value_parser = parse_history)]
    history: Duration,
    /// At most this many open HTTP connections; one more is closed at once (and counted)
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    max_connections: u64,
    /// A request's headers must arrive within this; a connection idle this long is closed
    #[arg(long, default_value = "10s", value_parser = parse_header_timeout)]
    http_header_timeout: Duration,
}

fn parse_header_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 10s, 1m)"))?;
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

pub(crate) fn parse_history(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 15m, 1h)"))?;
    if d < Duration::from_secs(60) {
        return Err("must be at least 1m (an OOM event looks 30 s back)".into());
    }
    if d > Duration::from_secs(24 * 3600) {
        return Err("must be at most 24h".into());
    }
    Ok(d)
}

/// `/healthz` fails when the last sample is this many intervals old, and at least this old.
const STALE_INTERVALS: u32 = 10;
const STALE_AT_LEAST: Duration = Duration::from_secs(30);
/// The shortest sampling period accepted.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 1s, 500ms)"))?;
    if d < MIN_INTERVAL {
        return Err("must be at least 100ms".into());
    }
    Ok(d)
}

pub(crate) fn run(roots: Roots, args: ServeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(serve(roots, args))
}

async fn serve(roots: Roots, args: ServeArgs) -> anyhow::Result<()> {
    let limits =
        memwatch::http::server::Limits { max_connections: args.max_connections as usize, header_timeout: args.http_header_timeout };
    // A bad web configuration is an error before anything starts.
    let prefix = memwatch::http::normalise_prefix(&args.web_route_prefix).map_err(anyhow::Error::msg)?;
    let web = match &args.web_config_file {
        Some(p) => Some(Arc::new(Web::load(p).with_context(|| "--web.config.file")?)),
        None => None,
    };
    let listener = memwatch::http::server::bind(args.listen, &limits).with_context(|| format!("cannot listen on {}", args.listen))?;
    let one_door = args.listen_api == args.listen;
    let api_listener = if one_door {
        None
    } else {
        Some(
            memwatch::http::server::bind(args.listen_api, &limits)
                .with_context(|| format!("cannot listen on {} (--listen.api)", args.listen_api))?,
        )
    };
    let self_metrics = Arc::new(SelfMetrics::new());
    let opts = pipeline::Options {
        probes: (!args.no_ebpf).then(|| args.probes.options()),
        slow_interval: args.slow_interval.max(args.interval),
        model: Options { max_series: args.max_series, ..args.cgroups.options() },
        state_dir: Some(args.state_dir.clone()),
        max_events: args.max_events as usize,
        bpf_stats: args.bpf_stats,
        self_metrics: Some(self_metrics.clone()),
        history: args.history,
        ..pipeline::Options::default()
    };
    let view_roots = roots.clone();
    let mut pipeline = Pipeline::new(roots, &opts);
    log_report(&pipeline.report);
    if let Some(logger) = pipeline.take_logger() {
        tokio::spawn(pump_kernel_logs(logger));
    }
    let (shared, _sampler) = pipeline.spawn(args.interval);
    let state = AppState::new(shared, (args.interval * STALE_INTERVALS).max(STALE_AT_LEAST), self_metrics.clone())
        .with_view(Some(view_roots), &prefix)
        .map_err(anyhow::Error::msg)?;
    let scheme = if web.as_ref().is_some_and(|w| w.current().tls.is_some()) { "https" } else { "http" };
    if let Some(w) = &web {
        for result in ["success", "failure"] {
            self_metrics.web_config_reloads.with_label_values(&[result]);
        }
        tokio::spawn(reload_web_config(w.clone(), self_metrics.clone()));
    }
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopped = |mut rx: tokio::sync::broadcast::Receiver<()>| async move {
        let _ = rx.recv().await;
    };
    let metrics_door = if one_door { Door::Both } else { Door::Metrics };
    tracing::info!("listening on {scheme}://{}/metrics", args.listen);
    let main = memwatch::http::server::serve(
        listener,
        http::door(state.clone(), metrics_door, web.clone()),
        limits,
        Some(self_metrics.clone()),
        web.clone(),
        stopped(stop.subscribe()),
    );
    let api = api_listener.map(|l| {
        tracing::info!(
            "the web view on {scheme}://{}{prefix}/ and the API on {scheme}://{}{prefix}/api/v1/",
            args.listen_api,
            args.listen_api
        );
        memwatch::http::server::serve(
            l,
            http::door(state, Door::Api, web.clone()),
            limits,
            Some(self_metrics.clone()),
            web.clone(),
            stopped(stop.subscribe()),
        )
    });
    let stopper = async {
        shutdown().await;
        let _ = stop.send(());
    };
    let (r1, r2, ()) = tokio::join!(
        main,
        async {
            match api {
                Some(a) => a.await,
                None => Ok(()),
            }
        },
        stopper
    );
    r1.context("HTTP server")?;
    r2.context("HTTP server (--listen.api)")
}

/// How often `--web.config.file` and the files it names are looked at again.
const WEB_CONFIG_POLL: Duration = Duration::from_secs(2);

/// Re-reads the web configuration when it or a file it names changed (a rotated certificate):
/// a good one takes over at once, a bad one is logged and counted and the last good one kept.
async fn reload_web_config(web: Arc<Web>, m: Arc<SelfMetrics>) {
    let mut tick = tokio::time::interval(WEB_CONFIG_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let w = web.clone();
        match tokio::task::spawn_blocking(move || w.reload_if_changed()).await {
            Ok(Ok(true)) => {
                m.web_config_reloads.with_label_values(&["success"]).inc();
                tracing::info!("--web.config.file {}: reloaded", web.path().display());
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                m.web_config_reloads.with_label_values(&["failure"]).inc();
                tracing::warn!("--web.config.file: {e}; the last good configuration keeps serving");
            }
            Err(_) => {}
        }
    }
}

/// Says once what loading found: each probe, and any problem.
fn log_report(r: &pipeline::Report) {
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    if let Some(e) = &r.ebpf_error {
        tracing::error!("eBPF probes unavailable, serving cgroup and /proc data only: {e}");
    }
    for s in &r.probes {
        match &s.state {
            ProbeState::Attached { method } => tracing::info!(probe = s.id.name(), "probe attached: {method}"),
            ProbeState::Off(why) => tracing::info!(probe = s.id.name(), "probe off: {why}"),
            ProbeState::Disabled(why) => tracing::warn!(probe = s.id.name(), "probe disabled: {why}"),
            ProbeState::Standby(why) => {
                tracing::info!(probe = s.id.name(), "probe on standby: {why} (at risk: {})", memwatch::risk::describe())
            }
        }
    }
    match &r.bpf_stats {
        Some(Ok(())) => tracing::info!("BPF run-time statistics on while memwatch runs"),
        Some(Err(e)) => tracing::warn!("cannot turn on BPF run-time statistics: {e}"),
        None => {}
    }
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// Registers a map's fd with the reactor for readability.
fn readable<T: std::os::fd::AsRawFd>(inner: T) -> Option<AsyncFd<T>> {
    // SAFETY: aya's ring buffers own their map fd, keep it open for their whole life, and
    // always return that same fd from as_raw_fd.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }.ok()
}

/// Keeps aya-log's logger alive and drains it whenever the kernel side wrote something.
async fn pump_kernel_logs(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    let Some(mut fd) = readable(logger) else { return };
    while let Ok(mut guard) = fd.readable_mut().await {
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}
