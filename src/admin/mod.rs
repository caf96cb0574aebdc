//! The admin service (feature `admin`): what an operator asks of a running monitor, as one Tower
//! service.
//!
//! | request | answer |
//! |---------|--------|
//! | `GET /` | a small status page: services, state, since when, last probe, requests, cold-start times (HTML, no external resources, reloads every 5 s) |
//! | `GET /status` | [`MinMonitor::snapshot`] as JSON |
//! | `GET /metrics` | every metric in the Prometheus text format (see [`metrics`](crate::metrics)), and in the gateway the requests answered (below) |
//! | `POST /services/{name}/start` | runs `on_down` now; needs `Authorization: Bearer <token>` |
//! | `POST /services/{name}/stop` | runs `on_idle` now; needs `Authorization: Bearer <token>` |
//!
//! The actions answer 401 without the token (compared in constant time), 404 for an unknown
//! service, 409 when there is nothing to do (no such trigger; or, with the JSON below and
//! `"acted":false`, a start of a service that is up or a stop of one that is not), 502 when the trigger fails, 503 when a fleet cannot agree to a stop now (its Redis
//! unreachable, or another replica starting or stopping the backend), and otherwise 200 with
//! `{"service":"…","action":"start","acted":true,"state":"starting"}`. A start runs `on_down`
//! as the first request to a down service would ([`MinMonitor::start`]); a stop runs
//! `on_idle` as the idle time passing would ([`MinMonitor::stop`]). Each action is logged at
//! info with the service, the action and the client's address (`peer`, `-` when the service is
//! mounted in another server), when asked and when done (`acted`, the `state` it left); a
//! failed one at warn with the error; one refused for want of the token at warn, with the name
//! as sent, at most once a minute (the others at debug, and counted at warn in
//! `refused_quietly` when their minute ends: anyone reaching the port could otherwise fill the
//! log); one with
//! nothing to do for want of a trigger (409) at info. The token is never logged. The reads need no token: serve the admin service on a loopback address (the
//! gateway's default), or put it behind your own authentication. It answers only requests
//! naming an IP address, `localhost`, or a host listed with [`Admin::allow_hosts`] (403
//! otherwise), so that a web page cannot read it through DNS rebinding.
//!
//! Served by the gateway (its `admin` section), `/metrics` also counts the requests the gateway
//! answered, and times them, in two families the gateway keeps itself:
//!
//! | name | type | labels | moves when |
//! |------|------|--------|------------|
//! | `tower_monitor_gateway_requests_total` | counter | `service` (the route's service; `-` for requests no route took), `code` (the HTTP status code sent) | the gateway answers a request: the backend's answer, the fallback (503), the proxy's own (502, 504, …), the router's 404; `499` when the client went away before the answer's head (held for a cold start, say), as in the access log |
//! | `tower_monitor_gateway_request_duration_seconds` | histogram | `service` (as above) | the same answers: the time from the request's arrival to its answer's head (a cold start, a hold, the backend's time to answer; not the body's transfer, which a stream can make last hours); buckets from 1 ms to 30 s; the router's own answers (404) count 0 |
//!
//! By code rather than by class (`5xx`), as Prometheus' client libraries and Traefik label
//! requests: at a gateway 502 (the backend failed), 503 (the fallback, a limit) and 504 (too
//! slow) are different stories, and a query gets the class back with `code=~"5.."`. The
//! series are those of the codes actually sent, a handful per service; codes past 599 share
//! `code="other"`. A series appears with its first request. Two routes to one service add up
//! in one series. Not counted: requests hyper refuses before the gateway sees them (a malformed
//! head, a head sent too slowly). A gRPC call counts under its HTTP status (200, even with an
//! error `grpc-status`).
//!
//! The histogram is by service only, not by code as well: a slow 503 and a slow 200 are told
//! apart by the counter, and the series stay 17 a service.
//!
//! The gateway counts per worker in plain counters (no lock, no lookup, no allocation per
//! request; summed at each scrape), not through the `metrics` facade, whose call would build
//! the series' key and look it up in the recorder for every request. For the same reason the
//! [`MonitorLayer`](crate::MonitorLayer) records nothing per request: an application that
//! mounts the layer counts its requests where it serves them (its own HTTP metrics layer).
//!
//! `/metrics` needs the Prometheus recorder: [`Admin::new`] installs it as the process's global
//! `metrics` recorder the first time; if another recorder was installed before, `/metrics`
//! answers 503 (give your own handle with [`Admin::prometheus`] instead). Each scrape takes a
//! snapshot first, which samples the "requests held / in flight" gauges.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tower_monitor::{MinMonitor, admin};
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let monitor = Arc::new(MinMonitor::new());
//! // ... add services, serve the app ...
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9901").await?;
//! admin::serve(listener, monitor, "a long random token").await
//! # }
//! ```

