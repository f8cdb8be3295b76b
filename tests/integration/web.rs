//! `--web.config.file` for real: certificates made by the project's own script
//! (`deploy/tls/make-secrets.sh`), a real Prometheus scraping over TLS with a client certificate
//! and basic auth, certificates replaced on disk under a running daemon, the two doors, the
//! commands' `--remote https://…`, and the connection limits held over TLS.
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

use crate::{
    serve::Prometheus,
    util::{
        self,
        daemon::{Daemon, Metrics, free_port},
    },
};

/// `deploy/tls/make-secrets.sh OUT`: a CA, memwatch's and Prometheus's certificates, a password
/// and the web configuration.
pub(crate) fn secrets(out: &Path, extra_sans: &[&str]) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tls/make-secrets.sh");
    let st = Command::new(script).arg(out).args(extra_sans).output().unwrap();
    assert!(st.status.success(), "make-secrets.sh: {}", String::from_utf8_lossy(&st.stderr));
    out.to_path_buf()
}

pub(crate) fn password(s: &Path) -> String {
    std::fs::read_to_string(s.join("password")).unwrap().trim().to_string()
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// A rustls client trusting `s`'s CA, with its client certificate when `cert`.
pub(crate) fn client_config(s: &Path, cert: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(s.join("ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
    Arc::new(if cert {
        let certs = CertificateDer::pem_file_iter(s.join("client.crt")).unwrap().map(Result::unwrap).collect();
        b.with_client_auth_cert(certs, PrivateKeyDer::from_pem_file(s.join("client.key")).unwrap()).unwrap()
    } else {
        b.with_no_client_auth()
    })
}

pub(crate) fn agent(s: &Path, cert: bool) -> ureq::Agent {
    ureq::AgentBuilder::new().tls_config(client_config(s, cert)).build()
}

/// A TLS connection of this test's own, handshake done.
fn tls_connect(port: u16, config: Arc<rustls::ClientConfig>) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut conn = rustls::ClientConnection::new(config, ServerName::try_from("127.0.0.1").unwrap()).map_err(std::io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Whether the server closed `stream` (EOF or reset) before our 15 s read timeout.
fn closed_by_server(stream: &mut impl Read) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

/// GET `url` with `agent` and `auth`: the status (or the transport error).
fn status(agent: &ureq::Agent, url: &str, auth: Option<&str>) -> Result<u16, String> {
    let mut r = agent.get(url).timeout(Duration::from_secs(5));
    if let Some(a) = auth {
        r = r.set("Authorization", a);
    }
    match r.call() {
        Ok(r) => Ok(r.status()),
        Err(ureq::Error::Status(code, _)) => Ok(code),
        Err(e) => Err(e.to_string()),
    }
}

fn daemon(web: &Path, state: &Path, extra: &[&str], s: &Path, auth: Option<String>) -> Daemon {
    let mut args =
        vec!["--no-ebpf", "--interval", "500ms", "--web.config.file", web.to_str().unwrap(), "--state-dir", state.to_str().unwrap()];
    args.extend_from_slice(extra);
    // The test's own requests keep no connection open (the cap test counts connections).
    let own = ureq::AgentBuilder::new().tls_config(client_config(s, true)).max_idle_connections(0).build();
    Daemon::start_https(&args, own, auth)
}

#[test]
fn prometheus_scrapes_over_tls_with_a_client_certificate_and_basic_auth() {
    util::require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let s = secrets(&tmp.path().join("secrets"), &[]);
    let pw = password(&s);
    let api_port = free_port();
    let api_arg = format!("127.0.0.1:{api_port}");
    let d = daemon(&s.join("web.yml"), tmp.path(), &["--listen.api", &api_arg], &s, Some(basic("prometheus", &pw)));
    let target = d.base.trim_start_matches("https://").to_string();

    // A real Prometheus: one job as configured, one with a wrong password, one without a client
    // certificate.
    let tls = |cert: bool| {
        let client = if cert {
            format!("      cert_file: {}\n      key_file: {}\n", s.join("client.crt").display(), s.join("client.key").display())
        } else {
            String::new()
        };
        format!("    scheme: https\n    tls_config:\n      ca_file: {}\n{client}      server_name: memwatch\n", s.join("ca.crt").display())
    };
    let job = |name: &str, cert: bool, auth: &str| {
        format!("  - job_name: {name}\n{}{auth}    static_configs:\n      - targets: ['{target}']\n", tls(cert))
    };
    let good_auth = format!("    basic_auth:\n      username: prometheus\n      password_file: {}\n", s.join("password").display());
    let prom = Prometheus::start_jobs(
        &[
            job("good", true, &good_auth),
            job("wrong-password", true, "    basic_auth:\n      username: prometheus\n      password: not-it\n"),
            job("no-client-cert", false, &good_auth),
        ]
        .concat(),
    );
    let mut targets = vec![];
    d.wait_until("every job scraped once", Duration::from_secs(30), || {
        targets = prom.targets();
        targets.len() == 3 && targets.iter().all(|(_, health, _)| health != "unknown")
    });
    eprintln!("targets: {targets:?}");
    let of = |job: &str| targets.iter().find(|t| t.0 == job).cloned().unwrap();
    assert_eq!(of("good").1, "up", "{targets:?}");
    let (_, health, err) = of("wrong-password");
    assert!(health == "down" && err.contains("401"), "{targets:?}");
    let (_, health, err) = of("no-client-cert");
    assert!(health == "down" && !err.contains("401"), "refused in the handshake, before any HTTP: {targets:?}");
    d.wait_until("the series in Prometheus", Duration::from_secs(15), || prom.query("memwatch_build_info{job=\"good\"}").is_some());
    assert_eq!(prom.query("up{job=\"good\"}"), Some(1.0));

    // memwatch's own answers: 401 with the realm to a wrong password, the health probes open.
    let a = agent(&s, true);
    let wrong = a.get(&format!("{}/metrics", d.base)).set("Authorization", &basic("prometheus", "not-it")).call();
    match wrong {
        Err(ureq::Error::Status(401, r)) => assert_eq!(r.header("WWW-Authenticate"), Some("Basic realm=\"memwatch\"")),
        other => panic!("a wrong password: {other:?}"),
    }
    assert_eq!(status(&a, &format!("{}/metrics", d.base), None), Ok(401));
    assert_eq!(status(&a, &format!("{}/healthz", d.base), None), Ok(200), "the kubelet has no password");
    // Without a client certificate the handshake is refused: no HTTP status at all.
    assert!(status(&agent(&s, false), &format!("{}/healthz", d.base), None).is_err());
    // Plain HTTP to the TLS port: a short refusal, not a hang.
    let mut plain = TcpStream::connect(&target).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = plain.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.0 400") && reply.contains("HTTP request to an HTTPS server"), "{reply:?}");

    // Two doors: no API on the metrics address, no metrics on the API's.
    let auth = basic("prometheus", &pw);
    assert_eq!(status(&a, &format!("{}/api/v1/events", d.base), Some(&auth)), Ok(404));
    assert_eq!(status(&a, &format!("{}/api/v1/profile", d.base), Some(&auth)), Ok(404));
    let api = format!("https://{api_arg}");
    assert_eq!(status(&a, &format!("{api}/api/v1/events"), Some(&auth)), Ok(200));
    assert_eq!(status(&a, &format!("{api}/api/v1/events"), None), Ok(401));
    assert_eq!(status(&a, &format!("{api}/metrics"), Some(&auth)), Ok(404));

    // `memwatch events --remote https://…` with the CA, the client certificate and the user.
    let events = |password_file: &Path| {
        Command::new(util::memwatch_bin())
            .args(["events", "--no-follow", "--json", "--remote", &api])
            .arg("--remote.ca-file")
            .arg(s.join("ca.crt"))
            .arg("--remote.cert-file")
            .arg(s.join("client.crt"))
            .arg("--remote.key-file")
            .arg(s.join("client.key"))
            .args(["--remote.user", "prometheus", "--remote.password-file"])
            .arg(password_file)
            .env_remove("MEMWATCH_REMOTE_PASSWORD")
            .output()
            .unwrap()
    };
    let ok = events(&s.join("password"));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad_pw = tmp.path().join("bad-password");
    std::fs::write(&bad_pw, "not-it\n").unwrap();
    let bad = events(&bad_pw);
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && said.contains("401"), "{said}");
    // And a password never goes out over plain HTTP.
    let out = Command::new(util::memwatch_bin())
        .args(["events", "--no-follow", "--remote", "http://127.0.0.1:1", "--remote.user", "prometheus"])
        .env("MEMWATCH_REMOTE_PASSWORD", "x")
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("in the clear"));
}

/// A web configuration with TLS only, in `dir`, naming `dir`'s server.crt and server.key.
fn tls_only(dir: &Path, from: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["server.crt", "server.key"] {
        std::fs::copy(from.join(f), dir.join(f)).unwrap();
    }
    let web = dir.join("web.yml");
    std::fs::write(&web, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n").unwrap();
    web
}

/// Replaces `dir`'s `name` with `bytes` by a rename, as a mounted Secret's update does.
fn replace(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.new"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn reloads(m: &Metrics, result: &str) -> f64 {
    m.get_plain("memwatch_web_config_reloads_total", &[("result", result)]).unwrap_or(-1.0)
}

#[test]
fn a_replaced_certificate_serves_the_next_request_and_a_broken_one_keeps_the_last_good() {
    util::require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (secrets(&tmp.path().join("a"), &[]), secrets(&tmp.path().join("b"), &[]));
    let live = tmp.path().join("live");
    let web = tls_only(&live, &a);
    let d = daemon(&web, tmp.path(), &[], &a, None);
    let port: u16 = d.base.rsplit(':').next().unwrap().parse().unwrap();
    let url = format!("{}/healthz", d.base);
    assert_eq!(status(&agent(&a, false), &url, None), Ok(200));
    assert!(status(&agent(&b, false), &url, None).is_err(), "b's CA does not know a's certificate");
    let m = d.metrics();
    assert_eq!((reloads(&m, "success"), reloads(&m, "failure")), (0.0, 0.0), "{}", m.text);
    // A connection kept open across the change, one request answered on it.
    let mut kept = tls_connect(port, client_config(&a, false)).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: memwatch\r\n\r\n").unwrap();
    let mut first = [0u8; 256];
    let n = kept.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..n]));

    // Replaced on disk, key first, as a Secret's files change: the next connection gets the
    // new certificate, without a restart.
    replace(&live, "server.key", &std::fs::read(b.join("server.key")).unwrap());
    replace(&live, "server.crt", &std::fs::read(b.join("server.crt")).unwrap());
    d.wait_until("the new certificate served", Duration::from_secs(15), || status(&agent(&b, false), &url, None) == Ok(200));
    assert!(status(&agent(&a, false), &url, None).is_err(), "the old certificate is gone");
    assert!(closed_by_server(&mut kept), "the connection kept open was closed after the reload");
    let pid = d.pid();
    assert!(util::is_alive(pid), "no restart");

    // A broken replacement: refused with a log line and a count, the last good one serving.
    let d = d.with_agent(agent(&b, false));
    let before = reloads(&d.metrics(), "failure");
    replace(&live, "server.crt", b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n");
    d.wait_until("the failed reload counted", Duration::from_secs(15), || reloads(&d.metrics(), "failure") > before);
    assert_eq!(status(&agent(&b, false), &url, None), Ok(200), "the last good certificate keeps serving");
    assert!(d.log().contains("the last good configuration keeps serving"), "{}", d.log());
    // Said once, not at every look while it stays broken.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(reloads(&d.metrics(), "failure"), before + 1.0);
}

#[test]
fn connection_limits_hold_over_tls_and_a_handshake_flood_does_not_starve_a_scrape() {
    util::require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let s = secrets(&tmp.path().join("s"), &[]);
    let web = tls_only(&tmp.path().join("live"), &s);
    // The handshake flood below takes both cores: nothing else runs beside it.
    let _serial = util::serial();
    let d = daemon(&web, tmp.path(), &["--http-header-timeout", "3s"], &s, None);
    let port: u16 = d.base.rsplit(':').next().unwrap().parse().unwrap();
    let config = client_config(&s, false);

    // A connection that never starts its handshake is closed after the header timeout.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    assert!(closed_by_server(&mut idle), "an idle handshake was left open");
    // Slowloris over TLS: a request's head a byte at a time is cut off at the header timeout.
    let mut slow = tls_connect(port, config.clone()).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(15) {
        if slow.write_all(b"X").and_then(|_| slow.flush()).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(cut || closed_by_server(&mut slow), "a slowloris head was never cut off");

    // The cap: 30 connections held after their handshakes; the 31st is closed at once, and
    // counted. (A daemon whose header timeout does not close the held ones meanwhile.)
    drop(d);
    let d = daemon(&web, tmp.path(), &["--http-header-timeout", "60s", "--max-connections", "30"], &s, None);
    let port: u16 = d.base.rsplit(':').next().unwrap().parse().unwrap();
    let held: Vec<_> = (0..30).map(|_| tls_connect(port, config.clone()).unwrap()).collect();
    assert!(tls_connect(port, config.clone()).is_err(), "a connection past --max-connections got in");
    drop(held);
    d.wait_until("room again", Duration::from_secs(10), || status(&agent(&s, false), &format!("{}/healthz", d.base), None) == Ok(200));
    assert!(d.metrics().get_plain("memwatch_http_connections_refused_total", &[]).is_some_and(|n| n >= 1.0));

    // A handshake flood from 6 threads for 8 s while a scraper keeps its connection and scrapes
    // every 250 ms: every scrape answered.
    let stop = Arc::new(AtomicBool::new(false));
    let handshakes = Arc::new(AtomicU64::new(0));
    let flood: Vec<_> = (0..6)
        .map(|_| {
            let (stop, n, config) = (stop.clone(), handshakes.clone(), config.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if tls_connect(port, config.clone()).is_ok() {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let scraper = agent(&s, false);
    let (mut ok, mut failed, mut slowest) = (0, 0, Duration::ZERO);
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let t = Instant::now();
        match status(&scraper, &format!("{}/metrics", d.base), None) {
            Ok(200) => ok += 1,
            _ => failed += 1,
        }
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.join().unwrap();
    }
    eprintln!(
        "handshake flood: {} handshakes in 8 s from 6 threads; {ok} scrapes answered, {failed} failed, slowest {slowest:?}",
        handshakes.load(Ordering::Relaxed)
    );
    assert!(handshakes.load(Ordering::Relaxed) > 100, "the flood flooded");
    assert_eq!(failed, 0, "scrapes failed during the handshake flood");
}

#[test]
fn a_bad_web_configuration_is_a_clear_error_at_start() {
    util::require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let s = secrets(&tmp.path().join("s"), &[]);
    let start = |web: &Path| {
        let out = Command::new(util::memwatch_bin())
            .args(["serve", "--no-ebpf", "--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--web.config.file")
            .arg(web)
            .arg("--state-dir")
            .arg(tmp.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{} started", web.display());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let file = |name: &str, text: &str| {
        let p = s.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let said = start(&tmp.path().join("missing.yml"));
    assert!(said.contains("--web.config.file") && said.contains("missing.yml"), "{said}");
    let said = start(&file("typo.yml", "tls_server_config:\n  cert_fle: server.crt\n"));
    assert!(said.contains("typo.yml") && said.contains("cert_fle"), "{said}");
    let said = start(&file("clear.yml", "basic_auth_users:\n  prometheus: $2y$10$JGWvsOBS6l79D0MIa7oyReZ.M.LYH/IC7zwnS5j3HDUHqmfzA/haG\n"));
    assert!(said.contains("in the clear"), "{said}");
    let said = start(&file("swapped.yml", "tls_server_config:\n  cert_file: server.key\n  key_file: server.crt\n"));
    assert!(said.contains("server.key") && said.contains("certificate"), "{said}");
    let said = start(&file("mismatch.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: client.key\n"));
    assert!(said.contains("client.key"), "{said}");
}
