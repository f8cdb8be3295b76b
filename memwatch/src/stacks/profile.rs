//! Stacks written out: summed per stack and named ([`Profile`]), then as pprof (the protobuf
//! `go tool pprof` reads, gzipped, sample type "bytes faulted in"), folded stacks (one line per
//! stack, root first, the flame-graph tools' input), an SVG flame graph (inferno), or the short
//! JSON summary OOM events and `memwatch top` carry ([`StackUse`]).

use std::{collections::HashMap, io::Write};

use serde::{Deserialize, Serialize};

use super::{Entry, Frame, Stack, symbolize::Names};
use crate::parse::perfmap;

/// One stack and what it faulted in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackUse {
    /// Bytes it faulted in: samples × the sampling period × the page size.
    pub bytes: u64,
    pub samples: u64,
    /// Frames, leaf first.
    pub frames: Vec<String>,
    /// The top frame in the program's own code (its executable, not its runtime's or a
    /// library's functions), where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<String>,
    /// The program's own frame and the named frames leafward of it that are not a runtime's,
    /// at most three: `main.handleExport → encoding/json.Marshal`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
}

impl StackUse {
    /// For people, on one line: what it faulted in, its own frame and callee (else its top
    /// frames, leaf first).
    pub fn line(&self) -> String {
        let path = if self.path.is_empty() {
            self.frames.iter().take(3).cloned().collect::<Vec<_>>().join(" ← ")
        } else {
            self.path.join(" → ")
        };
        format!("{:>10}  {path}", crate::units::human(self.bytes as f64))
    }
}

/// The container's sampled fault stacks over the window before a kill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventStacks {
    /// The sampling period: one user page fault in this many was sampled.
    pub period: u64,
    pub window_seconds: f64,
    pub samples: u64,
    /// Bytes the samples stand for.
    pub bytes: u64,
    /// The share of samples whose stack had at most two frames (code built without frame
    /// pointers: most distributions' C and C++, JIT-compiled code).
    pub short_share: f64,
    /// The stacks that faulted in most, most first.
    pub top: Vec<StackUse>,
    /// The victim's own top stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim: Option<StackUse>,
    /// How long before the event the first of these samples was drained: the sampler counted
    /// the container since about then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_sampled_seconds_before: Option<f64>,
    /// What the container grew by over the window (anonymous memory, else its working set),
    /// to say what share of the growth the samples stand for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth_bytes: Option<u64>,
}

impl EventStacks {
    /// The share of the container's growth over the window that the samples stand for, where
    /// the growth is known and notable.
    pub fn share_of_growth(&self) -> Option<f64> {
        self.growth_bytes.filter(|g| *g >= 4 << 20).map(|g| self.bytes as f64 / g as f64)
    }
}

/// Stacks an OOM event lists.
pub const EVENT_STACKS: usize = 5;

/// Function names of runtimes' own code, not the program's.
fn runtime_frame(name: &str) -> bool {
    ["runtime.", "runtime/", "internal/", "syscall.", "sync.", "aeshash", "gcWriteBarrier"].iter().any(|p| name.starts_with(p))
}

/// Whether a Go function is of Go's standard library (a package path whose first element has
/// no dot, other than `main`): in a Go binary every frame is in the executable, so the
/// program's own code is `main` and modules named by a domain (`github.com/...`).
fn go_std(name: &str) -> bool {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let pkg_end = name[slash..].find('.').map_or(name.len(), |i| slash + i);
    let pkg = &name[..pkg_end];
    pkg != "main" && !pkg.split('/').next().unwrap_or("").contains('.')
}

/// Stacks summed and named.
pub struct Profile {
    /// (stack, samples), most first.
    pub stacks: Vec<(Stack, u64)>,
    pub samples: u64,
    /// Bytes per sample.
    pub unit: u64,
    pub period: u64,
}

