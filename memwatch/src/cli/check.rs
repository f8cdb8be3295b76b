//! `memwatch check`: what this host offers, which probes attached and how, and (while the
//! kernel keeps BPF statistics) what each costs per event.
use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Args;
use memwatch::{
    Roots, host,
    probes::{MemcgIds, ProbeRuns, ProbeState, Probes},
};

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    probes: super::probe_args::ProbeArgs,
    /// Turn the kernel's BPF run-time statistics on for the check and measure each probe's
    /// cost per event on this host's own activity (also done when the sysctl has them on)
    #[arg(long)]
    bpf_stats: bool,
    /// How long to measure costs for
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    bpf_stats_window: Duration,
}

/// One probe's measured cost.
#[derive(serde::Serialize)]
struct Cost {
    probe: &'static str,
    events: u64,
    ns_per_event: Option<f64>,
}

pub(crate) fn run(roots: &Roots, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let mode = host::cgroup_mode(&roots.cgroupfs);
    let kernel = host::kernel_release(&roots.procfs).unwrap_or_else(|| "unknown".into());
    let btf = host::btf_available(&roots.sysfs);
    let psi = host::psi_available(&roots.procfs);
    let mut probes =
        Probes::load(&memwatch::probes::LoadOptions::new(roots, args.probes.options())).context("cannot load memwatch's eBPF programs")?;
    // Probes not asked for are fine; any asked-for probe that did not attach is not.
    let all_attached = probes.status().iter().all(|s| !matches!(s.state, ProbeState::Disabled(_)));
    let memcg = match probes.memcg_ids() {
        MemcgIds::Btf => "memory cgroup of each task, via BTF (direct loads)".to_string(),
        MemcgIds::BtfProbeRead => "memory cgroup of each task, via BTF (helper reads: kernel before 5.11)".to_string(),
        MemcgIds::Unavailable(why) => format!("unavailable ({why}): per-cgroup eBPF counters are off"),
    };
    let tracefs = match probes.tracefs() {
        Ok(t) if t.mounted_here => format!("{} (mounted by memwatch)", t.root.display()),
        Ok(t) => t.root.display().to_string(),
        Err(e) => format!("unavailable: {e}"),
    };
    let already_on = probes.stats_enabled(&roots.procfs);
    let costs = if args.bpf_stats || already_on { Some(measure(&mut probes, args, already_on)?) } else { None };
    if args.json {
        let report = serde_json::json!({
            "kernel": kernel,
            "btf": btf,
            "tracefs": tracefs,
            "cgroups": mode,
            "psi": psi,
            "memcg_ids": memcg,
            "probes": probes.status(),
            "costs": costs,
            "warnings": probes.warnings(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("kernel     {kernel}");
        println!("btf        {}", if btf { "yes" } else { "no" });
        println!("tracefs    {tracefs}");
        let where_ = match &mode {
            host::CgroupMode::V2 { root } => format!(" ({})", root.display()),
            host::CgroupMode::Hybrid { memory, unified } => {
                format!(" (memory controller on v1 at {}, v2 at {})", memory.display(), unified.display())
            }
            host::CgroupMode::V1 { memory } => format!(" (memory at {})", memory.display()),
            host::CgroupMode::None => " (no memory controller found)".into(),
        };
        println!("cgroups    {}{where_}", mode.label());
        println!("psi        {}", if psi { "yes" } else { "no" });
        println!("memcg ids  {memcg}");
        println!("probes");
        for s in probes.status() {
            match &s.state {
                ProbeState::Attached { method } => println!("  {:<18} attached: {method}", s.id),
                ProbeState::Off(why) => println!("  {:<18} off: {why}", s.id),
                ProbeState::Disabled(why) => println!("  {:<18} disabled: {why}", s.id),
                ProbeState::Standby(why) => {
                    println!("  {:<18} standby: {why}", s.id);
                    println!("  {:<18} at risk: {}", "", memwatch::risk::describe());
                }
            }
        }
        if let Some(costs) = &costs {
            println!(
                "cost per event, measured over {} of this host's activity (BPF statistics)",
                humantime::format_duration(args.bpf_stats_window)
            );
            for c in costs {
                match c.ns_per_event {
                    Some(ns) => println!("  {:<26} {ns:>8.0} ns/event  ({} events)", c.probe, c.events),
                    None => println!("  {:<26}        - ns/event  (no events)", c.probe),
                }
            }
        }
        for w in probes.warnings() {
            println!("warning    {w}");
        }
    }
    Ok(if all_attached { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// Measures each attached probe over the window, plus an empty program on the page-fault hook
/// (what any program there costs at least), with statistics on for the window only. Where the
/// kernel keeps them already (the sysctl), they are used as they are: turning them on needs
/// CAP_SYS_ADMIN, which the DaemonSet does not grant.
fn measure(probes: &mut Probes, args: &CheckArgs, already_on: bool) -> anyhow::Result<Vec<Cost>> {
    if !already_on {
        probes.enable_stats().map_err(|e| anyhow::anyhow!("cannot turn on BPF statistics: {e}"))?;
    }
    let empty = probes.attach_empty_fault_program();
    let snapshot = |p: &Probes| {
        let mut v = p.run_stats();
        v.extend(p.empty_fault_runs().filter(|_| empty.is_ok()));
        v
    };
    let before = snapshot(probes);
    std::thread::sleep(args.bpf_stats_window);
    let after = snapshot(probes);
    probes.disable_stats();
    Ok(after
        .iter()
        .map(|a: &ProbeRuns| {
            let b = before.iter().find(|b| b.probe == a.probe).copied().unwrap_or(ProbeRuns { runs: 0, run_time: Duration::ZERO, ..*a });
            Cost { probe: a.probe, events: a.runs - b.runs, ns_per_event: a.ns_per_run_since(&b) }
        })
        .collect())
}
