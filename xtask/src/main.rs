//! `cargo xtask`: set-up, running and testing memwatch on this machine.
use clap::{Parser, Subcommand};

mod bench;
mod docs;
mod fresh;
mod fuzz;
mod image;
mod layers;
mod lint;
mod run;
mod setup;
mod soak;
mod test;
mod util;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (Debian packages, bpf-linker); idempotent
    Setup,
    /// Set up, build in release mode and run the daemon on this host (arguments go to memwatch)
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build in release mode, run the benchmarks (numbers, not pass/fail); one by its
    /// name (`cargo xtask bench rightsize`: the replay of memory-limit rules)
    Bench {
        /// One bench (overhead, sample, history, stacks, tls, webview, warnings, rightsize); all when absent
        name: Option<String>,
    },
    /// Formatting and clippy (warnings are errors) on every crate, the eBPF one included
    Lint,
    /// Set up, build in release mode, and run the daemon for a while against cgroup churn and
    /// scrapes, printing its RSS and CPU over time and the slope of RSS (not CI)
    Soak {
        /// How long
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
    },
    /// Fuzz every parser of kernel- or user-controlled input for a bounded time each
    Fuzz {
        /// Seconds per target
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Only these targets (default: all)
        targets: Vec<String>,
    },
    /// Build memwatch's OCI image without a Docker engine (podman/buildah with runc) into
    /// podman's store and target/image/oci
    Image {
        /// Build through deploy/Dockerfile (about 7 minutes) instead of assembling its runtime
        /// stage from the binary built here
        #[arg(long)]
        dockerfile: bool,
        /// The platforms to build (comma-separated; default both)
        #[arg(long, value_delimiter = ',', default_values = ["linux/amd64", "linux/arm64"])]
        platform: Vec<image::Arch>,
    },
    /// Does the set-up work on a fresh machine? scripts/setup.sh and the builds the tests need,
    /// in a clean Debian bookworm container made from the project's debootstrap base, with
    /// nothing from this machine but the checkout, the Rust toolchain and apt's package cache
    Fresh {
        /// Check this commit instead of the work tree's tracked files
        #[arg(long)]
        rev: Option<String>,
    },
    /// Set up, build, and run every test; prints a total line `N passed, N failed`
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Setup => setup::run(),
        Cmd::Run { args } => run::run(&args),
        Cmd::Test { args } => test::run(&args),
        Cmd::Fresh { rev } => fresh::run(rev.as_deref()),
        Cmd::Bench { name } => bench::run(name.as_deref()),
        Cmd::Lint => lint::run(),
        Cmd::Soak { minutes } => soak::run(minutes),
        Cmd::Fuzz { seconds, targets } => fuzz::run(seconds, &targets, true),
        Cmd::Image { dockerfile, platform } => image::run(dockerfile, &platform),
    }
}
