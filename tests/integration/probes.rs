//! The kernel programs, loaded for real: exact counts for a known workload, OOM events,
//! cleanup after exits, and probes disabled one by one by bad tracefs input.
use std::{
    fs,
    os::fd::AsRawFd,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use memwatch::{
    Roots,
    collector::ebpf::ledger::{Deltas, Ledger},
    oom::{self, OomKill},
    probes::{MemcgIds, Method, PROBES, ProbeId, ProbeOptions, ProbeState, Probes, maps::SlotRead},
};
use memwatch_common::Counters;

use crate::{
    plan::*,
    util::{
        self, Workload,
        cgroup::{self, TestCgroup},
    },
};

/// Every probe on, with the fallbacks allowed: exact counts on any kernel this runs on.
fn load() -> Probes {
    let probes = Probes::load(&memwatch::probes::LoadOptions::new(&Roots::default(), ProbeOptions::all())).expect("load probes");
    for s in probes.status() {
        assert!(s.is_attached(), "probe {} on this host: {:?}", s.id, s.state);
    }
    probes
}

fn process(probes: &Probes, pid: u32) -> Counters {
    probes.process(pid).expect("read map").unwrap_or_default()
}

fn cgroup(probes: &Probes, id: u64) -> Counters {
    probes.cgroups_now().expect("read slots").get(&id).copied().unwrap_or_default()
}

/// Minor plus major faults of a process, the kernel's own count.
fn proc_faults(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    memwatch::parse::proc::stat(&stat).unwrap().faults
}

fn assert_exact(b: &Counters, a: &Counters, what: &str) {
    assert_eq!(a.mmap_calls - b.mmap_calls, EXPECT_MMAP_CALLS, "{what}: mmap calls");
    assert_eq!(a.mmap_anon_bytes - b.mmap_anon_bytes, EXPECT_ANON_BYTES, "{what}: anonymous bytes");
    assert_eq!(a.mmap_file_bytes - b.mmap_file_bytes, EXPECT_FILE_BYTES, "{what}: file-backed bytes");
    assert_eq!(a.munmap_calls - b.munmap_calls, EXPECT_MUNMAP_CALLS, "{what}: munmap calls");
    assert_eq!(a.munmap_bytes - b.munmap_bytes, EXPECT_MUNMAP_BYTES, "{what}: munmap bytes");
    assert_eq!(a.mremap_calls - b.mremap_calls, 1, "{what}: mremap calls");
    assert_eq!(a.mremap_grow_bytes - b.mremap_grow_bytes, REMAP_TO - REMAP_FROM, "{what}: mremap growth");
    assert_eq!(a.brk_calls - b.brk_calls, EXPECT_BRK_CALLS, "{what}: brk calls");
    assert_eq!(a.brk_net_bytes() - b.brk_net_bytes(), EXPECT_BRK_BYTES, "{what}: brk net growth");
    assert_eq!(a.brk_grow_bytes - b.brk_grow_bytes, 3 * BRK_STEP, "{what}: brk growth");
    assert_eq!(a.brk_shrink_bytes - b.brk_shrink_bytes, BRK_STEP, "{what}: brk shrinkage");
}

#[test]
fn counters_match_a_known_workload_exactly() {
    util::require_root!();
    let mut probes = load();
    probes.set_per_process(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mapped");
    fs::write(&file, vec![7u8; FILE_SIZE as usize]).unwrap();
    let cg = TestCgroup::new("counts", 256 << 20);
    // The workload first grows its break by 16 MiB, then execs into the known work: the new
    // image's break starts elsewhere, which must not count as growth or shrinkage.
    let mut w = Workload::start(&["brk-exec", "16", "ops", file.to_str().unwrap()], Some(&cg));
    w.expect_line("ready");
    let (before, cg_before, faults_before) = (process(&probes, w.pid()), cgroup(&probes, cg.id()), proc_faults(w.pid()));
    w.send_line();
    w.expect_line("done");
    let (after, cg_after, faults_after) = (process(&probes, w.pid()), cgroup(&probes, cg.id()), proc_faults(w.pid()));

    // Per process (counted only while switched on) and per memory cgroup (on v1 too, via
    // BTF): the workload is alone in its cgroup, so both saw exactly its work.
    assert_exact(&before, &after, "process");
    assert_exact(&cg_before, &cg_after, "cgroup");
    assert!(
        cg_after.page_faults - cg_before.page_faults >= TOUCH_PAGES,
        "eBPF faults {} < touched pages {TOUCH_PAGES}",
        cg_after.page_faults - cg_before.page_faults
    );
    assert!(faults_after - faults_before >= TOUCH_PAGES, "the kernel's own fault count");
    assert!(matches!(probes.memcg_ids(), MemcgIds::Btf | MemcgIds::BtfProbeRead), "{:?}", probes.memcg_ids());
    // Everything the cgroup ever did: the 16 MiB before the exec, the work, and the small
    // breaks of the runtime's start-up; never a jump between two images' breaks.
    let grow = cg_after.brk_grow_bytes;
    assert!(((16 << 20) + 3 * BRK_STEP..32 << 20).contains(&grow), "brk growth over the exec: {cg_after:?}");
    assert!(cg_after.brk_shrink_bytes < 1 << 20, "brk shrinkage over the exec: {cg_after:?}");
    w.finish();
    probes.set_per_process(false).unwrap();
    assert!(probes.processes().unwrap().is_empty(), "switching off forgets per-process counts");
}

/// The daemon's defaults never put a tracepoint on the syscall path, and say why a probe
/// that would need one is not running.
#[test]
fn defaults_never_tax_unwatched_syscalls() {
    util::require_root!();
    let probes = Probes::load(&memwatch::probes::LoadOptions::new(&Roots::default(), ProbeOptions::default())).expect("load");
    for st in probes.status() {
        let spec = PROBES.iter().find(|p| p.id == st.id).unwrap();
        match &st.state {
            ProbeState::Attached { method } => {
                assert!(!method.contains("syscalls:"), "{}: {method}", st.id);
            }
            ProbeState::Off(why) => {
                assert_eq!(st.id, ProbeId::PageFaultUser);
                assert!(why.contains("--ebpf-page-faults") && why.contains("pgfault"), "{why}");
            }
            ProbeState::Standby(why) => {
                // The fault-stack sampler waits for a container at risk, having attached once.
                assert_eq!(st.id, ProbeId::FaultStacks);
                assert!(why.contains("--stacks at-risk") && why.contains("attaches as tp_btf"), "{why}");
            }
            ProbeState::Disabled(why) => {
                // Only where fexit is refused, and then the reason says what to do.
                let why = why.to_string();
                assert!(spec.methods.iter().any(|m| matches!(m, Method::Fexit { .. })), "{}: {why}", st.id);
                assert!(why.contains("fexit") && why.contains("--syscall-tracepoints"), "{}: {why}", st.id);
            }
        }
    }
}

#[test]
fn counts_survive_a_css_id_handed_to_a_new_cgroup() {
    util::require_root!();
    let _serial = util::serial();
    let mut probes = load();
    let mut ledger = Ledger::new();
    let mut totals: std::collections::HashMap<u64, Counters> = Default::default();
    let mut read = SlotRead::default();
    let mut sample = |probes: &mut Probes, ledger: &mut Ledger| {
        let mut d = Deltas::default();
        probes.drain_retired(|r| ledger.retired(r, &mut d));
        probes.read_slots(&mut read).unwrap();
        let slots: Vec<(u32, u64)> = read.used().map(|(i, _, s)| (i, s.cgroup_id)).collect();
        for (i, cpu, s) in read.used() {
            ledger.reading(i, cpu, s, &mut d);
        }
        ledger.end_reading();
        for (id, delta) in d.0 {
            totals.entry(id).or_default().accumulate(&delta.counters);
        }
        slots
    };
    let run = |cg: &TestCgroup| {
        let mut cmd = Command::new(util::workload_bin());
        cmd.args(["fill-exit", "4"]);
        cg.join_before_exec(&mut cmd);
        assert!(cmd.status().unwrap().success());
    };
    let slot_of = |slots: &[(u32, u64)], id: u64| slots.iter().find(|(_, c)| *c == id).map(|(i, _)| *i);

    // Everything the workload's exec touches (its binary, the loader's cache, the libraries) in
    // the page cache first, charged to this process's cgroup: a page first read from the test's
    // cgroup is charged to it and keeps it alive (dying) after removal, and its css id with it.
    // Reading the binary alone was not enough on a host whose earlier tests had evicted libc.
    let warm = Command::new(util::workload_bin()).args(["fill-exit", "4"]).status().unwrap();
    assert!(warm.success());
    // A cgroup does known work, is read once, does more, and is removed unread.
    let first = TestCgroup::new("handover-a", 64 << 20);
    run(&first);
    let a_id = first.id();
    let a_slot = slot_of(&sample(&mut probes, &mut ledger), a_id).expect("the first cgroup has a slot");
    run(&first);
    drop(first);
    // New cgroups, each doing known work, until the freed css id is handed to a new owner: the
    // kernel hands out the lowest free id once the old css is freed (which takes a moment),
    // and another test's cgroup may take it first.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ours = Vec::new();
    let new_owner = loop {
        let cg = TestCgroup::new(&format!("handover-b{}", ours.len()), 64 << 20);
        run(&cg);
        ours.push(cg);
        let slots = sample(&mut probes, &mut ledger);
        if let Some((_, owner)) = slots.iter().find(|(i, c)| *i == a_slot && *c != a_id) {
            break *owner;
        }
        assert!(
            Instant::now() < deadline,
            "css id {a_slot} was not handed over within 30 s ({} memory cgroups in /proc/cgroups, dying ones included)",
            cgroup::memory_cgroups()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    sample(&mut probes, &mut ledger);
    sample(&mut probes, &mut ledger);
    // Each run is one process: an anonymous 4 MiB mapping and an exit.
    let a = totals.get(&a_id).copied().unwrap_or_default();
    assert_eq!(a.exits, 2, "the removed cgroup's exits, including those after its last read: {a:?}");
    assert!(a.mmap_anon_bytes >= 2 * (4 << 20), "{a:?}");
    if let Some(b) = ours.iter().find(|cg| cg.id() == new_owner) {
        let b = totals[&b.id()];
        assert_eq!(b.exits, 1, "the new owner starts from zero: {b:?}");
    }
    assert_eq!(ledger.pending_hand_overs(), 0, "every hand-over was matched by its record");
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Record {
    /// The tracepoint's record of the kill.
    Mark,
    /// The one the victim sends when it exits.
    Exit,
    /// The victim task's own cgroup at the kill (6.8+).
    Task,
}

/// Reads the OOM ring buffer for up to `timeout`, until a record of each kind in `want` has
/// come for the kill of `pid`.
fn wait_for_kill(
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    unit: u64,
    pid: u32,
    timeout: Duration,
    want: &[Record],
) -> std::collections::HashMap<Record, OomKill> {
    let mut got = std::collections::HashMap::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !want.iter().all(|w| got.contains_key(w)) {
        while let Some(item) = ring.next() {
            let kill = oom::decode(&item, unit).expect("decode OOM record");
            let kind = if kill.victim_exit {
                Record::Exit
            } else if kill.victim_task {
                Record::Task
            } else {
                Record::Mark
            };
            if kill.victim_pid == pid {
                got.insert(kind, kill);
            }
        }
        let mut pfd = libc::pollfd { fd: ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: polling one valid fd.
        unsafe { libc::poll(&mut pfd, 1, 50) };
    }
    got
}

#[test]
fn oom_kill_arrives_with_pid_and_comm_within_two_seconds() {
    util::require_root!();
    let _serial = util::serial();
    let mut probes = load();
    let mut ring = probes.take_oom_events().expect("OOM ring buffer");
    let cg = TestCgroup::new("oom", 32 << 20);
    let started = Instant::now();
    let mut hog = Workload::start(&["hog"], Some(&cg));
    let with_task =
        matches!(state(&probes, ProbeId::OomMarkVictim), ProbeState::Attached { method } if method.contains("tp_btf mark_victim"));
    let want: &[Record] = if with_task { &[Record::Mark, Record::Task] } else { &[Record::Mark] };
    let mut got = wait_for_kill(&mut ring, probes.oom_size_unit(), hog.pid(), Duration::from_secs(2), want);
    let kill = got.remove(&Record::Mark).unwrap_or_else(|| panic!("no OOM event for pid {} within 2 s", hog.pid()));
    let took = started.elapsed();
    assert_eq!(kill.victim_comm.as_deref(), Some("memwatch-worklo"), "{kill:?}");
    // Anonymous memory at the kill: most of the 32 MiB limit, never more (file pages such as
    // the binary's text may be charged to another cgroup, so only anon is bounded).
    let anon = kill.anon_rss_bytes.unwrap();
    assert!(anon > 16 << 20 && anon <= 32 << 20, "victim anon RSS {anon} at kill: {kill:?}");
    assert!(kill.total_vm_bytes.unwrap() >= anon + kill.file_rss_bytes.unwrap(), "{kill:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    if with_task {
        let task = got.remove(&Record::Task).expect("the victim task's record (6.8+)");
        assert_eq!(task.victim_memcg_id, Some(cg.id()), "the victim's memory cgroup at the kill");
    }
    let exit = got.remove(&Record::Exit).or_else(|| {
        wait_for_kill(&mut ring, probes.oom_size_unit(), hog.pid(), Duration::from_secs(2), &[Record::Exit]).remove(&Record::Exit)
    });
    let exit = exit.expect("the victim's exit record");
    assert_eq!(exit.victim_memcg_id, Some(cg.id()), "the victim's memory cgroup, from its own context");
    let status = hog.child.wait().unwrap();
    util::assert_killed(status, "hog");
    assert!(cg.oom_kills() >= 1, "the kernel's own counter agrees");
    probes.flush_logs();
}

#[test]
fn exited_processes_leave_nothing_in_the_maps() {
    util::require_root!();
    let _serial = util::serial();
    let mut probes = load();
    probes.set_per_process(true).unwrap();
    // Children run in a cgroup of their own, so its exit counter counts exactly them.
    let cg = TestCgroup::new("exits", 256 << 20);
    const N: usize = 10_000;
    let mut pids = Vec::with_capacity(N);
    for _ in 0..N {
        let mut cmd = Command::new("/bin/true");
        cg.join_before_exec(&mut cmd);
        let mut child = cmd.spawn().expect("spawn /bin/true");
        pids.push(child.id());
        assert!(child.wait().unwrap().success());
    }
    let exits = cgroup(&probes, cg.id()).exits;
    assert!(exits >= N as u64, "the exit hook saw {exits} of {N} exits");
    let tracked = probes.processes().unwrap();
    let leftovers: Vec<u32> = pids.iter().copied().filter(|p| tracked.contains_key(p) && !util::is_alive(*p)).collect();
    assert!(leftovers.is_empty(), "{} exited processes left entries, e.g. {:?}", leftovers.len(), &leftovers[..leftovers.len().min(5)]);
}

/// Copies this kernel's format files for every probe into a fake tracefs under `dir`.
fn fake_tracefs(dir: &Path) {
    let real = Path::new("/sys/kernel/tracing/events");
    for (category, event) in PROBES.iter().flat_map(|p| p.methods).filter_map(Method::format) {
        let d = dir.join("events").join(category).join(&event);
        fs::create_dir_all(&d).unwrap();
        fs::copy(real.join(category).join(&event).join("format"), d.join("format")).unwrap();
    }
}

fn state(probes: &Probes, id: ProbeId) -> &ProbeState {
    &probes.status().iter().find(|s| s.id == id).unwrap().state
}

#[test]
fn bad_tracefs_input_disables_only_that_probe() {
    util::require_root!();
    let _serial = util::serial();
    let dir = tempfile::tempdir().unwrap();
    fake_tracefs(dir.path());
    let ev = dir.path().join("events");
    // Garbled: a field line that does not parse.
    fs::write(ev.join("syscalls/sys_exit_mmap/format"), "name: sys_exit_mmap\nformat:\n\tfield:long ret;\toffset:what;\n").unwrap();
    // Truncated: no fields at all.
    fs::write(ev.join("syscalls/sys_exit_munmap/format"), "name: sys_exit_munmap\nID: 1\n").unwrap();
    // Missing tracepoint.
    fs::remove_dir_all(ev.join("oom/mark_victim")).unwrap();
    // Unreadable: a directory where the file should be.
    fs::remove_file(ev.join("syscalls/sys_exit_brk/format")).unwrap();
    fs::create_dir(ev.join("syscalls/sys_exit_brk/format")).unwrap();
    // A required field missing.
    let mremap = fs::read_to_string(ev.join("syscalls/sys_exit_mremap/format")).unwrap();
    let without: String = mremap.lines().filter(|l| !l.contains(" ret;")).map(|l| format!("{l}\n")).collect();
    fs::write(ev.join("syscalls/sys_exit_mremap/format"), without).unwrap();

    let roots = Roots { tracefs: Some(dir.path().to_path_buf()), ..Roots::default() };
    let probes = Probes::load(&memwatch::probes::LoadOptions::new(&roots, ProbeOptions::all())).expect("the daemon still loads");
    // A syscall probe still runs where fexit works (it needs no format); where it does not,
    // the broken format of its fallback disables it, and the reason says which.
    let broken = |name: ProbeId, needle: &str| match state(&probes, name) {
        ProbeState::Disabled(why) => {
            let why = why.to_string();
            assert!(why.contains(needle) && why.contains("fexit"), "{name}: {why}")
        }
        ProbeState::Attached { method } => assert!(method.starts_with("fexit"), "{name}: {method}"),
        ProbeState::Off(why) | ProbeState::Standby(why) => panic!("{name} is not attached: {why}"),
    };
    broken(ProbeId::Mmap, "unreadable");
    broken(ProbeId::Munmap, "no fields");
    broken(ProbeId::Brk, "sys_exit_brk");
    broken(ProbeId::Mremap, "no field `ret`");
    match state(&probes, ProbeId::OomMarkVictim) {
        ProbeState::Disabled(why) => assert!(why.to_string().contains("not found"), "{why}"),
        other => panic!("oom_mark_victim: {other:?}"),
    }
    for name in [ProbeId::PageFaultUser, ProbeId::ProcessExit] {
        assert!(probes.is_attached(name), "{name}: {:?}", state(&probes, name));
    }
    // The probes that remain do their work.
    let cg = TestCgroup::new("badfmt", 64 << 20);
    let mut cmd = Command::new(util::workload_bin());
    cmd.args(["fill-exit", "8"]);
    cg.join_before_exec(&mut cmd);
    assert!(cmd.status().unwrap().success());
    let c = cgroup(&probes, cg.id());
    assert!(c.page_faults >= 2048, "faults of 8 MiB touched: {c:?}");
    assert_eq!(c.exits, 1, "{c:?}");
    if !probes.is_attached(ProbeId::Mmap) {
        assert_eq!(c.mmap_calls, 0, "mmap is off");
    }

    // No tracefs at all: the tracepoint probes are disabled with the reason, nothing panics.
    let nowhere = Roots { tracefs: Some(dir.path().join("nonexistent")), ..Roots::default() };
    let probes = Probes::load(&memwatch::probes::LoadOptions::new(&nowhere, ProbeOptions::all())).expect("still loads");
    for name in [ProbeId::OomMarkVictim, ProbeId::ProcessExit] {
        assert!(matches!(state(&probes, name), ProbeState::Disabled(w) if w.to_string().contains("not found")), "{name}");
    }
    assert!(probes.is_attached(ProbeId::PageFaultUser), "a BTF tracepoint needs no tracefs");
}

#[test]
fn pid_only_mark_victim_format_still_reports_kills() {
    util::require_root!();
    let _serial = util::serial();
    let dir = tempfile::tempdir().unwrap();
    fake_tracefs(dir.path());
    // What kernels before 5.x offer: only the pid.
    let old = "name: mark_victim\nID: 402\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;\n";
    fs::write(dir.path().join("events/oom/mark_victim/format"), old).unwrap();
    let roots = Roots { tracefs: Some(dir.path().to_path_buf()), ..Roots::default() };
    let mut probes = Probes::load(&memwatch::probes::LoadOptions::new(&roots, ProbeOptions::default())).unwrap();
    assert!(probes.is_attached(ProbeId::OomMarkVictim), "{:?}", state(&probes, ProbeId::OomMarkVictim));
    let mut ring = probes.take_oom_events().unwrap();
    let cg = TestCgroup::new("oldfmt", 32 << 20);
    let hog = Workload::start(&["hog"], Some(&cg));
    let kill = wait_for_kill(&mut ring, probes.oom_size_unit(), hog.pid(), Duration::from_secs(5), &[Record::Mark])
        .remove(&Record::Mark)
        .expect("kill reported");
    assert_eq!(kill.victim_comm, None, "comm is not read when the format lacks it");
    assert_eq!(kill.total_vm_bytes, None);
}

#[test]
fn memwatch_check_reports_every_probe_and_its_method() {
    util::require_root!();
    // Other tests turn BPF statistics on; this one checks they are off after the check.
    let _serial = util::serial();
    let check = |args: &[&str]| {
        let out = Command::new(util::memwatch_bin()).arg("check").args(args).arg("--json").output().unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("check JSON: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), report)
    };
    // Everything asked for: every probe attached, each saying how.
    let (code, report) = check(&["--ebpf-page-faults", "--syscall-tracepoints", "--stacks", "always"]);
    assert_eq!(code, Some(0), "{report:#}");
    let probes = report["probes"].as_array().unwrap();
    assert_eq!(probes.len(), PROBES.len());
    for p in probes {
        assert_eq!(p["state"], "attached", "{report:#}");
        let method = p["method"].as_str().unwrap();
        assert!(["fexit ", "tp_btf ", "tracepoint "].iter().any(|m| method.starts_with(m)), "{method}");
    }
    let method = |r: &serde_json::Value, name: &str| r["probes"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!(method(&report, "page_fault_user")["method"], "tp_btf page_fault_user");
    assert_eq!(report["btf"], true);
    assert!(["v2", "hybrid", "v1"].contains(&report["cgroups"]["mode"].as_str().unwrap()));
    // And the cgroup mode agrees with the host's mount table.
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let v1_memory =
        mounts.lines().any(|l| l.contains(" cgroup ") && l.split(' ').nth(3).is_some_and(|o| o.split(',').any(|x| x == "memory")));
    assert_eq!(report["cgroups"]["mode"] == "v2", !v1_memory);

    // The defaults: the fault probe off; the syscall probes by fexit, or, where the kernel
    // refuses fexit, disabled (exit code 3) with the reason and the flag that would allow them.
    let (code, report) = check(&[]);
    assert_eq!(method(&report, "page_fault_user")["state"], "off");
    let mmap = method(&report, "mmap");
    if mmap["state"] == "attached" {
        assert_eq!(code, Some(0));
        assert!(mmap["method"].as_str().unwrap().starts_with("fexit __"), "{mmap}");
    } else {
        assert_eq!(code, Some(3), "{report:#}");
        let why = mmap["reason"].as_str().unwrap();
        assert!(why.contains("fexit") && why.contains("--syscall-tracepoints"), "{why}");
    }

    // Costs per event, measured with BPF statistics on for the check only.
    let (_, report) = check(&["--ebpf-page-faults", "--bpf-stats", "--bpf-stats-window", "500ms"]);
    let costs = report["costs"].as_array().unwrap_or_else(|| panic!("{report:#}"));
    let names: Vec<&str> = costs.iter().map(|c| c["probe"].as_str().unwrap()).collect();
    assert!(names.contains(&"page_fault_user") && names.contains(&"page_fault_user (empty)"), "{names:?}");
    assert_eq!(fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap().trim(), "0", "statistics are off again");
}

#[test]
fn memwatch_check_without_privilege_names_what_is_missing() {
    util::require_root!();
    // Drop to `nobody` with no capabilities, as an operator who forgot sudo would be.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"])
        .arg(util::memwatch_bin())
        .arg("check")
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("CAP_BPF") && stderr.contains("CAP_PERFMON"), "stderr: {stderr}");
}

/// Live processes in the swarm: more than the per-process map holds.
const SWARM: u64 = memwatch_common::MAX_PROCESSES as u64 + 800;

#[test]
fn more_live_processes_than_the_per_process_map_holds() {
    util::require_root!();
    let _serial = util::serial();
    let mut probes = load();
    probes.set_per_process(true).unwrap();
    let cg = TestCgroup::new("swarm", 16 << 30);
    let mut w = Workload::start(&["swarm", &SWARM.to_string()], Some(&cg));
    w.expect_line("start");
    let full = memwatch::probes::maps::DropKind::ProcessMapFull;
    let (before, drops_before) = (cgroup(&probes, cg.id()), probes.drops()[full]);
    w.send_line();
    w.expect_line("ready");
    let (after, drops_after) = (cgroup(&probes, cg.id()), probes.drops()[full]);
    let procs = probes.processes().unwrap();
    // Per cgroup, every child's one mmap counted, map full or not.
    assert_eq!(after.mmap_calls - before.mmap_calls, SWARM, "the cgroup's mmap calls");
    assert_eq!(after.mmap_anon_bytes - before.mmap_anon_bytes, SWARM * 64 * 1024, "the cgroup's anonymous bytes");
    // The map is full; the children it could not hold are counted as drops, not evicting
    // the counts of those it holds.
    assert_eq!(procs.len(), memwatch_common::MAX_PROCESSES as usize, "the map is full");
    let children: std::collections::HashSet<u32> = cg.pids().into_iter().filter(|p| *p != w.pid()).collect();
    assert_eq!(children.len() as u64, SWARM);
    let held: Vec<&Counters> = children.iter().filter_map(|p| procs.get(p)).collect();
    assert!(held.iter().all(|c| c.mmap_calls == 1), "each child held has its one mmap");
    let unheld = SWARM - held.len() as u64;
    assert!(unheld > 0, "some children were not held");
    assert!(drops_after - drops_before >= unheld, "drops {} < children not held {unheld}", drops_after - drops_before);
    eprintln!(
        "{SWARM} live processes: {} held, {unheld} not; {} events dropped as process_map_full",
        held.len(),
        drops_after - drops_before
    );
    w.finish();
    probes.set_per_process(false).unwrap();
    assert!(probes.processes().unwrap().is_empty(), "switching off forgets per-process counts");
}
