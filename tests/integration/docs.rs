//! The generated parts of the docs, kept true: each command page's `--help` (from the real
//! binary), the metrics table (from the families in the code and memwatch's own registry), and
//! the definition of at risk (from `memwatch::risk`). A part that differs fails the test, with
//! the command that rewrites it: `MEMWATCH_UPDATE_DOCS=1`; review the diff.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use memwatch::{expose::render, risk, selfmetrics::SelfMetrics};

use crate::util;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `doc`'s text between `<!-- generated:NAME:begin -->` (or `help:`) and its end marker,
/// replaced by `want`; an error names what differs.
fn check_block(doc: &str, begin: &str, end: &str, want: &str) -> Result<(), String> {
    let path = workspace().join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let a = text.find(begin).unwrap_or_else(|| panic!("{doc} has no {begin}")) + begin.len();
    let b = a + text[a..].find(end).unwrap_or_else(|| panic!("{doc} has no {end}"));
    let block = format!("\n{}", want.trim_end().to_string() + "\n");
    if text[a..b] == block {
        return Ok(());
    }
    if std::env::var_os("MEMWATCH_UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{block}{}", &text[..a], &text[b..])).unwrap();
        return Ok(());
    }
    Err(format!("{doc}: the part between {begin} and {end} is out of date (MEMWATCH_UPDATE_DOCS=1 rewrites it); it should be:\n{block}"))
}

#[test]
fn each_command_page_shows_the_binarys_own_help() {
    let mut stale = Vec::new();
    for cmd in ["serve", "top", "events", "explain", "profile", "trace", "check", "recommend"] {
        let out = Command::new(util::memwatch_bin()).args([cmd, "--help"]).env("COLUMNS", "100").output().unwrap();
        assert!(out.status.success(), "memwatch {cmd} --help: {}", String::from_utf8_lossy(&out.stderr));
        let help = format!("```\n$ memwatch {cmd} --help\n{}```", String::from_utf8(out.stdout).unwrap());
        if let Err(e) = check_block(&format!("docs/commands/{cmd}.md"), "<!-- help:begin -->", "<!-- help:end -->", &help) {
            stale.push(e);
        }
    }
    assert!(stale.is_empty(), "{}", stale.join("\n"));
}

#[test]
fn the_metrics_reference_is_the_code_s_families() {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut rows = vec!["| family | type | labels | what |".to_string(), "|---|---|---|---|".to_string()];
    for (m, per_container) in render::families() {
        let labels = match (per_container, m.labels.is_empty()) {
            (true, true) => "container".to_string(),
            (true, false) => format!("container, `{}`", m.labels.replace(", ", "`, `")),
            (false, true) => String::new(),
            (false, false) => format!("`{}`", m.labels.replace(", ", "`, `")),
        };
        rows.push(format!("| `{}` | {} | {labels} | {} |", m.name, m.ty.name(), cell(m.help)));
    }
    // memwatch's own registry: a labelled family appears once it has a child.
    let own = SelfMetrics::new();
    own.scrape_seconds.with_label_values(&["text"]);
    for f in own.gather() {
        let ty = format!("{:?}", f.get_field_type()).to_lowercase();
        let labels: Vec<String> =
            f.get_metric().first().map(|m| m.get_label().iter().map(|l| format!("`{}`", l.name())).collect()).unwrap_or_default();
        rows.push(format!("| `{}` | {ty} | {} | {} |", f.name(), labels.join(", "), cell(f.help())));
    }
    let table = rows.join("\n");
    check_block("docs/reference/metrics.md", "<!-- generated:metrics:begin -->", "<!-- generated:metrics:end -->", &table).unwrap();
    // Every family the golden exposition has is in the table.
    let golden = std::fs::read_to_string(workspace().join("tests/fixtures/golden/k8s-v2-systemd.prom")).unwrap();
    for family in golden.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()) {
        assert!(table.contains(&format!("`{family}`")) || table.contains(&format!("`{family}_total`")), "{family} is not in the reference");
    }
}

#[test]
fn the_warnings_page_states_the_code_s_definition_of_at_risk() {
    let def = format!("At risk: {}.", risk::describe());
    check_block("docs/concepts/warnings.md", "<!-- generated:risk:begin -->", "<!-- generated:risk:end -->", &def).unwrap();
}
