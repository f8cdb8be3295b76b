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
    oom::{self, OomKill},
    probes::{MemcgIds, ProbeState, Probes, ProcSample, PROBES},
};

use crate::{
    plan::*,
    util::{self, Workload, cgroup::TestCgroup},
};

fn load() -> Probes {
    let probes = Probes::load(&Roots::default().load_options()).expect("load probes");
    for s in probes.status() {
        assert_eq!(s.state, ProbeState::Attached, "probe {} on this host", s.name);
    }
    probes
}

fn sample(probes: &Probes, pid: u32) -> ProcSample {
    probes.process(pid).expect("read map").unwrap_or_default()
}

#[test]
fn counters_match_a_known_workload_exactly() {
    if !util::require_root("counters_match_a_known_workload_exactly") {
        return;
    }
    let probes = load();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mapped");
    fs::write(&file, vec![7u8; FILE_SIZE as usize]).unwrap();
    let cg = TestCgroup::new("counts", 256 << 20);
    let mut w = Workload::start(&["ops", file.to_str().unwrap()], Some(&cg));
    w.expect_line("ready");
    let before = sample(&probes, w.pid());
    let cg_before = probes.cgroups().unwrap().get(&cg.id()).copied().unwrap_or_default();
    w.send_line();
    w.expect_line("done");
    let after = sample(&probes, w.pid());
    let (b, a) = (before.counters, after.counters);

    assert_eq!(a.mmap_calls - b.mmap_calls, EXPECT_MMAP_CALLS, "mmap calls");
    assert_eq!(a.mmap_anon_bytes - b.mmap_anon_bytes, EXPECT_ANON_BYTES, "anonymous bytes");
    assert_eq!(a.mmap_file_bytes - b.mmap_file_bytes, EXPECT_FILE_BYTES, "file-backed bytes");
    assert_eq!(a.munmap_calls - b.munmap_calls, EXPECT_MUNMAP_CALLS, "munmap calls");
    assert_eq!(a.munmap_bytes - b.munmap_bytes, EXPECT_MUNMAP_BYTES, "munmap bytes");
    assert_eq!(a.mremap_calls - b.mremap_calls, 1, "mremap calls");
    assert_eq!(a.mremap_grow_bytes - b.mremap_grow_bytes, REMAP_TO - REMAP_FROM, "mremap growth");
    assert_eq!(a.brk_calls - b.brk_calls, EXPECT_BRK_CALLS, "brk calls");
    assert_eq!(a.brk_net_bytes() - b.brk_net_bytes(), EXPECT_BRK_BYTES, "brk net growth");
    assert_eq!(a.brk_grow_bytes - b.brk_grow_bytes, 3 * BRK_STEP, "brk growth");
    assert_eq!(a.brk_shrink_bytes - b.brk_shrink_bytes, BRK_STEP, "brk shrinkage");
    assert!(
        a.page_faults - b.page_faults >= TOUCH_PAGES,
        "faults {} < touched pages {TOUCH_PAGES}",
        a.page_faults - b.page_faults
    );

    // The process is attributed to its memory cgroup (on v1 too, via BTF), and the cgroup's
    // own counters saw the same work.
    if *probes.memcg_ids() == MemcgIds::Btf || cg.v2 {
        assert_eq!(after.memcg_id, cg.id(), "memory cgroup id of the workload");
        let cg_after = probes.cgroups().unwrap()[&cg.id()];
        assert_eq!(cg_after.mmap_calls - cg_before.mmap_calls, EXPECT_MMAP_CALLS);
        assert_eq!(cg_after.brk_net_bytes() - cg_before.brk_net_bytes(), EXPECT_BRK_BYTES);
    }
    w.finish();
}

/// Waits up to `timeout` for the kill of `pid` on the OOM ring buffer.
fn wait_for_kill(ring: &mut aya::maps::RingBuf<aya::maps::MapData>, unit: u64, pid: u32, timeout: Duration) -> Option<OomKill> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        while let Some(item) = ring.next() {
            let kill = oom::decode(&item, unit).expect("decode OOM record");
            if kill.victim_pid == pid && !kill.victim_exit {
                return Some(kill);
            }
        }
        let mut pfd = libc::pollfd { fd: ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: polling one valid fd.
        unsafe { libc::poll(&mut pfd, 1, 50) };
    }
    None
}

