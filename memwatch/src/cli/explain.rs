//! `memwatch explain PID|CONTAINER`: prints the reports of [`memwatch::explain`] (where a
//! process's, or a container's processes', VSZ and RSS are, by class, and what of it counts
//! against the container's memory limit). Needs root (or CAP_SYS_PTRACE) for other users'
//! processes.

use std::io::{self, Write};

use clap::Args;
use memwatch::{
    Roots,
    explain::report::{self, ContainerReport, ProcessReport},
    runtime::layout::ClassUse,
    units::human,
};

#[derive(Args)]
pub(crate) struct ExplainArgs {
    /// A process id; a cgroup path relative to the memory hierarchy (e.g.
    /// /kubepods.slice/.../cri-containerd-<id>.scope); or namespace/pod/container
    target: String,
    /// One JSON object
    #[arg(long)]
    json: bool,
    /// A daemon whose sampled fault stacks to add, where it has any (the local one unless
    /// told; none reachable: no stacks)
    #[arg(long, default_value = super::client::DEFAULT_API)]
    remote: String,
    #[command(flatten)]
    tls: super::client::RemoteTls,
}

/// The daemon's top stacks of the last five minutes for `subject`, where it has sampled any.
fn stacks(args: &ExplainArgs, subject: memwatch::stacks::Subject) -> Option<serde_json::Value> {
    let client = args.tls.client(&args.remote).ok()?;
    let p = client.profile(&subject, std::time::Duration::from_secs(300), None, memwatch::http::ProfileFormat::Json).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&p.body).ok()?;
    (v["samples"].as_u64().unwrap_or(0) > 0).then_some(v)
}

/// With the stacks, if any: JSON gets them as `stacks`, text as a list after the report.
fn print_with_stacks(out: &mut impl Write, report: serde_json::Value, stacks: Option<serde_json::Value>, json: bool) -> anyhow::Result<()> {
    if json {
        let mut report = report;
        if let (Some(s), Some(m)) = (stacks, report.as_object_mut()) {
            m.insert("stacks".into(), s);
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    let Some(s) = stacks else { return Ok(()) };
    let top: Vec<memwatch::stacks::profile::StackUse> = serde_json::from_value(s["top"].clone()).unwrap_or_default();
    writeln!(out)?;
    writeln!(
        out,
        "where memory was faulted in (the daemon's sampled stacks, last 5 minutes; {:.0}% had at most two frames):",
        s["short_share"].as_f64().unwrap_or(0.0) * 100.0
    )?;
    for t in top.iter().take(3) {
        writeln!(out, "  {}", t.line())?;
    }
    Ok(())
}

pub(crate) fn run(roots: &Roots, args: &ExplainArgs) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    if let Ok(pid) = args.target.parse::<u32>() {
        let p = report::process(&roots.procfs, pid)?;
        if !args.json {
            print_process(&mut out, &p)?;
        }
        return print_with_stacks(&mut out, serde_json::to_value(&p)?, stacks(args, memwatch::stacks::Subject::Pid(pid)), args.json);
    }
    let c = report::container(roots, &args.target)?;
    if !args.json {
        print_container(&mut out, &c)?;
    }
    let subject = memwatch::stacks::Subject::Container(c.cgroup.clone());
    print_with_stacks(&mut out, serde_json::to_value(&c)?, stacks(args, subject), args.json)
}

fn print_classes(out: &mut impl Write, classes: &[ClassUse]) -> io::Result<()> {
    writeln!(out, "  {:<20} {:>10} {:>10}  WHAT", "CLASS", "VSZ", "RSS")?;
    for c in classes {
        writeln!(out, "  {:<20} {:>10} {:>10}  {}", c.class.name(), human(c.vsz_bytes as f64), human(c.rss_bytes as f64), c.description)?;
    }
    Ok(())
}

fn print_process(out: &mut impl Write, p: &ProcessReport) -> io::Result<()> {
    writeln!(out, "{} (pid {}): VSZ {}, RSS {}", p.comm, p.pid, human(p.vsz_bytes as f64), human(p.rss_bytes as f64))?;
    print_classes(out, &p.classes)?;
    writeln!(out)?;
    writeln!(out, "{}", wrap(&p.summary, 100))
}

fn print_container(out: &mut impl Write, c: &ContainerReport) -> io::Result<()> {
    writeln!(out, "{} ({}): VSZ {}, RSS {}", c.name, c.cgroup, human(c.vsz_bytes as f64), human(c.rss_bytes as f64))?;
    print_classes(out, &c.classes)?;
    writeln!(out)?;
    for p in c.processes.iter().take(10) {
        writeln!(out, "  pid {:<8} {:<16} VSZ {:>10}  RSS {:>10}", p.pid, p.comm, human(p.vsz_bytes as f64), human(p.rss_bytes as f64))?;
    }
    writeln!(out)?;
    writeln!(out, "{}", wrap(&c.summary, 100))
}

/// Wraps text at spaces to lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split(' ') {
        if line > 0 && line + 1 + word.chars().count() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.chars().count();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrapping() {
        assert_eq!(super::wrap("aaa bbb ccc", 7), "aaa bbb\nccc");
        assert_eq!(super::wrap("", 7), "");
    }
}
