//! [`ProxyBuilder`]: the options of a [`Proxy`](super::Proxy).

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use super::{ForwardedHeaders, InFlightLimit};
use crate::{MinMonitor, Url};

mod build;
mod defaults;
mod for_service;
mod hold_when_gone;

pub use defaults::*;

/// TCP keepalive on the proxy's and the gateway's connections: the first probe after a minute
/// without traffic, then one every 10 s, so that a peer gone without closing is noticed within
/// a few minutes (Linux gives up after 9 probes: 2.5 minutes).
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// See [`KEEPALIVE_IDLE`].
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long an idle connection to the backend is kept for reuse: 15 s. Short, so that a
/// gateway with no traffic holds no sockets (and a backend that is stopped when idle does not
/// see connections it must drain).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The options of a [`Proxy`](super::Proxy); made by [`Proxy::builder`](super::Proxy::builder)
/// or [`Proxy::for_service`](super::Proxy::for_service).
///
/// Cheap to clone, to build several proxies from one set of options (one per runtime, or
/// one per request body type). The proxies built from clones share what the builder was
/// given to share: the [`limit`](Self::limit) (one count of requests in flight) and the
/// bound on requests held by [`hold_when_gone`](Self::hold_when_gone); each has its own
/// connections to the backend.
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::{Url, proxy::{ForwardedHeaders, Proxy}};
///
/// let grpc = Proxy::builder(Url::parse("http://127.0.0.1:50051/").unwrap())
///     .http2(true)
///     .connect_timeout(Duration::from_secs(1))
///     .response_timeout(Duration::from_secs(10))
///     .forwarded(ForwardedHeaders::Both)
///     .service_name("grpc")
///     .build::<hyper::body::Incoming>()
///     .unwrap();
/// # let _ = grpc;
/// ```
#[must_use]
#[derive(Clone)]
pub struct ProxyBuilder {
    target: Url,
    http2: bool,
    rewrite_host: bool,
    allow_trace: bool,
    forwarded: ForwardedHeaders,
    trust_forwarded: bool,
    cleartext: bool,
    connect_timeout: Duration,
    response_timeout: Duration,
    body_read_timeout: Option<Duration>,
    response_body_timeout: Option<Duration>,
    /// Set only when asked: hyper's default array of header lines is not allocated.
    max_response_headers: Option<usize>,
    http2_max_header_list_size: usize,
    service: Option<Arc<str>>,
    /// The monitored service an open upgraded connection counts for (`keep_awake`).
    keep_awake: Option<(Arc<MinMonitor>, Arc<str>)>,
    limit: Option<InFlightLimit>,
    /// The monitored service a refused request waits for (`hold_when_gone`), and where.
    gone_hold: Option<(hold_when_gone::GoneService, crate::layer::Hold)>,
    /// The log of the failures for want of this process's own resources, if shared with
    /// other proxies (see [`local_said`](Self::local_said)); else the proxy's own.
    local_said: Option<Arc<crate::once_a_minute::OnceAMinute>>,
}

impl ProxyBuilder {
    pub(super) fn new(target: Url) -> Self {
        Self {
            target,
            http2: false,
            rewrite_host: false,
            allow_trace: false,
            forwarded: ForwardedHeaders::default(),
            trust_forwarded: false,
            cleartext: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            body_read_timeout: Some(DEFAULT_BODY_READ_TIMEOUT),
            response_body_timeout: Some(DEFAULT_RESPONSE_BODY_TIMEOUT),
            max_response_headers: None,
            http2_max_header_list_size: DEFAULT_HTTP2_MAX_HEADER_LIST_SIZE,
            service: None,
            keep_awake: None,
            limit: None,
            gone_hold: None,
            local_said: None,
        }
    }

    /// Speak HTTP/2 cleartext with prior knowledge to the backend (gRPC), instead of HTTP/1.1.
    pub fn http2(mut self, http2: bool) -> Self {
        self.http2 = http2;
        self
    }

    /// Send the backend's own authority as `Host` (`:authority` over HTTP/2) instead of the
    /// client's (default: the client's is kept).
    pub fn rewrite_host(mut self, rewrite: bool) -> Self {
        self.rewrite_host = rewrite;
        self
    }

