//! A reverse proxy as a Tower service: [`Proxy`] forwards each request to one backend.
//!
//! Put behind the monitor's layer, it is a backend started on demand (in axum, mounted with
//! `Router::nest_service`, built with `build::<axum::body::Body>()`: `examples/axum_proxy.rs`):
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use tower::Layer;
//! use tower_monitor::{MinMonitor, MonitoredService, Url, proxy::Proxy};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let monitor = Arc::new(MinMonitor::new());
//! let url = Url::parse("http://127.0.0.1:8081/")?;
//! monitor.add("app", MonitoredService::new(url, Duration::from_secs(30)))?;
//! // To the service's URL; an open WebSocket keeps the service awake.
//! let proxy = Proxy::for_service(&monitor, "app")?
//!     .response_timeout(Duration::from_secs(30))
//!     // The request body of the server it is mounted in: hyper's `Incoming`, axum's `Body`.
//!     .build::<hyper::body::Incoming>()?;
//! let service = monitor.layer("app")?.layer(proxy); // serve it with hyper
//! # let _ = service;
//! # Ok(())
//! # }
//! ```
//!
//! What it does:
//!
//! - Bodies stream both ways, frame by frame; nothing is buffered. An HTTP/2 backend's answer
//!   let go before its end (its client gone, or one that stopped taking it) ends the request's
//!   upload with it, and the backend's stream is reset (`CANCEL`): hyper's client would send
//!   the rest of the upload, after the answer's head, for as long as the client sends it (a
//!   gRPC bidi stream), holding the stream on both sides. An answer read to its end leaves
//!   the upload to go on.
//! - Upstream HTTP/1.1 by default, or HTTP/2 cleartext with prior knowledge
//!   ([`ProxyBuilder::http2`], for gRPC backends: one connection, each request a stream of
//!   it, whatever `Host` the clients name). Requests that came over HTTP/2 go to an HTTP/1.1
//!   backend as HTTP/1.1.
//! - HTTP/1.1 upgrades (WebSocket) pass through: `Upgrade` and `Connection: upgrade` are kept,
//!   and after the `101` bytes are relayed both ways; with [`ProxyBuilder::keep_awake`] an open
//!   upgraded connection counts as a request in flight for `on_idle`. An upgrade to `h2c` is
//!   not passed on (the request goes without it): its tunnel would carry HTTP/2 requests past
//!   the proxy, its base path and everything in front of it.
//! - WebSockets cross HTTP versions: an HTTP/2 client's (RFC 8441's extended `CONNECT`, when
//!   the server enables it) reaches an HTTP/1.1 backend as an HTTP/1.1 upgrade with a key of
//!   the proxy's, whose proof in the `101` is checked, and the client gets its `200`; an
//!   HTTP/1.1 client's reaches an HTTP/2 backend as an extended `CONNECT`, and gets its `101`
//!   with the proof of its key. Between two HTTP/2 sides the `CONNECT` passes as it is.
//! - Any other `CONNECT` (a tunnel, a forward proxy's job) is answered 501, never forwarded.
//! - A `TRACE` is answered 405, never forwarded, as nginx does: the backend would echo the
//!   request, cookies and credentials included, for a script to read (cross-site tracing).
//!   [`ProxyBuilder::allow_trace`] lets it through.
//! - Framing and hosts as RFC 9112 says, and nginx does: a body with a transfer coding besides
//!   `chunked` (`gzip, chunked`) is answered 501 (a request) or 502 (an answer), never passed
//!   on without the coding; a `Content-Length` beside chunks is removed (and the backend
//!   connection of an answer that had both closed after it, not pooled), an answer's list of
//!   equal ones (`5, 5`) made one number, and one on a `204` dropped; a backend connection
//!   whose answer came as HTTP/1.0 is closed after it (on it, hyper would send a later chunked
//!   upload as HTTP/1.0, without its body); a `GET` or `HEAD` whose body has no length goes
//!   to an HTTP/1.1 backend chunked (hyper's client would drop the body); a request with two
//!   `Host`s or one that is not `host[:port]` (userinfo, a path, a port alone, a port that
//!   is not one number) is answered
//!   400, over HTTP/1.x with `Connection: close`, which has hyper's server close the
//!   connection after it (as nginx does). An HTTP/1.0 client that asks for keep-alive keeps
//!   its connection.
//! - Headers as RFC 9110 and 7239 say: hop-by-hop headers (and those `Connection` names) are
//!   removed both ways; `Host` is kept, sent as `:authority` to an HTTP/2 backend (or set to
//!   the backend's with [`ProxyBuilder::rewrite_host`]); `X-Forwarded-*` and/or `Forwarded` are added
//!   ([`ForwardedHeaders`]), in place of the client's unless it is trusted
//!   ([`ProxyBuilder::trust_forwarded`]); their protocol is `https` only for an HTTP/2
//!   request whose `:scheme` says so, never for an absolute-form HTTP/1.1 target's; the
//!   target URL's path is a base path (`http://b/base/` + `/x` → `/base/x`). A path with a
//!   dot-segment (`/../`, also as `%2e%2e`, `..%2f`, `..\`, `..;`) is answered 400, never
//!   forwarded: the backend would resolve it out of the base path.
//! - Failures are answers, never errors: 504 when connecting or the response head takes longer
//!   than its timeout; 502 otherwise, with [`BackendGone`] in the response's extensions when
//!   the backend refused or dropped the connection (a kept one: only if it then refuses a new
//!   one, see below), so a [`MonitorLayer`](crate::MonitorLayer)
//!   in front learns the backend is gone (not when it answered before it read the whole
//!   upload, a 413, and closed: the client gets that answer, the rest of its upload read and
//!   dropped until the close is read, 8 MiB at most); 400 when the request's own body breaks
//!   off (a client gone in the middle of an upload), which is not the backend's doing; 503
//!   with `Retry-After: 1` (to an `EventSource`, a 200 event stream of `retry: 1000`, on
//!   which it comes back), without [`BackendGone`], when this process could not reach the
//!   backend for want of its own file descriptors, local ports or memory (`EMFILE` under a
//!   flood of clients, `EADDRNOTAVAIL`): its own shortage, which says nothing of the backend
//!   (logged at error at most once a minute, the others at debug and counted).
//!   An answer whose body the backend stops sending is cut short once no byte of it has come
//!   for [`ProxyBuilder::response_body_timeout`] (60 s by default, nginx's
//!   `proxy_read_timeout`), its backend connection closed. Each is logged at warn with the
//!   service's name. A gRPC request gets the status gRPC maps these to instead (UNAVAILABLE
//!   for a 502 or 504), in a trailers-only answer: a text body would read to a gRPC client as
//!   a protocol error.
//! - Kept HTTP/1.1 connections that backends close when idle (Node's after 5 s, gunicorn's
//!   after 2 s, Python's `http.server` on its socket timeout): before a request is handed to
//!   a kept connection idle 1 ms or more, its socket is looked at (a peek, on Unix); one whose
//!   close the kernel has, though the connection's task has not read it yet (its runtime busy
//!   elsewhere), or that has bytes no request asked for (the `408` some servers send before
//!   they close an idle connection, which would read as the request's answer), is not used,
//!   and the request goes on another, whatever its method: none of it left. A close
//!   that crosses the request after that look fails it: a request not yet written (hyper
//!   gives it back) goes on another connection; a written one without a body whose method is
//!   idempotent (`GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE`), once the connection had been
//!   idle 100 ms (the copy it needs is not made for a connection in constant use), goes
//!   again once, on a new connection (RFC 9112 section 9.3.1;
//!   nginx's `proxy_next_upstream error`). Any other request is not sent again (the backend
//!   may have acted on it): it is answered 502, as nginx answers it, and the backend is taken
//!   for gone only if it refuses the new connection the proxy then makes to tell (kept for the
//!   next request if it is taken): a backend that closed an idle connection is there, one
//!   that crashed under the request is not. Should that connection not be made within the
//!   connect timeout (a busy backend's full queue), the answer is the 504 of a connect timeout,
//!   the backend not taken for gone; within the response timeout in any case.
//! - A request to an HTTP/2 backend whose header list (counted as RFC 9113 counts it: each
//!   field's name, value and 32 octets, pseudo-header fields included, as the request would
//!   go) reaches [`ProxyBuilder::http2_max_header_list_size`] (16 KiB by default, the limit of
//!   hyper's, h2's and tonic's servers) is answered 431 (gRPC: RESOURCE_EXHAUSTED), never
//!   sent: h2's client does not check the backend's limit, and a backend's h2 ends the whole
//!   connection, every client's requests in flight on it, for a list past its limit that
//!   spans `CONTINUATION` frames.
//! - Optionally at most so many requests in flight to the backend
//!   ([`ProxyBuilder::max_in_flight`], [`InFlightLimit`]): the others wait their turn, then get
//!   a 503 with `Retry-After` (gRPC: UNAVAILABLE).

