//! One client connection of the gateway's listener, served until it closes: HTTP/1.1 and
//! HTTP/2 over TCP, or over TLS on TCP, each with the same bounds (send timeout, idle watch,
//! stalled-stream watch), the same count of its requests in flight and upgraded connections,
//! and the same close at a shutdown or a reload: one code path, generic over the transport.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::Router;
use super::cancels::{Cancels, Watched};
use super::current_router::CurrentRouter;
use super::handshake;
use super::in_flight::{Closing, Counted, InFlight};
use super::send_timeout::SendTimeout;
use super::serve::{MAX_CONCURRENT_STREAMS, MAX_REQUEST_HEAD};
use super::stalled::{Answer, Stalled};
use super::streams::Streams;
use crate::proxy::UpgradeGuard;

/// A connection just accepted, and what serving it needs of the listener's loop.
pub(super) struct Connection {
    /// The router of the settings in use when it was accepted, for its client.
    pub(super) router: Router,
    pub(super) addr: SocketAddr,
    pub(super) header_read: Duration,
    pub(super) send: Duration,
    /// Held until the connection and its upgraded connections have closed: the drain waits.
    pub(super) open: mpsc::Sender<()>,
    /// Told at a reload (`false`) and at the shutdown (`true`).
    pub(super) stopping: watch::Receiver<bool>,
    /// The listener's router, changed before `stopping` is told of a reload: the requests
    /// that begin after the reload take it (see [`CurrentRouter`]).
    pub(super) routers: watch::Receiver<Router>,
}

impl Connection {
    /// Serves the cleartext connection `stream`.
    pub(super) async fn serve_tcp(self, stream: TcpStream) {
        let io = SendTimeout::new(stream, self.send);
        self.serve(io).await;
    }

    /// Makes the TLS handshake of `stream` with `acceptor` (here, in the connection's task:
    /// the accept loop never waits for a client), then serves it. A client that has not
    /// completed it within the header read timeout is closed, and so is one the shutdown
    /// finds still in it; one that is in it at a reload completes it, then is closed after
    /// its first answer, as a connection with no request yet is.
    pub(super) async fn serve_tls(self, stream: TcpStream, acceptor: TlsAcceptor) {
        // A clone: the reload this one would mark seen is still to be seen by `serve`.
        let mut shutdown = self.stopping.clone();
        let handshake =
            handshake::accept(&acceptor, stream, self.addr, self.header_read, self.send);
        let io = tokio::select! {
            io = handshake => io,
            _ = shutdown.wait_for(|stop| *stop) => None,
        };
        if let Some(io) = io {
            self.serve(io).await;
        }
    }

