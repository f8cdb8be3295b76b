//! memwatch's answers on real software it did not write (Debian's Prometheus and promtool,
//! PostgreSQL, Redis, memcached, OpenJDK's javac and jshell, Node.js, Python, dd into /dev/shm),
//! each in a real memory cgroup (the corpus: `tests/corpus.rs`): calm services under roomy
//! limits get no warning; each program made to run out of memory gets the right finding, and no
//! advice that contradicts its real settings.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use memwatch::oom::{
    Event, EventKind,
    event::{ReasonKind, VictimRole},
};

use crate::{
    corpus,
    util::{
        self, cgroup,
        daemon::Daemon,
        oom::{reason, victim, warm},
    },
};

/// A daemon watching this corpus's cgroups alone, sampling every 500 ms, journaling in `state`.
fn daemon(state: &std::path::Path) -> Daemon {
    Daemon::start(&["--interval", "500ms", "--cgroups.include", &corpus::include(), "--state-dir", state.to_str().unwrap()])
}

fn of_kind<'a>(events: &'a [Event], cg: &cgroup::TestCgroup, kind: EventKind) -> Vec<&'a Event> {
    events.iter().filter(|e| e.cgroup == cg.label() && e.kind == kind).collect()
}

fn kinds(e: &Event) -> Vec<ReasonKind> {
    e.explanation.iter().map(|r| r.kind.clone()).collect()
}

/// The probe's kill event in the case's cgroup (of `pid` when known).
fn kill_event(d: &Daemon, k: &corpus::Killed) -> Event {
    let cg = &k.run.cgroup;
    let of = |e: &Event| e.kind == EventKind::OomKill && k.victim.is_none_or(|p| victim(e) == p);
    d.wait_until(&format!("{}'s kill event", k.run.name), Duration::from_secs(15), || d.events_in(cg).iter().any(of));
    let e = d.events_in(cg).into_iter().find(of).unwrap();
    eprintln!("{}: {}", k.run.name, memwatch::oom::reasons::summary(&e.explanation));
    e
}

