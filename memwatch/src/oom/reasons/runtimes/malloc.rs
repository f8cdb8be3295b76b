//! glibc's advice, for any program: per-thread malloc arenas holding a notable share of a
//! process's resident memory (read by `crate::runtime::malloc`) get `MALLOC_ARENA_MAX`.

use crate::{
    oom::{
        event::{Event, Reason},
        reasons::{ReasonKind, h, reason},
    },
    runtime::{Facts, MallocFacts, ProcessFacts},
};

/// The arena advice for the processes of an event whose arenas held a notable share.
pub fn advise(e: &Event) -> Vec<Reason> {
    e.runtimes.iter().filter(|p| p.malloc.as_ref().is_some_and(MallocFacts::notable)).map(advice).take(1).collect()
}

fn advice(p: &ProcessFacts) -> Reason {
    let m = p.malloc.as_ref().expect("filtered");
    let python = matches!(p.runtime, Some(Facts::Python(_)));
    reason(
        ReasonKind::GlibcArenas,
        format!(
            "glibc's per-thread malloc arenas held {} of the {} resident in {} ({} arenas, 64 MiB reserved each): glibc gives threads \
             that malloc at once arenas of their own, and memory freed in one is not reused by another; set MALLOC_ARENA_MAX=2 (all \
             threads then share two arenas, at a small cost in lock contention).{}",
            h(m.arena_rss_bytes),
            h(m.rss_bytes),
            p.who(),
            m.arenas,
            if python { " Python has no heap limit of its own: nothing in the interpreter stops this growth." } else { "" }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{oom::event::tests::event, runtime::python::PythonFacts};

    const MIB: u64 = 1 << 20;

    #[test]
    fn notable_arenas_get_the_advice() {
        let facts = |arena_rss, rss, max: Option<&str>| MallocFacts {
            arenas: 8,
            arena_rss_bytes: arena_rss,
            rss_bytes: rss,
            arena_max: max.map(String::from),
        };
        let mut e = event(1, 10);
        e.runtimes = vec![ProcessFacts {
            pid: 5,
            comm: "python3".into(),
            runtime: Some(Facts::Python(PythonFacts { version: Some("3.11".into()) })),
            malloc: Some(facts(200 * MIB, 300 * MIB, None)),
            app: None,
        }];
        let r = advise(&e);
        assert_eq!(r.len(), 1);
        assert!(r[0].text.contains("MALLOC_ARENA_MAX=2") && r[0].text.contains("python3 (pid 5)"), "{}", r[0].text);
        assert!(r[0].text.contains("Python has no heap limit"), "{}", r[0].text);
    }
}