impl Profile {
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a Entry>, period: u64, page_size: u64) -> Profile {
        let mut by: HashMap<Stack, u64> = HashMap::new();
        for e in entries {
            *by.entry(e.stack.clone()).or_default() += e.samples;
        }
        let mut stacks: Vec<(Stack, u64)> = by.into_iter().collect();
        stacks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.len().cmp(&b.0.len())));
        let samples = stacks.iter().map(|(_, n)| n).sum();
        Profile { stacks, samples, unit: period.saturating_mul(page_size), period }
    }

    pub fn short_share(&self) -> f64 {
        let short: u64 = self.stacks.iter().filter(|(s, _)| s.len() <= 2).map(|(_, n)| n).sum();
        if self.samples == 0 { 0.0 } else { short as f64 / self.samples as f64 }
    }

    fn names(stack: &[Frame], names: &Names) -> Vec<String> {
        stack.iter().map(|f| names.frame(f)).collect()
    }

    /// The top frame in the program's own code, and the path from it to the function it
    /// called (`main.handleExport → encoding/json.Marshal`).
    pub fn own(stack: &[Frame], names: &Names) -> (Option<String>, Vec<String>) {
        let named: Vec<Option<std::sync::Arc<str>>> = stack.iter().map(|f| names.function(f)).collect();
        // A Go stack ends in Go's runtime (`runtime.main`, `runtime.goexit`).
        let go = named.iter().flatten().any(|n| n.starts_with("runtime."));
        // Where a JIT compiled the program's code (JavaScript, Java), that code is the
        // program's own; the runtime's executable around it (V8 in `node`) is not.
        let jit = stack.iter().any(|f| f.jit);
        let own_code = |f: &Frame, n: &str| {
            if jit { f.jit && !perfmap::is_runtime(n) } else { f.main && !runtime_frame(n) && !(go && go_std(n)) }
        };
        let Some(i) = stack.iter().zip(&named).position(|(f, n)| n.as_deref().is_some_and(|n| own_code(f, n))) else {
            return (None, vec![]);
        };
        let own = named[i].as_deref().map(String::from);
        let callee =
            named[..i].iter().rev().flatten().find(|n| !runtime_frame(n) && !perfmap::is_runtime(n) && Some(&***n) != own.as_deref());
        let path = own.iter().cloned().chain(callee.map(|c| c.to_string())).collect();
        (own, path)
    }

    fn stack_use(&self, s: &[Frame], k: u64, names: &Names) -> StackUse {
        let (own, path) = Self::own(s, names);
        StackUse { bytes: k.saturating_mul(self.unit), samples: k, frames: Self::names(s, names), own, path }
    }

    /// The `n` stacks that faulted in most, stacks that read the same (other lines of the same
    /// functions) counted as one.
    pub fn top(&self, n: usize, names: &Names) -> Vec<StackUse> {
        let mut out: Vec<StackUse> = Vec::new();
        let mut seen: HashMap<Vec<String>, usize> = HashMap::new();
        for (s, k) in &self.stacks {
            let u = self.stack_use(s, *k, names);
            match seen.get(&u.frames) {
                Some(i) => {
                    out[*i].samples += u.samples;
                    out[*i].bytes += u.bytes;
                }
                None => {
                    seen.insert(u.frames.clone(), out.len());
                    out.push(u);
                }
            }
        }
        out.sort_by_key(|u| std::cmp::Reverse(u.samples));
        out.truncate(n);
        out
    }

    /// What an OOM event says of these stacks: the top `n`, and the top of process `victim`
    /// among `entries`.
    pub fn for_event(
        entries: &[&Entry],
        period: u64,
        page_size: u64,
        window_seconds: f64,
        victim: Option<u32>,
        time: f64,
        names: &Names,
    ) -> Option<EventStacks> {
        let p = Profile::of(entries.iter().copied(), period, page_size);
        if p.samples == 0 {
            return None;
        }
        let victim = victim.and_then(|pid| {
            let v = Profile::of(entries.iter().copied().filter(|e| e.tgid == pid), period, page_size);
            v.stacks.first().map(|(s, k)| v.stack_use(s, *k, names))
        });
        Some(EventStacks {
            period,
            window_seconds,
            samples: p.samples,
            bytes: p.samples.saturating_mul(p.unit),
            short_share: p.short_share(),
            top: p.top(EVENT_STACKS, names),
            victim,
            first_sampled_seconds_before: entries.iter().map(|e| e.time).min_by(f64::total_cmp).map(|t| (time - t).max(0.0)),
            growth_bytes: None,
        })
    }

    /// One line per stack, root first, `;`-separated, then the bytes it faulted in.
    pub fn folded(&self, names: &Names) -> String {
        let mut out = String::new();
        for (s, k) in &self.stacks {
            let mut frames = Self::names(s, names);
            if frames.is_empty() {
                frames.push("[no user stack]".into());
            }
            frames.reverse();
            let line: Vec<String> = frames.into_iter().map(|f| f.replace([';', ' ', '\n'], "_")).collect();
            out += &format!("{} {}\n", line.join(";"), k.saturating_mul(self.unit));
        }
        out
    }

    /// An SVG flame graph of the folded stacks.
    pub fn svg(&self, names: &Names, title: &str) -> Result<Vec<u8>, String> {
        let folded = self.folded(names);
        let mut opts = inferno::flamegraph::Options::default();
        opts.title = title.to_string();
        opts.count_name = "bytes faulted in".into();
        let mut out = Vec::new();
        if folded.is_empty() {
            // inferno refuses an empty profile; an empty graph says the same.
            let _ = write!(
                out,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1200\" height=\"60\"><text x=\"10\" y=\"30\">{title}: no samples</text></svg>"
            );
            return Ok(out);
        }
        inferno::flamegraph::from_lines(&mut opts, folded.lines(), &mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// The pprof profile, gzipped.
    pub fn pprof(&self, names: &Names, duration_seconds: f64) -> Vec<u8> {
        let mut strings = Strings::default();
        let string = |s: &str, strings: &mut Strings| strings.index(s);
        let mut functions: Vec<pb::Function> = Vec::new();
        let mut function_ids: HashMap<String, u64> = HashMap::new();
        let mut locations: Vec<pb::Location> = Vec::new();
        let mut location_ids: HashMap<(u32, u64), u64> = HashMap::new();
        let mut mappings: Vec<pb::Mapping> = Vec::new();
        let mut mapping_ids: HashMap<super::ObjectId, u64> = HashMap::new();
        let mut samples = Vec::new();
        for (s, k) in &self.stacks {
            let mut ids = Vec::with_capacity(s.len());
            for f in s.iter() {
                let key = (f.object.0, f.offset);
                let id = match location_ids.get(&key) {
                    Some(id) => *id,
                    None => {
                        let name = names.frame(f);
                        let fid = match function_ids.get(&name) {
                            Some(id) => *id,
                            None => {
                                let id = functions.len() as u64 + 1;
                                let n = string(&name, &mut strings);
                                let file = names.object(f.object).map(|o| string(&o, &mut strings)).unwrap_or(0);
                                functions.push(pb::Function { id, name: n, system_name: n, filename: file, start_line: 0 });
                                function_ids.insert(name, id);
                                id
                            }
                        };
                        let mapping_id = if f.object == super::ObjectId::UNKNOWN {
                            0
                        } else {
                            *mapping_ids.entry(f.object).or_insert_with(|| {
                                let id = mappings.len() as u64 + 1;
                                let filename = names.object(f.object).map(|o| string(&o, &mut strings)).unwrap_or(0);
                                // Addresses are offsets in the file: a mapping of the whole file at 0.
                                mappings.push(pb::Mapping {
                                    id,
                                    memory_start: 0,
                                    memory_limit: u64::MAX,
                                    file_offset: 0,
                                    filename,
                                    has_functions: true,
                                });
                                id
                            })
                        };
                        let id = locations.len() as u64 + 1;
                        locations.push(pb::Location {
                            id,
                            mapping_id,
                            address: f.offset,
                            line: vec![pb::Line { function_id: fid, line: 0 }],
                        });
                        location_ids.insert(key, id);
                        id
                    }
                };
                ids.push(id);
            }
            samples.push(pb::Sample { location_id: ids, value: vec![*k as i64, k.saturating_mul(self.unit) as i64] });
        }
        // Bytes last and named the default: what `go tool pprof` shows unless told otherwise.
        let bytes_type = string("bytes faulted in", &mut strings);
        let sample_type = vec![
            pb::ValueType { r#type: string("samples", &mut strings), unit: string("count", &mut strings) },
            pb::ValueType { r#type: bytes_type, unit: string("bytes", &mut strings) },
        ];
        let period_type = Some(pb::ValueType { r#type: string("page faults", &mut strings), unit: string("count", &mut strings) });
        let profile = pb::Profile {
            sample_type,
            sample: samples,
            mapping: mappings,
            location: locations,
            function: functions,
            string_table: strings.list,
            duration_nanos: (duration_seconds * 1e9) as i64,
            period_type,
            period: self.period as i64,
            default_sample_type: bytes_type,
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = gz.write_all(&prost::Message::encode_to_vec(&profile));
        gz.finish().unwrap_or_default()
    }
}

/// pprof's string table: each string once, the empty one first.
struct Strings {
    list: Vec<String>,
    index: HashMap<String, i64>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings { list: vec![String::new()], index: HashMap::from([(String::new(), 0)]) }
    }
}

impl Strings {
    fn index(&mut self, s: &str) -> i64 {
        if let Some(i) = self.index.get(s) {
            return *i;
        }
        self.list.push(s.to_string());
        let i = self.list.len() as i64 - 1;
        self.index.insert(s.to_string(), i);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::go_std;

    #[test]
    fn go_standard_library_or_the_programs_own() {
        for std in ["encoding/json.Marshal", "bytes.(*Buffer).grow", "net/http.HandlerFunc.ServeHTTP", "runtime.mallocgc"] {
            assert!(go_std(std), "{std}");
        }
        for own in ["main.handleExport", "main.main.func1", "github.com/acme/api/export.(*Writer).Write", "example.com/x.F"] {
            assert!(!go_std(own), "{own}");
        }
    }
}

/// pprof's `profile.proto`, the fields memwatch writes, declared with prost's derive (tags as in
/// the .proto) rather than generated at build time: that would need `protoc` and a vendored
/// .proto for seven small messages. The pprof crate itself is a CPU profiler, not a writer.
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}
