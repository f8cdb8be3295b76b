//! The HTTP server's connection handling: our own accept loop around hyper, because
//! `axum::serve` offers no limits and a node's agent must hold up against misbehaving clients.
//!
//! - at most [`Limits::max_connections`] open connections; one more is closed at once (and
//!   counted in `memwatch_http_connections_refused_total`), so a flood cannot exhaust the fds;
//! - a request's headers must arrive within [`Limits::header_timeout`], which also closes a
//!   connection idle that long between requests (slowloris, forgotten keep-alives);
//! - headers are limited in size ([`MAX_HEADER_BYTES`], else 431) and number
//!   ([`MAX_HEADERS`], else 431); the routes take no request body;
//! - the kernel's accept queue holds a burst of that many connections ([`bind`]);
//! - with TLS (`--web.config.file`, [`super::tls`]), the handshake runs in the connection's own
//!   task (a slow or flooding client holds one permit, never the accept loop) and must finish
//!   within the header timeout; plain HTTP sent to the TLS port gets a short 400 and is closed
//!   (Go's answer, so clients and people see what happened), not a hang; after the
//!   configuration is reloaded, open TLS connections close after their request in flight.
use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::Semaphore,
    task::JoinSet,
};

use super::tls::Web;
use crate::selfmetrics::SelfMetrics;

/// What a plain-HTTP request to the TLS port gets.
const PLAIN_TO_TLS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// Largest request head accepted, in bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields accepted in one request.
pub const MAX_HEADERS: usize = 64;
/// How long in-flight requests may take to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// Connection limits (`--max-connections`, `--http-header-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: 1024, header_timeout: Duration::from_secs(10) }
    }
}

/// Listens on `addr` with room in the kernel's accept queue for a burst of `limits`'
/// connections (the kernel caps it at `net.core.somaxconn`, 4096 on current kernels).
/// `TcpListener::bind` asks for 128, the standard library's value: past that, a burst's
/// connections lose their SYN and wait a second to try again, and connections are accepted
/// out of the order they were made. With 1,000 concurrent scrapes that was a p99 of 1.2–1.4 s.
pub fn bind(addr: std::net::SocketAddr, limits: &Limits) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(u32::try_from(limits.max_connections).unwrap_or(u32::MAX).max(128))
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open requests finish
/// for a few seconds; over TLS where `web`'s configuration has it (checked per connection, so
/// a reload that adds or changes it applies to the next one).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Option<Arc<SelfMetrics>>,
    web: Option<Arc<Web>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connections as they go, so the set stays small.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of fds or a connection reset before accept: keep serving the others.
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Some(m) = &metrics {
                m.connections_refused.inc();
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let tls = web.as_ref().and_then(|w| w.current().tls.clone().map(|c| (c, w.subscribe())));
        let http = http.clone();
        let timeout = limits.header_timeout;
        conns.spawn(async move {
            // Errors are the client's (timeouts, resets, malformed requests): nothing to do.
            match tls {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
                Some((config, mut reloaded)) => {
                    // The permit goes with this task, whichever way it ends.
                    let Ok(Some(stream)) = tokio::time::timeout(timeout, handshake(stream, config)).await else {
                        return Ok::<(), Infallible>(());
                    };
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = reloaded.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                }
            }
            drop(permit);
            Ok::<(), Infallible>(())
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    Ok(())
}

/// The TLS handshake on `stream`; None when the client sent plain HTTP (answered with a 400)
/// or the handshake failed.
async fn handshake(
    stream: tokio::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await.ok()? == 0 {
        return None;
    }
    if first[0] != TLS_HANDSHAKE {
        use tokio::io::AsyncWriteExt;
        let mut stream = stream;
        let _ = stream.write_all(PLAIN_TO_TLS).await;
        let _ = stream.shutdown().await;
        return None;
    }
    tokio_rustls::TlsAcceptor::from(config).accept(stream).await.ok()
}

#[cfg(test)]
mod tests {
    use std::{net::TcpStream, time::Duration};

    use super::*;

    /// A burst of connections well past the standard library's 128 all complete at once, before
    /// the server accepts any of them.
    #[tokio::test]
    async fn the_accept_queue_holds_a_burst_of_max_connections() {
        let limits = Limits { max_connections: 600, ..Limits::default() };
        let listener = bind("127.0.0.1:0".parse().unwrap(), &limits).unwrap();
        let addr = listener.local_addr().unwrap();
        let burst = tokio::task::spawn_blocking(move || {
            let held: Vec<TcpStream> = (0..500).map_while(|_| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()).collect();
            held.len()
        })
        .await
        .unwrap();
        assert_eq!(burst, 500, "connections made before any accept");
        drop(listener);
    }
}
