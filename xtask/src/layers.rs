//! The layers of the `memwatch` crate, bottom to top, and the check `cargo xtask lint` runs:
//! no module imports (`crate::…`) one above its own. The one list of them is [`LAYERS`]; the
//! README's and CONTRIBUTING's layer lists are checked against it.
//!
//! As import-linter's "layers" contract does for Python: a module may use any module below it
//! and the modules of its own layer that the layer lists as independent of each other use none
//! of each other. Test modules (`#[cfg(test)]` items) and comments are exempt: a test may build
//! its fixtures from any layer, and a doc link names without depending.
use std::path::Path;

/// Bottom to top. Modules in one inner list are one layer: they may not import each other.
/// `lib` is the crate root (`crate::Roots`, `crate::unix_seconds`); `units` and `allocator`
/// are leaves every layer may use.
pub(crate) const LAYERS: &[&[&str]] = &[
    &["lib", "units", "allocator"],
    &["parse"],
    &["host"],
    &["apps"],
    &["runtime"],
    &["probes"],
    &["collector"],
    &["snapshot"],
    &["model"],
    &["risk"],
    &["rightsize"],
    &["stacks"],
    &["history"],
    &["selfmetrics"],
    &["oom"],
    &["sampler"],
    &["pipeline"],
    &["expose", "explain"],
    &["http", "top"],
];

/// One import that points up (or sideways within a layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub file: String,
    pub line: usize,
    pub from: String,
    pub to: String,
    pub text: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}` (layer {}) imports `{}` (layer {}), which is not below it: {}",
            self.file,
            self.line,
            self.from,
            layer_of(&self.from).map_or("?".into(), |l| l.to_string()),
            self.to,
            layer_of(&self.to).map_or("?".into(), |l| l.to_string()),
            self.text.trim()
        )
    }
}

/// The layer index of a top-level module (None: not listed).
pub(crate) fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file of `src/` belongs to (`oom/reasons/mod.rs` → `oom`, `lib.rs` →
/// `lib`); None for the binary's own files (`main.rs`, `cli/`), which sit above every layer.
pub(crate) fn module_of(rel: &str) -> Option<String> {
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "main" && name != "cli").then(|| name.to_string())
}

/// `text` with comments blanked and `#[cfg(test)]` items removed, line numbers kept.
fn code_lines(text: &str) -> Vec<String> {
    // Comments first (line comments, block comments; strings are left alone but for `//` in
    // them, which is rare in `use` lines and harmless elsewhere: only `crate::` paths matter).
    let mut out = Vec::new();
    let mut in_block = 0usize;
    for line in text.lines() {
        let mut kept = String::new();
        let b = line.as_bytes();
        let mut i = 0;
        let mut in_str = false;
        while i < b.len() {
            if in_block > 0 {
                if b[i..].starts_with(b"*/") {
                    in_block -= 1;
                    i += 2;
                } else if b[i..].starts_with(b"/*") {
                    in_block += 1;
                    i += 2;
                } else {
                    i += 1;
                }
                continue;
            }
            if in_str {
                if b[i] == b'\\' {
                    kept.push_str(&line[i..(i + 2).min(b.len())]);
                    i += 2;
                    continue;
                }
                if b[i] == b'"' {
                    in_str = false;
                }
                kept.push(b[i] as char);
                i += 1;
                continue;
            }
            if b[i..].starts_with(b"//") {
                break;
            }
            if b[i..].starts_with(b"/*") {
                in_block += 1;
                i += 2;
                continue;
            }
            if b[i] == b'"' {
                in_str = true;
            }
            // Keep ASCII as is; anything else becomes a space (only ASCII paths matter).
            kept.push(if b[i].is_ascii() { b[i] as char } else { ' ' });
            i += 1;
        }
        out.push(kept);
    }
    // Then test items: from `#[cfg(test)]` to the end of the item it marks (its braces, or
    // its `;`).
    let mut i = 0;
    while i < out.len() {
        if out[i].trim_start().starts_with("#[cfg(test)]") {
            let mut depth = 0i64;
            let mut opened = false;
            let mut j = i;
            'item: while j < out.len() {
                let line = std::mem::take(&mut out[j]);
                let start = if j == i { line.find("#[cfg(test)]").map_or(0, |p| p + "#[cfg(test)]".len()) } else { 0 };
                for c in line[start..].chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        ';' if !opened => break 'item,
                        _ => {}
                    }
                    if opened && depth == 0 {
                        break 'item;
                    }
                }
                j += 1;
            }
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The top-level modules a code line names through `crate::`: `crate::oom::Event`,
/// `use crate::{oom::Event, stacks}`, across lines for a braced `use` (`pending` carries an open
/// `use crate::{` group's depth to the next line).
fn named(line: &str, pending: &mut Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    let take_idents = |s: &str, depth: &mut usize, out: &mut Vec<String>| -> bool {
        // Inside `crate::{ … }`: the first identifier of each top-level item.
        let mut expect = true;
        let mut ident = String::new();
        for c in s.chars() {
            if c.is_ascii_alphanumeric() || c == '_' {
                if expect {
                    ident.push(c);
                }
                continue;
            }
            if !ident.is_empty() {
                if *depth == 1 && ident != "self" {
                    out.push(std::mem::take(&mut ident));
                }
                ident.clear();
                expect = false;
            }
            match c {
                '{' => *depth += 1,
                '}' => {
                    *depth -= 1;
                    if *depth == 0 {
                        return true;
                    }
                }
                ',' if *depth == 1 => expect = true,
                _ => {}
            }
        }
        if !ident.is_empty() && *depth == 1 {
            out.push(ident);
        }
        false
    };
    let mut rest = line;
    if let Some(mut depth) = pending.take() {
        if !take_idents(rest, &mut depth, &mut out) {
            *pending = Some(depth);
        }
        return out;
    }
    while let Some(p) = rest.find("crate::") {
        let before_ok =
            p == 0 || !rest.as_bytes()[p - 1].is_ascii_alphanumeric() && rest.as_bytes()[p - 1] != b'_' && rest.as_bytes()[p - 1] != b':';
        let after = &rest[p + "crate::".len()..];
        if before_ok {
            if let Some(group) = after.strip_prefix('{') {
                let mut depth = 1;
                if !take_idents(group, &mut depth, &mut out) {
                    *pending = Some(depth);
                    return out;
                }
            } else {
                let ident: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !ident.is_empty() {
                    out.push(ident);
                }
            }
        }
        rest = after;
    }
    out
}

