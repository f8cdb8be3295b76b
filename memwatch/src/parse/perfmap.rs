//! A JIT's perf map, `/tmp/perf-<pid>.map`: one line per compiled function, `START SIZE name`
//! (hexadecimal, no `0x`), appended as code is compiled (Node's `--perf-basic-prof`, the JVM's
//! `-XX:+DumpPerfMapAtExit` or `jcmd <pid> Compiler.perfmap`, .NET's `DOTNET_PerfMapEnabled=1`).
//! The process writes it, so it is hostile input: garbled lines are skipped, names and the
//! number of entries are bounded.

use std::collections::BTreeMap;

/// Entries kept at most, and the longest name kept (longer ones are cut).
pub const MAX_ENTRIES: usize = 1 << 18;
pub const MAX_NAME: usize = 512;

/// Code ranges and their names; a later line for the same start replaces an earlier one (code
/// freed and its memory reused).
#[derive(Debug, Default)]
pub struct PerfMap {
    by_start: BTreeMap<u64, (u64, Box<str>)>,
}

impl PerfMap {
    /// Parses the whole file (a line cut short at the end is skipped).
    pub fn parse(data: &[u8]) -> PerfMap {
        let mut m = PerfMap::default();
        let _ = m.extend(data);
        m
    }

    /// Adds the complete lines of `data` (what was appended since the last read); returns the
    /// bytes taken, up to the last newline (a line being written is read next time).
    pub fn extend(&mut self, data: &[u8]) -> usize {
        let Some(end) = data.iter().rposition(|b| *b == b'\n') else { return 0 };
        for line in data[..end].split(|b| *b == b'\n') {
            if self.by_start.len() >= MAX_ENTRIES {
                break;
            }
            let Some((start, size, name)) = line_of(line) else { continue };
            self.by_start.insert(start, (start.saturating_add(size), name));
        }
        end + 1
    }

    /// The name of the code holding `addr`: the entry with the greatest start at or below it,
    /// when its range covers it.
    pub fn name(&self, addr: u64) -> Option<&str> {
        let (_, (end, name)) = self.by_start.range(..=addr).next_back()?;
        (addr < *end).then_some(&**name)
    }

    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }
}

fn line_of(line: &[u8]) -> Option<(u64, u64, Box<str>)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.splitn(3, ' ');
    let start = u64::from_str_radix(parts.next()?.trim_start_matches("0x"), 16).ok()?;
    let size = u64::from_str_radix(parts.next()?.trim_start_matches("0x"), 16).ok()?;
    let name = parts.next()?.trim_end_matches('\r');
    if size == 0 || name.is_empty() {
        return None;
    }
    let cut = name.char_indices().nth(MAX_NAME).map_or(name.len(), |(i, _)| i);
    Some((start, size, Box::from(&name[..cut])))
}

/// A JIT's name tidied for people: V8's kind prefix and tier mark go (`JS:*buildRows
/// /app/x.js:2:19` is `buildRows /app/x.js:2:19`, whichever tier ran it), so the same function
/// reads the same interpreted and optimized.
pub fn tidy(name: &str) -> &str {
    let rest = ["JS:", "LazyCompile:", "Function:", "InterpretedFunction:"].iter().find_map(|p| name.strip_prefix(p));
    match rest {
        Some(r) => r.strip_prefix(['*', '~', '^', '+']).unwrap_or(r),
        None => name,
    }
}

/// [`tidy`], and a function V8 has no name for (`JS:* /app/x.js:10:13`) called `(anonymous)`.
pub fn display(name: &str) -> String {
    let t = tidy(name);
    if t.starts_with(' ') { format!("(anonymous){t}") } else { t.to_string() }
}

/// Whether a JIT's entry is the runtime's own code rather than the program's (V8's builtins,
/// stubs and bytecode handlers; the JVM's interpreter and stubs).
pub fn is_runtime(name: &str) -> bool {
    ["Builtin:", "Stub:", "BytecodeHandler:", "Handler:", "RegExp:", "Eval:", "Interpreter", "StubRoutines", "vtable chunks"]
        .iter()
        .any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_code_holding_an_address_and_the_latest_entry_wins() {
        let text = b"18c4000 300 Builtin:DeoptimizationEntry_Eager\n\
            7f3dfefc6540 85c JS:*buildRows /tmp/nj/grow.js:2:19\n\
            7f3dfefc8e40 dc JS:^handleExport /tmp/nj/grow.js:7:22\n\
            garbage line\n\
            zz 10 bad\n\
            10 0 empty\n\
            7f3dfefc8e40 dc JS:*handleExport /tmp/nj/grow.js:7:22\n\
            7f3dfefd0000 20 cut sho";
        let m = PerfMap::parse(text);
        assert_eq!(m.len(), 3, "garbled lines and the last one, cut short, skipped");
        assert_eq!(m.name(0x7f3dfefd0000), None);
        let mut more = PerfMap::default();
        assert_eq!(more.extend(b"1000 10 a\n2000 10 b"), 10, "up to the last newline");
        assert_eq!(m.name(0x7f3dfefc6540), Some("JS:*buildRows /tmp/nj/grow.js:2:19"));
        assert_eq!(m.name(0x7f3dfefc6540 + 0x85b), Some("JS:*buildRows /tmp/nj/grow.js:2:19"));
        assert_eq!(m.name(0x7f3dfefc6540 + 0x85c), None, "past its end");
        assert_eq!(m.name(0x7f3dfefc8e41), Some("JS:*handleExport /tmp/nj/grow.js:7:22"), "the later line wins");
        assert_eq!(m.name(0x10), None);
        assert_eq!(m.name(0), None);
        assert_eq!(tidy("JS:*buildRows /tmp/nj/grow.js:2:19"), "buildRows /tmp/nj/grow.js:2:19");
        assert_eq!(tidy("JS:~buildRows /tmp/nj/grow.js:2:19"), "buildRows /tmp/nj/grow.js:2:19");
        assert_eq!(tidy("LazyCompile:*grow /a.js:1"), "grow /a.js:1");
        assert_eq!(tidy("Ljava/util/ArrayList;::grow"), "Ljava/util/ArrayList;::grow");
        assert_eq!(display("JS:* /tmp/nj/grow.js:10:13"), "(anonymous) /tmp/nj/grow.js:10:13");
        assert_eq!(display("JS:*buildRows /a.js:2:1"), "buildRows /a.js:2:1");
        assert!(is_runtime("Builtin:ArrayPrototypePush") && !is_runtime("JS:*buildRows /a.js:1"));
    }

    #[test]
    fn names_are_bounded() {
        let long = format!("1000 10 {}\n", "é".repeat(4 * MAX_NAME));
        let m = PerfMap::parse(long.as_bytes());
        assert_eq!(m.name(0x1000).map(|n| n.chars().count()), Some(MAX_NAME));
    }
}
