//! Why it died, for every runtime: real JVMs, Node.js and glibc programs killed in real
//! cgroups through the real daemon, each explanation giving the number to set, and the same
//! program with that number applied stopped by its own runtime instead of by the kernel. Also:
//! the grower that was not the victim, a JVM in its own pid namespace, a garbled
//! performance-data file, and a secret in JAVA_TOOL_OPTIONS that appears nowhere.
use std::{
    io::{BufRead, BufReader, Read},
    os::unix::process::ExitStatusExt,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use memwatch::{
    oom::{Event, event::ReasonKind},
    runtime::Facts,
};

use crate::util::{
    self, Workload,
    cgroup::TestCgroup,
    daemon::Daemon,
    oom::{MIB, event_for, reason, run_until_killed},
    programs,
};

/// A daemon sampling every 500 ms with a 1 s slow cadence (runtime figures, malloc arenas).
fn start(state: &std::path::Path) -> Daemon {
    Daemon::start(&["--interval", "500ms", "--slow-interval", "1s", "--state-dir", state.to_str().unwrap()])
}

/// `java -cp <the test classes> ARGS`, its code warmed in the page cache outside any test
/// cgroup (see `util::oom::warm`).
fn java(args: &[&str]) -> Command {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        let mut c = Command::new("java");
        c.arg("-cp").arg(programs::java_classes()).args(["Grow", "hold", "1"]).stdin(Stdio::null());
        util::oom::warm(c);
    });
    let mut c = Command::new("java");
    c.arg("-cp").arg(programs::java_classes()).args(args);
    c
}

/// Runs `cmd` in `cg` to its end (not a kill): its exit status and what it wrote to stderr.
fn run_to_end(mut cmd: Command, cg: &TestCgroup) -> (std::process::ExitStatus, String) {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cg.join_before_exec(&mut cmd);
    let mut child = cmd.spawn().expect("start");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (child.wait().unwrap(), err)
}

/// The text of `kind` in `e`, or a failure that shows the event.
fn must(e: &Event, kind: ReasonKind) -> &str {
    reason(e, kind.clone()).unwrap_or_else(|| panic!("no {kind:?} in {:#?}", e.explanation))
}

#[test]
fn a_jvm_heap_above_the_limit_gets_the_advice_and_throws_instead_with_it() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("jvmheap", 256 * MIB);
    let (pid, lived) = run_until_killed(java(&["-Xmx512m", "Grow", "heap"]), &cg);
    eprintln!("the JVM lived {lived:?}");
    let e = event_for(&d, &cg, pid);
    let text = must(&e, ReasonKind::JvmHeapAboveLimit);
    assert!(text.contains("512.0 MiB (set by -Xmx512m), 200% of the container's 256.0 MiB limit"), "{text}");
    assert!(text.contains("-XX:MaxRAMPercentage=75 (a heap of about 192.0 MiB) or -Xmx192m"), "{text}");
    let jvm = e.runtimes.iter().find(|p| p.pid == pid).and_then(|p| p.runtime.as_ref());
    assert!(matches!(jvm, Some(Facts::Jvm(j)) if j.flags.max_heap_bytes == Some(512 * MIB)), "{:#?}", e.runtimes);
    // The advice taken: the JVM stops itself with OutOfMemoryError, the kernel kills nothing.
    let kills = cg.oom_kills();
    let (st, err) = run_to_end(java(&["-XX:MaxRAMPercentage=75", "Grow", "heap"]), &cg);
    assert_ne!(st.signal(), Some(libc::SIGKILL), "killed again: {err}");
    assert!(err.contains("java.lang.OutOfMemoryError: Java heap space"), "{st}: {err}");
    assert_eq!(cg.oom_kills(), kills, "no kernel kill with the advice");
}

#[test]
fn a_small_jvm_heap_with_growing_direct_buffers_is_native_growth() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("jvmdirect", 256 * MIB);
    let (pid, _) = run_until_killed(java(&["-Xmx64m", "-XX:MaxDirectMemorySize=1g", "Grow", "direct"]), &cg);
    let e = event_for(&d, &cg, pid);
    let text = must(&e, ReasonKind::JvmNativeGrowth);
    assert!(text.contains("was small and not full") && text.contains("of a 64.0 MiB maximum"), "{text}");
    assert!(text.contains("direct ByteBuffers") && text.contains("set -XX:MaxDirectMemorySize=128m"), "{text}");
    assert!(reason(&e, ReasonKind::JvmHeapAboveLimit).is_none(), "the heap fit: {:#?}", e.explanation);
    // The advice taken: the JVM throws instead.
    let (st, err) = run_to_end(java(&["-Xmx64m", "-XX:MaxDirectMemorySize=128m", "Grow", "direct"]), &cg);
    assert_ne!(st.signal(), Some(libc::SIGKILL), "killed again: {err}");
    assert!(err.contains("OutOfMemoryError") && err.to_lowercase().contains("direct buffer memory"), "{st}: {err}");
}

