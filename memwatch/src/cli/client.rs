//! A client of a running daemon's JSON API (its `--listen.api` door), for `memwatch events`,
//! `memwatch trace`, `memwatch profile`, `memwatch explain` and `memwatch top --remote`: plain
//! HTTP, or HTTPS with the daemon's CA, a client certificate and a basic-auth user where its
//! `--web.config.file` asks for them.
use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use base64::Engine as _;
use clap::Args;
use memwatch::{oom::Event, snapshot::Container, top::Frame};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// Where the local daemon serves its API (`memwatch serve --listen.api`'s default).
pub(crate) const DEFAULT_API: &str = "http://127.0.0.1:9754";

/// TLS and credentials for an `https://` daemon.
#[derive(Args, Clone, Default, Debug)]
pub(crate) struct RemoteTls {
    /// The CA certificate (PEM) that signed the daemon's, for an https:// address (else the
    /// system's roots)
    #[arg(long = "remote.ca-file", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to show a daemon that asks for one
    #[arg(long = "remote.cert-file", value_name = "FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM)
    #[arg(long = "remote.key-file", value_name = "FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// A basic-auth user of the daemon's --web.config.file
    #[arg(long = "remote.user", value_name = "USER")]
    user: Option<String>,
    /// A file holding that user's password (else the MEMWATCH_REMOTE_PASSWORD variable; never
    /// on the command line, where other users could read it)
    #[arg(long = "remote.password-file", value_name = "FILE", requires = "user")]
    password_file: Option<PathBuf>,
}

/// A connection to a daemon's API.
pub(crate) struct Client {
    base: String,
    agent: ureq::Agent,
    authorization: Option<String>,
}

impl RemoteTls {
    /// A client of the daemon at `base`.
    pub(crate) fn client(&self, base: &str) -> anyhow::Result<Client> {
        let mut agent = ureq::AgentBuilder::new();
        if base.starts_with("https://") {
            agent = agent.tls_config(Arc::new(self.tls_config()?));
        }
        let authorization = match &self.user {
            None => None,
            Some(u) => {
                let password = match &self.password_file {
                    Some(f) => std::fs::read_to_string(f).with_context(|| format!("--remote.password-file {}", f.display()))?,
                    None => std::env::var("MEMWATCH_REMOTE_PASSWORD")
                        .context("--remote.user needs --remote.password-file or MEMWATCH_REMOTE_PASSWORD")?,
                };
                let pair = format!("{u}:{}", password.trim_end_matches(['\r', '\n']));
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            }
        };
        if authorization.is_some() && base.starts_with("http://") {
            anyhow::bail!("--remote.user would send its password in the clear to {base}: use https://");
        }
        Ok(Client { base: base.trim_end_matches('/').to_string(), agent: agent.build(), authorization })
    }

    fn tls_config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(ca) => {
                for c in CertificateDer::pem_slice_iter(&read(ca)?) {
                    roots.add(c.with_context(|| format!("{}: not a PEM certificate", ca.display()))?)?;
                }
                anyhow::ensure!(!roots.is_empty(), "{}: no certificate in it", ca.display());
            }
            None => roots.extend(system_roots()),
        }
        #[allow(deprecated)] // ring: see memwatch::http::tls
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots);
        Ok(match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(c)?)
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("{}: not a PEM certificate", c.display()))?;
                let key = PrivateKeyDer::from_pem_slice(&read(k)?).with_context(|| format!("{}: not a PEM private key", k.display()))?;
                b.with_client_auth_cert(certs, key)?
            }
            _ => b.with_no_client_auth(),
        })
    }
}

/// The system's roots (Debian's ca-certificates), for a daemon whose certificate a public CA
/// signed.
fn system_roots() -> Vec<rustls::pki_types::TrustAnchor<'static>> {
    let mut roots = rustls::RootCertStore::empty();
    let found = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    for c in CertificateDer::pem_slice_iter(&found).flatten() {
        let _ = roots.add(c);
    }
    roots.roots
}

impl Client {
    fn get(&self, path: &str) -> ureq::Request {
        let r = self.agent.get(&format!("{}{path}", self.base)).timeout(Duration::from_secs(5));
        match &self.authorization {
            Some(a) => r.set("Authorization", a),
            None => r,
        }
    }
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

impl Client {
    /// A JSON document the daemon serves at `path`.
    pub(crate) fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let r = self.get(path).timeout(Duration::from_secs(60)).call().with_context(|| format!("{}{path}", self.base))?;
        r.into_json().with_context(|| format!("{}{path}: not the JSON expected", self.base))
    }

    /// OOM events at or after `since` (Unix seconds) with a sequence number above `after`.
    pub(crate) fn events(&self, since: Option<f64>, after: Option<u64>) -> anyhow::Result<Vec<Event>> {
        let mut req = self.get("/api/v1/events");
        if let Some(s) = since {
            req = req.query("since", &s.to_string());
        }
        if let Some(a) = after {
            req = req.query("after", &a.to_string());
        }
        Ok(req.call()?.into_json::<EventsReply>()?.events)
    }

    /// The trace of the last `since`, for one container or all, as the daemon wrote it.
    pub(crate) fn trace(&self, since: Duration, container: Option<&str>) -> anyhow::Result<Vec<u8>> {
        let mut req =
            self.get("/api/v1/trace").timeout(Duration::from_secs(60)).query("since", &humantime::format_duration(since).to_string());
        if let Some(c) = container {
            req = req.query("container", c);
        }
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut req.call()?.into_reader(), &mut body)?;
        Ok(body)
    }
}

/// A profile as the daemon wrote it, with what it says the profile holds.
pub(crate) struct Profile {
    pub body: Vec<u8>,
    pub samples: Option<u64>,
    /// Where the profile holds less than asked: why.
    pub note: Option<String>,
}

impl Client {
    /// A profile of a container's or a process's fault stacks over the last `since`, or recorded
    /// for `record` from now; the daemon's own message when it refuses.
    pub(crate) fn profile(
        &self,
        subject: &memwatch::stacks::Subject,
        since: Duration,
        record: Option<Duration>,
        format: memwatch::http::ProfileFormat,
    ) -> anyhow::Result<Profile> {
        let wait = record.unwrap_or_default() + Duration::from_secs(60);
        let mut req = self
            .get("/api/v1/profile")
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
    pub(crate) fn stacks(&self) -> anyhow::Result<std::collections::HashMap<u64, Vec<memwatch::stacks::profile::StackUse>>> {
        #[derive(serde::Deserialize)]
        struct Reply {
            stacks: std::collections::HashMap<String, Vec<memwatch::stacks::profile::StackUse>>,
        }
        let r: Reply = self.get("/api/v1/stacks").call()?.into_json()?;
        Ok(r.stacks.into_iter().filter_map(|(k, v)| Some((k.parse().ok()?, v))).collect())
    }

    /// One frame for `top`: the containers and the recent events.
    pub(crate) fn frame(&self) -> anyhow::Result<Frame> {
        let c: ContainersReply = self.get("/api/v1/containers").call()?.into_json()?;
        // A daemon from before fault stacks has no /api/v1/stacks: no stacks, not an error.
        let stacks = self.stacks().unwrap_or_default();
        Ok(Frame { taken_at: c.taken_at, containers: Arc::new(c.containers), events: self.events(None, None)?, stacks })
    }
}