    /// Whether a `TRACE` request goes on to the backend (default: no, it is answered 405, as
    /// nginx answers it). The backend would send the request back as its answer, cookies and
    /// `Authorization` included, for a script to read (cross-site tracing); allow it only for a
    /// backend that does not echo, or for clients you trust.
    pub fn allow_trace(mut self, allow: bool) -> Self {
        self.allow_trace = allow;
        self
    }

    /// Which forwarded headers to add (default [`ForwardedHeaders::XForwarded`]).
    pub fn forwarded(mut self, forwarded: ForwardedHeaders) -> Self {
        self.forwarded = forwarded;
        self
    }

    /// Whether the clients are proxies whose forwarded headers are to be believed (default:
    /// no). By default those a client sends are dropped and the backend gets this proxy's
    /// alone, as it must when clients come from the internet, who could claim any address,
    /// host or scheme. Trusted (a load balancer in front, which all clients go through), its
    /// `X-Forwarded-For` list and `Forwarded` elements are kept and this proxy's appended,
    /// and its `X-Forwarded-Host` and `-Proto` (what the client asked of it) are kept.
    ///
    /// ```
    /// use tower_monitor::{Url, proxy::Proxy};
    ///
    /// // Behind a load balancer that every client goes through.
    /// let proxy = Proxy::builder(Url::parse("http://127.0.0.1:8081/").unwrap())
    ///     .trust_forwarded(true)
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap();
    /// # let _ = proxy;
    /// ```
    pub fn trust_forwarded(mut self, trust: bool) -> Self {
        self.trust_forwarded = trust;
        self
    }

    /// For a server that tells each connection's protocol itself (the gateway's: `https` for
    /// a TLS connection, see `Proxy::for_client`): otherwise `http`, whatever scheme a client
    /// names.
    #[cfg(feature = "gateway")]
    pub(crate) fn cleartext_clients(mut self) -> Self {
        self.cleartext = true;
        self
    }

    /// Logs the failures for want of this process's own resources through `said`, which
    /// other proxies of the same service share (the gateway's workers each build theirs): at
    /// error at most once a minute for the process, not once a minute for each.
    #[cfg(feature = "gateway")]
    pub(crate) fn local_said(mut self, said: Arc<crate::once_a_minute::OnceAMinute>) -> Self {
        self.local_said = Some(said);
        self
    }