#[test]
fn calm_services_with_roomy_limits_get_no_warning() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = daemon(state.path());
    let running: Vec<corpus::Running> = corpus::CALM.iter().map(|n| corpus::start_calm(n)).collect();
    let started = Instant::now();
    // Each is exported, and each still runs at the end.
    d.wait_until("every calm service's series", Duration::from_secs(30), || {
        let m = d.metrics();
        running.iter().all(|r| m.get("memwatch_container_memory_limit_bytes", &r.cgroup.label(), None).is_some())
    });
    let mut lowest = vec![1.0f64; running.len()];
    while started.elapsed() < corpus::CALM_FOR {
        let m = d.metrics();
        for (i, r) in running.iter().enumerate() {
            if let Some(h) = m.get("memwatch_container_memory_headroom_ratio", &r.cgroup.label(), None) {
                lowest[i] = lowest[i].min(h);
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let all = d.all_events();
    for (r, low) in running.iter().zip(&lowest) {
        eprintln!("{}: lowest headroom {:.0}%", r.name, low * 100.0);
        assert!(!r.cgroup.pids().is_empty(), "{} stopped running", r.name);
        let warned = of_kind(&all, &r.cgroup, EventKind::Warning);
        assert!(warned.is_empty(), "{} got a warning while calm: {warned:#?}", r.name);
    }
}

#[test]
fn each_real_program_run_out_of_memory_gets_its_finding() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = daemon(state.path());
    // Their code in the page cache first, charged outside the test cgroups.
    for (p, a) in [("promtool", "--version"), ("javac", "-version"), ("node", "-v"), ("redis-server", "--version"), ("python3", "-V")] {
        let mut c = Command::new(p);
        c.arg(a);
        warm(c);
    }

    // Go: GOMEMLIMIT unset, with the number for the 64 MiB limit; the main process.
    let k = corpus::run_kill("go-promtool");
    let e = kill_event(&d, &k);
    let t = reason(&e, ReasonKind::GoGomemlimitUnset).unwrap_or_else(|| panic!("{:#?}", e.explanation));
    assert!(t.contains("promtool") && t.contains("set GOMEMLIMIT≈58MiB"), "{t}");
    assert_eq!(e.victim.as_ref().unwrap().role, Some(VictimRole::Main), "{e:#?}");
    drop(k);

    // A JDK tool given its JVM's options as -J: the advice is about them, as javac takes them.
    let k = corpus::run_kill("jvm-javac");
    let e = kill_event(&d, &k);
    let t = reason(&e, ReasonKind::JvmHeapAboveLimit).unwrap_or_else(|| panic!("{:#?}", e.explanation));
    assert!(t.contains("maximum heap is 1.0 GiB (set by -J-Xmx1024m)") && t.contains("-J-Xmx144m"), "{t}");
    assert!(t.contains("-J-Xms512m with -XX:+AlwaysPreTouch"), "{t}");
    assert!(!kinds(&e).contains(&ReasonKind::JvmDefaultHeap), "no advice against its real settings: {:#?}", e.explanation);
    drop(k);

    // Node.js 18 sizes V8's heap from the host's memory.
    let k = corpus::run_kill("node");
    let e = kill_event(&d, &k);
    let t = reason(&e, ReasonKind::NodeHeapAboveLimit).unwrap_or_else(|| panic!("{:#?}", e.explanation));
    assert!(t.contains("--max-old-space-size≈32"), "{t}");
    drop(k);

    // PostgreSQL: a backend killed, the postmaster lives on: said so.
    let k = corpus::run_kill("postgres-sort");
    let e = kill_event(&d, &k);
    let v = e.victim.as_ref().unwrap();
    assert_eq!((v.comm.as_str(), v.role), ("postgres", Some(VictimRole::Child)), "{e:#?}");
    assert!(!k.survivors.contains(&v.pid), "the postmaster was not the victim");
    assert!(k.survivors.iter().all(|p| util::is_alive(*p)), "the postmaster lives on");
    assert!(reason(&e, ReasonKind::ChildKilled).is_some_and(|t| t.contains("the container keeps running")), "{:#?}", e.explanation);
    assert!(reason(&e, ReasonKind::PostgresBackendKilled).is_some_and(|t| t.contains("crash recovery")), "{:#?}", e.explanation);
    assert!(reason(&e, ReasonKind::PostgresWorkMem).is_some_and(|t| t.contains("work_mem≈")), "{:#?}", e.explanation);
    drop(k);

    // Redis without maxmemory: its main process, holding the anonymous memory.
    let k = corpus::run_kill("redis");
    let e = kill_event(&d, &k);
    assert_eq!(e.victim.as_ref().unwrap().role, Some(VictimRole::Main), "{e:#?}");
    let t = reason(&e, ReasonKind::AnonGrowth).unwrap_or_else(|| panic!("{:#?}", e.explanation));
    assert!(t.contains("redis-server"), "{t}");
    assert!(reason(&e, ReasonKind::MainProcessKilled).is_some(), "{:#?}", e.explanation);
    // Started with --save "" --appendonly no: no fork to leave room for.
    assert!(reason(&e, ReasonKind::RedisMaxmemory).is_some_and(|t| t.contains("maxmemory≈67mb")), "{:#?}", e.explanation);
    drop(k);

    // dd into /dev/shm: the tmpfs is the finding; the container is still at risk after the
    // kill, and the warning that follows says what holds its memory. On a busy machine the
    // sampler may catch dd mid-fill: then that warning came first (its parts show the tmpfs)
    // and the kill names it, and there is no second one (one warning an episode).
    let k = corpus::run_kill("tmpfs-dd");
    let e = kill_event(&d, &k);
    assert!(reason(&e, ReasonKind::Shmem).is_some(), "{:#?}", e.explanation);
    let cg = &k.run.cgroup;
    d.wait_until("the warning after the kill", Duration::from_secs(15), || !of_kind(&d.all_events(), cg, EventKind::Warning).is_empty());
    let all = d.all_events();
    let warnings = of_kind(&all, cg, EventKind::Warning);
    let w = warnings[0];
    if w.time < e.time {
        eprintln!("tmpfs-dd: warned {:.1} s before the kill, mid-fill", e.time - w.time);
        assert_eq!(e.warned.as_ref().map(|x| x.seq), Some(w.seq), "the kill names the warning before it: {e:#?}");
        let parts = w.warning.as_ref().and_then(|x| x.parts.as_ref()).unwrap_or_else(|| panic!("{w:#?}"));
        assert!(parts.shmem_bytes > parts.anon_bytes + parts.file_bytes, "{w:#?}");
        assert!(w.explanation[0].text.contains("tmpfs and shared memory hold"), "{}", w.explanation[0].text);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
    } else {
        let t = &w.explanation[0].text;
        assert!(t.contains("It was OOM-killed") && t.contains("tmpfs and shared memory hold"), "{t}");
    }
    drop(k);

    // Two young processes: the kernel killed the one that took its memory at start and held
    // still; the one that grew in the seconds before is named.
    let k = corpus::run_kill("grower-beside-steady");
    let e = kill_event(&d, &k);
    let t = reason(&e, ReasonKind::GrowerNotVictim).unwrap_or_else(|| panic!("the grower unnamed: {:#?}", e.recent));
    assert!(t.contains(&format!("(pid {})", k.grower.unwrap())), "{t}");
    drop(k);
}

/// A leak creeping at about 3 MiB/s toward its limit is warned once, at least 20 s before its
/// kill, and the kill names the warning.
#[test]
fn a_real_program_creeping_to_its_limit_is_warned_20_s_before_its_kill() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = daemon(state.path());
    let k = corpus::run_kill("creep");
    let e = kill_event(&d, &k);
    let all = d.all_events();
    let warnings = of_kind(&all, &k.run.cgroup, EventKind::Warning);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let lead = e.time - warnings[0].time;
    eprintln!("creep: warned {lead:.1} s before its kill: {}", warnings[0].explanation[0].text);
    assert!(lead >= 20.0, "warned only {lead:.1} s before the kill");
    assert_eq!(e.warned.as_ref().map(|w| w.seq), Some(warnings[0].seq));
}
