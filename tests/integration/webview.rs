//! The web view in a real browser (Debian's headless Chromium through chromedriver), against
//! a real daemon watching real cgroups: the node view, a container killed by the kernel and its
//! story, a path prefix and a proxy's path, and the screenshots the docs show.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::Command,
    thread,
    time::Duration,
};

use crate::util::{
    self, Workload,
    browser::Browser,
    cgroup::TestCgroup,
    daemon::Daemon,
    oom::{MIB, event_for, run_until_killed},
    programs,
};

/// Where the screenshots go: `target/webview/`, and with MEMWATCH_UPDATE_DOCS=1 also
/// `docs/img/`, which the README shows.
fn screenshot(b: &Browser, name: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let to = root.join("target/webview").join(format!("{name}.png"));
    let colours = b.screenshot(&to);
    assert!(colours > 20, "{name}: the screenshot is blank ({colours} colours): {}", to.display());
    if std::env::var_os("MEMWATCH_UPDATE_DOCS").is_some() {
        let docs = root.join("docs/img").join(format!("webview-{name}.png"));
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::copy(&to, &docs).unwrap();
    }
}

/// The test workload holding `mib` MiB in `cg` (until dropped), once it has them.
fn hold(cg: &TestCgroup, mib: u64) -> Workload {
    let mut w = Workload::start(&["fill", &mib.to_string()], Some(cg));
    w.expect_line("ready");
    w
}

fn no_console_errors(b: &Browser, page: &str) {
    let errors = b.console_errors();
    assert!(errors.is_empty(), "{page}: console errors: {errors:#?}");
}

#[test]
fn the_node_view_lists_a_real_container_with_its_limit_and_a_hostile_name_as_text() {
    util::require_root!();
    let state = tempfile::tempdir().unwrap();
    let calm = TestCgroup::new("web-calm", 64 * MIB);
    let hostile = TestCgroup::new("web-<img src=x onerror=window.pwned=1>", 96 * MIB);
    let _a = hold(&calm, 20);
    let _b = hold(&hostile, 8);
    let d =
        Daemon::start(&["--interval", "1s", "--cgroups.include", "/memwatch-test-web-.*", "--state-dir", state.path().to_str().unwrap()]);
    d.wait_until("both containers with their processes", Duration::from_secs(20), || {
        let (_, body) = d.get("/api/v1/containers").unwrap();
        body.matches("memwatch-worklo").count() >= 2
    });
    let b = Browser::start(1400, 700);
    b.goto(&format!("{}/", d.base));
    let row = b.wait_for(&format!("tr#c{}", calm.id()), Duration::from_secs(10));
    let text = b.text(&row);
    assert!(text.contains(&format!("/{}", calm.path.file_name().unwrap().to_str().unwrap())), "{text}");
    assert!(text.contains("/ 64.0 MiB"), "the limit: {text}");
    // The hostile name is text: the row shows it, no image was made, nothing ran.
    let row = b.wait_for(&format!("tr#c{}", hostile.id()), Duration::from_secs(5));
    let text = b.text(&row);
    assert!(text.contains("<img src=x onerror=window.pwned=1>"), "{text}");
    assert!(text.contains("/ 96.0 MiB"), "{text}");
    let ran = b.eval("return [window.pwned === undefined, document.querySelectorAll('main img').length]");
    assert_eq!(ran, serde_json::json!([true, 0]), "the name ran or made an element");
    // It updates live (app.js fetched the live part again), and the filter hides rows.
    b.wait_for("#updated:not(:empty)", Duration::from_secs(15));
    let updated = b.text(&b.find("#updated").unwrap());
    assert!(updated.starts_with("updated "), "{updated}");
    screenshot(&b, "node");
    b.type_into(&b.find("#filter").unwrap(), "calm");
    let shown = b.eval("return document.querySelectorAll('#live tbody tr:not([hidden])').length");
    assert_eq!(shown, 1, "the filter leaves the one row");
    assert!(b.url().contains("q=calm"), "the filter is in the URL to share: {}", b.url());
    // A page opened with the filter applies it at once.
    b.goto(&format!("{}/?q=onerror", d.base));
    b.wait_for("#live tr", Duration::from_secs(5));
    let shown = b.eval("return Array.from(document.querySelectorAll('#live tbody tr:not([hidden])'), r => r.cells[0].textContent)");
    assert!(shown.as_array().is_some_and(|a| a.len() == 1 && a[0].as_str().unwrap().contains("onerror")), "{shown}");
    no_console_errors(&b, "node view");
}

