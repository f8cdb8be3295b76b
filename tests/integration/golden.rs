//! The model and `/metrics` against fixture trees (tests/fixtures/trees, made by
//! make_trees.py): one golden file per scenario, checked by promtool too. Regenerate with
//! MEMWATCH_UPDATE_GOLDEN=1 and review the diff.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, UNIX_EPOCH},
};

use memwatch::{
    Roots,
    collector::{CollectorId, ErrorReason, SampleInput},
    expose::render::{self, Format},
    model::{CgroupFilter, Options},
    sampler::Sampler,
    snapshot::{Container, Snapshot},
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn roots(scenario: &str) -> Roots {
    let dir = fixtures().join("trees").join(scenario);
    Roots {
        procfs: dir.join("proc"),
        sysfs: dir.join("sys"),
        cgroupfs: dir.join("sys/fs/cgroup"),
        tracefs: None,
        kubelet_logs: dir.join("var/log"),
    }
}

/// One sample of a scenario, with the varying self-metrics pinned.
fn sample(scenario: &str, filter: CgroupFilter) -> Snapshot {
    let mut s = Sampler::new(
        roots(scenario),
        Sampler::default_collectors(None, false, std::time::Duration::from_secs(10)),
        Options { filter, ..Options::default() },
    );
    let mut snap = s.sample(&SampleInput::default());
    snap.taken_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    snap.self_stats.sample_duration_seconds = 0.0;
    snap
}

/// Compares with (or, with MEMWATCH_UPDATE_GOLDEN=1, writes) the golden file, and has
/// promtool check the exposition.
fn golden(name: &str, snap: &Snapshot) {
    let text = render::render(snap, &Default::default(), Format::Text);
    check_golden(&format!("{name}.prom"), &text);
    promtool_check(&text);
}

/// Compares `text` with (or, with MEMWATCH_UPDATE_GOLDEN=1, writes) the golden file `file`.
fn check_golden(file: &str, text: &str) {
    let path = fixtures().join("golden").join(file);
    if std::env::var_os("MEMWATCH_UPDATE_GOLDEN").is_some() {
        // Regenerating in CI would make every golden test pass whatever the output.
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"), "MEMWATCH_UPDATE_GOLDEN is set under CI=true");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (MEMWATCH_UPDATE_GOLDEN=1 makes it)", path.display()));
    assert!(
        text == want,
        "{file} differs from {}; rerun with MEMWATCH_UPDATE_GOLDEN=1 and review the diff\n{}",
        path.display(),
        first_diff(&want, text)
    );
}

fn first_diff(want: &str, got: &str) -> String {
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        if w != g {
            return format!("line {}:\n- {w}\n+ {g}", i + 1);
        }
    }
    format!("lengths differ: {} vs {} lines", want.lines().count(), got.lines().count())
}

pub(crate) fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/setup.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn find<'a>(snap: &'a Snapshot, cgroup_suffix: &str) -> &'a Container {
    snap.containers
        .iter()
        .find(|c| c.cgroup.ends_with(cgroup_suffix))
        .unwrap_or_else(|| panic!("no container {cgroup_suffix} in {:?}", snap.containers.iter().map(|c| &c.cgroup).collect::<Vec<_>>()))
}

const MI: u64 = 1 << 20;

#[test]
fn golden_k8s_v2_systemd() {
    let snap = sample("k8s-v2-systemd", CgroupFilter::Default);
    assert_eq!(snap.cgroup_mode, memwatch::host::CgroupVersion::V2);
    // Pods, QoS slices and user.slice are not containers; the pause container is.
    let paths: Vec<&str> = snap.containers.iter().map(|c| &*c.cgroup).collect();
    assert_eq!(paths.len(), 6, "{paths:?}");
    let app = find(&snap, &format!("cri-containerd-{}.scope", "02".repeat(32)));
    assert_eq!((&*app.namespace, &*app.pod, &*app.container), ("shop", "web-7d4b9c-x2x9z", "server"));
    // No limit of its own: the pod's 512Mi applies.
    assert_eq!(app.limit_bytes, 512 * MI);
    assert_eq!(app.working_set_bytes, 460 * MI);
    assert_eq!(app.headroom_bytes, 52 * MI);
    assert_eq!((app.processes, app.vsz_bytes), (2, 1280 * MI));
    assert_eq!(app.oom_kills, Some(2));
    assert_eq!(app.pressure.unwrap().some_us, 2_500_000);
    let pause = find(&snap, &format!("cri-containerd-{}.scope", "01".repeat(32)));
    assert_eq!((&*pause.namespace, &*pause.pod, &*pause.container), ("shop", "web-7d4b9c-x2x9z", ""));
    let envoy = find(&snap, &format!("cri-containerd-{}.scope", "03".repeat(32)));
    assert_eq!((envoy.limit_bytes, envoy.high_bytes), (128 * MI, Some(100 * MI)));
    assert_eq!(find(&snap, "kubelet.service").limit_bytes, 8192 * MI, "machine memory");
    golden("k8s-v2-systemd", &snap);
}

