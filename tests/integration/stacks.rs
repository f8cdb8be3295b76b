//! Which code grew: real programs (Go with and without a symbol table, C with frame pointers)
//! killed in real cgroups while the real daemon samples their fault stacks; their events name
//! the function, `memwatch profile` writes what Debian's `go tool pprof` reads; and the
//! at-risk sampler is attached only while a container is at risk, as the kernel's own list
//! of the daemon's programs shows.
use std::{
    collections::HashSet,
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use memwatch::oom::{Event, event::ReasonKind};

use crate::util::{
    self,
    cgroup::TestCgroup,
    daemon::Daemon,
    oom::{MIB, event_for, reason, run_until_killed, run_until_killed_output},
    programs,
};

/// A daemon sampling every 500 ms, draining stacks every second, sampling every container.
fn sampling(state: &std::path::Path) -> Daemon {
    Daemon::start(&["--interval", "500ms", "--slow-interval", "1s", "--stacks", "always", "--state-dir", state.to_str().unwrap()])
}

/// The event's listed stacks that pass through `function`, and the bytes they faulted in.
fn through(e: &Event, function: &str) -> u64 {
    let s = e.stacks.as_ref().unwrap_or_else(|| panic!("no stacks in the event: {e:#?}"));
    s.top.iter().filter(|t| t.frames.iter().any(|f| f == function)).map(|t| t.bytes).sum()
}

/// A Go program grows in `main.handleExport` (JSON responses it keeps) until the kernel kills
/// it; the event names the function, with bytes within 2x of what the program kept there.
fn go_export_named(bin: &std::path::Path, what: &str) {
    let state = tempfile::tempdir().unwrap();
    let d = sampling(state.path());
    let cg = TestCgroup::new(&format!("stacks-{what}"), 256 * MIB);
    let mut cmd = Command::new(bin);
    cmd.arg("export");
    let (pid, lived, out) = run_until_killed_output(cmd, &cg);
    let kept: u64 = out.lines().rev().find_map(|l| l.strip_prefix("kept ")?.parse().ok()).unwrap_or(0);
    assert!(kept > 64 * MIB, "the program kept {kept} bytes in {lived:?}: {out}");
    let e = event_for(&d, &cg, pid);
    let s = e.stacks.as_ref().unwrap_or_else(|| panic!("no stacks: {e:#?}"));
    eprintln!("{what}: kept {} MiB; sampled {} MiB, top {:#?}", kept / MIB, s.bytes / MIB, s.top);
    let grew = through(&e, "main.handleExport");
    let ratio = grew as f64 / kept as f64;
    assert!((0.5..=2.0).contains(&ratio), "{what}: {grew} bytes under main.handleExport for {kept} kept ({ratio:.2}x): {:#?}", s.top);
    let top = s.top.iter().find(|t| t.own.is_some()).expect("a stack with the program's own frame");
    assert_eq!(top.own.as_deref(), Some("main.handleExport"), "{:#?}", s.top);
    assert!(s.victim.as_ref().is_some_and(|v| v.frames.iter().any(|f| f == "main.handleExport")), "{:#?}", s.victim);
    let text = reason(&e, ReasonKind::GrowthStack).unwrap_or_else(|| panic!("{:#?}", e.explanation));
    assert!(text.contains("faulted in under main.handleExport → "), "{text}");
    assert!(text.contains("in the 30 s before the kill") && text.contains("1 fault in 64"), "{text}");
    // `memwatch events` and the log line say it too.
    let events = Command::new(util::memwatch_bin()).args(["events", "--no-follow", "--remote", &d.base]).output().unwrap();
    let shown = String::from_utf8_lossy(&events.stdout);
    assert!(shown.contains("faulted in under main.handleExport"), "{shown}");
    let log = d.log();
    assert!(log.contains("grew_in=\"main.handleExport\""), "{log}");
}

#[test]
fn a_go_programs_growth_is_named_by_its_function() {
    util::require_root!();
    let _serial = util::serial();
    go_export_named(programs::gomem(), "go");
}

#[test]
fn a_stripped_go_programs_growth_is_named_from_its_pclntab() {
    util::require_root!();
    let _serial = util::serial();
    let bin = programs::gomem_stripped();
    // No symbol table: the names can only come from .gopclntab.
    let syms = Command::new("readelf").arg("-S").arg(bin).output().unwrap();
    let sections = String::from_utf8_lossy(&syms.stdout);
    assert!(!sections.contains(".symtab") && sections.contains(".gopclntab"), "{sections}");
    go_export_named(bin, "go-stripped");
}

/// glibc's `memset` keeps no frame: the unwinder skips its caller, which the word at the stack
/// pointer gives back.
#[test]
fn a_c_programs_memset_is_credited_to_its_caller() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = sampling(state.path());
    let cg = TestCgroup::new("stacks-c", 128 * MIB);
    // Paced (1 MiB each 10 ms) so that the process lives through a drain: the stacks of one that
    // starts and dies between two drains are read after its maps are gone, as addresses.
    let mut cmd = Command::new(programs::memtest());
    cmd.args(["hog", "10"]);
    let (pid, _) = run_until_killed(cmd, &cg);
    let e = event_for(&d, &cg, pid);
    let s = e.stacks.as_ref().unwrap_or_else(|| panic!("no stacks: {e:#?}"));
    let top = &s.top[0];
    assert_eq!(top.own.as_deref(), Some("hog"), "{:#?}", s.top);
    // The leaf is glibc's, its caller recovered: memset's frame, then hog, then main.
    let at = top.frames.iter().position(|f| f == "hog").unwrap();
    assert!(at == 1 && top.frames.get(2).is_some_and(|f| f == "main"), "{:#?}", top.frames);
    assert!(top.bytes > 64 * MIB, "{top:#?}");
    assert!(s.short_share < 0.5, "frame pointers: most stacks are complete ({})", s.short_share);
}