mod answer;
mod body;
mod builder;
mod exchange;
mod failure;
mod forwarded;
mod future;
mod header_list;
mod headers;
mod length;
mod limit;
mod multiplexed;
mod pool;
mod request;
mod resend;
mod target;
mod tied;
mod upgrade;
mod upload;
mod upstream;
mod websocket;

pub use body::ProxyBody;
pub use builder::{
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HTTP2_MAX_HEADER_LIST_SIZE,
    DEFAULT_MAX_RESPONSE_HEADERS, DEFAULT_RESPONSE_BODY_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT,
    HTTP2_MAX_HEADER_LIST_SIZE_BOUND, MAX_RESPONSE_HEADERS_BOUND, ProxyBuilder,
};
#[cfg(feature = "gateway")]
pub(crate) use builder::{KEEPALIVE_IDLE, KEEPALIVE_INTERVAL};
pub use forwarded::{ClientAddr, ForwardedHeaders};
pub use future::ResponseFuture;
pub use limit::{DEFAULT_LIMIT_WAIT, InFlightLimit};
pub use target::InvalidTarget;
pub use upgrade::UpgradeGuard;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tower_service::Service;

#[cfg(doc)]
use crate::layer::BackendGone;
use crate::{BoxError, Url};
#[cfg(feature = "gateway")]
pub(crate) use failure::ALLOWED;
use failure::Failure;
use future::{FORMAT, Sent};
use headers::Coding;
use target::Target;
use upgrade::ClientUpgrade;
use upload::Upload;

