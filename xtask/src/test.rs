//! `cargo xtask test`: set up, build the binaries the integration tests drive, run every test,
//! and print one total line. Tests that need root fail instead of skipping when CI=true.
//!
//! As aya's xtask does, it reads cargo's JSON messages rather than libtest's text: `cargo test
//! --no-run --message-format=json` names the test binaries it built, and each runs with
//! libtest's JSON output, whose events say which tests passed, failed, were ignored, or said
//! `skipping` (a root-only test without root, see `tests/integration/util`).
use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{setup, util};

/// The churn test's full path in the integration binary.
const CHURN_TEST: &str = "hostile::churn_of_a_thousand_cgroups_a_second_for_a_minute";

/// Seconds per fuzz target in the short pass that ends a full test run.
const SHORT_FUZZ_SECONDS: u32 = 15;

/// What one or more test binaries did.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
    skipped: u64,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, o: Totals) {
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
        self.skipped += o.skipped;
    }
}

/// A test binary cargo built: which package, which target, where.
struct TestBinary {
    package_dir: PathBuf,
    target: String,
    executable: PathBuf,
}

/// Builds the tests `cargo_args` select and lists their binaries, from cargo's JSON messages.
fn build_tests(cargo_args: &[String]) -> anyhow::Result<Vec<TestBinary>> {
    let mut cmd = util::cargo();
    cmd.args(["test", "--no-run", "--message-format=json-render-diagnostics"]).args(cargo_args);
    cmd.current_dir(util::workspace()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    eprintln!("+ cargo test --no-run --message-format=json-render-diagnostics {}", cargo_args.join(" "));
    let mut child = cmd.spawn().context("cargo test --no-run")?;
    let mut out = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else { continue };
        let manifest = PathBuf::from(msg["manifest_path"].as_str().unwrap_or_default());
        out.push(TestBinary {
            package_dir: manifest.parent().map(PathBuf::from).unwrap_or_else(util::workspace),
            target: msg["target"]["name"].as_str().unwrap_or("?").to_string(),
            executable: PathBuf::from(exe),
        });
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("building the tests failed: {status}");
    }
    Ok(out)
}

/// Runs one test binary with libtest's JSON events and counts them, echoing a line per test
/// (and the output of those that failed).
fn run_binary(bin: &TestBinary, test_args: &[String]) -> anyhow::Result<(Totals, bool)> {
    let mut cmd = Command::new(&bin.executable);
    // libtest's JSON format is unstable; RUSTC_BOOTSTRAP allows it on a stable toolchain, as
    // .cargo/config.toml does for the build.
    cmd.args(["-Z", "unstable-options", "--format", "json", "--show-output"]).args(test_args);
    cmd.env("RUSTC_BOOTSTRAP", "1").current_dir(&bin.package_dir).stdout(Stdio::piped()).stderr(Stdio::inherit());
    eprintln!("+ {} {}  ({})", bin.executable.display(), test_args.join(" "), bin.target);
    let mut child = cmd.spawn().with_context(|| format!("running {}", bin.executable.display()))?;
    let mut t = Totals::default();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        let Ok(ev) = serde_json::from_str::<Value>(&line) else {
            println!("{line}"); // a test's own output under --nocapture
            continue;
        };
        if ev["type"] != "test" {
            continue;
        }
        let name = ev["name"].as_str().unwrap_or("?");
        let output = ev["stdout"].as_str().unwrap_or("");
        match ev["event"].as_str() {
            Some("ok") if output.lines().any(|l| l.starts_with("skipping ")) => {
                t.skipped += 1;
                println!("test {name} ... skipped");
            }
            Some("ok") => {
                t.passed += 1;
                println!("test {name} ... ok");
            }
            Some("failed") => {
                t.failed += 1;
                println!("test {name} ... FAILED\n---- {name} output ----\n{output}");
            }
            Some("ignored") => {
                t.ignored += 1;
                println!("test {name} ... ignored");
            }
            _ => {}
        }
    }
    let status = child.wait()?;
    Ok((t, status.success()))
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let full = args.is_empty();
    // The integration tests run the real `memwatch` binary (cargo does not build another
    // package's binary for them) and, in the arm64 VMs, memwatch and the workload built for
    // arm64, cross-compiled as the image's arm64 binary is: the builds the fresh-machine check
    // makes too.
    util::run(&mut crate::fresh::host_build())?;
    if root {
        // The DaemonSet test runs the image: build it for both platforms (release binaries,
        // amd64 from the host's cargo, arm64 cross-compiled; bases by debootstrap, arm64's
        // under qemu-user).
        crate::image::build(false, &crate::image::Arch::ALL)?;
        util::run(&mut crate::fresh::arm64_build())?;
    }
    // A full run first checks that the set-up works on a fresh machine (a clean container),
    // and says so at the end whatever the tests do.
    let fresh = (full && root).then(|| crate::fresh::run(None));
    // Arguments before `--` select what cargo builds, those after go to the test binaries.
    let (cargo_args, test_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let bins = build_tests(cargo_args)?;
    // A full run keeps the churn test for last, alone: the kernel frees the 60,000 memory
    // cgroups it removes one by one in the background, holding their css ids for minutes, and
    // a test after it that waits for a css id to be handed over would wait in vain.
    let mut totals = Totals::default();
    let mut ok = true;
    for bin in &bins {
        let mut targs = test_args.to_vec();
        if full && bin.target == "integration" {
            targs.extend(["--skip".into(), CHURN_TEST.into()]);
        }
        let (t, success) = run_binary(bin, &targs)?;
        totals += t;
        ok &= success;
    }
    if full {
        let integration = bins.iter().find(|b| b.target == "integration").context("no integration test binary was built")?;
        // Its figures (pace, lag, the daemon's RSS) in CI's log.
        let (t, success) = run_binary(integration, &["--exact".into(), CHURN_TEST.into(), "--nocapture".into()])?;
        totals += t;
        ok &= success;
    }
    println!("memwatch: {} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored + totals.skipped);
    if let Some(Err(e)) = fresh {
        return Err(e.context("the fresh-machine check (cargo xtask fresh) failed"));
    }
    if !ok || totals.failed > 0 {
        bail!("tests failed");
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    // The whole suite (no filter) ends with a short pass of every fuzz target: a regression in
    // a parser's robustness shows here, a longer hunt is `cargo xtask fuzz`.
    if full {
        eprintln!("+ cargo xtask fuzz --seconds {SHORT_FUZZ_SECONDS}");
        crate::fuzz::run(SHORT_FUZZ_SECONDS, &[], false)?;
    }
    Ok(())
}
