//! The warnings' precision and recall over the corpus of real software (`tests/corpus.rs`):
//! calm services left alone under roomy limits while programs are run out of memory beside
//! them, under the release daemon (and, with `MEMWATCH_BENCH_BASELINE=/path/to/an/older/memwatch`,
//! that one first, in the same session). Prints, per case, its warnings, its kills and the lead
//! of the warning before each kill; then precision (warnings followed by a kill of their
//! container) and recall (kills preceded by a warning in force).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

#[path = "../integration/util/cgroup.rs"]
#[allow(dead_code)]
mod cgroup;
mod common;
#[path = "../corpus.rs"]
mod corpus;

/// A daemon under test, killed when dropped.
struct Daemon {
    child: Child,
    base: String,
    _state: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path) -> Daemon {
    let port = corpus::free_port();
    let state = tempfile::tempdir().unwrap();
    let help = Command::new(bin).args(["serve", "--help"]).output().unwrap();
    let scoped = String::from_utf8_lossy(&help.stdout).contains("--cgroups.include");
    let mut c = Command::new(bin);
    c.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--interval", "500ms", "--state-dir"]).arg(state.path());
    if scoped {
        c.args(["--cgroups.include", &corpus::include()]);
    }
    // The API on the same port, for a binary that has two doors.
    if String::from_utf8_lossy(&help.stdout).contains("--listen.api") {
        c.args(["--listen.api", &format!("127.0.0.1:{port}")]);
    }
    let child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{base}/readyz")).call().is_err() {
        assert!(Instant::now() < deadline, "{} did not get ready", bin.display());
        thread::sleep(Duration::from_millis(200));
    }
    Daemon { child, base, _state: state }
}

/// (kind, time) of every event of the cgroup labelled `cgroup`.
fn events(d: &Daemon) -> Vec<(String, String, f64)> {
    let v: serde_json::Value = ureq::get(&format!("{}/api/v1/events", d.base)).call().unwrap().into_json().unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["cgroup"].as_str().unwrap_or("").to_string(),
                e["kind"].as_str().unwrap_or("oom_kill").to_string(),
                e["time"].as_f64().unwrap_or(0.0),
            )
        })
        .collect()
}

struct Row {
    case: &'static str,
    calm: bool,
    warnings: Vec<f64>,
    kills: Vec<f64>,
}

fn run(bin: &Path) -> Vec<Row> {
    let d = start(bin);
    let calm: Vec<corpus::Running> = corpus::CALM.iter().map(|n| corpus::start_calm(n)).collect();
    let started = Instant::now();
    let mut labels: Vec<(&'static str, bool, String)> = calm.iter().map(|r| (r.name, true, r.cgroup.label())).collect();
    let mut kept = Vec::new();
    for name in corpus::KILLS {
        let k = corpus::run_kill(name);
        labels.push((name, false, k.run.cgroup.label()));
        // Seconds more, for the warning after a kill (the tmpfs case) and the event.
        thread::sleep(Duration::from_secs(3));
        kept.push(k);
    }
    while started.elapsed() < corpus::CALM_FOR {
        thread::sleep(Duration::from_secs(1));
    }
    let all = events(&d);
    labels
        .into_iter()
        .map(|(case, calm, label)| {
            let of = |kind: &str| all.iter().filter(|(c, k, _)| *c == label && k == kind).map(|(_, _, t)| *t).collect::<Vec<_>>();
            Row { case, calm, warnings: of("warning"), kills: of("oom_kill") }
        })
        .collect()
}

/// How long before a kill a warning must have been raised to count (it stays in force until
/// cleared; a warning 10 minutes old is the one that speaks for the kill).
const IN_FORCE: f64 = 600.0;

fn report(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!("{:<22} {:>6} {:>9} {:>6} {:>16}", "case", "kind", "warnings", "kills", "warned before");
    let (mut warned_then_killed, mut warnings, mut kills, mut killed_after_warning) = (0, 0, 0, 0);
    let mut leads = Vec::new();
    for r in rows {
        let lead: Vec<f64> = r
            .kills
            .iter()
            .filter_map(|k| r.warnings.iter().filter(|w| *w < k && k - *w < IN_FORCE).map(|w| k - w).reduce(f64::max))
            .collect();
        warnings += r.warnings.len();
        warned_then_killed += r.warnings.iter().filter(|w| r.kills.iter().any(|k| k > w && k - *w < IN_FORCE)).count();
        kills += r.kills.len();
        killed_after_warning += lead.len();
        leads.extend(lead.iter().copied());
        let lead = if lead.is_empty() { "-".to_string() } else { lead.iter().map(|l| format!("{l:.0} s")).collect::<Vec<_>>().join(", ") };
        println!("{:<22} {:>6} {:>9} {:>6} {:>16}", r.case, if r.calm { "calm" } else { "kill" }, r.warnings.len(), r.kills.len(), lead);
    }
    let pct = |a: usize, b: usize| if b == 0 { "-".to_string() } else { format!("{:.0}% ({a}/{b})", 100.0 * a as f64 / b as f64) };
    println!("precision (warnings followed by a kill): {}", pct(warned_then_killed, warnings));
    println!("recall (kills preceded by a warning):     {}", pct(killed_after_warning, kills));
    println!("warnings on calm services:               {}", rows.iter().filter(|r| r.calm).map(|r| r.warnings.len()).sum::<usize>());
    if !leads.is_empty() {
        println!("lead of the warning before a kill:       {}", leads.iter().map(|l| format!("{l:.0} s")).collect::<Vec<_>>().join(", "));
    }
}

fn main() {
    if !common::root_or_skip("run real software in memory cgroups") {
        return;
    }
    if let Some(base) = std::env::var_os("MEMWATCH_BENCH_BASELINE").map(PathBuf::from) {
        report(&format!("baseline {}", base.display()), &run(&base));
    }
    report("this build", &run(&common::release_memwatch()));
}
