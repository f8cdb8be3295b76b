//! `--web.config.file`: TLS (rustls, no OpenSSL) and basic authentication for the endpoint, in
//! exporter-toolkit's format (parsed by `crate::parse::webconfig`). The file, and the
//! certificates and keys it names, are re-read when they change ([`Web::reload_if_changed`],
//! polled by `serve`): a new certificate serves new connections at once and open ones are
//! closed gracefully after their request in flight; a broken replacement is refused with a clear
//! error and the last good configuration keeps serving.
//!
//! Passwords are checked against their bcrypt hashes off the async workers, at most
//! [`BCRYPT_AT_ONCE`] at a time, and a verified pair is cached ([`CACHE_LIMIT`] entries, as
//! exporter-toolkit does), so a scrape does not pay bcrypt's cost each time. An unknown user
//! costs a bcrypt check too, so the answer's timing does not tell which users exist.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;
use axum::http::{HeaderName, HeaderValue};
use base64::Engine as _;
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::sync::{Semaphore, watch};

use crate::parse::webconfig::{self, ClientAuth, TlsVersion, WebConfig, WebConfigError};

/// Verified (user, password, hash) triples kept; the cache is emptied when full.
pub const CACHE_LIMIT: usize = 256;
/// bcrypt checks run at once, at most (each takes tens of milliseconds of a core).
pub const BCRYPT_AT_ONCE: usize = 2;
/// Checked for an unknown user, so the answer takes as long as for a known one.
const DUMMY_HASH: &str = "$2y$10$rvlR6CcqBKS4lFwYWEWiCuXgy5q942HKxBVtijs0qPl.viOuURnMu";

/// What went wrong reading a web configuration.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Config { path: PathBuf, source: WebConfigError },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("{path}: {source}")]
    Tls { path: PathBuf, source: rustls::Error },
}

/// A configuration as loaded: what serves connections now.
pub struct Loaded {
    /// None: plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    pub users: std::collections::BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The bytes of the configuration and every file it names, to tell a change.
    inputs: Vec<(PathBuf, Vec<u8>)>,
}

impl Loaded {
    pub fn wants_auth(&self) -> bool {
        !self.users.is_empty()
    }
}

/// The web configuration of a running server.
pub struct Web {
    path: PathBuf,
    current: ArcSwap<Loaded>,
    generation: watch::Sender<u64>,
    cache: Mutex<HashMap<(String, String, String), bool>>,
    bcrypt: Semaphore,
    /// What the last failed reload read: not tried (nor logged) again until something changes.
    failed: Mutex<Option<Vec<u8>>>,
}

fn read(path: &Path) -> Result<Vec<u8>, WebError> {
    std::fs::read(path).map_err(|source| WebError::Read { path: path.to_path_buf(), source })
}

/// Reads the configuration at `path` and the files it names, and builds what serves with it.
fn load(path: &Path) -> Result<Loaded, WebError> {
    let text = read(path)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let cfg: WebConfig =
        webconfig::parse(&String::from_utf8_lossy(&text), dir).map_err(|source| WebError::Config { path: path.to_path_buf(), source })?;
    let mut inputs = vec![(path.to_path_buf(), text)];
    for f in cfg.files() {
        inputs.push((f.clone(), read(&f)?));
    }
    let file = |p: &Path| inputs.iter().find(|(q, _)| q == p).map(|(_, b)| b.as_slice()).unwrap_or_default();
    let tls = match &cfg.tls {
        None => None,
        Some(t) => {
            let pem = |p: &Path, what: &str| WebError::Pem { path: p.to_path_buf(), what: what.to_string() };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(file(&t.cert_file))
                .collect::<Result<_, _>>()
                .map_err(|e| pem(&t.cert_file, &format!("not a PEM certificate: {e}")))?;
            if certs.is_empty() {
                return Err(pem(&t.cert_file, "no certificate in it"));
            }
            let key =
                PrivateKeyDer::from_pem_slice(file(&t.key_file)).map_err(|e| pem(&t.key_file, &format!("not a PEM private key: {e}")))?;
            // ring: it cross-compiles to arm64 with no C toolchain beyond the linker (aws-lc-rs
            // needs cmake and a C cross-compiler); it has no post-quantum key exchange yet.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version {
                TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
                TlsVersion::Tls13 => &[&rustls::version::TLS13],
            };
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|source| WebError::Tls { path: path.to_path_buf(), source })?;
            let builder = match (t.client_auth, &t.client_ca_file) {
                (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
                (auth, Some(ca)) => {
                    let mut roots = RootCertStore::empty();
                    for c in CertificateDer::pem_slice_iter(file(ca)) {
                        let c = c.map_err(|e| pem(ca, &format!("not a PEM certificate: {e}")))?;
                        roots.add(c).map_err(|source| WebError::Tls { path: ca.clone(), source })?;
                    }
                    if roots.is_empty() {
                        return Err(pem(ca, "no CA certificate in it"));
                    }
                    let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                    let v = if auth == ClientAuth::VerifyIfGiven { v.allow_unauthenticated() } else { v };
                    builder.with_client_cert_verifier(v.build().map_err(|e| pem(ca, &e.to_string()))?)
                }
            };
            let mut config = builder.with_single_cert(certs, key).map_err(|source| WebError::Tls { path: t.key_file.clone(), source })?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(config))
        }
    };
    let headers = cfg
        .headers
        .iter()
        .filter_map(|(k, v)| Some((HeaderName::try_from(k.as_str()).ok()?, HeaderValue::try_from(v.as_str()).ok()?)))
        .collect();
    Ok(Loaded { tls, users: cfg.users, headers, inputs })
}

