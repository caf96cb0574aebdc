//! [`Router`]: picks the route of a request by host and path prefix, and forwards it.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tower_service::Service;

use crate::BoxFuture;
use crate::MonitorService;
use crate::layer::{FallbackBody, MonitorBody};
use crate::proxy::Proxy;

/// The gateway's proxy to one service, guarded by its layer.
pub(super) type Routed = MonitorService<Proxy<Incoming>>;

use super::access::Entry;
pub use super::access::GatewayBody;

pub(super) struct Route {
    /// Lower case, without a port.
    host: Option<String>,
    path_prefix: String,
    name: Arc<str>,
    service: Routed,
}

impl Route {
    pub(super) fn new(
        host: Option<&str>,
        path_prefix: String,
        name: &str,
        service: Routed,
    ) -> Self {
        Self {
            host: host.map(|h| strip_port(h).to_ascii_lowercase()),
            path_prefix,
            name: Arc::from(name),
            service,
        }
    }

    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        path.starts_with(&self.path_prefix)
            && self
                .host
                .as_deref()
                .is_none_or(|want| host.is_some_and(|h| h.eq_ignore_ascii_case(want)))
    }
}

/// The gateway as one Tower service: each request goes to the first route whose host (if it
/// has one) and path prefix match, or is answered 404. The host is the URI's authority (HTTP/2's
/// `:authority`, or an absolute-form request) or else the `Host` header, without its port.
/// Cheap to clone.
#[derive(Clone)]
pub struct Router {
    routes: Arc<[Route]>,
    access_log: bool,
}

impl Router {
    pub(super) fn new(routes: Vec<Route>, access_log: bool) -> Self {
        Self {
            routes: routes.into(),
            access_log,
        }
    }

    fn route(&self, request: &Request<Incoming>) -> Option<&Route> {
        let host = request.uri().host().or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(strip_port)
        });
        let path = request.uri().path();
        self.routes.iter().find(|route| route.matches(host, path))
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal: `[::1]:8080`.
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _port)| name)
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<_> = self
            .routes
            .iter()
            .map(|r| (r.host.as_deref(), r.path_prefix.as_str(), &*r.name))
            .collect();
        f.debug_struct("Router").field("routes", &routes).finish()
    }
}

impl Service<Request<Incoming>> for Router {
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<GatewayBody>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let Some(route) = self.route(&request) else {
            let mut response = Response::new(MonitorBody::fallback(FallbackBody::from(
                "no route for this request\n",
            )));
            *response.status_mut() = StatusCode::NOT_FOUND;
            let response = if self.access_log {
                GatewayBody::logged(response, Entry::begin(&request, Arc::from("-")))
            } else {
                response.map(GatewayBody::plain)
            };
            return Box::pin(async move { Ok(response) });
        };
        // A `Proxy` is always ready, and so is the layer over it: calling at once is sound.
        let mut service = route.service.clone();
        if !self.access_log {
            let answer = service.call(request);
            return Box::pin(async move { Ok(answer.await?.map(GatewayBody::plain)) });
        }
        // Begun now: dropped with this future if the client goes away first, it still logs.
        let entry = Entry::begin(&request, Arc::clone(&route.name));
        Box::pin(async move {
            let response = service.call(request).await?;
            Ok(GatewayBody::logged(response, entry))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped_from_hosts_and_ipv6_literals_survive() {
        assert_eq!(strip_port("a.localhost:8080"), "a.localhost");
        assert_eq!(strip_port("a.localhost"), "a.localhost");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
    }
}
