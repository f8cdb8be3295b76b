//! A real `memwatch serve` process on a free loopback port, and reading what it serves.
use std::{
    collections::HashMap,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use memwatch::oom::Event;

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) struct Daemon {
    child: Child,
    pub base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    /// How this test speaks to it (TLS settings, when it serves TLS).
    agent: ureq::Agent,
    /// The Authorization header its requests carry, when it asks for a password.
    auth: Option<String>,
}

impl Daemon {
    /// Starts `memwatch serve` with `args` and waits until `/readyz` says ready.
    pub(crate) fn start(args: &[&str]) -> Daemon {
        Daemon::start_under(&[], args)
    }

    /// The same, run through `wrapper` (a command that execs the rest of its arguments, such as
    /// `setpriv ...`), so the daemon's pid is the child's.
    pub(crate) fn start_under(wrapper: &[String], args: &[&str]) -> Daemon {
        Daemon::spawn(wrapper, args, "http", ureq::Agent::new(), None)
    }

    /// A daemon serving TLS (its `--web.config.file` among `args`), spoken to with `agent` (its
    /// CA, a client certificate) and `auth` (a basic-auth header).
    pub(crate) fn start_https(args: &[&str], agent: ureq::Agent, auth: Option<String>) -> Daemon {
        Daemon::spawn(&[], args, "https", agent, auth)
    }

    fn spawn(wrapper: &[String], args: &[&str], scheme: &str, agent: ureq::Agent, auth: Option<String>) -> Daemon {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("memwatch.log");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(super::memwatch_bin());
                c
            }
            None => Command::new(super::memwatch_bin()),
        };
        cmd.arg("serve").args(["--listen", &format!("127.0.0.1:{port}")]);
        // Both doors on one port unless the test asks for two (`--listen.api`).
        if !args.iter().any(|a| a.starts_with("--listen.api")) {
            cmd.args(["--listen.api", &format!("127.0.0.1:{port}")]);
        }
        let child =
            cmd.args(args).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().expect("start memwatch serve");
        let d = Daemon { child, base: format!("{scheme}://127.0.0.1:{port}"), log, _dir: dir, agent, auth };
        d.wait_until("ready", Duration::from_secs(20), || d.get("/readyz").map(|(s, _)| s == 200).unwrap_or(false));
        d
    }

    /// Speaks to it with `agent` from now on (a certificate it serves changed).
    pub(crate) fn with_agent(mut self, agent: ureq::Agent) -> Daemon {
        self.agent = agent;
        self
    }

    /// The daemon's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every OOM kill event the daemon serves, oldest first, as memwatch's own type reads them.
    pub(crate) fn events(&self) -> Vec<Event> {
        self.events_of("?kind=oom_kill")
    }

    /// Every event of any kind (kills, warnings, cleared), oldest first.
    pub(crate) fn all_events(&self) -> Vec<Event> {
        self.events_of("")
    }

    /// The events API's answer to `query`, as memwatch's own type reads it.
    pub(crate) fn events_of(&self, query: &str) -> Vec<Event> {
        let (status, body) = self.get(&format!("/api/v1/events{query}")).expect("events API");
        assert_eq!(status, 200, "{body}");
        #[derive(serde::Deserialize)]
        struct Events {
            events: Vec<Event>,
        }
        serde_json::from_str::<Events>(&body).unwrap_or_else(|e| panic!("the events API's JSON is no list of events ({e}): {body}")).events
    }

    /// The OOM kill events of the cgroup `cg`.
    pub(crate) fn events_in(&self, cg: &super::cgroup::TestCgroup) -> Vec<Event> {
        self.events().into_iter().filter(|e| e.cgroup == cg.label()).collect()
    }

    /// SIGKILL, as an OOM kill or `kill -9` ends it: no shutdown code runs.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// (status, body) of a GET; Err when nothing answers.
    pub(crate) fn get_with(&self, path: &str, accept: Option<&str>) -> Result<(u16, String, String), String> {
        let mut req = self.agent.get(&format!("{}{path}", self.base)).timeout(Duration::from_secs(5));
        if let Some(a) = &self.auth {
            req = req.set("Authorization", a);
        }
        if let Some(a) = accept {
            req = req.set("Accept", a);
        }
        match req.call() {
            Ok(r) => {
                let ct = r.header("Content-Type").unwrap_or_default().to_string();
                Ok((r.status(), ct, r.into_string().unwrap_or_default()))
            }
            Err(ureq::Error::Status(code, r)) => Ok((code, String::new(), r.into_string().unwrap_or_default())),
            Err(e) => Err(e.to_string()),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.get_with(path, None).map(|(s, _, b)| (s, b))
    }

    pub(crate) fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics").expect("scrape");
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    /// Polls `cond` every 100 ms until true; panics with the daemon's log after `timeout`.
    pub(crate) fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; daemon log:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample: its labels and value.
type Sample = (HashMap<String, String>, f64);

/// Samples of a text exposition, keyed by metric name and the full label set.
pub(crate) struct Metrics {
    pub text: String,
    samples: HashMap<String, Vec<Sample>>,
}

impl Metrics {
    pub(crate) fn parse(text: &str) -> Metrics {
        let mut samples: HashMap<String, Vec<_>> = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}').unwrap())),
                None => (series, HashMap::new()),
            };
            samples.entry(name.to_string()).or_default().push((labels, value.parse().unwrap()));
        }
        Metrics { text: text.to_string(), samples }
    }

    /// The value of `name` for the cgroup `cgroup` (and `kind`, when given).
    pub(crate) fn get(&self, name: &str, cgroup: &str, kind: Option<&str>) -> Option<f64> {
        self.samples.get(name)?.iter().find_map(|(l, v)| {
            (l.get("cgroup").map(String::as_str) == Some(cgroup) && kind.is_none_or(|k| l.get("kind").map(String::as_str) == Some(k)))
                .then_some(*v)
        })
    }

    /// The value of `name` for the sample whose labels include all of `labels`.
    pub(crate) fn get_plain(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .get(name)?
            .iter()
            .find_map(|(l, v)| labels.iter().all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want)).then_some(*v))
    }

    pub(crate) fn has_family(&self, name: &str) -> bool {
        self.samples.contains_key(name)
    }
}

fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(o) => val.push(o),
                    None => break,
                },
                '"' => break,
                c => val.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_string(), val);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}
