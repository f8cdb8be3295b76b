//! `memwatch top`: views rendered into ratatui's TestBackend from fixture snapshots, and the
//! real program in a real terminal (tmux).
use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use memwatch::{
    Roots,
    collector::SampleInput,
    model::{CgroupFilter, Options},
    sampler::Sampler,
    top::{
        App, Frame, input, plain,
        state::{Column, Mode},
        view,
    },
};
use ratatui::{Terminal, backend::TestBackend, style::Color};

use crate::util::{self, Workload, cgroup::TestCgroup, daemon::Daemon};

fn fixture_state() -> App {
    let mut app = App::new("fixture");
    app.update(Frame::new(&fixture_snapshot(), &Default::default()));
    app
}

fn fixture_snapshot() -> memwatch::snapshot::Snapshot {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/trees/k8s-v2-systemd");
    let roots = Roots {
        procfs: dir.join("proc"),
        sysfs: dir.join("sys"),
        cgroupfs: dir.join("sys/fs/cgroup"),
        tracefs: None,
        kubelet_logs: dir.join("var/log"),
    };
    let mut s = Sampler::new(
        roots,
        Sampler::default_collectors(None, false, std::time::Duration::from_secs(10)),
        Options { filter: CgroupFilter::Default, ..Options::default() },
    );
    s.sample(&SampleInput::default())
}

fn render(state: &App, w: u16, h: u16) -> (String, ratatui::buffer::Buffer) {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::draw(f, state)).unwrap();
    let buf = t.backend().buffer().clone();
    let text = (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    (text, buf)
}