/// A Tower service that forwards every request to one backend and returns its answer; see the
/// [module documentation](self). Made with [`Proxy::builder`]; cheap to clone.
///
/// The request body `B` is any [`Body`] with `Bytes` data, such as hyper's `Incoming` or
/// axum's `Body`.
pub struct Proxy<B = hyper::body::Incoming> {
    shared: Arc<Shared<B>>,
    /// The client of requests without a [`ClientAddr`], and whether its connection is TLS:
    /// set by a server that makes a proxy per connection ([`for_client`](Self::for_client)),
    /// which saves putting it in each request's extensions (three allocations).
    peer: forwarded::Peer,
}

struct Shared<B> {
    /// The client's body goes on wrapped, so that one that stalls fails.
    upstream: upstream::Upstream<Upload<B>>,
    target: Target,
    http2: bool,
    rewrite_host: bool,
    /// Whether a `TRACE` goes on to the backend (by default it is answered 405).
    allow_trace: bool,
    forwarded: ForwardedHeaders,
    trust_forwarded: bool,
    /// Whether the clients reach this proxy over cleartext only (the gateway's server).
    cleartext: bool,
    response_timeout: Duration,
    /// How long the client's body may keep the backend waiting for its next bytes.
    body_read_timeout: Option<Duration>,
    /// How long the backend's answer body may keep the client waiting for its next bytes.
    response_body_timeout: Option<Duration>,
    /// What an HTTP/1.1 backend's answer may have of header lines: named when one has more.
    max_response_headers: usize,
    /// What an HTTP/2 backend's request header lists must stay under (see `header_list`).
    http2_max_header_list_size: usize,
    service: Option<Arc<str>>,
    /// The monitored service an open upgraded connection keeps awake, if any.
    keep_awake: Option<Arc<crate::registered::Registered>>,
    /// At most so many requests in flight, if set.
    limit: Option<InFlightLimit>,
    /// Where a request whose connection was refused waits for the backend, if it does.
    gone_hold: Option<resend::GoneHold>,
    /// The log of the failures for want of this process's own resources, which a flood of
    /// clients can make come thousands of times a second.
    local_said: Arc<crate::once_a_minute::OnceAMinute>,
}