/// Whether a request may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Allowed,
    Denied,
}

impl Web {
    /// Loads the configuration at `path`; an error names the file and what is wrong with it.
    pub fn load(path: &Path) -> Result<Web, WebError> {
        let loaded = load(path)?;
        Ok(Web {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(loaded),
            generation: watch::channel(0).0,
            cache: Mutex::default(),
            bcrypt: Semaphore::new(BCRYPT_AT_ONCE),
            failed: Mutex::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What serves now.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    /// Told each time a new configuration takes over (open TLS connections then close after
    /// their request in flight, and reconnect to the new certificate).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Reads the configuration and its files again; when any changed, builds and swaps in the
    /// new one (Ok(true)), else leaves it (Ok(false)). On an error the last good one stays.
    pub fn reload_if_changed(&self) -> Result<bool, WebError> {
        let now = self.current();
        // Unchanged inputs: nothing to build (the common case, every poll).
        let same = std::fs::read(&self.path).ok().is_some_and(|t| now.inputs.first().is_some_and(|(_, b)| *b == t))
            && now.inputs.iter().skip(1).all(|(p, b)| std::fs::read(p).ok().is_some_and(|t| t == *b));
        if same {
            return Ok(false);
        }
        let seen = self.fingerprint(&now);
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.as_ref() == Some(&seen) {
            return Ok(false); // the same broken files as last time: said once
        }
        let loaded = match load(&self.path) {
            Ok(l) => l,
            Err(e) => {
                *failed = Some(seen);
                return Err(e);
            }
        };
        *failed = None;
        drop(failed);
        self.current.store(Arc::new(loaded));
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.generation.send_modify(|g| *g += 1);
        Ok(true)
    }

    /// Whether `authorization` (the request's header) carries a configured user's password;
    /// always allowed where no users are configured.
    pub async fn authorize(self: &Arc<Self>, authorization: Option<&str>) -> Auth {
        let loaded = self.current();
        if !loaded.wants_auth() {
            return Auth::Allowed;
        }
        let Some((user, password)) = authorization.and_then(basic) else { return Auth::Denied };
        let hash = loaded.users.get(&user).cloned();
        let key = (user, password, hash.clone().unwrap_or_default());
        if let Some(ok) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return if *ok { Auth::Allowed } else { Auth::Denied };
        }
        let Ok(_permit) = self.bcrypt.acquire().await else { return Auth::Denied };
        let password = key.1.clone();
        let known = hash.is_some();
        let checked = hash.unwrap_or_else(|| DUMMY_HASH.to_string());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &checked).unwrap_or(false)).await.unwrap_or(false) && known;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, ok);
        if ok { Auth::Allowed } else { Auth::Denied }
    }

    /// The bytes of the configuration and of every file it or the serving one names (a missing
    /// one as such), to tell whether anything changed since a failed reload.
    fn fingerprint(&self, now: &Loaded) -> Vec<u8> {
        let text = std::fs::read(&self.path).unwrap_or_default();
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let mut files: Vec<PathBuf> = now.inputs.iter().skip(1).map(|(p, _)| p.clone()).collect();
        if let Ok(cfg) = webconfig::parse(&String::from_utf8_lossy(&text), dir) {
            files.extend(cfg.files());
        }
        let mut out = text;
        for f in files {
            out.extend_from_slice(f.as_os_str().as_encoded_bytes());
            out.push(0);
            out.extend(std::fs::read(&f).unwrap_or_else(|_| b"\0missing".to_vec()));
        }
        out
    }

    /// Cached checks (for tests of the cache).
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials() {
        assert_eq!(basic("Basic cHJvbWV0aGV1czpjb3JyZWN0IGhvcnNl"), Some(("prometheus".into(), "correct horse".into())));
        assert_eq!(basic("Bearer x"), None);
        assert_eq!(basic("Basic !!"), None);
        assert!(webconfig::is_bcrypt(DUMMY_HASH));
    }

    #[tokio::test]
    async fn a_password_is_checked_once_then_cached_and_a_wrong_one_denied() {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/webconfig");
        // The fixture's users; TLS does not matter to the check.
        let text = std::fs::read_to_string(fixtures.join("basic-auth.yml")).unwrap();
        let cfg = webconfig::parse(&text, dir.path()).unwrap();
        let web = Arc::new(Web {
            path: dir.path().join("web.yml"),
            current: ArcSwap::from_pointee(Loaded { tls: None, users: cfg.users, headers: vec![], inputs: vec![] }),
            generation: watch::channel(0).0,
            cache: Mutex::default(),
            bcrypt: Semaphore::new(BCRYPT_AT_ONCE),
            failed: Mutex::default(),
        });
        let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("prometheus:correct horse"));
        let bad = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("prometheus:wrong"));
        let nobody = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("nobody:correct horse"));
        assert_eq!(web.authorize(Some(&good)).await, Auth::Allowed);
        assert_eq!(web.cached(), 1);
        assert_eq!(web.authorize(Some(&good)).await, Auth::Allowed);
        assert_eq!(web.cached(), 1, "answered from the cache");
        assert_eq!(web.authorize(Some(&bad)).await, Auth::Denied);
        assert_eq!(web.authorize(Some(&nobody)).await, Auth::Denied);
        assert_eq!(web.authorize(None).await, Auth::Denied);
        assert_eq!(web.cached(), 3);
    }
}
