//! The docs' checks that `cargo xtask lint` runs: every relative link in the Markdown files points
//! at a file that exists and, with a `#fragment`, at a heading there (GitHub's anchors); and the
//! layer list in CONTRIBUTING.md is the one in `layers.rs` (`MEMWATCH_UPDATE_DOCS=1` rewrites it).
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::{layers, util};

/// GitHub's anchor for a heading: lower case, punctuation dropped but for `-` and `_`, spaces as
/// `-`.
pub(crate) fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings (outside code blocks), duplicates numbered as
/// GitHub numbers them.
pub(crate) fn anchors(text: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let Some(h) = line.trim_start().strip_prefix('#') else { continue };
        let h = h.trim_start_matches('#');
        if !h.starts_with(' ') {
            continue;
        }
        let base = slug(h);
        let mut s = base.clone();
        let mut n = 0;
        while out.contains(&s) {
            n += 1;
            s = format!("{base}-{n}");
        }
        out.insert(s);
    }
    out
}

/// The relative link targets of a Markdown text (outside code blocks and inline code), with
/// their line numbers.
pub(crate) fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Inline code spans blanked.
        let mut plain = String::with_capacity(line.len());
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            }
            plain.push(if in_code { ' ' } else { c });
        }
        let mut rest = plain.as_str();
        while let Some(p) = rest.find("](") {
            let after = &rest[p + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].trim();
            let target = target.split_whitespace().next().unwrap_or("");
            if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
                out.push((n + 1, target.to_string()));
            }
            rest = &after[end..];
        }
    }
    out
}

/// Every broken relative link among `files` (paths relative to `root`).
pub(crate) fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(root.join(f)) else { continue };
        let dir = f.parent().unwrap_or(Path::new(""));
        for (line, target) in links(&text) {
            let (path, frag) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() { f.clone() } else { dir.join(path) };
            let full = root.join(&file);
            if !full.exists() {
                out.push(format!("{}:{line}: {target}: no such file ({})", f.display(), file.display()));
                continue;
            }
            if let Some(frag) = frag.filter(|_| full.extension().is_some_and(|e| e == "md")) {
                let there = std::fs::read_to_string(&full).unwrap_or_default();
                if !anchors(&there).contains(frag) {
                    out.push(format!("{}:{line}: {target}: {} has no heading #{frag}", f.display(), file.display()));
                }
            }
        }
    }
    out
}

/// The layer list as CONTRIBUTING.md shows it.
fn layer_list() -> String {
    layers::LAYERS
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{}. {}", i + 1, l.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Both checks, on the tracked Markdown files.
pub(crate) fn check() -> anyhow::Result<()> {
    let root = util::workspace();
    let out = std::process::Command::new("git").arg("-C").arg(&root).args(["ls-files", "*.md"]).output().context("git ls-files")?;
    let files: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect();
    let broken = broken_links(&root, &files);
    for b in &broken {
        eprintln!("{b}");
    }
    // The layer list in CONTRIBUTING.md.
    let path = root.join("CONTRIBUTING.md");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let (begin, end) = ("<!-- generated:layers:begin -->", "<!-- generated:layers:end -->");
    let a = text.find(begin).context("CONTRIBUTING.md has no layer list")? + begin.len();
    let b = a + text[a..].find(end).context("CONTRIBUTING.md's layer list has no end")?;
    let want = format!("\n{}\n", layer_list());
    let stale = text[a..b] != want;
    if stale && std::env::var_os("MEMWATCH_UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{want}{}", &text[..a], &text[b..]))?;
    } else if stale {
        eprintln!("CONTRIBUTING.md: the layer list differs from xtask/src/layers.rs (MEMWATCH_UPDATE_DOCS=1 rewrites it):{want}");
    }
    if !broken.is_empty() || (stale && std::env::var_os("MEMWATCH_UPDATE_DOCS").is_none()) {
        bail!("docs: {} broken link(s){}", broken.len(), if stale { ", and a stale layer list" } else { "" });
    }
    eprintln!("docs: {} Markdown files, every relative link and anchor found; the layer list is current", files.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_as_github_makes_them() {
        assert_eq!(slug("Fault stacks: which code grew it"), "fault-stacks-which-code-grew-it");
        assert_eq!(slug("`memwatch serve`"), "memwatch-serve");
        assert_eq!(slug("What it needs from the host"), "what-it-needs-from-the-host");
        let a = anchors("# A\n## B b\n```\n# not a heading\n```\n## B b\n#nospace\n");
        assert_eq!(a, HashSet::from(["a".into(), "b-b".into(), "b-b-1".into()]));
    }

    #[test]
    fn links_outside_code_and_broken_ones_named() {
        let text = "see [x](a.md#top) and `[y](no.md)`\n```\n[z](gone.md)\n```\n[web](https://x.org) [self](#here)\n";
        assert_eq!(links(text), [(1, "a.md#top".to_string()), (5, "#here".to_string())]);
        let dir = tempfile_dir();
        std::fs::write(dir.join("a.md"), "# Top\n").unwrap();
        std::fs::write(dir.join("b.md"), "# Here\n[ok](a.md#top) [bad](a.md#nope) [gone](c.md) [self](#here)\n").unwrap();
        let broken = broken_links(&dir, &[PathBuf::from("b.md")]);
        assert_eq!(broken.len(), 2, "{broken:?}");
        assert!(broken[0].contains("a.md#nope") && broken[0].contains("has no heading #nope"), "{broken:?}");
        assert!(broken[1].contains("c.md: no such file"), "{broken:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-docs-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