/// The upward (and sideways) imports among `files` (paths relative to `src/`, their text).
pub(crate) fn check(files: &[(String, String)]) -> Result<Vec<Violation>, String> {
    let modules: std::collections::HashSet<String> = files.iter().filter_map(|(p, _)| module_of(p)).collect();
    for m in &modules {
        if layer_of(m).is_none() {
            return Err(format!("module `{m}` is in no layer: add it to LAYERS in xtask/src/layers.rs"));
        }
    }
    let mut out = Vec::new();
    for (path, text) in files {
        let Some(from) = module_of(path) else { continue };
        let from_layer = layer_of(&from).expect("checked above");
        let mut pending = None;
        for (n, line) in code_lines(text).iter().enumerate() {
            for to in named(line, &mut pending) {
                if to == from {
                    continue;
                }
                // Crate-root items (`crate::Roots`) and macros are layer 0.
                let to_layer = if modules.contains(&to) { layer_of(&to).expect("checked above") } else { 0 };
                let to_name = if modules.contains(&to) { to.clone() } else { "lib".to_string() };
                if to_layer >= from_layer && to_name != from {
                    out.push(Violation {
                        file: path.clone(),
                        line: n + 1,
                        from: from.clone(),
                        to: to_name,
                        text: text.lines().nth(n).unwrap_or_default().to_string(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Every `.rs` file under `src`, relative to it, with its text.
pub(crate) fn read_tree(src: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src)?.to_string_lossy().into_owned();
                out.push((rel, std::fs::read_to_string(&p)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The layers as one line each, bottom first (for the docs' list).
pub(crate) fn describe() -> String {
    LAYERS.iter().map(|l| l.join(", ")).collect::<Vec<_>>().join(" → ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect()
    }

    #[test]
    fn a_planted_upward_import_is_named_with_its_line() {
        let f = files(&[
            ("parse/mod.rs", "//! parsers\npub fn x() {}\n"),
            ("host/mod.rs", "use crate::parse;\n\nuse crate::oom::Event;\n"),
            ("oom/mod.rs", "use crate::{host, parse::x};\n"),
        ]);
        let v = check(&f).unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!((v[0].file.as_str(), v[0].line, v[0].from.as_str(), v[0].to.as_str()), ("host/mod.rs", 3, "host", "oom"));
        assert!(v[0].to_string().contains("host/mod.rs:3: `host` (layer 2) imports `oom`"), "{}", v[0]);
    }

    #[test]
    fn braced_groups_across_lines_paths_in_code_and_sideways_imports() {
        let f = files(&[
            (
                "runtime/mod.rs",
                "use crate::{\n    host::procs,\n    explain::layout::Class,\n};\nfn f() { let _ = crate::stacks::risk(); }\n",
            ),
            ("expose/mod.rs", "use crate::explain::x;\n"),
            ("explain/mod.rs", ""),
            ("host/mod.rs", ""),
            ("stacks/mod.rs", ""),
        ]);
        let v = check(&f).unwrap();
        let got: Vec<(usize, &str, &str)> = v.iter().map(|v| (v.line, v.from.as_str(), v.to.as_str())).collect();
        assert_eq!(got, [(3, "runtime", "explain"), (5, "runtime", "stacks"), (1, "expose", "explain")], "{v:?}");
    }

    #[test]
    fn tests_comments_and_the_binary_are_exempt() {
        let f = files(&[
            (
                "host/mod.rs",
                "/// See [`crate::oom::Event`].\n// crate::oom\n/* crate::oom */\nfn a() {}\n#[cfg(test)]\nmod tests {\n    use crate::oom::Event;\n    fn b() { if x { } }\n}\n#[cfg(test)]\nuse crate::oom::y;\nfn after() { crate::oom::z(); }\n",
            ),
            ("oom/mod.rs", ""),
            ("main.rs", "use memwatch::oom;\nmod cli;\n"),
            ("cli/mod.rs", "use crate::cli::x;"),
        ]);
        let v = check(&f).unwrap();
        assert_eq!(v.iter().map(|v| v.line).collect::<Vec<_>>(), [12], "only the code after the test items: {v:?}");
    }

    #[test]
    fn a_module_in_no_layer_is_an_error() {
        let e = check(&files(&[("brandnew/mod.rs", "")])).unwrap_err();
        assert!(e.contains("`brandnew` is in no layer"), "{e}");
    }
}
