//! `cargo xtask test`: set up, build the binaries the integration tests drive, run every test,
//! and print one total line. Tests that need root fail instead of skipping when CI=true.
use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    thread,
};

use anyhow::bail;

use crate::{setup, util};

/// The churn test's full path in the integration binary.
const CHURN_TEST: &str = "hostile::churn_of_a_thousand_cgroups_a_second_for_a_minute";

/// Runs `cargo test ARGS`, echoing its output: (passed, failed, ignored, success).
fn cargo_test(args: &[String], skipped_log: &std::path::Path) -> anyhow::Result<(u64, u64, u64, bool)> {
    let mut cmd = util::cargo();
    cmd.arg("test").args(args).env("MEMWATCH_SKIPPED_LOG", skipped_log).stdout(Stdio::piped()).stderr(Stdio::inherit());
    eprintln!("+ cargo test {}", args.join(" "));
    let mut child = cmd.current_dir(util::workspace()).spawn()?;
    let out = child.stdout.take().unwrap();
    // Echo cargo's output as it comes and add up its per-binary result lines.
    let totals = thread::spawn(move || {
        let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let rest = rest.trim_start_matches("ok. ").trim_start_matches("FAILED. ");
                let num = |word: &str| {
                    rest.split(';').find_map(|p| p.trim().strip_suffix(word).and_then(|n| n.trim().parse::<u64>().ok())).unwrap_or(0)
                };
                passed += num("passed");
                failed += num("failed");
                ignored += num("ignored");
            }
        }
        (passed, failed, ignored)
    });
    let status = child.wait()?;
    let (passed, failed, ignored) = totals.join().expect("reader thread");
    Ok((passed, failed, ignored, status.success()))
}

/// Seconds per fuzz target in the short pass that ends a full test run.
const SHORT_FUZZ_SECONDS: u32 = 15;

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    setup::run()?;
    // The integration tests run the real `memwatch` binary; cargo does not build another
    // package's binary for them, so build it first.
    util::run(util::cargo().args(["build", "--bins"]))?;
    // Tests that skip (no root, off CI) write their names here, so they count as skipped.
    let skipped_log = std::env::temp_dir().join(format!("memwatch-skipped-{}", std::process::id()));
    let _ = std::fs::remove_file(&skipped_log);
    // A full run keeps the churn test for last, alone: the kernel frees the 60,000 memory
    // cgroups it removes one by one in the background, holding their css ids for minutes, and
    // a test after it that waits for a css id to be handed over would wait in vain.
    let runs: Vec<Vec<String>> = if args.is_empty() {
        vec![
            vec!["--".into(), "--skip".into(), CHURN_TEST.into()],
            vec![
                "-p".into(),
                "memwatch-tests".into(),
                "--test".into(),
                "integration".into(),
                "--".into(),
                "--exact".into(),
                CHURN_TEST.into(),
                // Its figures (pace, lag, the daemon's RSS) in CI's log.
                "--nocapture".into(),
            ],
        ]
    } else {
        vec![args.to_vec()]
    };
    let (mut passed, mut failed, mut ignored, mut ok) = (0, 0, 0, true);
    for run in &runs {
        let (p, f, i, success) = cargo_test(run, &skipped_log)?;
        (passed, failed, ignored) = (passed + p, failed + f, ignored + i);
        ok &= success;
    }
    let skipped = std::fs::read_to_string(&skipped_log).map(|s| s.lines().count() as u64).unwrap_or(0);
    let _ = std::fs::remove_file(&skipped_log);
    let passed = passed.saturating_sub(skipped);
    println!("memwatch: {passed} passed, {failed} failed, {} skipped", ignored + skipped);
    if !ok || failed > 0 {
        bail!("tests failed");
    }
    if passed == 0 {
        bail!("no test ran");
    }
    // The whole suite (no filter) ends with a short pass of every fuzz target: a regression in
    // a parser's robustness shows here, a longer hunt is `cargo xtask fuzz`.
    if args.is_empty() {
        eprintln!("+ cargo xtask fuzz --seconds {SHORT_FUZZ_SECONDS}");
        crate::fuzz::run(SHORT_FUZZ_SECONDS, &[], false)?;
    }
    Ok(())
}
