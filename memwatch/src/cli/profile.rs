//! `memwatch profile`: which code faulted memory in, from a running daemon's sampled fault
//! stacks: pprof (for `go tool pprof`), folded stacks (for flame-graph tools), an SVG flame
//! graph, or the top stacks as JSON.
use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context as _;
use clap::Args;
use memwatch::{http::ProfileFormat, stacks::Subject};

#[derive(Args)]
pub(crate) struct ProfileArgs {
    /// A container (namespace/pod/container, a pod's namespace/pod, or a cgroup path) or a pid
    subject: String,
    /// How far back: seconds, or a duration such as 2m (the daemon keeps --history)
    #[arg(long, default_value = "30", value_parser = seconds, conflicts_with = "record")]
    seconds: Duration,
    /// Record for this long from now instead of looking back, as `go tool pprof -seconds`
    /// does: the daemon's sampler counts the container meanwhile, at risk or not (at most 10m)
    #[arg(long, value_parser = seconds)]
    record: Option<Duration>,
    #[arg(long, value_enum, default_value = "pprof")]
    format: ProfileFormat,
    /// Where to write it; `-` for stdout (pprof and svg only when stdout is not a terminal)
    #[arg(short, long, default_value = "-")]
    output: PathBuf,
    /// The daemon's address
    #[arg(long, visible_alias = "url", default_value = super::client::DEFAULT_API)]
    remote: String,
    #[command(flatten)]
    tls: super::client::RemoteTls,
}

fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(Duration::from_secs_f64(n)),
        Ok(_) => Err("a positive number of seconds".into()),
        Err(_) => humantime::parse_duration(s).map_err(|e| e.to_string()),
    }
}

pub(crate) fn run(args: &ProfileArgs) -> anyhow::Result<()> {
    let to_stdout = args.output.as_os_str() == "-";
    let binary = matches!(args.format, ProfileFormat::Pprof | ProfileFormat::Svg);
    if to_stdout && binary && std::io::stdout().is_terminal() {
        anyhow::bail!("a {:?} profile is not for a terminal: give -o FILE, or --format folded", args.format);
    }
    if let Some(r) = args.record {
        eprintln!("memwatch profile: recording {} from now", humantime::format_duration(r));
    }
    let p = args
        .tls
        .client(&args.remote)?
        .profile(&Subject::parse(&args.subject), args.seconds, args.record, args.format)
        .with_context(|| format!("cannot read the profile from {}", args.remote))?;
    // What the profile holds, where it is less than asked (empty, or only part of the time).
    if let Some(note) = &p.note {
        eprintln!("memwatch profile: {note}");
    }
    let body = p.body;
    if to_stdout {
        std::io::stdout().lock().write_all(&body)?;
    } else {
        std::fs::write(&args.output, &body).with_context(|| format!("cannot write {}", args.output.display()))?;
        let how = match args.format {
            ProfileFormat::Pprof => format!("open it with: go tool pprof -top {}", args.output.display()),
            ProfileFormat::Svg => "open it in a browser".into(),
            _ => String::new(),
        };
        let samples = p.samples.map(|n| format!("{n} samples, ")).unwrap_or_default();
        eprintln!("memwatch profile: {samples}{} bytes written to {}; {how}", body.len(), args.output.display());
    }
    Ok(())
}
