//! `--web.config.file`: the format of prometheus/exporter-toolkit (node_exporter's and every
//! exporter's built on it), so one file serves them all:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative paths: to this file's directory
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$...         # bcrypt
//! ```
//!
//! Parsed strictly: an unknown key, a setting rustls does not offer (cipher suites, curves,
//! TLS 1.0/1.1, a client certificate asked for but not verified), a hash that is not bcrypt, or
//! basic-auth users without TLS (their passwords would cross the network in the clear) are
//! errors that name the key. Pure: the files it names are read by `crate::http::tls`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// What is wrong with a web configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WebConfigError {
    #[error("not valid YAML of the web configuration's format: {0}")]
    Yaml(String),
    #[error("tls_server_config needs {0}")]
    Missing(&'static str),
    #[error("tls_server_config.{key}: {value:?} is not one of {allowed}")]
    Unknown { key: &'static str, value: String, allowed: &'static str },
    #[error("tls_server_config.{0} is not supported: rustls chooses its own secure cipher suites and key exchange groups")]
    Unsupported(&'static str),
    #[error(
        "tls_server_config.client_auth_type {0}: a client certificate asked for but not verified is not supported; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
    )]
    UnverifiedClientCert(String),
    #[error("tls_server_config.client_auth_type {0} needs client_ca_file")]
    NoClientCa(String),
    #[error("basic_auth_users.{0}: not a bcrypt hash (htpasswd -nBC 10 \"\" | tr -d ':\\n' makes one)")]
    BadHash(String),
    #[error("basic_auth_users without tls_server_config: passwords would cross the network in the clear")]
    AuthWithoutTls,
    #[error("http_server_config.headers.{0}: not a header this server lets a configuration set ({1})")]
    BadHeader(String, &'static str),
}

/// Who must show a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// Verified against the CA when given; a client without one is let in.
    VerifyIfGiven,
    /// Every client must show one the CA signed.
    RequireAndVerify,
}

/// The lowest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The TLS side of a web configuration, its paths made absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub min_version: TlsVersion,
}

/// A web configuration, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// Users and their bcrypt hashes.
    pub users: BTreeMap<String, String>,
    /// Response headers to add.
    pub headers: Vec<(String, String)>,
}