#[test]
fn a_container_killed_shows_its_limit_and_a_kill_marker_that_opens_its_story() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = Daemon::start(&[
        "--interval",
        "500ms",
        "--slow-interval",
        "1s",
        "--stacks",
        "always",
        "--cgroups.include",
        "/memwatch-test-webkill-.*",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let cg = TestCgroup::new("webkill", 128 * MIB);
    // Some calm seconds first, so the chart has a line before the kill; then a growth of 1 MiB
    // each 60 ms (about 8 s to the limit), which the chart shows as a ramp.
    let warm = hold(&cg, 30);
    thread::sleep(Duration::from_secs(8));
    warm.finish();
    let mut cmd = Command::new(programs::memtest());
    cmd.args(["hog", "60"]);
    let (pid, _) = run_until_killed(cmd, &cg);
    let e = event_for(&d, &cg, pid);
    let s = e.stacks.as_ref().unwrap_or_else(|| panic!("no stacks: {e:#?}"));
    assert_eq!(s.top[0].own.as_deref(), Some("hog"), "{:#?}", s.top);

    let b = Browser::start(1400, 1300);
    b.goto(&format!("{}/containers/{}", d.base, cg.id()));
    let limit = b.wait_for("svg.chart path.series.limit", Duration::from_secs(10));
    assert!(b.attribute(&limit, "d").is_some_and(|p| p.starts_with('M')), "a drawn limit line");
    let marker = format!(r#"svg.chart a.marker[href$="events/{}"]"#, e.seq);
    b.wait_for(&marker, Duration::from_secs(5));
    assert!(b.find("svg.chart a.marker line.mark.kill").is_some(), "the kill's marker is a kill's");
    // What to set: killed at 128 MiB, at least 1.25 times that.
    let what = b.text(&b.wait_for("p.recommend", Duration::from_secs(5)));
    assert!(what.starts_with("limit 160.0 MiB, request"), "{what}");
    screenshot(&b, "container");
    no_console_errors(&b, "container view");
    b.click_css(&marker, Duration::from_secs(5));
    b.wait_for("h1.kill", Duration::from_secs(10));
    assert!(b.url().ends_with(&format!("/events/{}", e.seq)), "the story has its own URL: {}", b.url());
    let body = b.text(&b.find("main").unwrap());
    assert!(body.contains(&format!("OOM kill #{}", e.seq)), "{body}");
    for r in &e.explanation {
        assert!(body.contains(r.text.trim()), "the explanation's text {:?} in:\n{body}", r.text);
    }
    let growth = b.text(&b.find("section.stacks").expect("the growth stack"));
    assert!(growth.contains("hog"), "the growth stack's function: {growth}");
    assert!(b.find("svg.composition rect.part.anon").is_some(), "the state at the kill as a chart");
    screenshot(&b, "story");
    no_console_errors(&b, "story");
    // The story's container link leads back.
    b.click_css("p.meta a", Duration::from_secs(5));
    b.wait_for("svg.chart", Duration::from_secs(10));
    assert!(b.url().ends_with(&format!("/containers/{}", cg.id())), "{}", b.url());
}

/// A stand-in for `kubectl proxy`: forwards `<path>/<rest>` to `<to><rest>` on the daemon, one
/// request per connection, as a proxy that knows nothing of the page.
fn proxy(daemon: &str, path: &'static str, to: &'static str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let upstream = daemon.trim_start_matches("http://").to_string();
    thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let upstream = upstream.clone();
            thread::spawn(move || forward(conn, &upstream, path, to));
        }
    });
    format!("http://{addr}{path}")
}

fn forward(mut client: TcpStream, upstream: &str, path: &str, to: &str) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        if !line.to_ascii_lowercase().starts_with("connection:") {
            head.push(line);
        }
    }
    let mut parts = head[0].splitn(3, ' ');
    let (method, target, version) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(rest) = target.strip_prefix(path) else {
        let _ = client.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let mut up = TcpStream::connect(upstream).unwrap();
    let mut req = format!("{method} {to}{rest} {version}");
    for h in &head[1..] {
        req += h;
    }
    req += "Connection: close\r\n\r\n";
    up.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = up.read_to_end(&mut resp);
    let _ = client.write_all(&resp);
}

#[test]
fn the_view_works_under_a_route_prefix_and_through_a_proxy_path() {
    util::require_root!();
    let state = tempfile::tempdir().unwrap();
    let cg = TestCgroup::new("webprefix", 64 * MIB);
    let _h = hold(&cg, 10);
    let d = Daemon::start(&[
        "--interval",
        "1s",
        "--web.route-prefix",
        "/memwatch",
        "--cgroups.include",
        "/memwatch-test-webprefix-.*",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let b = Browser::start(1200, 800);
    let header_colour = "return getComputedStyle(document.querySelector('header')).backgroundColor";
    // The prefix: /memwatch leads to /memwatch/, and every link stays under it.
    b.goto(&format!("{}/memwatch", d.base));
    let link = format!(r#"tr#c{} a[href*="containers/"]"#, cg.id());
    b.wait_for(&link, Duration::from_secs(15));
    assert!(b.url().ends_with("/memwatch/"), "{}", b.url());
    assert_eq!(b.eval(header_colour), "rgb(29, 35, 48)", "the stylesheet loaded under the prefix");
    b.click_css(&link, Duration::from_secs(5));
    b.wait_for("svg.chart", Duration::from_secs(10));
    assert_eq!(b.url(), format!("{}/memwatch/containers/{}", d.base, cg.id()));
    assert_eq!(b.eval(header_colour), "rgb(29, 35, 48)");
    b.click_css(r#"header nav a[href$="events"]"#, Duration::from_secs(5));
    b.wait_for("h1", Duration::from_secs(10));
    assert_eq!(b.url(), format!("{}/memwatch/events", d.base));
    no_console_errors(&b, "under the prefix");
    assert_eq!(d.get("/").unwrap().0, 404, "nothing outside the prefix");

    // Through a proxy's path (as `kubectl proxy` serves a pod's port), onto the prefix.
    let via = proxy(&d.base, "/api/v1/namespaces/monitoring/pods/memwatch-x7k2p:9754/proxy", "/memwatch");
    b.goto(&format!("{via}/"));
    b.wait_for(&link, Duration::from_secs(15));
    assert_eq!(b.eval(header_colour), "rgb(29, 35, 48)", "the stylesheet loaded through the proxy");
    b.wait_for("#updated:not(:empty)", Duration::from_secs(15));
    let updated = b.text(&b.find("#updated").unwrap());
    assert!(updated.starts_with("updated "), "the live part fetched through the proxy: {updated}");
    b.click_css(&link, Duration::from_secs(5));
    b.wait_for("svg.chart", Duration::from_secs(10));
    assert_eq!(b.url(), format!("{via}/containers/{}", cg.id()));
    no_console_errors(&b, "through the proxy");
}
