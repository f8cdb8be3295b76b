//! The on-disk OOM event journal: JSON lines in `<state-dir>/oom-events.jsonl`, appended and
//! synced per event, compacted to the last `max_events` (with a baseline line carrying the
//! per-cgroup kill counts of what was dropped, so reconciliation survives compaction).
//! A truncated or garbled journal is cut back to its last good line, with a warning.

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::event::Event;

pub const FILE_NAME: &str = "oom-events.jsonl";

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("state directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("journal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Event(Box<Event>),
    /// Kill counts per cgroup id of events compacted away.
    Baseline(HashMap<u64, u64>),
}

/// What a journal held when opened.
#[derive(Debug, Default)]
pub struct Loaded {
    pub events: Vec<Event>,
    pub baseline: HashMap<u64, u64>,
    /// Set when a bad tail was dropped: says where and how much.
    pub warning: Option<String>,
    /// The journal did not exist: memwatch's first run with this state directory.
    pub fresh: bool,
}

/// Parses journal text: every line up to the first bad one. Returns what parsed and the byte
/// length of the good prefix.
pub fn parse(text: &str) -> (Loaded, usize) {
    let mut loaded = Loaded::default();
    let mut good = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let parsed = line.ends_with('\n').then(|| serde_json::from_str::<Line>(line.trim_end()).ok()).flatten();
        match parsed {
            Some(Line::Event(e)) => loaded.events.push(*e),
            Some(Line::Baseline(b)) => {
                for (id, n) in b {
                    *loaded.baseline.entry(id).or_default() += n;
                }
            }
            None => {
                loaded.warning =
                    Some(format!("line {} is truncated or garbled: dropped it and the {} bytes after", i + 1, text.len() - good));
                break;
            }
        }
        good += line.len();
    }
    (loaded, good)
}

pub struct Journal {
    path: PathBuf,
    file: File,
    lines: usize,
    max_events: usize,
    baseline: HashMap<u64, u64>,
}