#[test]
fn oom_kill_arrives_with_pid_and_comm_within_two_seconds() {
    if !util::require_root("oom_kill_arrives_with_pid_and_comm_within_two_seconds") {
        return;
    }
    let _serial = util::serial();
    let mut probes = load();
    let mut ring = probes.take_oom_events().expect("OOM ring buffer");
    let cg = TestCgroup::new("oom", 32 << 20);
    let started = Instant::now();
    let mut hog = Workload::start(&["hog"], Some(&cg));
    let kill = wait_for_kill(&mut ring, probes.oom_size_unit(), hog.pid(), Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no OOM event for pid {} within 2 s", hog.pid()));
    let took = started.elapsed();
    assert_eq!(kill.victim_comm.as_deref(), Some("memwatch-worklo"), "{kill:?}");
    // Anonymous memory at the kill: most of the 32 MiB limit, never more (file pages such as
    // the binary's text may be charged to another cgroup, so only anon is bounded).
    let anon = kill.anon_rss_bytes.unwrap();
    assert!(anon > 16 << 20 && anon <= 32 << 20, "victim anon RSS {anon} at kill: {kill:?}");
    assert!(kill.total_vm_bytes.unwrap() >= anon + kill.file_rss_bytes.unwrap(), "{kill:?}");
    assert_eq!(kill.victim_memcg_id, Some(cg.id()), "the victim's memory cgroup, from the probe");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let status = hog.child.wait().unwrap();
    util::assert_killed(status, "hog");
    assert!(cg.oom_kills() >= 1, "the kernel's own counter agrees");
    probes.flush_logs();
}

#[test]
fn exited_processes_leave_nothing_in_the_maps() {
    if !util::require_root("exited_processes_leave_nothing_in_the_maps") {
        return;
    }
    let _serial = util::serial();
    let probes = load();
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
    let exits = probes.cgroups().unwrap().get(&cg.id()).map(|c| c.exits).unwrap_or(0);
    assert!(exits >= N as u64, "the exit hook saw {exits} of {N} exits");
    let tracked = probes.processes().unwrap();
    let leftovers: Vec<u32> = pids.iter().copied().filter(|p| tracked.contains_key(p) && !util::is_alive(*p)).collect();
    assert!(leftovers.is_empty(), "{} exited processes left entries, e.g. {:?}", leftovers.len(), &leftovers[..leftovers.len().min(5)]);
}

/// Copies this kernel's format files for every probe into a fake tracefs under `dir`.
fn fake_tracefs(dir: &Path) {
    let real = Path::new("/sys/kernel/tracing/events");
    for spec in PROBES {
        for h in spec.hooks {
            let d = dir.join("events").join(h.category).join(h.event);
            fs::create_dir_all(&d).unwrap();
            fs::copy(real.join(h.category).join(h.event).join("format"), d.join("format")).unwrap();
        }
    }
}

fn state<'a>(probes: &'a Probes, name: &str) -> &'a ProbeState {
    &probes.status().iter().find(|s| s.name == name).unwrap().state
}

