//! What TLS with client certificates and basic auth costs a scrape: two release daemons on the
//! same 1,000 real memory cgroups, one plain and one with the web configuration
//! `deploy/tls/make-secrets.sh` writes (TLS, a client certificate required, a bcrypt user), each
//! scraped as Prometheus scrapes (one kept connection) and with a new connection per scrape (a
//! handshake each: the worst case). The daemon's CPU per scrape, less its idle CPU over the same
//! time, in alternating rounds; medians and the TLS/plain ratio. Needs root; prints numbers,
//! asserts nothing.
//!
//! `cargo bench -p memwatch-tests --bench tls` (after `cargo build --release --bins`).
use std::{
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

mod common;
use common::{CgroupTree, release_memwatch, root_or_skip, workspace};

const N: usize = 1000;
const SCRAPES: usize = 30;

/// 1,000 memory cgroups of the bench's own, removed when dropped.
/// The process's CPU time in seconds, summed over its threads from their schedstat (nanoseconds:
/// a scrape is a few milliseconds, under stat's 10 ms ticks).
fn cpu_seconds(pid: u32) -> f64 {
    let mut ns = 0u64;
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        if let Ok(s) = fs::read_to_string(t.path().join("schedstat")) {
            ns += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

struct Daemon {
    child: Child,
    base: String,
}
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(bin: &Path, include: &str, web: Option<&Path>) -> Daemon {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let state = tempfile::tempdir().unwrap();
    let mut c = Command::new(bin);
    c.args(["serve", "--no-ebpf", "--cgroups", "all", "--cgroups.include", include, "--listen", &addr, "--listen.api", &addr])
        .arg("--state-dir")
        .arg(state.path());
    if let Some(w) = web {
        c.arg("--web.config.file").arg(w);
    }
    let child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let scheme = if web.is_some() { "https" } else { "http" };
    Daemon { child, base: format!("{scheme}://{addr}") }
}

fn tls_agent(s: &Path) -> ureq::Agent {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(s.join("ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(s.join("client.crt")).unwrap().map(Result::unwrap).collect();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, PrivateKeyDer::from_pem_file(s.join("client.key")).unwrap())
        .unwrap();
    ureq::AgentBuilder::new().tls_config(Arc::new(config)).build()
}

/// The daemon's CPU seconds per scrape over `SCRAPES` scrapes 1.1 s apart (each of a new sample,
/// so each renders it, as Prometheus's scrapes of a daemon sampling every second do), less its
/// idle CPU over the same time (measured just before); its whole CPU over the scraping; and the
/// exposition's size.
fn per_scrape(d: &Daemon, agent: &dyn Fn() -> ureq::Agent, auth: Option<&str>) -> (f64, f64, usize) {
    let pid = d.child.id();
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let idle = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64();
    let (c1, t1) = (cpu_seconds(pid), Instant::now());
    let mut size = 0;
    let keep = agent();
    for _ in 0..SCRAPES {
        let mut r = keep.get(&format!("{}/metrics", d.base)).timeout(Duration::from_secs(10));
        if let Some(h) = auth {
            r = r.set("Authorization", h);
        }
        size = r.call().expect("a scrape").into_string().unwrap().len();
        std::thread::sleep(Duration::from_millis(1100));
    }
    let total = cpu_seconds(pid) - c1;
    let cpu = total - idle * t1.elapsed().as_secs_f64();
    (cpu.max(0.0) / SCRAPES as f64, total / t1.elapsed().as_secs_f64(), size)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
}

fn main() {
    if !root_or_skip("create cgroups") {
        return;
    }
    let bin = release_memwatch();
    let tree = CgroupTree::new("memwatch-bench-tls", N);
    let secrets = tempfile::tempdir().unwrap();
    let st = Command::new(workspace().join("deploy/tls/make-secrets.sh")).arg(secrets.path()).output().unwrap();
    assert!(st.status.success(), "make-secrets.sh: {}", String::from_utf8_lossy(&st.stderr));
    let s = secrets.path();
    let password = fs::read_to_string(s.join("password")).unwrap().trim().to_string();
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{password}")));

    let plain = serve(&bin, &tree.include, None);
    let tls = serve(&bin, &tree.include, Some(&s.join("web.yml")));
    let plain_agent = || ureq::Agent::new();
    let tls_kept = || tls_agent(s);
    let (mut p, mut t, mut pw, mut tw) = (vec![], vec![], vec![], vec![]);
    let mut size = 0;
    for round in 0..4 {
        // Alternating which goes first, so drift on the machine falls on both.
        let (a, b) = if round % 2 == 0 {
            let a = per_scrape(&plain, &plain_agent, None);
            (a, per_scrape(&tls, &tls_kept, Some(&auth)))
        } else {
            let b = per_scrape(&tls, &tls_kept, Some(&auth));
            (per_scrape(&plain, &plain_agent, None), b)
        };
        size = a.2;
        p.push(a.0 * 1e3);
        t.push(b.0 * 1e3);
        pw.push(a.1 * 100.0);
        tw.push(b.1 * 100.0);
    }
    println!("tls: {N} cgroups, a {} KiB exposition, {SCRAPES} scrapes a round on one kept connection, 1.1 s apart", size / 1024);
    println!("tls: daemon CPU per scrape, plain {p:.2?} ms, TLS + client certificate + basic auth {t:.2?} ms");
    let (mp, mt) = (median(&mut p), median(&mut t));
    println!("tls: medians plain {mp:.2} ms, TLS {mt:.2} ms per scrape (ratio {:.2}; target under 1.3)", mt / mp);
    println!("tls: the daemon's whole CPU while scraped (sampling included), plain {pw:.2?} %, TLS {tw:.2?} % of a core");
    let (mpw, mtw) = (median(&mut pw), median(&mut tw));
    println!("tls: medians plain {mpw:.2}%, TLS {mtw:.2}% of a core (ratio {:.2})", mtw / mpw);

    // The worst case: a new connection, so a full handshake, for every scrape.
    let (c0, t0) = (cpu_seconds(tls.child.id()), Instant::now());
    for _ in 0..SCRAPES {
        let r = tls_agent(s).get(&format!("{}/metrics", tls.base)).set("Authorization", &auth).call().expect("a scrape");
        let _ = r.into_string();
    }
    let fresh = (cpu_seconds(tls.child.id()) - c0) / SCRAPES as f64 * 1e3;
    println!(
        "tls: with a new connection (a handshake) per scrape, {fresh:.2} ms of daemon CPU each ({:.2} s for {SCRAPES}), {:.2}x plain",
        t0.elapsed().as_secs_f64(),
        fresh / mp
    );
}
