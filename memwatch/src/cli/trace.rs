//! `memwatch trace`: a running daemon's recent history as a Chrome trace event file, to open in
//! Perfetto's UI (ui.perfetto.dev) or `chrome://tracing`.
use std::{io::Write, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Args;

#[derive(Args)]
pub(crate) struct TraceArgs {
    /// The daemon's API address (its --listen.api), http:// or https://
    #[arg(long, visible_alias = "url", default_value = super::client::DEFAULT_API)]
    remote: String,
    #[command(flatten)]
    tls: super::client::RemoteTls,
    /// How far back (e.g. 15m, 90s); the daemon keeps --history (15m by default)
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    since: Duration,
    /// One container: namespace/pod/container, a pod's namespace/pod, or a cgroup path
    #[arg(long)]
    container: Option<String>,
    /// Where to write the trace; `-` for stdout
    #[arg(short, long, default_value = "-")]
    output: PathBuf,
}

pub(crate) fn run(args: &TraceArgs) -> anyhow::Result<()> {
    let body = args
        .tls
        .client(&args.remote)?
        .trace(args.since, args.container.as_deref())
        .with_context(|| format!("cannot read the trace from {}", args.remote))?;
    let events = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["traceEvents"].as_array().map(Vec::len))
        .context("the daemon's answer is not a trace")?;
    if args.output.as_os_str() == "-" {
        std::io::stdout().lock().write_all(&body)?;
    } else {
        std::fs::write(&args.output, &body).with_context(|| format!("cannot write {}", args.output.display()))?;
        eprintln!("memwatch trace: {events} events written to {} (open it in https://ui.perfetto.dev)", args.output.display());
    }
    Ok(())
}
