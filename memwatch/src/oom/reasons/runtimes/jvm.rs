//! What a JVM's figures say about a kill, in plain words with the number to set (pure: from an
//! event's facts alone, read by `crate::runtime::jvm`).

use crate::{
    oom::{
        event::{Event, Reason},
        reasons::{ReasonKind, h, reason},
    },
    runtime::{
        Facts, ProcessFacts,
        jvm::{HeapSource, JvmFacts},
    },
};

const MIB: u64 = 1 << 20;
/// The heap advice: this share of the container's limit (`-XX:MaxRAMPercentage=75`), leaving a
/// quarter for what a JVM needs beside its heap.
pub const HEAP_SHARE: f64 = 0.75;
/// Beside its heap a JVM needs at least its metaspace and this much (code cache, thread
/// stacks, GC structures, the JVM itself).
const BESIDE_HEAP: u64 = 48 * MIB;
/// A heap at least this full is full.
const FULL: f64 = 0.9;

/// The JVMs of an event worth advising on: the victim, and the process that grew most.
fn jvms<'a>(e: &'a Event) -> impl Iterator<Item = (&'a ProcessFacts, &'a JvmFacts)> + 'a {
    let victim = e.victim.as_ref().map(|v| v.pid);
    let grower = e.recent.as_ref().and_then(|r| r.processes.first()).map(|p| p.pid);
    e.runtimes.iter().filter(move |p| Some(p.pid) == victim || Some(p.pid) == grower).filter_map(|p| match &p.runtime {
        Some(Facts::Jvm(j)) => Some((p, &**j)),
        _ => None,
    })
}

/// `-Xmx` as one would write it, in MiB.
fn xmx(bytes: u64) -> String {
    format!("-Xmx{}m", bytes / MIB)
}

/// How a JDK tool takes a JVM option: `-J-Xmx144m` (a `java` launcher takes it as is).
fn as_given(p: &ProcessFacts, option: &str) -> String {
    if p.comm == "java" { option.to_string() } else { format!("-J{option}") }
}

fn source(p: &ProcessFacts, j: &JvmFacts, s: HeapSource, seen: u64) -> String {
    match s {
        HeapSource::Flag => format!("set by {}", as_given(p, &xmx(j.flags.max_heap_bytes.unwrap_or(0)))),
        HeapSource::Percentage => format!("-XX:MaxRAMPercentage={} of {}", j.flags.max_ram_percentage.unwrap_or(0.0), h(seen)),
        HeapSource::Default => format!("HotSpot's default share of the {} it sees", h(seen)),
        HeapSource::Reported => "as the JVM reports it".to_string(),
    }
}

pub fn advise(e: &Event, limit: Option<u64>) -> Vec<Reason> {
    let Some(limit) = limit else { return vec![] };
    let machine = e.machine_memory_bytes.unwrap_or(u64::MAX);
    let anon = e.at_kill.as_ref().and_then(|a| a.anon_bytes).or_else(|| e.victim.as_ref().and_then(|v| v.anon_rss_bytes.or(v.rss_bytes)));
    let mut out = Vec::new();
    for (p, j) in jvms(e) {
        let who = p.who();
        let (max, src) = j.max_heap(Some(limit), machine);
        let beside = j.metaspace_committed() + BESIDE_HEAP;
        let advice = (limit as f64 * HEAP_SHARE) as u64;
        let too_big = max.saturating_add(beside) > limit;
        if too_big {
            // An initial heap above the advice must come down with it (the JVM refuses -Xms
            // above -Xmx); touched whole at start, it is why a JVM dies at once.
            let initial = j.flags.initial_heap_bytes.filter(|i| *i > advice).map_or_else(String::new, |i| {
                format!(
                    " Its initial heap, {}{}, must come down with it, to no more than the new maximum.",
                    as_given(p, &format!("-Xms{}m", i / MIB)),
                    if j.flags.always_pre_touch == Some(true) {
                        " with -XX:+AlwaysPreTouch (the whole initial heap is touched, made resident, as the JVM starts: it is killed \
                         before it runs any code)"
                    } else {
                        ""
                    }
                )
            });
            out.push(reason(
                ReasonKind::JvmHeapAboveLimit,
                format!(
                    "{who} is a JVM whose maximum heap is {} ({}), {:.0}% of the container's {} limit: beside its heap a JVM needs \
                     metaspace ({}), the code cache, thread stacks, GC structures and direct buffers, so the heap cannot grow to its \
                     maximum inside the limit, and the kernel kills the JVM before the JVM would throw OutOfMemoryError. Set {} (a \
                     heap of about {}) or {}: 75% of the limit, leaving a quarter for the rest.{initial}",
                    h(max),
                    source(p, j, src, limit.min(machine)),
                    max as f64 * 100.0 / limit as f64,
                    h(limit),
                    h(j.metaspace_committed()),
                    as_given(p, "-XX:MaxRAMPercentage=75"),
                    h(advice),
                    as_given(p, &xmx(advice))
                ),
            ));
        }
        if let Some(heap) = j.heap.filter(|s| s.max_bytes > 0 && s.used_bytes as f64 >= FULL * s.max_bytes as f64)
            && !too_big
        {
            out.push(reason(
                ReasonKind::JvmHeapFull,
                format!(
                    "The Java heap of {who} was full at the last reading: {} used of its {} maximum. It holds more live objects than \
                     its heap allows: a leak, or a heap too small for its load. A JVM whose heap fits its container throws \
                     java.lang.OutOfMemoryError rather than being killed; run it with -XX:+HeapDumpOnOutOfMemoryError to see what \
                     fills the heap.",
                    h(heap.used_bytes),
                    h(heap.max_bytes)
                ),
            ));
        }
        let heap_at_most = j.heap.map_or(max, |s| s.committed_bytes);
        if let Some(anon) = anon.filter(|a| !too_big && (heap_at_most as f64) < 0.5 * *a as f64) {
            out.push(native(j, &who, heap_at_most, max, anon, limit));
        }
        if j.heap_defaulted() && !too_big {
            out.push(reason(
                ReasonKind::JvmDefaultHeap,
                format!(
                    "No heap size was given to {who}: HotSpot took its default, {} of the {} it sees ({}). -XX:MaxRAMPercentage=75 lets \
                     the heap use more of the container.",
                    if limit.min(machine) < crate::runtime::jvm::SMALL_MEMORY { "50%" } else { "25%" },
                    h(limit.min(machine)),
                    h(max)
                ),
            ));
        }
    }
    out
}