#[test]
fn golden_k8s_v2_cgroupfs_driver() {
    let snap = sample("k8s-v2-cgroupfs", CgroupFilter::Default);
    assert_eq!(snap.containers.len(), 3);
    let app = find(&snap, &"02".repeat(32));
    assert_eq!((&*app.pod, &*app.container, app.limit_bytes), ("web-7d4b9c-x2x9z", "server", 512 * MI));
    // No kubelet logs for these: ids but no names.
    let be = find(&snap, &"05".repeat(32));
    assert_eq!((&*be.pod, be.container_id.len()), ("", 64));
    golden("k8s-v2-cgroupfs", &snap);
}

#[test]
fn golden_k8s_v1() {
    let snap = sample("k8s-v1", CgroupFilter::Default);
    assert_eq!(snap.cgroup_mode, memwatch::host::CgroupVersion::V1);
    let app = find(&snap, &"02".repeat(32));
    assert_eq!((app.limit_bytes, app.working_set_bytes, app.rss_bytes, app.oom_kills), (512 * MI, 460 * MI, 440 * MI, Some(1)));
    assert_eq!(app.pressure, None, "v1 has no per-cgroup PSI");
    assert_eq!(app.swap_bytes, Some(0), "memsw - usage");
    golden("k8s-v1", &snap);
}