fn key(c: KeyCode) -> TermEvent {
    TermEvent::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn press(app: &mut App, c: KeyCode) -> bool {
    let a = input::action(&key(c), app.view.editing_filter);
    app.apply(a, 10)
}

fn rows(app: &App) -> Vec<&memwatch::top::data::Row> {
    app.rows().collect()
}

#[test]
fn table_sorted_by_headroom_with_danger_in_red() {
    let state = fixture_state();
    let (text, buf) = render(&state, 140, 12);
    assert!(text.contains("6 containers") && text.contains("sort HEADROOM"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    // Smallest headroom first: postgres has 1 MiB of its 256 MiB left.
    assert!(lines[2].starts_with("data/postgres-0/postgres"), "{text}");
    assert!(lines[2].contains("256.0 MiB") && lines[2].contains("0.4%"), "{}", lines[2]);
    assert!(text.contains("shop/web-7d4b9c-x2x9z/server") && text.contains("512.0 MiB"), "{text}");
    assert!(text.contains("shop/web-7d4b9c-x2x9z/(pause)"), "{text}");
    // At risk by the one definition (memwatch::risk: headroom under 20%) is red: postgres's
    // 0.4% and the server's 10.2%; the rows with more headroom are not.
    assert_eq!(buf[(0, 2)].fg, Color::Red, "postgres row");
    let server_y = lines.iter().position(|l| l.starts_with("shop/web-7d4b9c-x2x9z/server")).unwrap() as u16;
    assert_eq!(buf[(0, server_y)].fg, Color::Red, "{text}");
    let roomy: Vec<&memwatch::top::data::Row> = rows(&state).into_iter().filter(|r| r.headroom_pct >= 20.0).collect();
    assert!(!roomy.is_empty(), "{text}");
    for r in roomy {
        let y = lines.iter().position(|l| l.starts_with(r.name.as_str())).unwrap() as u16;
        assert_ne!(buf[(0, y)].fg, Color::Red, "{} at {:.1}%", r.name, r.headroom_pct);
    }
}

#[test]
fn sorting_filtering_and_drilling_in() {
    let mut state = fixture_state();
    assert_eq!(state.view.sort, Column::Headroom);
    press(&mut state, KeyCode::Char('>')); // TREND
    press(&mut state, KeyCode::Char('<')); // back to HEADROOM
    press(&mut state, KeyCode::Char('<')); // LIMIT, largest first
    assert_eq!((state.view.sort, state.view.descending), (Column::Limit, true));
    assert_eq!(rows(&state)[0].container.limit_bytes, 8 << 30, "machine-limited services first");
    press(&mut state, KeyCode::Char('r'));
    assert_eq!(rows(&state)[0].container.limit_bytes, 128 << 20, "envoy's 128 MiB is the smallest");
    // Filter by text.
    press(&mut state, KeyCode::Char('/'));
    for c in "envoy".chars() {
        press(&mut state, KeyCode::Char(c));
    }
    press(&mut state, KeyCode::Enter);
    assert_eq!(rows(&state).len(), 1);
    let (text, _) = render(&state, 120, 10);
    assert!(text.contains("filter \"envoy\"") && text.contains("1 containers"), "{text}");
    // Drill in.
    press(&mut state, KeyCode::Enter);
    assert!(matches!(state.view.mode, Mode::Detail(_)));
    let (text, _) = render(&state, 120, 24);
    assert!(text.contains("shop/web-7d4b9c-x2x9z/envoy"), "{text}");
    assert!(text.contains("limit 128.0 MiB") && text.contains("high 100.0 MiB"), "{text}");
    assert!(text.contains("processes (largest RSS first)") && text.contains("301") && text.contains("envoy"), "{text}");
    assert!(text.contains("recent OOM kills") && text.contains("none recorded"), "{text}");
    press(&mut state, KeyCode::Esc);
    assert_eq!(state.view.mode, Mode::Table);
    press(&mut state, KeyCode::Esc);
    assert_eq!(rows(&state).len(), 6, "Esc clears the filter");
    // Unknown keys change nothing; q quits.
    let before: Vec<u64> = rows(&state).iter().map(|r| r.id).collect();
    assert!(press(&mut state, KeyCode::Char('x')) && press(&mut state, KeyCode::F(7)));
    assert_eq!(before, rows(&state).iter().map(|r| r.id).collect::<Vec<_>>());
    assert!(!press(&mut state, KeyCode::Char('q')));
}

#[test]
fn help_overlay_and_a_terminal_too_small() {
    let mut state = fixture_state();
    press(&mut state, KeyCode::Char('?'));
    let (text, _) = render(&state, 100, 20);
    assert!(text.contains("reverse the sort") && text.contains("quit"), "{text}");
    press(&mut state, KeyCode::Esc);
    assert!(!state.view.help);
    let (text, _) = render(&state, 40, 6);
    assert!(text.contains("terminal too small"), "{text}");
    assert!(!text.contains("NAME"), "no table garbage");
}

#[test]
fn the_status_line_says_why_the_ebpf_columns_are_empty() {
    let mut app = fixture_state();
    app.view.note = Some("no eBPF columns: loading the eBPF object needs CAP_BPF".into());
    let (text, _) = render(&app, 120, 10);
    assert!(text.lines().last().unwrap().contains("no eBPF columns: loading the eBPF object needs CAP_BPF"), "{text}");
    // A passing message (the remote daemon is down) goes first; the note comes back after.
    app.view.status = Some("cannot reach the daemon".into());
    let (text, _) = render(&app, 120, 10);
    assert!(text.lines().last().unwrap().contains("cannot reach the daemon"), "{text}");
}

#[test]
fn top_without_privilege_says_why_the_ebpf_columns_are_empty() {
    util::require_root!();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--"])
        .arg(util::memwatch_bin())
        .args(["top", "--once", "--interval", "200ms"])
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("no eBPF columns") && stderr.contains("CAP_BPF"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("NAME"), "the table still comes");
}

#[test]
fn plain_table_for_scripts() {
    let state = fixture_state();
    let out = plain::table(&state);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert!(lines[0].starts_with("NAME") && lines[0].contains("HEADROOM"));
    assert!(lines[1].starts_with("data/postgres-0/postgres"));
    let json = plain::json(&state);
    assert_eq!(json["containers"].as_array().unwrap().len(), 6);
}

/// A tmux session of its own; killed when dropped.
struct Tmux(String);

impl Tmux {
    fn start(name: &str, w: u16, h: u16) -> Tmux {
        let t = Tmux(format!("memwatch-{name}-{}", std::process::id()));
        let st = Command::new("tmux")
            .args(["new-session", "-d", "-s", &t.0, "-x", &w.to_string(), "-y", &h.to_string(), "bash --norc --noprofile"])
            .env("PS1", "$ ")
            .status()
            .expect("tmux (scripts/setup.sh installs it)");
        assert!(st.success());
        t
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            assert!(Command::new("tmux").args(["send-keys", "-t", &self.0, k]).status().unwrap().success());
        }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.0]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; screen:\n{s}");
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The TUI is gone and the shell's prompt is the last line.
    fn at_prompt(s: &str) -> bool {
        !s.contains("containers  sort")
            && s.lines().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| l.trim_end().ends_with('#') || l.trim_end().ends_with('$'))
    }

    fn resize(&self, w: u16, h: u16) {
        assert!(
            Command::new("tmux")
                .args(["resize-window", "-t", &self.0, "-x", &w.to_string(), "-y", &h.to_string()])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).status();
    }
}

#[test]
fn top_in_a_real_terminal() {
    util::require_root!();
    let cg = TestCgroup::new("top", 64 << 20);
    let label = cg.label();
    let mut w = Workload::start(&["fill", "40"], Some(&cg));
    w.expect_line("ready");
    let t = Tmux::start("top", 150, 24);
    t.keys(&[&format!("{} top --interval 300ms", util::memwatch_bin().display()), "Enter"]);
    let s = t.wait_for("the test cgroup with its limit", |s| s.lines().any(|l| l.starts_with(&label) && l.contains("64.0 MiB")));
    assert!(s.contains("sort HEADROOM"), "{s}");
    // The footer says where the same data is as a page.
    assert!(s.contains("web view: http://127.0.0.1:9754/ (memwatch serve)"), "{s}");
    // Headroom shrinks live while a second process grows by 2 MiB every 100 ms.
    let headroom = |s: &str| -> f64 {
        let line = s.lines().find(|l| l.starts_with(&label)).unwrap_or_else(|| panic!("no row for {label}:\n{s}"));
        line.split_whitespace().find(|c| c.ends_with('%')).unwrap().trim_end_matches('%').parse().unwrap()
    };
    let first = headroom(&s);
    let mut grower = Workload::start(&["grow", "2048", "16"], Some(&cg));
    grower.expect_line("ready");
    let s = t.wait_for("the headroom to shrink", |s| s.lines().any(|l| l.starts_with(&label)) && headroom(s) < first - 10.0);
    assert!(headroom(&s) > 0.0, "{s}");
    // 56 of 64 MiB: at risk, so under a warning, marked after its name.
    t.wait_for("the warning's mark", |s| s.lines().any(|l| l.starts_with(&format!("{label} ⚠"))));
    // Sort: by working set, largest first.
    t.keys(&["<", "<"]);
    t.wait_for("sorted by working set", |s| s.contains("sort WSET ▼"));
    // Filter to the test cgroup.
    t.keys(&["/"]);
    t.keys(&[&label[1..]]);
    t.keys(&["Enter"]);
    let s = t.wait_for("the filter", |s| s.contains("1 containers"));
    assert!(s.lines().nth(2).is_some_and(|l| l.starts_with(&label)), "{s}");
    // Drill in: the workload's process with its RSS.
    t.keys(&["Enter"]);
    let s = t.wait_for("the detail view", |s| s.contains("processes (largest RSS first)"));
    assert!(s.contains(&w.pid().to_string()) && s.contains("memwatch-worklo"), "{s}");
    assert!(s.contains("limit 64.0 MiB"), "{s}");
    assert!(s.contains("what to set (from its last minute; memwatch recommend weighs more): limit "), "{s}");
    t.keys(&["Escape"]);
    t.wait_for("the table again", |s| s.contains("NAME") && s.contains("HEADROOM"));
    // Resizing: too small shows a message, larger shows the table again.
    t.resize(40, 8);
    t.wait_for("the too-small message", |s| s.contains("terminal too small"));
    t.resize(150, 24);
    t.wait_for("the table after resizing", |s| s.contains("NAME") && s.contains(&label));
    // An unknown key does nothing; q quits and leaves a usable shell.
    t.keys(&["x", "q"]);
    t.wait_for("the shell prompt", Tmux::at_prompt);
    t.keys(&["stty -a | grep -o -- '-icanon\\|icanon' | head -1; echo still-$((6*7))", "Enter"]);
    let s = t.wait_for("the shell to answer", |s| s.contains("still-42"));
    assert!(s.lines().any(|l| l.trim() == "icanon"), "terminal back in canonical mode:\n{s}");
    // Ctrl-C quits as well, and restores the terminal.
    t.keys(&["clear", "Enter"]);
    t.keys(&[&format!("{} top --interval 300ms", util::memwatch_bin().display()), "Enter"]);
    t.wait_for("top again", |s| s.contains("containers  sort"));
    t.keys(&["C-c"]);
    t.wait_for("top gone after Ctrl-C", Tmux::at_prompt);
    t.keys(&["echo after-ctrl-c", "Enter"]);
    t.wait_for("the shell after Ctrl-C", |s| s.contains("after-ctrl-c\n") || s.lines().any(|l| l.trim() == "after-ctrl-c"));
    grower.finish();
    w.finish();
}

#[test]
fn top_remote_once_and_remote_down() {
    util::require_root!();
    let cg = TestCgroup::new("remote", 96 << 20);
    let d = Daemon::start(&["--interval", "300ms"]);
    d.wait_until("the cgroup in the daemon", Duration::from_secs(5), || {
        d.get("/api/v1/containers").map(|(_, b)| b.contains(&cg.label())).unwrap_or(false)
    });
    let out = Command::new(util::memwatch_bin()).args(["top", "--once", "--remote", &d.base, "--interval", "300ms"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.lines().any(|l| l.starts_with(&cg.label()) && l.contains("96.0 MiB")), "{text}");
    // Not a terminal: a plain table even without --once.
    let out = Command::new(util::memwatch_bin()).args(["top", "--remote", &d.base, "--interval", "300ms"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("NAME"));
    // A daemon that is down: the live view says so and keeps trying.
    let port = crate::util::daemon::free_port();
    let t = Tmux::start("down", 120, 12);
    t.keys(&[&format!("{} top --remote http://127.0.0.1:{port} --interval 300ms", util::memwatch_bin().display()), "Enter"]);
    t.wait_for("the retry message", |s| s.contains(&format!("cannot reach http://127.0.0.1:{port}")) && s.contains("retrying"));
    t.keys(&["q"]);
    t.wait_for("quit", Tmux::at_prompt);
}

/// A container under a memory warning is marked (⚠, red) until its cleared event.
#[test]
fn a_container_under_a_warning_is_marked_until_cleared() {
    let mut state = fixture_state();
    let server = rows(&state).into_iter().find(|r| r.name == "shop/web-7d4b9c-x2x9z/server").unwrap().container.clone();
    let event = |seq: u64, kind: &str| -> memwatch::oom::Event {
        serde_json::from_value(serde_json::json!({
            "seq": seq, "time": 1.0 + seq as f64, "kind": kind, "source": "sample", "count": 0,
            "namespace": "shop", "pod": "web-7d4b9c-x2x9z", "container": "server", "container_id": "",
            "cgroup": &*server.cgroup, "cgroup_id": server.id, "cgroup_ids": [server.id], "constraint": "cgroup",
        }))
        .unwrap()
    };
    let frame_with = |events: Vec<memwatch::oom::Event>| {
        let mut f = Frame::new(&fixture_snapshot(), &Default::default());
        f.events = events;
        f
    };
    state.update(frame_with(vec![event(1, "warning")]));
    let (text, buf) = render(&state, 140, 12);
    let y = text
        .lines()
        .position(|l| l.starts_with("shop/web-7d4b9c-x2x9z/server ⚠"))
        .unwrap_or_else(|| panic!("marked after its name: {text}")) as u16;
    assert_eq!(buf[(5, y)].fg, Color::Red, "{text}");
    assert!(!rows(&state).iter().any(|r| r.recent_oom), "a warning is no kill");
    assert!(!plain::table(&state).contains('⚠'), "the plain table for scripts keeps its names");
    assert_eq!(plain::json(&state)["containers"].as_array().unwrap().iter().filter(|c| c["warned"] == true).count(), 1);
    state.update(frame_with(vec![event(1, "warning"), event(2, "cleared")]));
    let (text, _) = render(&state, 140, 12);
    assert!(!text.contains('⚠') && text.contains("shop/web-7d4b9c-x2x9z/server"), "{text}");
}