/// Native growth: the heap held a small part of the anonymous memory.
fn native(j: &JvmFacts, who: &str, heap: u64, max: u64, anon: u64, limit: u64) -> Reason {
    let threads = j.threads.map(|t| format!(", thread stacks ({t} threads)")).unwrap_or_else(|| ", thread stacks".into());
    // What direct buffers may take: -XX:MaxDirectMemorySize, by default the maximum heap.
    let room = limit.saturating_sub(max).saturating_sub(j.metaspace_committed()).saturating_sub(64 * MIB).max(16 * MIB);
    let (allowed, set) = match j.flags.max_direct_memory_bytes {
        Some(d) => (d, true),
        None => (max, false),
    };
    let direct = if allowed > room {
        format!(
            " Direct buffers may take up to {} ({}): set -XX:MaxDirectMemorySize={}m (the limit less the maximum heap, metaspace and \
             64 MiB for the rest), and a buffer leak throws an OutOfMemoryError for direct buffer memory instead of the container \
             being killed.",
            h(allowed),
            if set { "-XX:MaxDirectMemorySize" } else { "-XX:MaxDirectMemorySize's default, the maximum heap" },
            room / MIB
        )
    } else {
        format!(
            " Direct buffers are bounded at {}: look at threads and native libraries (-XX:NativeMemoryTracking=summary and jcmd \
             VM.native_memory show where).",
            h(allowed)
        )
    };
    reason(
        ReasonKind::JvmNativeGrowth,
        format!(
            "The Java heap of {who} was small and not full: {} committed{} of a {} maximum, {:.0}% of the {} of anonymous memory at the \
             kill. The rest was native memory: direct ByteBuffers{threads}, metaspace ({}), JNI and malloc.{direct}",
            h(heap),
            j.heap.map(|s| format!(" ({} used)", h(s.used_bytes))).unwrap_or_default(),
            h(max),
            heap as f64 * 100.0 / anon.max(1) as f64,
            h(anon),
            h(j.metaspace_committed())
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        oom::event::tests::event,
        runtime::jvm::{Flags, Launcher},
    };

    /// `javac -J-Xmx1g -J-Xms512m -J-XX:+AlwaysPreTouch`, killed within a second in 192 MiB,
    /// before it wrote its performance data: its options were all there is, and the advice is
    /// about them, as the tool takes them.
    #[test]
    fn a_jdk_tool_killed_at_start_gets_advice_about_its_own_options() {
        let cmd = ["javac", "-J-Xmx1g", "-J-Xms512m", "-J-XX:+AlwaysPreTouch", "A.java"];
        let flags = Flags::from_sources(Launcher::Tool, None, None, &cmd, None, |_| None);
        let mut e = event(1, 10);
        let pid = e.victim.as_ref().unwrap().pid;
        e.runtimes = vec![ProcessFacts {
            pid,
            comm: "javac".into(),
            runtime: Some(Facts::Jvm(Box::new(JvmFacts { flags, ..JvmFacts::default() }))),
            malloc: None,
            app: None,
        }];
        let r = advise(&e, Some(192 * MIB));
        let kinds: Vec<ReasonKind> = r.iter().map(|r| r.kind.clone()).collect();
        assert_eq!(kinds, [ReasonKind::JvmHeapAboveLimit], "{r:#?}");
        let t = &r[0].text;
        assert!(t.contains("maximum heap is 1.0 GiB (set by -J-Xmx1024m)"), "{t}");
        assert!(t.contains("-J-Xmx144m"), "{t}");
        assert!(t.contains("-J-Xms512m with -XX:+AlwaysPreTouch"), "{t}");
        assert!(!t.contains("No heap size was given"), "{t}");
    }
}