    /// The connect timeout (default [`DEFAULT_CONNECT_TIMEOUT`]); past it, 504.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The response-head timeout (default [`DEFAULT_RESPONSE_TIMEOUT`]); past it, 504. One too
    /// long to add to a clock reading (up to `Duration::MAX`) means "practically forever".
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        // Each request adds it to the time it is sent.
        self.response_timeout = timeout.min(crate::deadline::PRACTICALLY_FOREVER);
        self
    }

    /// How long a client's request body may keep the backend waiting for its next bytes
    /// (default [`DEFAULT_BODY_READ_TIMEOUT`]); past it, the request is answered 408 and its
    /// backend connection let go. Only the client's slowness counts, and only towards an
    /// HTTP/1.1 backend, where each stalled upload would hold a connection: over HTTP/2 a
    /// client stream (gRPC) may pause as long as it likes. `Duration::MAX` means no bound.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{Url, proxy::Proxy};
    /// let proxy = Proxy::builder(Url::parse("http://127.0.0.1:8081/").unwrap())
    ///     .body_read_timeout(Duration::from_secs(10))
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap();
    /// # let _ = proxy;
    /// ```
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout =
            (timeout < crate::deadline::PRACTICALLY_FOREVER).then_some(timeout);
        self
    }

    /// How long the backend's answer body may keep the client waiting for its next bytes
    /// (default [`DEFAULT_RESPONSE_BODY_TIMEOUT`], as nginx's `proxy_read_timeout`); past it,
    /// the answer is cut short and logged at warn with the service: over HTTP/1.1 the
    /// client's connection is closed before the last chunk (or short of `Content-Length`), so
    /// it sees a truncated answer, never a whole one; over HTTP/2 its stream is reset. The
    /// backend connection is closed, not pooled. Only the backend's silence counts: the timer
    /// runs while the proxy waits for bytes, not while the client is slow to take them. An
    /// upgraded connection (WebSocket) is not bounded by it. For long polling or
    /// server-sent events, set it above the longest silence between two events (or have the
    /// backend send a heartbeat, such as an SSE comment line, more often than it).
    /// `Duration::MAX` means no bound.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{Url, proxy::Proxy};
    /// // An event stream that may be silent for up to 10 minutes.
    /// let proxy = Proxy::builder(Url::parse("http://127.0.0.1:8081/").unwrap())
    ///     .response_body_timeout(Duration::from_secs(15 * 60))
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap();
    /// # let _ = proxy;
    /// ```
    pub fn response_body_timeout(mut self, timeout: Duration) -> Self {
        self.response_body_timeout =
            (timeout < crate::deadline::PRACTICALLY_FOREVER).then_some(timeout);
        self
    }

    /// How many header lines an HTTP/1.1 backend's answer may have (default
    /// [`DEFAULT_MAX_RESPONSE_HEADERS`], at most [`MAX_RESPONSE_HEADERS_BOUND`]); an answer
    /// with more is a 502, logged at warn with this limit's name. Raise it for a backend that
    /// sends many (`Set-Cookie`s, security headers). Above the default, each answer's parse
    /// allocates its array of header lines (hyper measures about 5% slower); at or below it,
    /// the array is on the stack. The answer's head is also bounded in size, at hyper's 408
    /// KiB. An HTTP/2 backend's answer is bounded by its size only (16 KiB, hyper's default).
    ///
    /// ```
    /// # use tower_monitor::{Url, proxy::Proxy};
    /// let proxy = Proxy::builder(Url::parse("http://127.0.0.1:8081/").unwrap())
    ///     .max_response_headers(200)
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap();
    /// # let _ = proxy;
    /// let zero = Proxy::builder(Url::parse("http://127.0.0.1:8081/").unwrap())
    ///     .max_response_headers(0)
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap_err();
    /// assert!(zero.to_string().contains("max_response_headers"));
    /// ```
    pub fn max_response_headers(mut self, max: usize) -> Self {
        self.max_response_headers = Some(max);
        self
    }

    /// The size a request's header list must stay under to go to an HTTP/2 backend (default
    /// [`DEFAULT_HTTP2_MAX_HEADER_LIST_SIZE`], from 1 to [`HTTP2_MAX_HEADER_LIST_SIZE_BOUND`]):
    /// set it to the backend's `SETTINGS_MAX_HEADER_LIST_SIZE`. Counted as RFC 9113 section
    /// 6.5.2 counts it (each field's name and value and 32 octets), pseudo-header fields
    /// included, on the request as it would go (forwarded headers added, `Host` as
    /// `:authority`, hop-by-hop headers removed). A request whose list reaches it is answered
    /// 431 (gRPC: `RESOURCE_EXHAUSTED`), logged at warn with its size and this bound, and never
    /// sent: h2's client does not check the backend's limit, and h2's server (hyper's, tonic's)
    /// refuses a list that reaches its own, ending the whole connection, every other client's
    /// requests in flight on it, when the block spans `CONTINUATION` frames. HTTP/2 backends
    /// only ([`http2`](Self::http2)); an HTTP/1.1 request is not measured.
    ///
    /// ```
    /// # use tower_monitor::{Url, proxy::Proxy};
    /// let proxy = Proxy::builder(Url::parse("http://127.0.0.1:50051/").unwrap())
    ///     .http2(true)
    ///     .http2_max_header_list_size(64 * 1024)
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap();
    /// # let _ = proxy;
    /// let zero = Proxy::builder(Url::parse("http://127.0.0.1:50051/").unwrap())
    ///     .http2(true)
    ///     .http2_max_header_list_size(0)
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap_err();
    /// assert!(zero.to_string().contains("http2_max_header_list_size"));
    /// ```
    pub fn http2_max_header_list_size(mut self, bytes: usize) -> Self {
        self.http2_max_header_list_size = bytes;
        self
    }

    /// At most `max` requests in flight to the backend at once (as Knative's
    /// `containerConcurrency` or nginx's `max_conns`): the others wait their turn, first come
    /// first served, for `max_wait` at most ([`DEFAULT_LIMIT_WAIT`](super::DEFAULT_LIMIT_WAIT)
    /// is a sensible one), then get a 503 with `Retry-After: 1` (gRPC: `UNAVAILABLE`; a
    /// browser's `EventSource`: a 200 event stream of `retry: 1000`, as it gives up for good
    /// on any other status). A
    /// request counts from its turn until its answer's body has been read or dropped, or, for
    /// an upgrade (WebSocket), until the upgraded connection closes. The backend's
    /// `response_timeout` counts from the turn. Without it, there is no limit.
    ///
    /// A backend that has just woken gets every held request at once; this spares a small one
    /// the herd. A limited proxy's requests do not take the busy path (a kept connection, the
    /// request sent at once): each costs one boxed future more.
    ///
    /// ```
    /// # use std::num::NonZeroUsize;
    /// # use tower_monitor::{Url, proxy::{Proxy, DEFAULT_LIMIT_WAIT}};
    /// let proxy = Proxy::builder(Url::parse("http://127.0.0.1:8081/").unwrap())
    ///     .max_in_flight(NonZeroUsize::new(4).unwrap(), DEFAULT_LIMIT_WAIT)
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap();
    /// # let _ = proxy;
    /// ```
    pub fn max_in_flight(self, max: NonZeroUsize, max_wait: Duration) -> Self {
        self.limit(InFlightLimit::new(max, max_wait))
    }

    /// As [`max_in_flight`](Self::max_in_flight), with a limit that other proxies may share.
    ///
    /// ```
    /// # use std::num::NonZeroUsize;
    /// # use tower_monitor::{Url, proxy::{InFlightLimit, Proxy, DEFAULT_LIMIT_WAIT}};
    /// let limit = InFlightLimit::new(NonZeroUsize::new(4).unwrap(), DEFAULT_LIMIT_WAIT);
    /// let proxy = Proxy::builder(Url::parse("http://127.0.0.1:8081/").unwrap())
    ///     .limit(limit)
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap();
    /// # let _ = proxy;
    /// ```
    pub fn limit(mut self, limit: InFlightLimit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The name the proxy's log lines give as `service`.
    pub fn service_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// Count each open upgraded connection (WebSocket) as a request in flight of the service
    /// `name` in `monitor`, so `on_idle` does not stop a backend with an open socket. Also sets
    /// the [`service_name`](Self::service_name) if none is set.
    ///
    /// ```
    /// # use std::{sync::Arc, time::Duration};
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url, proxy::Proxy};
    /// let monitor = Arc::new(MinMonitor::new());
    /// let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// monitor.add("chat", MonitoredService::new(url.clone(), Duration::from_secs(30))).unwrap();
    /// let proxy = Proxy::builder(url).keep_awake(monitor, "chat").build::<hyper::body::Incoming>().unwrap();
    /// # let _ = proxy;
    /// ```
    pub fn keep_awake(mut self, monitor: Arc<MinMonitor>, name: &str) -> Self {
        if self.service.is_none() {
            self.service = Some(Arc::from(name));
        }
        self.keep_awake = Some((monitor, Arc::from(name)));
        self
    }
}

impl fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyBuilder")
            .field("target", &self.target.as_str())
            .field("http2", &self.http2)
            .field("rewrite_host", &self.rewrite_host)
            .field("allow_trace", &self.allow_trace)
            .field("forwarded", &self.forwarded)
            .field("trust_forwarded", &self.trust_forwarded)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("response_body_timeout", &self.response_body_timeout)
            .field("max_response_headers", &self.max_response_headers)
            .field(
                "http2_max_header_list_size",
                &self.http2_max_header_list_size,
            )
            .field("service", &self.service)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}