/// JavaScript compiled by V8 is named from Node's perf map (`--perf-basic-prof`): the kill names
/// the function that built the rows, called by the handler, and the profile lists both.
#[test]
fn a_node_programs_jit_compiled_function_is_named_from_its_perf_map() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = sampling(state.path());
    let cg = TestCgroup::new("stacks-node", 256 * MIB);
    // --perf-basic-prof also has V8 write an isolate log into the working directory: a temporary one.
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("node");
    cmd.args(["--perf-basic-prof", "--max-old-space-size=2000"]).arg(programs::node_export_script()).current_dir(cwd.path());
    let (pid, _) = run_until_killed(cmd, &cg);
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    let e = event_for(&d, &cg, pid);
    let s = e.stacks.as_ref().unwrap_or_else(|| panic!("no stacks: {e:#?}"));
    let own = s.top.iter().find(|t| t.own.is_some()).unwrap_or_else(|| panic!("no stack with the program's own code: {:#?}", s.top));
    let script = programs::node_export_script();
    assert_eq!(own.own.as_deref(), Some(format!("buildRows {}:5:19", script.display()).as_str()), "{:#?}", s.top);
    let at = own.frames.iter().position(|f| f.starts_with("buildRows ")).unwrap();
    assert!(own.frames[at + 1..].iter().any(|f| f.starts_with("handleExport ")), "its caller too: {:#?}", own.frames);
    // V8's own code (the garbage collector's copying) is not the program's.
    assert!(s.top.iter().all(|t| t.own.as_deref().is_none_or(|o| !o.contains("v8::"))), "{:#?}", s.top);
    let text = reason(&e, ReasonKind::GrowthStack).unwrap_or_else(|| panic!("{:#?}", e.explanation));
    assert!(text.contains("faulted in under buildRows "), "{text}");
}

/// `memwatch profile` of a growing container in every format: Debian's `go tool pprof` reads
/// the pprof file and lists the function; the folded lines parse; the SVG is well formed.
#[test]
fn a_profile_opens_in_go_tool_pprof_and_as_a_flame_graph() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = sampling(state.path());
    let cg = TestCgroup::new("stacks-profile", 512 * MIB);
    let mut go = Command::new(programs::gomem());
    go.arg("export").stdout(Stdio::null());
    cg.join_before_exec(&mut go);
    let mut child = go.spawn().unwrap();
    let subject = cg.label();
    let try_profile = |format: &str| {
        let out = Command::new(util::memwatch_bin())
            .args(["profile", &subject, "--seconds", "60", "--format", format, "--remote", &d.base, "-o", "-"])
            .output()
            .unwrap();
        if out.status.success() { Ok(out.stdout) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    };
    let profile = |format: &str| try_profile(format).unwrap_or_else(|e| panic!("{e}"));
    // Until the daemon has sampled the new cgroup, it says it has no such container.
    d.wait_until("samples of the growing program", Duration::from_secs(30), || {
        try_profile("folded").is_ok_and(|p| String::from_utf8_lossy(&p).contains("main.handleExport"))
    });
    // `memwatch explain` of the process adds the daemon's stacks.
    let x = Command::new(util::memwatch_bin()).args(["explain", "--json", "--remote", &d.base, &child.id().to_string()]).output().unwrap();
    let x: serde_json::Value = serde_json::from_slice(&x.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&x.stderr)));
    let listed = x["stacks"]["top"].as_array().unwrap_or_else(|| panic!("no stacks: {x:#}"));
    assert!(listed.iter().any(|t| t["own"] == "main.handleExport"), "{listed:#?}");
    let _ = child.kill();
    let _ = child.wait();

    let folded = String::from_utf8(profile("folded")).unwrap();
    for line in folded.lines() {
        let (stack, bytes) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(bytes.parse::<u64>().is_ok_and(|b| b > 0) && !stack.is_empty(), "{line}");
    }
    assert!(folded.lines().any(|l| l.starts_with("runtime.") && l.contains(";main.main;main.handleExport")), "{folded}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("growth.pb.gz");
    std::fs::File::create(&file).unwrap().write_all(&profile("pprof")).unwrap();
    let top = Command::new("go").args(["tool", "pprof", "-top"]).arg(&file).env("HOME", dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{}", String::from_utf8_lossy(&top.stderr));
    assert!(text.contains("Type: bytes faulted in") && text.contains("main.handleExport"), "{text}");

    let svg = String::from_utf8(profile("svg")).unwrap();
    assert!(svg.trim_start().starts_with("<?xml") && svg.trim_end().ends_with("</svg>"), "{}", &svg[..svg.len().min(300)]);
    assert!(svg.contains("main.handleExport"), "the flame graph names the function");
    // Bad input: a clear refusal, naming what was wrong.
    let bad = Command::new(util::memwatch_bin())
        .args(["profile", "no/such/container", "--format", "folded", "--remote", &d.base])
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("no container \"no/such/container\""));
}

