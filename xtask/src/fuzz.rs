//! `cargo xtask fuzz`: every parser that reads kernel- or user-controlled input under libFuzzer
//! (cargo-fuzz, targets in `fuzz/`), each for a bounded time, seeded from the test fixtures.
//! A crash stops the run and is left in `fuzz/artifacts/<target>/`: make it a regression test
//! (`cargo fuzz fmt` shows the input) next to the parser's unit tests.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{setup, util};

/// Every target (`fuzz/fuzz_targets/<name>.rs`).
pub(crate) const TARGETS: [&str; 13] = [
    "cgroup_files",
    "proc_files",
    "smaps",
    "tracefs_format",
    "btf",
    "elf",
    "journal",
    "names",
    "oom_record",
    "runtime_facts",
    "stack_inputs",
    "web_config",
    "app_configs",
];

/// libFuzzer's limits: a single input larger than the files memwatch reads is not interesting;
/// an allocation over `MALLOC_LIMIT_MB` or a run over `RSS_LIMIT_MB` is a finding (unbounded
/// allocation), as is an input that takes over `TIMEOUT_S` seconds.
const MAX_LEN: u32 = 64 * 1024;
const MALLOC_LIMIT_MB: u32 = 256;
const RSS_LIMIT_MB: u32 = 1024;
const TIMEOUT_S: u32 = 10;

pub(crate) fn run(seconds: u32, only: &[String], setup_first: bool) -> anyhow::Result<()> {
    if setup_first {
        setup::run()?;
    }
    let root = util::workspace();
    let cargo_fuzz = root.join(".tools/bin/cargo-fuzz");
    if !cargo_fuzz.exists() {
        bail!("{} missing: scripts/setup.sh installs it", cargo_fuzz.display());
    }
    let targets: Vec<&str> = if only.is_empty() { TARGETS.to_vec() } else { only.iter().map(String::as_str).collect() };
    for t in &targets {
        if !TARGETS.contains(t) {
            bail!("no fuzz target {t}; targets: {}", TARGETS.join(", "));
        }
    }
    let seeds_root = root.join("target/fuzz-seeds");
    for t in &targets {
        let seeds = seeds_root.join(t);
        let _ = fs::remove_dir_all(&seeds);
        fs::create_dir_all(&seeds)?;
        for (i, file) in seed_files(&root, t)?.iter().enumerate() {
            fs::copy(file, seeds.join(format!("{i:04}"))).with_context(|| format!("seed {}", file.display()))?;
        }
        let corpus = root.join("fuzz/corpus").join(t);
        fs::create_dir_all(&corpus)?;
        let mut cmd = Command::new(&cargo_fuzz);
        cmd.args(["run", "--sanitizer", "none", "--fuzz-dir"])
            .arg(root.join("fuzz"))
            .arg(t)
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-max_len={MAX_LEN}"))
            .arg(format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .arg(format!("-timeout={TIMEOUT_S}"))
            .arg("-print_final_stats=1")
            // cargo-fuzz passes a few unstable flags to rustc; Debian's and rustup's stable
            // compilers accept them with this.
            .env("RUSTC_BOOTSTRAP", "1");
        util::run(&mut cmd).with_context(|| format!("fuzz target {t} found a crash: see fuzz/artifacts/{t}/"))?;
    }
    println!("fuzz: {} targets, {seconds} s each, no crash", targets.len());
    Ok(())
}

/// The fixture files that seed a target: real examples of what it parses.
fn seed_files(root: &Path, target: &str) -> anyhow::Result<Vec<PathBuf>> {
    if target == "runtime_facts" {
        // A performance-data file recorded from a real JVM.
        return Ok(vec![root.join("tests/fixtures/hsperfdata/openjdk-17-g1.hsperfdata")]);
    }
    if target == "web_config" {
        // exporter-toolkit's own examples, as the tests use them.
        let dir = root.join("tests/fixtures/webconfig");
        let mut out: Vec<PathBuf> = fs::read_dir(&dir)?.filter_map(|e| Some(e.ok()?.path())).collect();
        out.sort();
        return Ok(out);
    }
    if target == "app_configs" {
        // A command line and files as the data stores' tests write them.
        let p = root.join("target/fuzz-seeds/host/app_configs");
        fs::create_dir_all(&p)?;
        let seeds: [(&str, &str); 3] = [
            (
                "redis",
                "redis-server\0/etc/app.conf\0--maxmemory\x00100mb\0--files\0maxmemory 1gb\ninclude a.conf\nsave 900 1\n\0maxmemory-policy allkeys-lru\n",
            ),
            (
                "postgres",
                "postgres\0-D\0/d\0-c\0work_mem=2GB\0-B\x004096\0--files\0\0\0\0\0shared_buffers = '32MB' # x\ninclude_dir 'conf.d'\n\0work_mem = 64MB\n",
            ),
            (
                "mysql",
                "mariadbd\0--innodb-buffer-pool-size=1G\0--files\0\0\0[mysqld]\nsort_buffer_size=4M\n!includedir /etc/mysql/conf.d/\n\0[mysqld]\ninnodb_buffer_pool_size = 2G\n",
            ),
        ];
        let mut out = vec![];
        for (name, text) in seeds {
            fs::write(p.join(name), text)?;
            out.push(p.join(name));
        }
        return Ok(out);
    }
    if target == "stack_inputs" {
        // A perf map as Node 18 writes it, and this host's own maps (below).
        let mut out = vec![root.join("tests/fixtures/perfmap/node-18.map")];
        let p = root.join("target/fuzz-seeds/host/stack_inputs");
        fs::create_dir_all(&p)?;
        if let Ok(data) = fs::read("/proc/self/maps") {
            fs::write(p.join("maps"), &data[..data.len().min(MAX_LEN as usize)])?;
            out.push(p.join("maps"));
        }
        return Ok(out);
    }
    let trees = root.join("tests/fixtures/trees");
    let mut all = Vec::new();
    walk(&trees, &mut all)?;
    let name = |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let keep: Box<dyn Fn(&PathBuf) -> bool> = match target {
        "cgroup_files" => Box::new(|p| name(p).starts_with("memory.") || name(p) == "cgroup.procs"),
        "proc_files" => Box::new(|p| ["stat", "meminfo", "status", "environ", "cgroup"].contains(&name(p).as_str())),
        "names" => Box::new(|p| name(p).ends_with(".log")),
        "journal" | "smaps" | "tracefs_format" | "btf" | "elf" | "oom_record" => Box::new(|_| false),
        _ => Box::new(|_| false),
    };
    let mut out: Vec<PathBuf> = all.into_iter().filter(|p| keep(p)).collect();
    out.sort();
    out.dedup();
    out.truncate(200);
    // Targets without fixture trees get seeds from this host where they are safe to read.
    let host: &[&str] = match target {
        "tracefs_format" => {
            &["/sys/kernel/tracing/events/oom/mark_victim/format", "/sys/kernel/tracing/events/sched/sched_process_exit/format"]
        }
        "smaps" => &["/proc/self/smaps"],
        "elf" => &["/bin/true"],
        _ => &[],
    };
    let extra = root.join("target/fuzz-seeds/host").join(target);
    fs::create_dir_all(&extra)?;
    for (i, h) in host.iter().enumerate() {
        // Copied first: /proc files change as they are read and have no size.
        if let Ok(data) = fs::read(h) {
            let p = extra.join(format!("{i}"));
            fs::write(&p, &data[..data.len().min(MAX_LEN as usize)])?;
            out.push(p);
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            walk(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}