    /// Serves HTTP/1.1 or HTTP/2 on `io` until the connection closes.
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            router,
            addr,
            header_read,
            send,
            open,
            mut stopping,
            routers,
        } = self;
        let router = Arc::new(CurrentRouter::new(router));
        let reloaded = Arc::clone(&router);
        let reloaded = move || reloaded.replace(&routers.borrow());
        // An upgraded connection holds it: the drain waits for it.
        let upgrades = open.clone();
        let _open = open;
        let in_flight = Arc::new(InFlight::default());
        let requests = Arc::clone(&in_flight);
        let stalled = Arc::new(Stalled::default());
        let watched = Arc::clone(&stalled);
        let cancels = Arc::new(Cancels::new(Arc::clone(&in_flight)));
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let counted = requests.begin();
            let upgrade = request.headers().contains_key(http::header::UPGRADE)
                || request.method() == http::Method::CONNECT;
            if upgrade {
                // An upgraded connection outlives this task: shutdown waits for it too,
                // and over HTTP/2 it is a request in flight on this connection.
                let guard = UpgradeGuard::new((upgrades.clone(), requests.begin()));
                request.extensions_mut().insert(guard);
            }
            // Over HTTP/1.1, the socket's send timeout bounds a client that stops
            // taking an answer; over HTTP/2 each answer is watched.
            let http2 = request.version() == http::Version::HTTP_2;
            let watched = http2.then(|| Arc::clone(&watched));
            let pending = http2.then(|| cancels.begin());
            let answer = Watched::new(router.get().answer(request), pending);
            async move {
                let response = answer.await?;
                Ok::<_, Infallible>(response.map(|body| {
                    let body = Counted::new(body, counted);
                    match watched {
                        Some(watched) => Answer::Watched {
                            body: watched.watch(body),
                        },
                        None => Answer::Plain { body },
                    }
                }))
            }
        });
        // Each HTTP/2 stream's task endable by the stall watch.
        let mut builder = auto::Builder::new(Streams);
        builder
            .http1()
            .timer(TokioTimer::new())
            // The idle watch below bounds a slow or half-sent head as it bounds an idle
            // connection (nothing in flight): hyper's own bound would arm a timer per request.
            .header_read_timeout(None)
            .max_buf_size(MAX_REQUEST_HEAD);
        builder
            .http2()
            // WebSockets over HTTP/2 (RFC 8441).
            .enable_connect_protocol()
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(MAX_REQUEST_HEAD as u32);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        let mut connection = std::pin::pin!(connection);
        let _watch = AbortOnDrop(tokio::spawn({
            let in_flight = Arc::clone(&in_flight);
            async move {
                tokio::select! {
                    () = in_flight.idle_for(header_read) => {}
                    () = stalled.watch_every(send) => {}
                }
            }
        }));
        let result = tokio::select! {
            // Polled in order, all of them at each wake-up until one is ready: no random
            // pick of the first one, which only matters between futures that compete.
            biased;
            result = connection.as_mut() => result,
            why = in_flight.closed() => {
                match why {
                    Closing::Idle => tracing::debug!(
                        %addr,
                        "no request for the header read timeout; closed"
                    ),
                    // Closed at once: a graceful close (`GOAWAY`) goes on taking streams
                    // until the client answers a `PING`, which this client need never do.
                    Closing::Resets => tracing::info!(
                        %addr,
                        "an HTTP/2 client reset too many requests before their answer \
                         (a rapid reset); connection closed"
                    ),
                }
                return;
            }
            _ = stopping.changed() => 'closing: {
                // At a reload, a connection on which no request has begun yet is closed
                // after its first: hyper may not have read its first bytes yet, and would
                // close it then without an answer (a client that connected as the reload
                // came, or a browser's preconnection). The shutdown closes it at once; a
                // second reload changes nothing to that.
                let mut at_shutdown = *stopping.borrow_and_update();
                reloaded();
                while !at_shutdown && !in_flight.began() {
                    let first = std::future::poll_fn(|cx| match connection.as_mut().poll(cx) {
                        Poll::Ready(result) => Poll::Ready(Some(result)),
                        // The request began within that poll: hyper has it.
                        Poll::Pending if in_flight.began() => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    });
                    tokio::select! {
                        biased;
                        ended = first => match ended {
                            Some(result) => break 'closing result,
                            None => break,
                        },
                        _ = in_flight.closed() => return,
                        // An error: `serve` has returned, its grace over.
                        changed = stopping.changed() => {
                            at_shutdown = changed.is_err() || *stopping.borrow_and_update();
                            reloaded();
                        }
                    }
                }
                connection.as_mut().graceful_shutdown();
                // Over HTTP/2 the client may still open streams (until it has read the
                // `GOAWAY`; for ever if it never answers its `PING`): a later reload is still
                // seen, first at each wake-up, so that they take its routes, not those of a
                // reload that has retired since.
                let mut reloads = !at_shutdown;
                loop {
                    // Still bounded as before: after a reload the connection is no shutdown's
                    // to end, and an HTTP/2 client that never answers the GOAWAY's `PING`
                    // would keep it open.
                    tokio::select! {
                        biased;
                        changed = stopping.changed(), if reloads => {
                            // An error: `serve` has returned, its grace over.
                            reloads = changed.is_ok() && !*stopping.borrow_and_update();
                            reloaded();
                        }
                        result = connection.as_mut() => break result,
                        _ = in_flight.closed() => return,
                    }
                }
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, %addr, "connection ended with an error");
        }
    }
}

/// A task aborted when this is dropped: the idle watch ends with its connection.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