impl Proxy {
    /// A builder for a proxy to `target` (an `http://` URL; its path is the base path).
    ///
    /// ```
    /// use tower_monitor::{Url, proxy::Proxy};
    ///
    /// let proxy = Proxy::builder(Url::parse("http://127.0.0.1:8081/base/").unwrap())
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap();
    /// # let _ = proxy;
    /// ```
    pub fn builder(target: Url) -> ProxyBuilder {
        ProxyBuilder::new(target)
    }
}

impl<B> Proxy<B> {
    /// This proxy, for the requests of one connection from `client`: the address reported in
    /// the forwarded headers of those without a [`ClientAddr`] in their extensions (if not
    /// known here, theirs alone), and their protocol, `https` if the connection is `tls`.
    #[cfg(feature = "gateway")]
    pub(crate) fn for_client(&mut self, client: Option<std::net::IpAddr>, tls: bool) {
        self.peer = forwarded::Peer { ip: client, tls };
    }
}

#[cfg(all(test, feature = "gateway"))]
impl<B> Proxy<B> {
    /// Its log of the failures for want of this process's own resources.
    pub(crate) fn local_said(&self) -> &Arc<crate::once_a_minute::OnceAMinute> {
        &self.shared.local_said
    }
}

impl<B> Clone for Proxy<B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            peer: self.peer,
        }
    }
}

impl<B> fmt::Debug for Proxy<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("target", &self.shared.target.authority)
            .field("http2", &self.shared.http2)
            .field("service", &self.shared.service)
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for Proxy<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture<B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        Shared::start(&self.shared, request, self.peer)
    }
}

impl<B> Shared<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Rewrites the request and, on the busy path, sends it at once.
    fn start(
        this: &Arc<Self>,
        mut request: Request<B>,
        peer: forwarded::Peer,
    ) -> ResponseFuture<B> {
        let version = request.version();
        if request.method() == http::Method::TRACE && !this.allow_trace {
            // The backend's answer would be the request itself, cookies and credentials
            // included, for a script to read (cross-site tracing).
            return this.refuse(Failure::NotAllowed, "TRACE", &request);
        }
        let client_upgrade = ClientUpgrade::take(&mut request, this.http2);
        if client_upgrade.is_none() && request.method() == http::Method::CONNECT {
            // A tunnel to anywhere is a forward proxy's job; a 2xx from the backend would open
            // one that nothing relays.
            return this.refuse(
                Failure::NotForwarded,
                "a CONNECT that is not a WebSocket",
                &request,
            );
        }
        if !this.target.forwards(request.uri().path()) {
            return this.refuse(Failure::BadPath, "a path with a dot-segment", &request);
        }
        let host = match headers::original_host(request.headers(), request.uri()) {
            Ok(host) => host,
            Err(why) => return this.refuse(Failure::BadHost, why, &request),
        };
        let upgrade = client_upgrade.as_ref().is_some_and(ClientUpgrade::is_http1);
        if let Coding::Other = this.prepare(&mut request, upgrade, peer, host) {
            return this.refuse(
                Failure::NotForwarded,
                "a transfer coding besides chunked",
                &request,
            );
        }
        // Looked up only for a body to send: a bodiless request, most of them, skips it.
        let length = if request.body().is_end_stream() {
            None
        } else {
            length::of_request(request.headers())
        };
        // A client's forwarded headers in its trailers go as those in its headers went.
        let untrusted = !this.trust_forwarded && this.forwarded != ForwardedHeaders::None;
        let request = request.map(|body| {
            (Upload::new(body, this.body_read_timeout).with_length(length)).untrusted(untrusted)
        });
        let now = Instant::now();
        let sent = Sent {
            method: request.method().clone(),
            path: request
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            format: FORMAT.map(|name| request.headers().get(name).cloned()),
            version,
            deadline: now + this.response_timeout,
            handed: request.body().handed(),
        };
        // Nested, not a let chain: those need Rust 1.88, above the crate's rust-version.
        if client_upgrade.is_none() && this.limit.is_none() {
            if let Some(kept) = this.upstream.kept(now) {
                let exchange = kept.send(request, now, sent.deadline);
                return ResponseFuture::waiting(Arc::clone(this), exchange, sent);
            }
        }
        // Past the HTTP/1.1 busy path, which it would only cost.
        if this.http2 {
            if let Some(refused) = this.refuse_header_list(&request, &sent) {
                return ResponseFuture::ready(refused);
            }
        }
        ResponseFuture::boxed(Arc::clone(this).finish(request, client_upgrade, sent, true))
    }
}
