//! Serving the gateway: HTTP/1.1 and HTTP/2 on one listener (cleartext, or TLS), and a
//! graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use super::Router;
use super::connection::Connection;
use super::live::Live;
use crate::once_a_minute::OnceAMinute;

/// The most a client's request head may hold, over either HTTP version: 64 KiB (Envoy's
/// default is 60 KiB, nginx's 32). Past it, the request is answered 431, never forwarded.
///
/// HTTP/1.1 counts the head's bytes, in hyper's read buffer, whose bound this is (it also caps
/// the chunks a body is read in and what is queued for a client, at 64 KiB instead of 408); it
/// also refuses more than 100 header lines (hyper's default). HTTP/2 counts the header list as
/// RFC 9113 does (each field's name and value, plus 32 bytes), and h2 answers 431 on the
/// request's stream, the connection's other streams going on, except where its guards end the
/// connection instead: a header block in more than seven frames (`ENHANCE_YOUR_CALM`: a
/// `CONTINUATION` flood), a frame that decodes to over four times the bound (the same: a
/// decompression bomb), or, once the list is past the bound, a field still arriving whose bytes
/// and the next frame's are over it (`COMPRESSION_ERROR`). At hyper's defaults the versions
/// refused 25 times apart (HTTP/1.1 at 408 KiB, HTTP/2 at 16 KiB), and h2's guards ended a
/// connection for 40 kB of headers in two fields.
pub(super) const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// The most header fields a client's request may have, over either HTTP version: 100, the
/// bound of hyper's HTTP/1.1 server (its default, which the gateway keeps: a head with more
/// lines is answered 431 and its connection closed). h2 counts no fields, only their bytes:
/// an HTTP/2 request with more is answered 431 by the router, on its own stream, the
/// connection going on. Without it a client could send thousands of small fields (`a: b`),
/// within the list's size, for each stream, and the backend would get them all.
pub(super) const MAX_REQUEST_HEADERS: usize = 100;

/// The most streams an HTTP/2 client connection may have open at once: nginx's default
/// (`http2_max_concurrent_streams`), where hyper's is 200. Each is a request to a backend, so
/// this is also how many one client connection can have a backend serve at once; a client
/// that opens more at once has them refused (`REFUSED_STREAM`, which tells it to retry).
pub(super) const MAX_CONCURRENT_STREAMS: u32 = 128;

/// The server's bounds on its clients.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timeouts {
    /// How long a shutdown waits for requests in flight and upgraded connections.
    pub(super) grace: Duration,
    /// How long a connection of either version may have no request in flight (closed between
    /// it and twice it, see [`InFlight`](super::in_flight::InFlight)): a new one, a kept-alive
    /// one, an HTTP/2 one, and one whose client sends half a request head and waits, which
    /// would otherwise keep its connection for ever and hold a shutdown for the whole grace.
    /// Also the bound on a TLS handshake.
    pub(super) header_read: Duration,
    /// How long a write to a client may wait for it to take a byte; over HTTP/2, how long an
    /// answer may wait for its client to take the next frame.
    pub(super) send: Duration,
}