#[test]
fn golden_hybrid_with_escaped_names() {
    let snap = sample("hybrid", CgroupFilter::Default);
    assert_eq!(snap.cgroup_mode, memwatch::host::CgroupVersion::Hybrid);
    let odd = find(&snap, "with backslash");
    assert_eq!(&*odd.cgroup, "/odd\"name\\with backslash");
    assert_eq!(odd.limit_bytes, 64 * MI);
    let crio = find(&snap, &format!("crio-{}.scope", "06".repeat(32)));
    assert_eq!((&*crio.namespace, &*crio.container), ("batch", "report"));
    let text = render::render(&snap, &Default::default(), Format::Text);
    assert!(text.contains(r#"cgroup="/odd\"name\\with backslash""#), "escaped in the exposition");
    golden("hybrid", &snap);
}

#[test]
fn golden_docker_host() {
    let snap = sample("docker-v2", CgroupFilter::Default);
    let limited = find(&snap, &format!("docker-{}.scope", "07".repeat(32)));
    assert_eq!((limited.limit_bytes, limited.limit_is_machine), (400 * MI, false));
    let open = find(&snap, &format!("docker-{}.scope", "08".repeat(32)));
    assert_eq!((open.limit_bytes, open.limit_is_machine), (2048 * MI, true));
    assert_eq!(&*open.container_id, "08".repeat(32));
    golden("docker-v2", &snap);
}

#[test]
fn golden_psi_absent() {
    let snap = sample("psi-absent", CgroupFilter::Default);
    let app = find(&snap, "app.service");
    assert_eq!((app.pressure, app.swap_bytes, app.high_bytes), (None, None, Some(150 * MI)));
    let text = render::render(&snap, &Default::default(), Format::Text);
    assert!(!text.contains("memwatch_container_memory_pressure_seconds_total{"), "no pressure samples without PSI");
    golden("psi-absent", &snap);
}

#[test]
fn golden_broken_input_is_skipped_and_counted() {
    let snap = sample("broken", CgroupFilter::All);
    let errors = &snap.self_stats.sample_errors;
    let count = |c, r| errors.get(&(c, r)).copied().unwrap_or(0);
    // a.service memory.max, b.service memory.current, c.service memory.pressure; pid 998.
    assert_eq!(count(CollectorId::Cgroupfs, ErrorReason::Parse), 3, "{errors:?}");
    assert_eq!(count(CollectorId::Procfs, ErrorReason::Parse), 1, "{errors:?}");
    assert!(snap.containers.iter().all(|c| !c.cgroup.ends_with("b.service")), "b.service is skipped");
    let a = find(&snap, "a.service");
    assert_eq!((a.limit_is_machine, a.processes), (true, 1), "pid 999 vanished, 998 unreadable");
    let c = find(&snap, "c.service");
    assert_eq!((c.rss_bytes, c.cache_bytes, c.oom_kills, c.pressure), (20 * MI, 10 * MI, None, None));
    golden("broken", &snap);
}

#[test]
fn every_cgroup_with_cgroups_all() {
    let snap = sample("k8s-v2-systemd", CgroupFilter::All);
    // Every memory cgroup but the root.
    assert_eq!(snap.containers.len(), 12);
}

#[test]
fn openmetrics_output_is_well_formed() {
    let snap = sample("k8s-v2-systemd", CgroupFilter::Default);
    let om = render::render(&snap, &Default::default(), Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE memwatch_container_oom_kills counter\n"));
    assert!(om.contains("\nmemwatch_container_oom_kills_total{"));
    assert!(!om.contains("# TYPE memwatch_container_oom_kills_total"));
}

#[test]
fn invalid_utf8_and_newlines_in_cgroup_names_are_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let cg = dir.path().join("sys/fs/cgroup");
    let write = |p: &Path, s: &str| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    };
    write(&cg.join("cgroup.controllers"), "memory\n");
    write(&dir.path().join("proc/meminfo"), "MemTotal: 1048576 kB\n");
    let odd = cg.join(std::ffi::OsStr::from_bytes(b"bad\xffname\nwith \"quotes\""));
    for (f, v) in [("memory.current", "4096\n"), ("memory.max", "1048576\n"), ("memory.stat", "anon 4096\n"), ("cgroup.procs", "")] {
        write(&odd.join(f), v);
    }
    let roots = Roots {
        procfs: dir.path().join("proc"),
        sysfs: dir.path().join("sys"),
        cgroupfs: cg,
        tracefs: None,
        kubelet_logs: dir.path().join("var/log"),
    };
    let snap = Sampler::new(roots, Sampler::default_collectors(None, false, std::time::Duration::from_secs(10)), Options::default())
        .sample(&SampleInput::default());
    assert_eq!(snap.containers.len(), 1);
    assert_eq!(&*snap.containers[0].cgroup, "/bad\u{FFFD}name\nwith \"quotes\"");
    let text = render::render(&snap, &Default::default(), Format::Text);
    assert!(text.contains("cgroup=\"/bad\u{FFFD}name\\nwith \\\"quotes\\\"\""), "{text}");
    promtool_check(&text);
}

#[test]
fn max_series_drops_and_counts() {
    let per = memwatch::model::SERIES_PER_CONTAINER;
    let mut s = Sampler::new(
        roots("k8s-v2-systemd"),
        Sampler::default_collectors(None, false, std::time::Duration::from_secs(10)),
        Options { filter: CgroupFilter::Default, max_series: 2 * per, ..Options::default() },
    );
    let snap = s.sample(&SampleInput::default());
    assert_eq!(snap.containers.len(), 2);
    // Kubernetes containers are kept first.
    assert!(snap.containers.iter().all(|c| c.kind == memwatch::parse::identity::Kind::KubernetesContainer));
    assert_eq!(snap.self_stats.series_dropped_total, (4 * per) as u64);
    let snap = s.sample(&SampleInput::default());
    assert_eq!(snap.self_stats.series_dropped_total, (8 * per) as u64, "a counter across samples");
}

/// The web view's node table from the same scenario: its HTML as a golden file (what a person
/// sees: names, limits, headroom, order), checked to be one table row per container.
#[test]
fn golden_webview_node_k8s_v2_systemd() {
    use memwatch::http::view::page;
    let mut snap = sample("k8s-v2-systemd", CgroupFilter::Default);
    // Ids are the cgroups' inode numbers, which differ between checkouts: numbered instead.
    for (k, c) in std::sync::Arc::make_mut(&mut snap.containers).iter_mut().enumerate() {
        c.id = k as u64 + 1;
    }
    let (rates, sparks) = (Default::default(), Default::default());
    let oom = Default::default();
    let n = page::Node { snap: &snap, oom: &oom, rates: &rates, sparks: &sparks };
    // One element a line, so a diff shows what changed.
    let html = page::node_live(&n, "").into_string().replace("><", ">\n<");
    assert_eq!(html.matches("<tr id=").count(), snap.containers.len());
    check_golden("webview-node.html", &html);
}
