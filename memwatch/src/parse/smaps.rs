//! `/proc/<pid>/smaps`: one entry per mapping, its header line (range, permissions, file) and
//! the sizes memwatch uses (`Rss`, `Anonymous`, `Swap`). Other keys are skipped, so newer
//! kernels' extra lines break nothing.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SmapsError {
    #[error("line {line}: not a mapping header: {text:?}")]
    Header { line: usize, text: String },
    #[error("line {line}: a size before any mapping")]
    Orphan { line: usize },
}

/// One mapping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// `rwxp` / `r--s` as the kernel prints them.
    pub perms: String,
    pub inode: u64,
    /// The file, a `[name]` (`[heap]`, `[stack]`, `[vdso]`, `[anon:...]`), or empty.
    pub path: String,
    pub rss_bytes: u64,
    pub anon_bytes: u64,
    pub swap_bytes: u64,
}

impl Mapping {
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Neither readable, writable nor executable: reserved address space or a guard.
    pub fn is_prot_none(&self) -> bool {
        self.perms.starts_with("---")
    }

    pub fn is_shared(&self) -> bool {
        self.perms.as_bytes().get(3) == Some(&b's')
    }

    /// Not backed by a file (anonymous, possibly named with `[anon:...]`).
    pub fn is_anonymous(&self) -> bool {
        self.inode == 0 && (self.path.is_empty() || self.path.starts_with("[anon:"))
    }
}

fn header(line: &str) -> Option<Mapping> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?;
    let _offset = it.next()?;
    let _dev = it.next()?;
    let inode = it.next()?.parse().ok()?;
    let path = it.next().unwrap_or("").trim_start().to_string();
    let (s, e) = range.split_once('-')?;
    let (start, end) = (u64::from_str_radix(s, 16).ok()?, u64::from_str_radix(e, 16).ok()?);
    if end < start || perms.len() != 4 {
        return None;
    }
    Some(Mapping { start, end, perms: perms.to_string(), inode, path, ..Mapping::default() })
}

/// Parses smaps text into its mappings, in address order as the kernel lists them.
pub fn parse(text: &str) -> Result<Vec<Mapping>, SmapsError> {
    let mut out: Vec<Mapping> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        // Size lines are `Key:   N kB`; VmFlags and THPeligible have no unit.
        if let Some((key, rest)) = line.split_once(':')
            && !key.contains(' ')
            && !key.contains('-')
        {
            let Some(m) = out.last_mut() else { return Err(SmapsError::Orphan { line: i + 1 }) };
            let kib = || rest.trim().strip_suffix("kB").and_then(|v| v.trim().parse::<u64>().ok()).and_then(|v| v.checked_mul(1024));
            match key {
                "Rss" => m.rss_bytes = kib().unwrap_or(0),
                "Anonymous" => m.anon_bytes = kib().unwrap_or(0),
                "Swap" => m.swap_bytes = kib().unwrap_or(0),
                _ => {}
            }
            continue;
        }
        out.push(header(line).ok_or_else(|| SmapsError::Header { line: i + 1, text: line.chars().take(80).collect() })?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
00400000-00614000 r-xp 00000000 fe:00 1234                       /tmp/gomem
Size:               2128 kB
Rss:                1024 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
c000000000-c000400000 rw-p 00000000 00:00 0 
Size:               4096 kB
Rss:                 512 kB
Anonymous:           512 kB
Swap:                  8 kB
THPeligible:    1
VmFlags: rd wr mr mw me ac
7f8000b84000-7f8000b86000 r-xp 00000000 00:00 0                  [vdso]
Size:                  8 kB
Rss:                   4 kB
7f8000b87000-7f8000bad000 r-xp 00001000 fe:00 99                 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 (deleted)
Rss:                 152 kB
";

    #[test]
    fn mappings_and_their_sizes() {
        let m = parse(SAMPLE).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!((m[0].start, m[0].end, m[0].perms.as_str(), m[0].inode), (0x400000, 0x614000, "r-xp", 1234));
        assert_eq!((m[0].path.as_str(), m[0].rss_bytes), ("/tmp/gomem", 1 << 20));
        assert!(m[1].is_anonymous() && m[1].path.is_empty());
        assert_eq!((m[1].rss_bytes, m[1].anon_bytes, m[1].swap_bytes, m[1].size()), (512 << 10, 512 << 10, 8 << 10, 4 << 20));
        assert_eq!(m[2].path, "[vdso]");
        assert!(m[3].path.ends_with("(deleted)"), "a path keeps its spaces");
    }

    #[test]
    fn garbage_is_an_error_not_a_guess() {
        assert_eq!(parse("Rss: 4 kB\n"), Err(SmapsError::Orphan { line: 1 }));
        assert!(matches!(parse("zzzz-yyyy r-xp 0 0 0\n"), Err(SmapsError::Header { line: 1, .. })));
        assert!(matches!(parse("1000-0fff r-xp 0 0:0 0\n"), Err(SmapsError::Header { .. })), "end before start");
        assert_eq!(parse(""), Ok(vec![]));
    }
}
