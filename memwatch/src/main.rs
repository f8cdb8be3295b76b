//! The `memwatch` command: the daemon and its tools.
use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use memwatch::Roots;

mod cli;

#[derive(Parser)]
#[command(name = "memwatch", version, about = "Explains why containers run out of memory, from the kernel")]
struct Cli {
    #[command(flatten)]
    roots: RootArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct RootArgs {
    /// procfs mount point
    #[arg(long = "path.procfs", default_value = "/proc", global = true)]
    procfs: PathBuf,
    /// sysfs mount point (BTF and, unless --path.tracefs, tracefs are found under it)
    #[arg(long = "path.sysfs", default_value = "/sys", global = true)]
    sysfs: PathBuf,
    /// cgroupfs mount point
    #[arg(long = "path.cgroupfs", default_value = "/sys/fs/cgroup", global = true)]
    cgroupfs: PathBuf,
    /// tracefs mount point [default: found, or mounted, under --path.sysfs]
    #[arg(long = "path.tracefs", global = true)]
    tracefs: Option<PathBuf>,
    /// The kubelet's log directory, holding pods/ and containers/ (for Kubernetes names)
    #[arg(long = "path.kubelet-logs", default_value = "/var/log", global = true)]
    kubelet_logs: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Report what this host offers and which probes attach; exits 0 when all do, 3 when some
    /// are disabled, 1 when the programs cannot be loaded at all (e.g. missing privilege)
    Check(cli::check::CheckArgs),
    /// Run the daemon: sample every container and serve /metrics and the JSON API
    Serve(cli::serve::ServeArgs),
    /// Show OOM kills from a running daemon, following new ones
    Events(cli::events::EventsArgs),
    /// A live view of containers' memory, closest to their limit first
    Top(cli::top::TopArgs),
    /// Where a process's or a container's VSZ and RSS are, by class, and what counts against
    /// the memory limit
    Explain(cli::explain::ExplainArgs),
    /// Write a running daemon's recent history and OOM kills as a trace for Perfetto
    Trace(cli::trace::TraceArgs),
    /// Write which code faulted memory in (a running daemon's sampled fault stacks) as pprof,
    /// folded stacks or an SVG flame graph
    Profile(cli::profile::ProfileArgs),
    /// The memory request, limit and runtime setting (GOMEMLIMIT, -XX:MaxRAMPercentage,
    /// --max-old-space-size, DOTNET_GCHeapHardLimit) each workload needs, from Prometheus's
    /// weeks of memwatch's series or one daemon's recent history
    Recommend(cli::recommend::RecommendArgs),
}

fn main() -> ExitCode {
    // Before any thread: the daemon and `top` run for days.
    memwatch::allocator::tune();
    let cli = Cli::parse();
    // `top` owns the terminal: log lines would scribble over it unless asked for; `explain`
    // samples once, and its report is the output (the sampler's info lines are not news).
    let default_level = match cli.command {
        Command::Top(_) => "off",
        Command::Explain(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MEMWATCH_LOG").unwrap_or_else(|_| default_level.into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let roots = Roots {
        procfs: cli.roots.procfs,
        sysfs: cli.roots.sysfs,
        cgroupfs: cli.roots.cgroupfs,
        tracefs: cli.roots.tracefs,
        kubelet_logs: cli.roots.kubelet_logs,
    };
    let result = match cli.command {
        Command::Check(args) => cli::check::run(&roots, &args),
        Command::Serve(args) => cli::serve::run(roots, args).map(|()| ExitCode::SUCCESS),
        Command::Events(args) => cli::events::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Top(args) => cli::top::run(roots, args),
        Command::Explain(args) => cli::explain::run(&roots, &args).map(|()| ExitCode::SUCCESS),
        Command::Trace(args) => cli::trace::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Profile(args) => cli::profile::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Recommend(args) => cli::recommend::run(&args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("memwatch: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