/// The daemon's BPF programs named `name`, from the kernel: the ids of the programs its file
/// descriptors hold, looked up in the kernel's list of loaded programs.
fn daemon_programs(pid: u32, name: &str) -> usize {
    let mut ids = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap().flatten() {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        if let Some(id) = info.lines().find_map(|l| l.strip_prefix("prog_id:")) {
            ids.insert(id.trim().parse::<u32>().unwrap());
        }
    }
    aya::programs::loaded_programs().flatten().filter(|p| ids.contains(&p.id()) && p.name_as_str() == Some(name)).count()
}

/// The daemon's own samples so far (its last-sample time changes once a sample).
fn samples_after(d: &Daemon, since: f64, n: usize) {
    let mut seen = HashSet::new();
    d.wait_until(&format!("{n} samples"), Duration::from_secs(60), || {
        if let Some(t) = d.metrics().get_plain("memwatch_last_sample_timestamp_seconds", &[]).filter(|t| *t > since) {
            seen.insert(t.to_bits());
        }
        seen.len() >= n
    });
}

fn now() -> f64 {
    memwatch::unix_seconds(std::time::SystemTime::now())
}

#[test]
fn at_risk_sampling_runs_only_while_a_container_is_at_risk_and_only_for_it() {
    util::require_root!();
    let _serial = util::serial();
    // It watches this test's two cgroups alone: another test's container at risk (they run
    // beside this one) would attach the sampler too.
    let only = format!("/memwatch-test-stacks-(risky|safe)-{}", std::process::id());
    let d = Daemon::start(&["--interval", "500ms", "--slow-interval", "1s", "--cgroups.include", &only]);
    let pid = d.pid();
    // Nothing of its own near a limit yet: on standby, nothing in the kernel.
    d.wait_until("standby", Duration::from_secs(120), || {
        d.metrics().get_plain("memwatch_probe_attached", &[("probe", "fault_stacks"), ("method", "standby")]) == Some(0.0)
    });
    assert_eq!(daemon_programs(pid, "fault_stacks"), 0, "standby, yet a sampling program is loaded");
    assert!(daemon_programs(pid, "mark_victim") > 0, "the check sees the daemon's other programs");

    // One container at 80% of its limit, one far from its own.
    let risky = TestCgroup::new("stacks-risky", 256 * MIB);
    let safe = TestCgroup::new("stacks-safe", 1024 * MIB);
    // Both exported, and nothing else.
    d.wait_until("the test's two containers", Duration::from_secs(10), || {
        let m = d.metrics();
        let cgroups: HashSet<&str> =
            m.text.lines().filter_map(|l| l.split("cgroup=\"").nth(1)?.split('"').next()).filter(|c| !c.is_empty()).collect();
        cgroups == HashSet::from([risky.label().as_str(), safe.label().as_str()])
    });
    let hold = |cg: &TestCgroup, threads: &str, kib: &str| {
        let mut c = Command::new(programs::memtest());
        c.args(["threads", threads, kib]).stdin(Stdio::piped()).stdout(Stdio::piped());
        cg.join_before_exec(&mut c);
        let mut child = c.spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        child
    };
    let mut held = hold(&risky, "8", "26624");
    let at = now();
    samples_after(&d, at, 2);
    assert_eq!(daemon_programs(pid, "fault_stacks"), 1, "a container at risk, the sampler attached within a sample");
    // Faults in both: only the one at risk is counted.
    for _ in 0..3 {
        let mut a = hold(&safe, "4", "16384");
        let mut b = hold(&risky, "1", "4096");
        drop(a.stdin.take());
        drop(b.stdin.take());
        let _ = (a.wait(), b.wait());
    }
    let samples = |cg: &TestCgroup| {
        let (status, body) = d.get(&format!("/api/v1/profile?container={}&seconds=120&format=json", cg.label())).unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["samples"].as_u64().unwrap()
    };
    d.wait_until("the risky container's samples", Duration::from_secs(30), || samples(&risky) > 0);
    assert_eq!(samples(&safe), 0, "a container not at risk is not counted");
    // Out of risk: detached once none has been at risk for a minute.
    drop(held.stdin.take());
    let _ = held.wait();
    let t = Instant::now();
    d.wait_until("standby again", Duration::from_secs(150), || daemon_programs(pid, "fault_stacks") == 0);
    eprintln!("detached {:?} after the container left risk", t.elapsed());
    assert!(t.elapsed() >= Duration::from_secs(50), "it lingers a minute, not flapping with the threshold");
}