#[test]
fn bad_tracefs_input_disables_only_that_probe() {
    if !util::require_root("bad_tracefs_input_disables_only_that_probe") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fake_tracefs(dir.path());
    let ev = dir.path().join("events");
    // Garbled: a field line that does not parse.
    fs::write(ev.join("syscalls/sys_enter_mmap/format"), "name: sys_enter_mmap\nformat:\n\tfield:unsigned long len;\toffset:what;\n").unwrap();
    // Truncated: no fields at all.
    fs::write(ev.join("syscalls/sys_exit_munmap/format"), "name: sys_exit_munmap\nID: 1\n").unwrap();
    // Missing tracepoint.
    fs::remove_dir_all(ev.join("oom/mark_victim")).unwrap();
    // Unreadable: a directory where the file should be.
    fs::remove_file(ev.join("syscalls/sys_enter_brk/format")).unwrap();
    fs::create_dir(ev.join("syscalls/sys_enter_brk/format")).unwrap();
    // A required field missing.
    let mremap = fs::read_to_string(ev.join("syscalls/sys_enter_mremap/format")).unwrap();
    let without: String = mremap.lines().filter(|l| !l.contains(" new_len;")).map(|l| format!("{l}\n")).collect();
    fs::write(ev.join("syscalls/sys_enter_mremap/format"), without).unwrap();

    let roots = Roots { tracefs: Some(dir.path().to_path_buf()), ..Roots::default() };
    let probes = Probes::load(&roots.load_options()).expect("the daemon still loads");
    let disabled = |name: &str, needle: &str| match state(&probes, name) {
        ProbeState::Disabled(why) => assert!(why.contains(needle), "{name}: {why}"),
        ProbeState::Attached => panic!("{name} should be disabled"),
    };
    disabled("mmap", "unreadable");
    disabled("munmap", "no fields");
    disabled("oom_mark_victim", "not found");
    disabled("brk", "sys_enter_brk");
    disabled("mremap", "new_len");
    for name in ["page_fault_user", "process_exit", "process_exec"] {
        assert_eq!(state(&probes, name), &ProbeState::Attached, "{name}");
    }
    // The probes that remain do their work.
    let before = sample(&probes, std::process::id()).counters.page_faults;
    let v = vec![1u8; 8 << 20];
    assert!(sample(&probes, std::process::id()).counters.page_faults > before, "{}", v.len());
    assert_eq!(sample(&probes, std::process::id()).counters.mmap_calls, 0, "mmap is off");

    // No tracefs at all: every probe is disabled with the reason, nothing panics.
    let nowhere = Roots { tracefs: Some(dir.path().join("nonexistent")), ..Roots::default() };
    let probes = Probes::load(&nowhere.load_options()).expect("still loads");
    assert!(probes.status().iter().all(|s| matches!(&s.state, ProbeState::Disabled(w) if w.contains("not found"))));
}

#[test]
fn pid_only_mark_victim_format_still_reports_kills() {
    if !util::require_root("pid_only_mark_victim_format_still_reports_kills") {
        return;
    }
    let _serial = util::serial();
    let dir = tempfile::tempdir().unwrap();
    fake_tracefs(dir.path());
    // What kernels before 5.x offer: only the pid.
    let old = "name: mark_victim\nID: 402\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;\n";
    fs::write(dir.path().join("events/oom/mark_victim/format"), old).unwrap();
    let roots = Roots { tracefs: Some(dir.path().to_path_buf()), ..Roots::default() };
    let mut probes = Probes::load(&roots.load_options()).unwrap();
    assert_eq!(state(&probes, "oom_mark_victim"), &ProbeState::Attached);
    let mut ring = probes.take_oom_events().unwrap();
    let cg = TestCgroup::new("oldfmt", 32 << 20);
    let hog = Workload::start(&["hog"], Some(&cg));
    let kill = wait_for_kill(&mut ring, probes.oom_size_unit(), hog.pid(), Duration::from_secs(5)).expect("kill reported");
    assert_eq!(kill.victim_comm, None, "comm is not read when the format lacks it");
    assert_eq!(kill.total_vm_bytes, None);
}

#[test]
fn memwatch_check_reports_every_probe_attached() {
    if !util::require_root("memwatch_check_reports_every_probe_attached") {
        return;
    }
    let out = Command::new(util::memwatch_bin()).args(["check", "--json"]).output().unwrap();
    assert!(out.status.success(), "check failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probes = report["probes"].as_array().unwrap();
    assert_eq!(probes.len(), PROBES.len());
    assert!(probes.iter().all(|p| p["state"] == "attached"), "{report:#}");
    assert_eq!(report["btf"], true);
    assert!(["v2", "hybrid", "v1"].contains(&report["cgroups"]["mode"].as_str().unwrap()));
    // And the cgroup mode agrees with the host's mount table.
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let v1_memory = mounts.lines().any(|l| l.contains(" cgroup ") && l.split(' ').nth(3).is_some_and(|o| o.split(',').any(|x| x == "memory")));
    assert_eq!(report["cgroups"]["mode"] == "v2", !v1_memory);
}

#[test]
fn memwatch_check_without_privilege_names_what_is_missing() {
    if !util::require_root("memwatch_check_without_privilege_names_what_is_missing") {
        return;
    }
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