#[test]
fn node_without_flags_gets_max_old_space_size_and_stops_itself_with_it() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let mut warmup = Command::new("node");
    warmup.arg(programs::node_script()).arg("report");
    util::oom::warm(warmup);
    let cg = TestCgroup::new("node", 128 * MIB);
    // memwatch's figure for V8's heap limit is V8's own, in the same cgroup.
    let mut report = Command::new("node");
    report.arg(programs::node_script()).arg("report").stdout(Stdio::piped());
    cg.join_before_exec(&mut report);
    let v8_limit: u64 = String::from_utf8(report.output().unwrap().stdout).unwrap().trim().parse().unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(programs::node_script());
    let (pid, _) = run_until_killed(cmd, &cg);
    let e = event_for(&d, &cg, pid);
    let text = must(&e, ReasonKind::NodeHeapAboveLimit);
    let node = e.runtimes.iter().find(|p| p.pid == pid).and_then(|p| p.runtime.as_ref());
    let Some(Facts::Node(n)) = node else { panic!("no Node.js facts: {:#?}", e.runtimes) };
    assert_eq!(n.heap_limit(Some(128 * MIB), e.machine_memory_bytes.unwrap()), v8_limit, "V8 says {v8_limit}: {text}");
    let advice = memwatch::runtime::node::advised_mib(128 * MIB);
    assert!(text.contains(&format!("set --max-old-space-size≈{advice}")), "{text}");
    // The advice taken, on the command line and in NODE_OPTIONS: V8's own heap error.
    for (flag, env) in [(Some(format!("--max-old-space-size={advice}")), None), (None, Some(format!("--max-old-space-size={advice}")))] {
        let mut cmd = Command::new("node");
        cmd.args(flag.iter()).arg(programs::node_script());
        if let Some(v) = &env {
            cmd.env("NODE_OPTIONS", v);
        }
        let (st, err) = run_to_end(cmd, &cg);
        assert_ne!(st.signal(), Some(libc::SIGKILL), "killed again: {err}");
        assert!(err.contains("JavaScript heap out of memory"), "{st}: {err}");
    }
}

#[test]
fn a_threaded_c_program_dominated_by_glibc_arenas_gets_malloc_arena_max() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("arenas", 128 * MIB);
    let mut cmd = Command::new(programs::memtest());
    // 8 threads at 64 KiB per 40 ms: 12.5 MiB/s, about 2 s between 80% of the limit (where
    // the largest process's arenas are read, once a slow period of 1 s) and the kill. At 10 ms
    // the band lasted under half a second and a busy machine could miss it.
    cmd.args(["arenas", "8", "40"]);
    let (pid, lived) = run_until_killed(cmd, &cg);
    eprintln!("the arena program lived {lived:?}");
    let e = event_for(&d, &cg, pid);
    let text = must(&e, ReasonKind::GlibcArenas);
    assert!(text.contains(&format!("memtest (pid {pid})")) && text.contains("set MALLOC_ARENA_MAX=2"), "{text}");
    let m = e.runtimes.iter().find(|p| p.pid == pid).and_then(|p| p.malloc.as_ref()).expect("arenas read near the limit");
    assert!(m.arenas >= 8 && m.arena_rss_bytes * 2 >= m.rss_bytes, "{m:?}");
}

#[test]
fn the_grower_that_was_not_the_victim_is_named_beside_it() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("grower", 256 * MIB);
    let mut steady = Workload::start(&["fill", "150"], Some(&cg));
    steady.expect_line("ready");
    thread::sleep(Duration::from_millis(1200)); // a sample sees the steady one
    let grower = Workload::start(&["grow", "8192", "200"], Some(&cg));
    let st = steady.child.wait().unwrap();
    util::assert_killed(st, "the steady, larger process");
    let e = event_for(&d, &cg, steady.pid());
    let text = must(&e, ReasonKind::GrowerNotVictim);
    assert!(text.contains(&format!("killed memwatch-worklo (pid {}, ", steady.pid())), "{text}");
    assert!(text.contains(&format!("not the one that grew: memwatch-worklo (pid {})", grower.pid())), "{text}");
    // The log line's summary carries it too.
    assert!(d.log().contains("not the one that grew"), "{}", d.log());
}