mod act;
mod auth;
mod host;
mod page;
mod prometheus;
mod serve;

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_service::Service;

use crate::MinMonitor;
use auth::{Refusals, Token};
use host::Hosts;
#[cfg(feature = "gateway")]
pub(crate) use host::without_port;
pub(crate) use prometheus::Families;
pub use serve::serve;

/// The admin service: status page, JSON status, Prometheus metrics and start/stop actions for
/// every service of one monitor. Mount it in your own server (it is a Tower service on any
/// request body), or run it on its own listener with [`serve`].
///
/// ```
/// use std::sync::Arc;
/// use tower::ServiceExt;
/// use tower_monitor::{MinMonitor, admin::Admin};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let admin = Admin::new(Arc::new(MinMonitor::new()), "token");
/// let response = admin.oneshot(http::Request::get("/status").body(()).unwrap()).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct Admin {
    monitor: Arc<MinMonitor>,
    token: Token,
    prometheus: Option<PrometheusHandle>,
    hosts: Hosts,
    /// Families rendered after the recorder's (the gateway's request counts).
    families: Option<Arc<dyn Families>>,
    /// The client's address, for the log of actions: known when served by [`serve`], which
    /// clones the service for each connection.
    peer: Option<SocketAddr>,
    /// The actions refused for want of the token, shared by the clones: their warnings bounded.
    refusals: Arc<Refusals>,
}

/// The admin service's response body.
pub type AdminBody = Full<Bytes>;

impl Admin {
    /// The admin service of `monitor`, whose actions need `token` (an empty token refuses every
    /// action). Installs the Prometheus recorder the first time (see the module docs).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// let admin = tower_monitor::admin::Admin::new(Arc::new(tower_monitor::MinMonitor::new()), "token");
    /// # let _ = admin;
    /// ```
    pub fn new(monitor: Arc<MinMonitor>, token: impl Into<String>) -> Self {
        Self {
            monitor,
            token: Token::new(token.into()),
            prometheus: prometheus::handle(),
            hosts: Hosts::default(),
            families: None,
            peer: None,
            refusals: Arc::default(),
        }
    }

    /// Also answers requests naming these hosts (in `Host`, or an HTTP/2 `:authority`),
    /// without a port; `"*"` answers any. By default the admin service answers only requests
    /// to an IP address, `localhost` or a `*.localhost` name, and refuses others with a 403
    /// naming the host: otherwise a web page could read the status and metrics through DNS
    /// rebinding (its own name re-pointed at the admin's address). List the names your
    /// operators and Prometheus use.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use tower::ServiceExt;
    /// use tower_monitor::{MinMonitor, admin::Admin};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let admin = Admin::new(Arc::new(MinMonitor::new()), "token").allow_hosts(["gateway-1"]);
    /// let status = |host: &'static str| {
    ///     http::Request::get("/status").header("host", host).body(()).unwrap()
    /// };
    /// let listed = admin.clone().oneshot(status("gateway-1:9901")).await.unwrap();
    /// assert_eq!(listed.status(), 200);
    /// let other = admin.oneshot(status("attacker.example:9901")).await.unwrap();
    /// assert_eq!(other.status(), 403);
    /// # }
    /// ```
    pub fn allow_hosts<I>(mut self, hosts: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.hosts = Hosts::with(hosts);
        self
    }