impl Journal {
    /// Opens (creating) the journal in `dir`, cutting a bad tail off.
    pub fn open(dir: &Path, max_events: usize) -> Result<(Journal, Loaded), JournalError> {
        fs::create_dir_all(dir).map_err(|source| JournalError::Dir { path: dir.to_path_buf(), source })?;
        let path = dir.join(FILE_NAME);
        let io_err = |source| JournalError::Io { path: path.clone(), source };
        let (bytes, fresh) = match fs::read(&path) {
            Ok(b) => (b, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), true),
            Err(e) => return Err(io_err(e)),
        };
        let text = String::from_utf8_lossy(&bytes);
        let (mut loaded, good) = parse(&text);
        loaded.fresh = fresh;
        // Invalid UTF-8 shows up as a parse failure before `good`, so byte offsets agree.
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err)?;
        if good < bytes.len() {
            file.set_len(good as u64).map_err(io_err)?;
        }
        let lines = loaded.events.len() + usize::from(!loaded.baseline.is_empty());
        let journal = Journal { path, file, lines, max_events, baseline: loaded.baseline.clone() };
        Ok((journal, loaded))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and syncs; past twice `max_events` lines the file is compacted.
    pub fn append(&mut self, event: &Event) -> io::Result<()> {
        self.append_line(&Line::Event(Box::new(event.clone())))
    }

    /// Appends kill counts per cgroup id that no event stands for (kills from before memwatch
    /// started), so a restart does not report them as missed.
    pub fn append_baseline(&mut self, counts: &HashMap<u64, u64>) -> io::Result<()> {
        for (id, n) in counts {
            *self.baseline.entry(*id).or_default() += n;
        }
        self.append_line(&Line::Baseline(counts.clone()))
    }

    fn append_line(&mut self, l: &Line) -> io::Result<()> {
        let mut line = serde_json::to_string(l).map_err(io::Error::other)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()?;
        self.lines += 1;
        if self.lines > 2 * self.max_events {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the file as a baseline line (what it had, plus the counts of the events
    /// dropped) and its last `max_events` events, atomically.
    fn compact(&mut self) -> io::Result<()> {
        let text = fs::read_to_string(&self.path)?;
        let (loaded, _) = parse(&text);
        let recent = loaded.events;
        self.baseline = loaded.baseline;
        let keep_from = recent.len().saturating_sub(self.max_events);
        for e in recent[..keep_from].iter().filter(|e| e.is_kill()) {
            for id in &e.cgroup_ids {
                *self.baseline.entry(*id).or_default() += e.count;
            }
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut out = serde_json::to_string(&Line::Baseline(self.baseline.clone())).map_err(io::Error::other)?;
            out.push('\n');
            for e in &recent[keep_from..] {
                out.push_str(&serde_json::to_string(&Line::Event(Box::new(e.clone()))).map_err(io::Error::other)?);
                out.push('\n');
            }
            f.write_all(out.as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.lines = 1 + recent.len() - keep_from;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oom::event::tests::event;

    #[test]
    fn good_lines_then_a_bad_tail() {
        let a = serde_json::to_string(&Line::Event(Box::new(event(1, 10)))).unwrap();
        let b = serde_json::to_string(&Line::Event(Box::new(event(2, 10)))).unwrap();
        let text = format!("{a}\n{b}\n{{\"event\": {{\"seq\": 3, garbage\n{a}\n");
        let (loaded, good) = parse(&text);
        assert_eq!(loaded.events.len(), 2);
        assert_eq!(good, a.len() + b.len() + 2);
        assert!(loaded.warning.unwrap().contains("line 3"));
    }

    #[test]
    fn a_truncated_last_line_is_dropped() {
        let a = serde_json::to_string(&Line::Event(Box::new(event(1, 10)))).unwrap();
        let text = format!("{a}\n{}", &a[..a.len() / 2]);
        let (loaded, good) = parse(&text);
        assert_eq!((loaded.events.len(), good), (1, a.len() + 1));
        assert!(loaded.warning.is_some());
        let (clean, _) = parse(&format!("{a}\n"));
        assert!(clean.warning.is_none());
    }

    #[test]
    fn compaction_keeps_the_last_and_a_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, loaded) = Journal::open(dir.path(), 3).unwrap();
        assert!(loaded.events.is_empty() && loaded.fresh);
        j.append_baseline(&HashMap::from([(10, 5)])).unwrap();
        for seq in 1..=10 {
            j.append(&event(seq, 10 + seq % 2)).unwrap();
        }
        let (_, loaded) = Journal::open(dir.path(), 3).unwrap();
        let seqs: Vec<u64> = loaded.events.iter().map(|e| e.seq).collect();
        assert!(seqs.ends_with(&[8, 9, 10]), "{seqs:?}");
        // Every kill is still counted, in the events or the baseline.
        let mut counts: HashMap<u64, u64> = loaded.baseline.clone();
        for e in &loaded.events {
            for id in &e.cgroup_ids {
                *counts.entry(*id).or_default() += e.count;
            }
        }
        assert_eq!(counts[&10] + counts[&11], 15, "ten events and a baseline of five");
        assert_eq!(counts[&1], 10, "the shared ancestor");
        assert!(!loaded.fresh);
    }

    #[test]
    fn times_come_back_from_the_journal_to_the_bit() {
        // serde_json parses floats exactly only with `float_roundtrip`: without it about one
        // time in eight came back one ulp off, and a kill's instant in a trace could move by 1 µs.
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1000).unwrap();
        let times: Vec<f64> = (1..=200u64).map(|seq| 1_795_387_124.0 + (seq * 7_919 % 1_000_003) as f64 / 1_000_003.0).collect();
        for (seq, t) in (1..).zip(&times) {
            j.append(&Event { time: *t, ..event(seq, 10) }).unwrap();
        }
        let (_, loaded) = Journal::open(dir.path(), 1000).unwrap();
        assert_eq!(loaded.events.len(), times.len());
        let off = loaded.events.iter().zip(&times).filter(|(e, t)| e.time.to_bits() != t.to_bits()).count();
        assert_eq!(off, 0, "times that came back changed, of {}", times.len());
    }

    #[test]
    fn garbled_file_is_cut_back_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let a = serde_json::to_string(&Line::Event(Box::new(event(1, 10)))).unwrap();
        fs::write(dir.path().join(FILE_NAME), format!("{a}\n\u{0}\u{0}binary junk")).unwrap();
        let (mut j, loaded) = Journal::open(dir.path(), 100).unwrap();
        assert_eq!(loaded.events.len(), 1);
        assert!(loaded.warning.is_some());
        j.append(&event(2, 10)).unwrap();
        let (_, again) = Journal::open(dir.path(), 100).unwrap();
        assert_eq!(again.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert!(again.warning.is_none());
    }
}
