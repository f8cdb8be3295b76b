//! A client of a running daemon's JSON API, for `memwatch events`, `memwatch trace` and
//! `memwatch top --remote`.
use std::{sync::Arc, time::Duration};

use memwatch::{oom::Event, snapshot::Container, top::Frame};

fn get(base: &str, path: &str) -> ureq::Request {
    ureq::get(&format!("{}{path}", base.trim_end_matches('/'))).timeout(Duration::from_secs(5))
}

#[derive(serde::Deserialize)]
struct EventsReply {
    events: Vec<Event>,
}

#[derive(serde::Deserialize)]
struct ContainersReply {
    taken_at: f64,
    containers: Vec<Container>,
}

/// OOM events at or after `since` (Unix seconds) with a sequence number above `after`.
pub(crate) fn events(base: &str, since: Option<f64>, after: Option<u64>) -> anyhow::Result<Vec<Event>> {
    let mut req = get(base, "/api/v1/events");
    if let Some(s) = since {
        req = req.query("since", &s.to_string());
    }
    if let Some(a) = after {
        req = req.query("after", &a.to_string());
    }
    Ok(req.call()?.into_json::<EventsReply>()?.events)
}

/// The trace of the last `since`, for one container or all, as the daemon wrote it.
pub(crate) fn trace(base: &str, since: Duration, container: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let mut req =
        get(base, "/api/v1/trace").timeout(Duration::from_secs(60)).query("since", &humantime::format_duration(since).to_string());
    if let Some(c) = container {
        req = req.query("container", c);
    }
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut req.call()?.into_reader(), &mut body)?;
    Ok(body)
}

/// A profile as the daemon wrote it, with what it says the profile holds.
pub(crate) struct Profile {
    pub body: Vec<u8>,
    pub samples: Option<u64>,
    /// Where the profile holds less than asked: why.
    pub note: Option<String>,
}

/// A profile of a container's or a process's fault stacks over the last `since`, or recorded
/// for `record` from now; the daemon's own message when it refuses.
pub(crate) fn profile(
    base: &str,
    subject: &memwatch::stacks::Subject,
    since: Duration,
    record: Option<Duration>,
    format: memwatch::http::ProfileFormat,
) -> anyhow::Result<Profile> {
    let wait = record.unwrap_or_default() + Duration::from_secs(60);
    let mut req = get(base, "/api/v1/profile")
        .timeout(wait)
        .query("seconds", &since.as_secs_f64().to_string())
        .query("format", &format!("{format:?}").to_lowercase());
    if let Some(r) = record {
        req = req.query("record", &r.as_secs_f64().to_string());
    }
    req = match subject {
        memwatch::stacks::Subject::Pid(p) => req.query("pid", &p.to_string()),
        memwatch::stacks::Subject::Container(c) => req.query("container", c),
    };
    let reply = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => anyhow::bail!("{code}: {}", r.into_string().unwrap_or_default().trim()),
        Err(e) => return Err(e.into()),
    };
    let samples = reply.header("x-memwatch-samples").and_then(|v| v.parse().ok());
    let note = reply.header("x-memwatch-note").map(String::from);
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut reply.into_reader(), &mut body)?;
    Ok(Profile { body, samples, note })
}

/// Each container's top stacks of the last minute, by cgroup id.
pub(crate) fn stacks(base: &str) -> anyhow::Result<std::collections::HashMap<u64, Vec<memwatch::stacks::profile::StackUse>>> {
    #[derive(serde::Deserialize)]
    struct Reply {
        stacks: std::collections::HashMap<String, Vec<memwatch::stacks::profile::StackUse>>,
    }
    let r: Reply = get(base, "/api/v1/stacks").call()?.into_json()?;
    Ok(r.stacks.into_iter().filter_map(|(k, v)| Some((k.parse().ok()?, v))).collect())
}

/// One frame for `top`: the containers and the recent events.
pub(crate) fn frame(base: &str) -> anyhow::Result<Frame> {
    let c: ContainersReply = get(base, "/api/v1/containers").call()?.into_json()?;
    // A daemon from before fault stacks has no /api/v1/stacks: no stacks, not an error.
    let stacks = stacks(base).unwrap_or_default();
    Ok(Frame { taken_at: c.taken_at, containers: Arc::new(c.containers), events: events(base, None, None)?, stacks })
}
