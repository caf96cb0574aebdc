//! [`Router`]: picks the route of a request by host and path prefix, and forwards it.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::MonitorService;
use crate::admin::without_port;
use crate::layer::{AtBackend, FallbackBody, MonitorBody, ResponseFuture, grpc_status, is_grpc};
use crate::proxy::{ALLOWED, Proxy};

use super::answered::{Block, CLIENT_GONE, Requests};
use super::route_path::routing_path;
use super::serve::MAX_REQUEST_HEADERS;

/// The gateway's proxy to one service, guarded by its layer.
pub(super) type Routed = MonitorService<Proxy<Incoming>>;

use super::access::Entry;
pub use super::access::GatewayBody;

mod over_tls;
mod route;

pub(super) use route::Route;

/// The gateway as one Tower service: each request goes to the first route whose host (if it
/// has one) and path prefix match, or is answered 404 (400 if an HTTP/1.1 request names no
/// host, with `Connection: close`); a `TRACE` is answered 405 without reaching its route's
/// layer. The host is the URI's authority (HTTP/2's `:authority`, or an absolute-form
/// request) or else the `Host` header, without its port or a final dot, in any case. Cheap to
/// clone.
#[derive(Clone)]
pub struct Router {
    table: Arc<Table>,
    access_log: bool,
    /// The client of the connection this router serves, if it serves one.
    client: Option<IpAddr>,
    /// Whether that connection is TLS, or every one is ([`over_tls`](Self::over_tls)): the
    /// forwarded headers say `https`.
    tls: bool,
}

/// The routes, and the counts of their answers (this router's own, so that each worker
/// counts on its own cache lines).
struct Table {
    routes: Box<[Route]>,
    answered: Arc<Block>,
}

impl Router {
    /// The router of `routes`, counting its answers in a block of its own of `requests`.
    pub(super) fn new(routes: Vec<Route>, access_log: bool, requests: &Requests) -> Self {
        let answered = requests.block(routes.iter().map(|route| &route.name));
        Self {
            table: Arc::new(Table {
                routes: routes.into(),
                answered,
            }),
            access_log,
            client: None,
            tls: false,
        }
    }

    /// This router, for the requests of one connection from `client`: the address the
    /// forwarded headers report (unless a request has a `ClientAddr` of its own), and their
    /// protocol, `https` if the connection is `tls`.
    pub(super) fn for_client(&self, client: SocketAddr, tls: bool) -> Self {
        Self {
            client: Some(client.ip()),
            tls,
            ..self.clone()
        }
    }

    /// This router, for the client `other` serves (see [`for_client`](Self::for_client)).
    pub(super) fn for_client_of(&self, other: &Self) -> Self {
        Self {
            client: other.client,
            tls: other.tls,
            ..self.clone()
        }
    }

    /// The index of the route `request` takes, or the status of the router's own answer: 404
    /// for no route; 400 for an HTTP/1.1 request that names no host (RFC 9112 section 3.2,
    /// as nginx answers it), which a library user's request made in code may, not a client's;
    /// 431 for an HTTP/2 request with more header fields than an HTTP/1.1 one may have.
    fn route(&self, request: &Request<Incoming>) -> Result<usize, StatusCode> {
        let host = request.uri().host().or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(without_port)
        });
        if host.is_none() && request.version() == http::Version::HTTP_11 {
            return Err(StatusCode::BAD_REQUEST);
        }
        if request.version() == http::Version::HTTP_2 && too_many_fields(request.headers()) {
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        // `app.example.` is `app.example` (a fully qualified name), as nginx takes it.
        let host = host.map(|host| host.strip_suffix('.').unwrap_or(host));
        let path = routing_path(request.uri().path());
        self.table
            .routes
            .iter()
            .position(|route| route.matches(host, &path))
            .ok_or(StatusCode::NOT_FOUND)
    }
}

#[cfg(test)]
impl Router {
    /// Each route's service name and proxy.
    pub(super) fn proxies(&self) -> impl Iterator<Item = (&str, &Proxy<Incoming>)> {
        (self.table.routes.iter()).map(|route| (&*route.name, route.service.get_ref()))
    }
}

/// Whether an HTTP/2 request has more header fields than an HTTP/1.1 head may have lines
/// ([`MAX_REQUEST_HEADERS`]). HTTP/2 may send a `Cookie` as one field per cookie (RFC 9113
/// section 8.2.3), which HTTP/1.1 sends as one line: those count as one. Counted only past the
/// bound: the length of a header map is a field's read.
fn too_many_fields(headers: &http::HeaderMap) -> bool {
    headers.len() > MAX_REQUEST_HEADERS
        && headers.len() + 1 - headers.get_all(header::COOKIE).iter().count().max(1)
            > MAX_REQUEST_HEADERS
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<_> = self
            .table
            .routes
            .iter()
            .map(|r| {
                let prefix = String::from_utf8_lossy(&r.path_prefix);
                (r.host.as_deref(), prefix, &*r.name)
            })
            .collect();
        f.debug_struct("Router").field("routes", &routes).finish()
    }
}

impl Service<Request<Incoming>> for Router {
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = RouterFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        self.clone().answer(request)
    }
}

