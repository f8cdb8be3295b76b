//! `memwatch check`: what this host offers and what attached.
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use memwatch::{
    Roots, host,
    probes::{MemcgIds, ProbeState, Probes},
};

#[derive(Args)]
pub struct CheckArgs {
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(roots: &Roots, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let mode = host::cgroup_mode(&roots.cgroupfs);
    let kernel = host::kernel_release(&roots.procfs).unwrap_or_else(|| "unknown".into());
    let btf = host::btf_available(&roots.sysfs);
    let psi = host::psi_available(&roots.procfs);
    let probes = Probes::load(&roots.load_options()).context("cannot load memwatch's eBPF programs")?;
    let all_attached = probes.status().iter().all(|s| s.state == ProbeState::Attached);
    let memcg = match probes.memcg_ids() {
        MemcgIds::Btf => "memory cgroup of each task, via BTF".to_string(),
        MemcgIds::CgroupV2Only(why) => format!("cgroup v2 id only ({why})"),
    };
    let tracefs = match probes.tracefs() {
        Ok(t) if t.mounted_here => format!("{} (mounted by memwatch)", t.root.display()),
        Ok(t) => t.root.display().to_string(),
        Err(e) => format!("unavailable: {e}"),
    };
    if args.json {
        let report = serde_json::json!({
            "kernel": kernel,
            "btf": btf,
            "tracefs": tracefs,
            "cgroups": mode,
            "psi": psi,
            "memcg_ids": memcg,
            "probes": probes.status(),
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
                ProbeState::Attached => println!("  {:<18} attached", s.name),
                ProbeState::Disabled(why) => println!("  {:<18} disabled: {why}", s.name),
            }
        }
        for w in probes.warnings() {
            println!("warning    {w}");
        }
    }
    Ok(if all_attached { ExitCode::SUCCESS } else { ExitCode::from(3) })
}