/// Accepts connections on `listener` and serves the routes of `live` on each until `shutdown`
/// completes;
/// then stops accepting, asks every connection to close once its requests are answered
/// (HTTP/2 `GOAWAY`, HTTP/1.1 `Connection: close`), and waits up to the grace for that and for
/// the upgraded connections (WebSockets) to close.
/// Returns whether every connection closed within the grace. Its failed accepts are logged
/// through `accept_said`, which the workers serving copies of one listener share.
///
/// The settings (routes, timeouts, grace) are `live`'s; when a reload changes them, the
/// connections accepted from then on take its router (built here: this runtime's pools), and
/// those open are asked to close as at a shutdown, so none serves the old routes past its
/// requests in flight.
pub(super) async fn serve(
    listener: TcpListener,
    mut live: Live,
    shutdown: impl Future<Output = ()>,
    accept_said: Arc<OnceAMinute>,
) -> bool {
    let mut settings = Arc::clone(&live.borrow_and_update());
    // From the settings just marked seen: a router made before (the gateway's own, or one
    // built before this worker began) may be of a configuration a reload has replaced.
    let mut router: Router = (settings.routers.0)();
    // Told at a reload (`false`) and at the shutdown (`true`): each connection then closes
    // once its requests in flight are answered.
    let (stop, mut stopping) = watch::channel(false);
    // The router of the settings in use, for the connections accepted before a reload: their
    // requests that begin after it take the reload's routes.
    let (routers, current) = watch::channel(router.clone());
    // Each connection task holds a sender; `recv` answers `None` once all have ended.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut reloadable = true;
    loop {
        let (stream, addr) = tokio::select! {
            // A connection that comes after a reload takes its routes, even when both woke
            // this task at once.
            biased;
            () = &mut shutdown => break,
            changed = live.changed(), if reloadable => {
                if changed.is_err() {
                    // No reload can come any more: serve on as is.
                    reloadable = false;
                    continue;
                }
                settings = Arc::clone(&live.borrow_and_update());
                router = (settings.routers.0)();
                routers.send_replace(router.clone());
                stop.send_replace(false);
                // The connections accepted from now on have not seen this one.
                stopping.mark_unchanged();
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin, and take
                    // the connections waiting in the kernel's queue once some are back. One
                    // connection's own error (reset before it was accepted) goes on at once.
                    crate::accept_failed::after(&listener, &error, &accept_said, "").await;
                    continue;
                }
            },
        };
        let Timeouts {
            header_read, send, ..
        } = settings.timeouts;
        let _ = stream.set_nodelay(true);
        // A client that vanished without closing (a laptop shut, a network gone) would keep
        // what its connection holds for ever: an upgraded socket relayed to the backend (the
        // backend counted busy, a turn of its limit) reads and writes nothing to time out.
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive());
        let connection = Connection {
            // The client's address goes with the router, not in each request's extensions.
            router: router.for_client(addr, settings.tls.is_some()),
            addr,
            header_read,
            send,
            open: open.clone(),
            stopping: stopping.clone(),
            routers: current.clone(),
        };
        // Spawned as two futures, not one: a cleartext connection's task holds no room for
        // a TLS session.
        match &settings.tls {
            None => tokio::spawn(connection.serve_tcp(stream)),
            Some(tls) => tokio::spawn(connection.serve_tls(stream, tls.clone())),
        };
    }
    drop(listener);
    drop(open);
    stop.send_replace(true);
    // The grace of the configuration in use now.
    let grace = live.borrow().timeouts.grace;
    drop(settings);
    tracing::debug!(grace = ?grace, "no new connections; waiting for requests in flight");
    let closed = tokio::time::timeout(grace, all_closed.recv()).await.is_ok();
    if !closed {
        tracing::warn!(grace = ?grace, "connections still open after the grace; closing them");
    }
    closed
}

/// TCP keepalive as the proxy's backend connections have it.
fn keepalive() -> socket2::TcpKeepalive {
    use crate::proxy::{KEEPALIVE_IDLE, KEEPALIVE_INTERVAL};
    let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
    let keepalive = keepalive.with_interval(KEEPALIVE_INTERVAL);
    #[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
    let _ = KEEPALIVE_INTERVAL;
    keepalive
}

/// `shutdown`, announcing the drain when it completes (once per gateway, however many
/// workers); and beside it the release of the requests still held, shortly before the grace
/// ends, which only [`with_release`] runs: so it ends with the serving, and a monitor still
/// in use after `Gateway::serve` returned early is not released later by a timer left behind.
pub(super) fn announced(
    shutdown: impl Future<Output = ()>,
    live: Live,
    monitor: Arc<crate::MinMonitor>,
) -> (impl Future<Output = ()>, impl Future<Output = Infallible>) {
    let (began, begun) = oneshot::channel::<Duration>();
    let shutdown = async move {
        shutdown.await;
        // The grace of the configuration in use at the shutdown (a reload may have changed it).
        let grace = live.borrow().timeouts.grace;
        let _ = began.send(grace);
        tracing::info!(grace = ?grace, "shutting down: no new connections; waiting for requests in flight");
    };
    // Held requests wait for a backend that may still come up within the grace; before the
    // grace ends, each is answered 503 rather than have its connection closed unanswered.
    let release = async move {
        // Serving that ends without a shutdown (it could not start) releases nothing.
        if let Ok(grace) = begun.await {
            let answer_time = HELD_ANSWER_TIME.min(grace / 2);
            tokio::time::sleep(grace - answer_time).await;
            monitor.release_held();
        }
        std::future::pending().await
    };
    (shutdown, release)
}

/// `serving`, with `release` (from [`announced`]) run beside it until `serving` ends.
pub(super) async fn with_release<T>(
    serving: impl Future<Output = T>,
    release: impl Future<Output = Infallible>,
) -> T {
    tokio::select! {
        done = serving => done,
        never = release => match never {},
    }
}

/// How long before the shutdown grace ends the requests still held are answered: time for
/// the answers to reach their clients, and their connections to close, within the grace.
const HELD_ANSWER_TIME: Duration = Duration::from_secs(1);

/// Logs the end of the drain.
pub(super) fn drained(closed: bool) {
    if closed {
        tracing::info!("every connection closed");
    }
}