#[test]
fn a_jvm_in_its_own_pid_namespace_has_its_performance_data_found() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("jvmns", 512 * MIB);
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "java", "-Xmx128m", "-cp"])
        .arg(programs::java_classes())
        .args(["Grow", "hold", "32"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    cg.join_before_exec(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let java = cg.pids().into_iter().find(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "java"));
    let java = java.expect("the JVM in the cgroup");
    let status = std::fs::read_to_string(format!("/proc/{java}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap().to_string();
    assert!(!nspid.ends_with(&format!("\t{java}")), "its own pid namespace: {nspid}");
    d.wait_until("the JVM's heap figures", Duration::from_secs(15), || {
        d.metrics()
            .get_plain("memwatch_container_runtime_heap_bytes", &[("cgroup", &cg.label()), ("runtime", "jvm"), ("kind", "used")])
            .is_some()
    });
    let m = d.metrics();
    let labels = |kind| [("cgroup", cg.label()), ("runtime", "jvm".to_string()), ("kind", kind)];
    let get = |kind: &str| {
        let l = labels(kind.to_string());
        m.get_plain("memwatch_container_runtime_heap_bytes", &l.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>())
    };
    assert!(get("used").unwrap() >= (32 * MIB) as f64, "32 MiB held on the heap: {:?}", get("used"));
    assert_eq!(get("max"), Some((128 * MIB) as f64));
    let limit = m.get_plain("memwatch_container_runtime_heap_limit_bytes", &[("cgroup", &cg.label()), ("runtime", "jvm")]);
    assert_eq!(limit, Some((128 * MIB) as f64));
    drop(child.stdin.take());
    let _ = child.wait();
}

#[test]
fn a_garbled_or_oversized_performance_data_file_falls_back_to_the_command_line() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let dir = tempfile::tempdir().unwrap();
    let mut garbled = std::fs::read(programs::recorded_hsperfdata()).unwrap();
    garbled[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // the first entry's length and name offset
    let cases = [
        ("garbled", garbled),
        ("truncated", std::fs::read(programs::recorded_hsperfdata()).unwrap()[..100].to_vec()),
        ("oversized", vec![0xca; 2 << 20]),
    ];
    let mut standins = Vec::new();
    for (name, bytes) in &cases {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let cg = TestCgroup::new(&format!("perf{name}"), 256 * MIB);
        let mut cmd = Command::new(programs::java_standin());
        cmd.args(["-Xmx96m", "jvm-standin"]).arg(&file).stdin(Stdio::piped()).stdout(Stdio::piped());
        cg.join_before_exec(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        standins.push((cg, child));
    }
    for (cg, _) in &standins {
        d.wait_until("the stand-in's facts", Duration::from_secs(15), || {
            let m = d.metrics();
            m.get_plain("memwatch_container_runtime_heap_limit_bytes", &[("cgroup", &cg.label()), ("runtime", "jvm")]).is_some()
        });
        let m = d.metrics();
        assert_eq!(
            m.get_plain("memwatch_container_runtime_heap_limit_bytes", &[("cgroup", &cg.label()), ("runtime", "jvm")]),
            Some((96 * MIB) as f64),
            "-Xmx96m from the command line"
        );
        assert!(m.get_plain("memwatch_container_runtime_heap_bytes", &[("cgroup", &cg.label())]).is_none(), "no figures from a bad file");
    }
    assert!(d.get("/healthz").unwrap().0 == 200, "the daemon lives on");
    for (_, mut c) in standins {
        drop(c.stdin.take());
        let _ = c.wait();
    }
}

#[test]
fn a_secret_in_java_tool_options_appears_nowhere() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = start(state.path());
    let cg = TestCgroup::new("jvmsecret", 256 * MIB);
    const SECRET: &str = "hunter2-do-not-leak";
    let mut cmd = java(&["-Dtoken=cmdline-hunter2-do-not-leak", "Grow", "heap"]);
    cmd.env("JAVA_TOOL_OPTIONS", format!("-Xmx512m -Dpassword={SECRET}")).env("MEMWATCH_TEST_SECRET", SECRET);
    let (pid, _) = run_until_killed(cmd, &cg);
    let e = event_for(&d, &cg, pid);
    assert!(must(&e, ReasonKind::JvmHeapAboveLimit).contains("-Xmx512m"), "JAVA_TOOL_OPTIONS's memory flag is read");
    let (_, events) = d.get("/api/v1/events").unwrap();
    let (_, containers) = d.get("/api/v1/containers").unwrap();
    let metrics = d.metrics().text;
    let journal = std::fs::read_to_string(state.path().join("oom-events.jsonl")).unwrap();
    let printed = Command::new(util::memwatch_bin()).args(["events", "--no-follow", "--json", "--url", &d.base]).output().unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
    for (what, text) in [
        ("events API", &events),
        ("containers API", &containers),
        ("metrics", &metrics),
        ("journal", &journal),
        ("memwatch events", &printed),
        ("log", &d.log()),
    ] {
        assert!(!text.contains("hunter2"), "the secret in the {what}");
        assert!(!text.contains("MEMWATCH_TEST_SECRET"), "another variable's name in the {what}");
    }
    // While a JVM with the secret lives: `memwatch explain` and the containers API.
    let mut cmd = java(&["Grow", "hold", "8"]);
    cmd.env("JAVA_TOOL_OPTIONS", format!("-Dpassword={SECRET}")).stdin(Stdio::piped()).stdout(Stdio::piped());
    cg.join_before_exec(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    thread::sleep(Duration::from_millis(2500));
    let explain = Command::new(util::memwatch_bin()).args(["explain", "--json", &child.id().to_string()]).output().unwrap();
    let (_, containers) = d.get("/api/v1/containers").unwrap();
    for text in [String::from_utf8_lossy(&explain.stdout).into_owned(), containers] {
        assert!(!text.contains("hunter2"), "{text}");
    }
    drop(child.stdin.take());
    let _ = child.wait();
}