impl WebConfig {
    /// The files it names, whose changes mean a reload.
    pub fn files(&self) -> Vec<PathBuf> {
        self.tls.iter().flat_map(|t| [Some(t.cert_file.clone()), Some(t.key_file.clone()), t.client_ca_file.clone()]).flatten().collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; memwatch serves HTTP/1.1.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The headers a configuration may set (exporter-toolkit's list).
const HEADERS: &str = "Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy";

/// Whether `h` looks like a bcrypt hash: `$2a$`, `$2b$`, `$2x$` or `$2y$`, a two-digit cost, 53
/// characters of bcrypt's base64.
pub fn is_bcrypt(h: &str) -> bool {
    let b = h.as_bytes();
    h.len() == 60
        && ["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|p| h.starts_with(p))
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
        && b[7..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

/// Parses and validates a web configuration; relative paths resolve against `dir` (the file's
/// directory). An empty file is a valid configuration that changes nothing.
pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, WebConfigError> {
    if text.trim().is_empty() {
        return Ok(WebConfig::default());
    }
    let raw: Raw = serde_yaml_ng::from_str(text).map_err(|e| WebConfigError::Yaml(e.to_string()))?;
    let path = |p: &str| if Path::new(p).is_absolute() { PathBuf::from(p) } else { dir.join(p) };
    let tls = match raw.tls_server_config {
        None => None,
        Some(t) => {
            if t.cipher_suites.is_some_and(|c| !c.is_empty()) {
                return Err(WebConfigError::Unsupported("cipher_suites"));
            }
            if t.curve_preferences.is_some_and(|c| !c.is_empty()) {
                return Err(WebConfigError::Unsupported("curve_preferences"));
            }
            if t.client_allowed_sans.is_some_and(|c| !c.is_empty()) {
                return Err(WebConfigError::Unsupported("client_allowed_sans"));
            }
            let _ = t.prefer_server_cipher_suites;
            let cert_file = t.cert_file.filter(|s| !s.is_empty()).ok_or(WebConfigError::Missing("cert_file"))?;
            let key_file = t.key_file.filter(|s| !s.is_empty()).ok_or(WebConfigError::Missing("key_file"))?;
            let auth = t.client_auth_type.unwrap_or_else(|| "NoClientCert".into());
            let client_auth = match auth.as_str() {
                "" | "NoClientCert" => ClientAuth::None,
                "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
                "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
                "RequestClientCert" | "RequireAnyClientCert" => return Err(WebConfigError::UnverifiedClientCert(auth)),
                _ => {
                    return Err(WebConfigError::Unknown {
                        key: "client_auth_type",
                        value: auth,
                        allowed: "NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert",
                    });
                }
            };
            let client_ca_file = t.client_ca_file.filter(|s| !s.is_empty()).map(|p| path(&p));
            if client_auth != ClientAuth::None && client_ca_file.is_none() {
                return Err(WebConfigError::NoClientCa(auth));
            }
            let version = |key: &'static str, v: Option<String>| match v.as_deref() {
                None | Some("") | Some("TLS12") => Ok(TlsVersion::Tls12),
                Some("TLS13") => Ok(TlsVersion::Tls13),
                Some(other) => Err(WebConfigError::Unknown { key, value: other.into(), allowed: "TLS12, TLS13" }),
            };
            let min_version = version("min_version", t.min_version)?;
            version("max_version", t.max_version)?;
            Some(TlsSettings { cert_file: path(&cert_file), key_file: path(&key_file), client_auth, client_ca_file, min_version })
        }
    };
    let users = raw.basic_auth_users.unwrap_or_default();
    if let Some((u, _)) = users.iter().find(|(_, h)| !is_bcrypt(h)) {
        return Err(WebConfigError::BadHash(u.clone()));
    }
    if !users.is_empty() && tls.is_none() {
        return Err(WebConfigError::AuthWithoutTls);
    }
    let mut headers = vec![];
    for (k, v) in raw.http_server_config.and_then(|h| h.headers).unwrap_or_default() {
        let allowed = HEADERS.split(", ").any(|h| h.eq_ignore_ascii_case(&k));
        if !allowed || v.contains(['\r', '\n']) {
            return Err(WebConfigError::BadHeader(k, HEADERS));
        }
        headers.push((k, v));
    }
    Ok(WebConfig { tls, users, headers })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$1qtEV8mRh0vbWCzWvm5p0u4J8Ur7M/2q0KvdHhQzcBGx7dgoGONhy";

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/webconfig").join(name)).unwrap()
    }

    #[test]
    fn the_fixtures_as_exporter_toolkit_documents_them() {
        let dir = Path::new("/etc/memwatch");
        let tls = parse(&fixture("tls.yml"), dir).unwrap();
        let t = tls.tls.as_ref().unwrap();
        assert_eq!(t.cert_file, Path::new("/etc/memwatch/server.crt"));
        assert_eq!((t.client_auth, t.min_version), (ClientAuth::None, TlsVersion::Tls12));
        let mtls = parse(&fixture("client-certificates.yml"), dir).unwrap();
        assert_eq!(mtls.tls.as_ref().unwrap().client_auth, ClientAuth::RequireAndVerify);
        assert_eq!(mtls.files().len(), 3);
        let auth = parse(&fixture("basic-auth.yml"), dir).unwrap();
        assert_eq!(auth.users.len(), 1);
        assert_eq!(auth.headers, [("Strict-Transport-Security".to_string(), "max-age=31536000".to_string())]);
    }

    #[test]
    fn each_mistake_is_named() {
        let dir = Path::new("/d");
        let tls = "tls_server_config:\n  cert_file: a\n  key_file: b\n";
        assert!(matches!(parse("tls_server_config:\n  cert_fil: a\n", dir), Err(WebConfigError::Yaml(e)) if e.contains("cert_fil")));
        assert_eq!(parse("tls_server_config:\n  key_file: b\n", dir), Err(WebConfigError::Missing("cert_file")));
        assert_eq!(
            parse(&format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"), dir),
            Err(WebConfigError::NoClientCa("RequireAndVerifyClientCert".into()))
        );
        assert!(matches!(
            parse(&format!("{tls}  client_auth_type: RequestClientCert\n"), dir),
            Err(WebConfigError::UnverifiedClientCert(_))
        ));
        assert!(matches!(parse(&format!("{tls}  client_auth_type: Maybe\n"), dir), Err(WebConfigError::Unknown { .. })));
        assert!(matches!(parse(&format!("{tls}  min_version: TLS10\n"), dir), Err(WebConfigError::Unknown { .. })));
        assert_eq!(
            parse(&format!("{tls}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"), dir),
            Err(WebConfigError::Unsupported("cipher_suites"))
        );
        assert_eq!(parse(&format!("{tls}basic_auth_users:\n  a: plaintext\n"), dir), Err(WebConfigError::BadHash("a".into())));
        assert_eq!(parse(&format!("basic_auth_users:\n  a: '{HASH}'\n"), dir), Err(WebConfigError::AuthWithoutTls));
        assert!(matches!(parse("http_server_config:\n  headers:\n    Set-Cookie: x\n", dir), Err(WebConfigError::BadHeader(..))));
        assert!(matches!(parse("- a list\n", dir), Err(WebConfigError::Yaml(_))));
        assert_eq!(parse("  \n", dir), Ok(WebConfig::default()));
        let ok = parse(&format!("{tls}  min_version: TLS13\nbasic_auth_users:\n  a: '{HASH}'\n"), dir).unwrap();
        assert_eq!(ok.tls.unwrap().min_version, TlsVersion::Tls13);
    }

    #[test]
    fn bcrypt_shapes() {
        assert!(is_bcrypt(HASH));
        assert!(!is_bcrypt(&HASH[..59]));
        assert!(!is_bcrypt(&HASH.replace("$2y$", "$1$x")));
        assert!(!is_bcrypt(&format!("{}!", &HASH[..59])));
    }
}