    /// Renders `/metrics` from `handle`, a Prometheus recorder you installed yourself.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// use tower_monitor::{MinMonitor, admin::Admin};
    ///
    /// let handle = PrometheusBuilder::new().build_recorder().handle();
    /// let admin = Admin::new(Arc::new(MinMonitor::new()), "token").prometheus(handle);
    /// # let _ = admin;
    /// ```
    pub fn prometheus(mut self, handle: PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// Also renders `families` in `/metrics`, after the recorder's.
    #[cfg_attr(not(feature = "gateway"), allow(dead_code))]
    pub(crate) fn families(mut self, families: Arc<dyn Families>) -> Self {
        self.families = Some(families);
        self
    }

    /// `authorized`: the request carries the token, or why it does not (for actions).
    async fn answer(
        self,
        method: Method,
        path: String,
        authorized: Result<(), &'static str>,
    ) -> Response<AdminBody> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (Method::GET | Method::HEAD, [""]) => {
                html(page::render(&self.monitor.snapshot(), SystemTime::now()))
            }
            (Method::GET | Method::HEAD, ["status"]) => {
                match serde_json::to_vec(&self.monitor.snapshot()) {
                    Ok(json) => with_type(StatusCode::OK, json, "application/json"),
                    Err(error) => {
                        tracing::error!(%error, "the snapshot could not be serialized");
                        text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
                    }
                }
            }
            (Method::GET | Method::HEAD, ["metrics"]) => self.metrics(),
            (Method::POST, ["services", name, action @ ("start" | "stop")]) => {
                if let Err(why) = authorized {
                    // Someone without the token tried to start or stop a backend.
                    self.refusals.log(&act::Peer(self.peer), name, action, why);
                    let mut response = text(StatusCode::UNAUTHORIZED, why);
                    response
                        .headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    return response;
                }
                let name = percent_decoded(name);
                self.act(&name, action).await
            }
            (_, [""] | ["status"] | ["metrics"]) => not_allowed("GET, HEAD"),
            (_, ["services", _, "start" | "stop"]) => not_allowed("POST"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn metrics(&self) -> Response<AdminBody> {
        let Some(handle) = &self.prometheus else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "another metrics recorder was installed first: give its Prometheus handle to Admin::prometheus\n",
            );
        };
        // Sets the sampled gauges, so the scrape sees requests as they are now.
        let _ = self.monitor.snapshot();
        handle.run_upkeep();
        let mut text = handle.render();
        // A service a reload removed leaves the scrape, though the recorder keeps its series.
        #[cfg(feature = "gateway")]
        {
            text = prometheus::without_services(text, &self.monitor.removed());
        }
        if let Some(families) = &self.families {
            families.render(&mut text);
        }
        with_type(
            StatusCode::OK,
            text.into_bytes(),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    }
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("monitor", &self.monitor)
            .field("prometheus", &self.prometheus.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for Admin {
    type Response = Response<AdminBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<AdminBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Err(host) = self.hosts.admit(request.headers(), request.uri().host()) {
            tracing::debug!(host, "admin: a request to a host name not allowed; refused");
            let mut response = with_type(
                StatusCode::FORBIDDEN,
                format!(
                    "this admin service does not answer to the host name {host:?}: list it in its allowed hosts\n"
                )
                .into_bytes(),
                "text/plain; charset=utf-8",
            );
            response.headers_mut().insert(
                http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            return Box::pin(std::future::ready(Ok(response)));
        }
        let authorized = match self.token.admits(request.headers()) {
            true => Ok(()),
            // Told apart in words only: a script whose token is wrong must not be told to add one.
            false if request.headers().contains_key(http::header::AUTHORIZATION) => {
                Err("the bearer token given is not the admin's token\n")
            }
            false => Err("a bearer token is needed\n"),
        };
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let admin = self.clone();
        Box::pin(async move {
            let mut response = admin.answer(method, path, authorized).await;
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        })
    }
}

fn with_type(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response<AdminBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<AdminBody> {
    with_type(
        status,
        body.as_bytes().to_vec(),
        "text/plain; charset=utf-8",
    )
}

/// 405, with the `Allow` header RFC 9110 requires of it.
fn not_allowed(allow: &'static str) -> Response<AdminBody> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn html(body: String) -> Response<AdminBody> {
    with_type(
        StatusCode::OK,
        body.into_bytes(),
        "text/html; charset=utf-8",
    )
}

/// A path segment with its `%XX` escapes decoded (service names may hold any character).
fn percent_decoded(segment: &str) -> String {
    url::form_urlencoded::parse(format!("n={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}
