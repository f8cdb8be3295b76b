//! A real browser: Debian's headless Chromium, driven through Debian's chromedriver over the
//! W3C WebDriver protocol.
//!
//! Written here on `ureq` rather than with a WebDriver crate (fantoccini, thirtyfour): these
//! tests are synchronous, they use eight commands that are each one JSON request, and what
//! they most need (the browser's console, chromedriver's `se/log`) is outside the W3C
//! protocol those crates model; an async client would bring a runtime into every test for it.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// Shared with the web view's benchmark (`benches/webview.rs`), so it needs nothing else of the
/// test helpers.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

#[derive(Debug, Clone)]
pub(crate) struct Element(String);

impl Browser {
    /// chromedriver on a free port, and one headless Chromium session of `width`×`height`.
    pub(crate) fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/setup.sh installs it)");
        let base = format!("http://127.0.0.1:{port}");
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
        let started = Instant::now();
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                         format!("--window-size={width},{height}"), format!("--user-data-dir={}", profile.path().display())]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let mut b = Browser { driver, base, session: String::new(), agent, _profile: profile };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let r = match body {
            Some(b) => self.agent.request(method, &url).send_json(b),
            None => self.agent.request(method, &url).call(),
        };
        let v: Value = match r {
            Ok(r) => r.into_json().unwrap(),
            Err(ureq::Error::Status(code, r)) => {
                return Err(format!("webdriver {method} {path}: {code} {}", r.into_string().unwrap_or_default()));
            }
            Err(e) => return Err(format!("webdriver {method} {path}: {e}")),
        };
        Ok(v["value"].clone())
    }

    /// Clicks what `css` selects, waiting up to `timeout` for it: found again when the page's
    /// live part was replaced between finding it and clicking (a stale element).
    pub(crate) fn click_css(&self, css: &str, timeout: Duration) {
        let started = Instant::now();
        loop {
            let e = self.wait_for(css, timeout);
            match self.try_call("POST", &format!("/session/{}/element/{}/click", self.session, e.0), Some(json!({}))) {
                Ok(_) => return,
                Err(m) if m.contains("stale element") && started.elapsed() < timeout => continue,
                Err(m) => panic!("{m}"),
            }
        }
    }

    fn session(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub(crate) fn goto(&self, url: &str) {
        self.session("POST", "/url", Some(json!({ "url": url })));
    }

    pub(crate) fn url(&self) -> String {
        self.session("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    /// The first element `css` selects now, if any.
    pub(crate) fn find(&self, css: &str) -> Option<Element> {
        let v = self.session("POST", "/elements", Some(json!({"using": "css selector", "value": css})));
        // An element reference is an object of one key (the protocol's `element-6066-…` name).
        let e = v.as_array()?.first()?.as_object()?;
        e.values().next()?.as_str().map(|id| Element(id.to_string()))
    }

    /// Waits up to `timeout` for `css` to select an element.
    pub(crate) fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let started = Instant::now();
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            if started.elapsed() >= timeout {
                let text = self.eval("return document.body ? document.body.innerText : ''");
                panic!("no {css} on {} after {timeout:?}; the page says:\n{}", self.url(), text.as_str().unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn text(&self, e: &Element) -> String {
        self.session("GET", &format!("/element/{}/text", e.0), None).as_str().unwrap_or_default().to_string()
    }

    pub(crate) fn attribute(&self, e: &Element, name: &str) -> Option<String> {
        self.session("GET", &format!("/element/{}/attribute/{name}", e.0), None).as_str().map(String::from)
    }

    pub(crate) fn click(&self, e: &Element) {
        self.session("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    pub(crate) fn type_into(&self, e: &Element, text: &str) {
        self.session("POST", &format!("/element/{}/value", e.0), Some(json!({ "text": text })));
    }

    /// Runs `script` (a function body; `return` gives its value) in the page.
    pub(crate) fn eval(&self, script: &str) -> Value {
        self.session("POST", "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    /// The console's errors since the last call (and failed loads, which Chromium logs there).
    pub(crate) fn console_errors(&self) -> Vec<String> {
        let v = self.session("POST", "/se/log", Some(json!({"type": "browser"})));
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The visible page as PNG, written to `to`; returns how many distinct colours it has (a
    /// blank page has one or two).
    pub(crate) fn screenshot(&self, to: &Path) -> usize {
        use base64::Engine;
        let v = self.session("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("a screenshot")).unwrap();
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(to, &png).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(&png)).read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
        let info = reader.next_frame(&mut buf).expect("a frame");
        let px = info.color_type.samples();
        let mut colours: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        for p in buf[..info.buffer_size()].chunks(px) {
            colours.insert(p);
            if colours.len() > 1000 {
                break;
            }
        }
        colours.len()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.agent.delete(&format!("{}/session/{}", self.base, self.session)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
