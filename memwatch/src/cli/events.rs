//! `memwatch events`: OOM kills, and the warnings before them, from a running daemon, followed
//! as they happen.
use std::{
    io::Write,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use clap::Args;
use memwatch::oom::{Event, EventKind, Source};

#[derive(Args)]
pub(crate) struct EventsArgs {
    /// The daemon's API address (`--remote` as in `top` and `trace`): its --listen.api, http://
    /// or https://
    #[arg(long, visible_alias = "remote", default_value = super::client::DEFAULT_API)]
    url: String,
    #[command(flatten)]
    tls: super::client::RemoteTls,
    /// Show events from this long ago (e.g. 10m, 2h, 7d)
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    since: Duration,
    /// One JSON object per line
    #[arg(long)]
    json: bool,
    /// Print what there is and exit instead of following
    #[arg(long)]
    no_follow: bool,
}

pub(crate) fn run(args: &EventsArgs) -> anyhow::Result<()> {
    let since = memwatch::unix_seconds(SystemTime::now()) - args.since.as_secs_f64();
    let mut after = 0;
    let mut down = false;
    let mut out = std::io::stdout().lock();
    let client = args.tls.client(&args.url)?;
    loop {
        match client.events(Some(since), Some(after)) {
            Ok(events) => {
                if down {
                    eprintln!("memwatch events: {} is back", args.url);
                    down = false;
                }
                for e in &events {
                    after = after.max(e.seq);
                    if args.json {
                        writeln!(out, "{}", serde_json::to_string(e)?)?;
                    } else {
                        writeln!(out, "{}", describe(e))?;
                    }
                }
                out.flush()?;
            }
            Err(e) if args.no_follow => return Err(e).with_context(|| format!("cannot read events from {}", args.url)),
            Err(e) => {
                if !down {
                    eprintln!("memwatch events: cannot reach {} ({e}); retrying", args.url);
                    down = true;
                }
            }
        }
        if args.no_follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn mib(b: u64) -> String {
    format!("{:.1}MiB", b as f64 / (1 << 20) as f64)
}

/// One human line per event, and the explanation in a sentence or two beneath it.
pub(crate) fn describe(e: &Event) -> String {
    let when = memwatch::rfc3339(e.time);
    let whom = if e.pod.is_empty() {
        e.cgroup.clone()
    } else {
        format!("{}/{}/{}", e.namespace, e.pod, if e.container.is_empty() { "?" } else { &e.container })
    };
    if e.source == Source::KernelCounter {
        return format!("{when} {} OOM kill(s) in {whom}: counted by the kernel, missed by memwatch's probe", e.count);
    }
    if e.kind != EventKind::OomKill {
        // A warning (or its end) on one line, its reasons indented under it.
        let mut s = format!(
            "{when} {} in {whom} (event {})",
            if e.kind == EventKind::Warning { "WARNING: at risk of an OOM kill" } else { "cleared: no longer at risk" },
            e.seq
        );
        for r in &e.explanation {
            s += &format!("\n    {}", r.text);
        }
        return s;
    }
    // A line for the kill, then the explanation indented under it.
    let mut s = format!("{when} OOM kill in {whom}");
    if let Some(v) = &e.victim {
        s += &format!(": pid {} ({})", v.pid, v.comm);
        if let Some(r) = v.rss_bytes {
            s += &format!(" rss {}", mib(r));
        }
        if let Some(z) = v.vsz_bytes {
            s += &format!(" vsz {}", mib(z));
        }
    }
    s += &match (&e.constraint, &e.constrained_by) {
        (memwatch::oom::Constraint::Cgroup, Some(by)) => format!("; cgroup limit of {by}"),
        (c, _) => format!("; constraint {}", c.label()),
    };
    if let Some(a) = &e.at_kill {
        s += &format!("; at the kill: {}", mib(a.usage_bytes));
        if let Some(l) = a.limit_bytes {
            s += &format!(" of {}", mib(l));
        }
        let parts: Vec<String> = [("anon", a.anon_bytes), ("file", a.file_bytes), ("shmem", a.shmem_bytes), ("kernel", a.kernel_bytes)]
            .into_iter()
            .filter_map(|(name, v)| Some(format!("{name} {}", mib(v?))))
            .collect();
        if !parts.is_empty() {
            s += &format!(" ({})", parts.join(", "));
        }
    }
    if let Some(b) = &e.before {
        s += &format!("; last sample before: working set {} of {}", mib(b.working_set_bytes), mib(b.limit_bytes));
    }
    if let Some(t) = &e.trigger
        && e.victim.as_ref().is_some_and(|v| v.pid != t.pid)
    {
        s += &format!("; triggered by pid {} ({})", t.pid, t.comm);
    }
    let why = memwatch::oom::reasons::summary(&e.explanation);
    if !why.is_empty() {
        s += &format!("\n    {why}");
    }
    // The warning before it, while it was in force.
    if let Some(w) = &e.warned {
        s += &format!("\n    Warned {:.0} s before (event {}): {}", w.seconds_before, w.seq, w.text);
    }
    // Which code grew, when the fault-stack sampler ran.
    if let Some(r) = e.explanation.iter().find(|r| r.kind == memwatch::oom::reasons::ReasonKind::GrowthStack) {
        s += &format!("\n    {}", r.text);
    }
    s
}