impl Router {
    /// [`call`](Service::call), by value: the routes go with the future (which counts its
    /// answer), so that a server that clones the router for each request pays nothing more.
    pub(super) fn answer(self, request: Request<Incoming>) -> RouterFuture {
        let arrived = Instant::now();
        let index = match self.route(&request) {
            Ok(index) => index,
            Err(status) => return self.refuse(request, status, None),
        };
        if request.method() == Method::TRACE {
            // Refused here, not by the proxy alone: the layer in front of it would first wake a
            // down backend for it and count it as activity.
            return self.refuse(request, StatusCode::METHOD_NOT_ALLOWED, Some(index));
        }
        let route = &self.table.routes[index];
        // Begun now: dropped with this future if the client goes away first, it still logs.
        let entry = self.access_log.then(|| route.entry(&request, self.client));
        let mut service = route.service.clone();
        if self.client.is_some() || self.tls {
            service.get_mut().for_client(self.client, self.tls);
        }
        let head = request.method() == Method::HEAD;
        // A `Proxy` is always ready, and so is the layer over it: calling at once is sound.
        let future = service.call(request);
        RouterFuture {
            head,
            tally: Some(Tally {
                table: self.table,
                row: index,
                arrived,
            }),
            state: State::Forwarding { future, entry },
        }
    }

    /// The router's own answer, `status`, to a request it takes nowhere: 400 or 404 without a
    /// `route`; 405 to a `TRACE`, counted and logged as its route's, as the proxy's was.
    fn refuse(
        self,
        request: Request<Incoming>,
        status: StatusCode,
        route: Option<usize>,
    ) -> RouterFuture {
        let (text, grpc) = match status {
            StatusCode::BAD_REQUEST => ("no host in this request\n", 13), // INTERNAL
            // The proxy's words for its own refusal.
            StatusCode::METHOD_NOT_ALLOWED => ("method not allowed\n", 12), // UNIMPLEMENTED
            // The proxy's words for its 431; a gRPC client does not retry it.
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ("request header fields too large\n", 8),
            _ => ("no route for this request\n", 12), // UNIMPLEMENTED
        };
        // A gRPC client reads a text body as a malformed message: it gets a gRPC status.
        let response = if is_grpc(request.headers()) {
            grpc_status(FallbackBody::empty(), grpc, text.trim_end())
        } else {
            let mut response = Response::new(FallbackBody::from(text));
            *response.status_mut() = status;
            if status == StatusCode::METHOD_NOT_ALLOWED {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(ALLOWED));
            }
            if status == StatusCode::BAD_REQUEST && request.version() <= http::Version::HTTP_11 {
                // No host, as nginx does: the connection is not kept for what follows.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        };
        let table = &self.table;
        let row = route.unwrap_or(table.routes.len());
        // Answered at once: no clock read for a request that goes nowhere.
        table
            .answered
            .count(row, response.status().as_u16(), Duration::ZERO);
        let response = response.map(MonitorBody::fallback);
        let response = if self.access_log {
            let entry = match route {
                Some(index) => table.routes[index].entry(&request, self.client),
                None => Entry::begin(&request, Arc::from("-"), self.client, None),
            };
            GatewayBody::logged(response, entry)
        } else {
            response.map(GatewayBody::plain)
        };
        RouterFuture {
            head: request.method() == Method::HEAD,
            tally: None,
            state: State::Answered {
                response: Some(response),
            },
        }
    }
}

/// Where a forwarded request's answer is counted: its route's row.
struct Tally {
    table: Arc<Table>,
    row: usize,
    arrived: Instant,
}

impl Tally {
    fn count(self, status: u16) {
        let took = self.arrived.elapsed();
        self.table.answered.count(self.row, status, took);
    }
}

pin_project! {
    /// The response future of [`Router`]: the route's, or the router's own 404.
    pub struct RouterFuture {
        // Answering a `HEAD` request: no body goes out, whoever answered.
        head: bool,
        // Until the answer's head is counted; counted as 499 if the future is dropped first.
        tally: Option<Tally>,
        #[pin]
        state: State,
    }
    impl PinnedDrop for RouterFuture {
        fn drop(this: Pin<&mut Self>) {
            if let Some(tally) = this.project().tally.take() {
                tally.count(CLIENT_GONE);
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Forwarding {
            #[pin]
            future: ResponseFuture<Proxy<Incoming>, Incoming>,
            // With the access log on.
            entry: Option<Box<Entry>>,
        },
        // Empty once taken.
        Answered {
            response: Option<Response<GatewayBody>>,
        },
    }
}

impl Future for RouterFuture {
    type Output = Result<Response<GatewayBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let head = *this.head;
        match this.state.project() {
            StateProj::Forwarding { future, entry } => {
                let response = ready!(future.poll(cx))?;
                if let Some(tally) = this.tally.take() {
                    tally.count(response.status().as_u16());
                }
                let response = match entry.take() {
                    None => response.map(GatewayBody::plain),
                    Some(entry) => GatewayBody::logged(response, entry),
                };
                Poll::Ready(Ok(if head {
                    without_body(response)
                } else {
                    response
                }))
            }
            StateProj::Answered { response } => match response.take() {
                Some(response) if head => Poll::Ready(Ok(without_body(response))),
                Some(response) => Poll::Ready(Ok(response)),
                // Polled after it answered: never answer twice.
                None => Poll::Pending,
            },
        }
    }
}

/// The answer to a `HEAD` request: its head, saying how long the body would be, and no body.
/// (A backend's answer to one has none already; the layer's and the router's own may.)
fn without_body(mut response: Response<GatewayBody>) -> Response<GatewayBody> {
    if response.body().is_end_stream() {
        return response;
    }
    if let Some(length) = response.body().size_hint().exact() {
        response
            .headers_mut()
            .entry(header::CONTENT_LENGTH)
            .or_insert(length.into());
    }
    response.map(GatewayBody::emptied)
}

impl RouterFuture {
    /// Whether its request has reached the backend (see [`AtBackend`]): never one the router
    /// answered itself.
    pub(super) fn at_backend(&self) -> bool {
        match &self.state {
            State::Forwarding { future, .. } => future.at_backend(),
            State::Answered { .. } => false,
        }
    }
}

impl fmt::Debug for RouterFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterFuture").finish_non_exhaustive()
    }
}
