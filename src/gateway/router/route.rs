//! [`Route`]: one route of the gateway, the requests it takes (host and path prefix) and the
//! service it takes them to.

use std::net::IpAddr;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;

use crate::admin::without_port;
use crate::proxy::ForwardedHeaders;

use super::super::access::Entry;
use super::super::route_path::routing_path;
use super::Routed;

/// One route: the first that matches a request takes it.
pub(in crate::gateway) struct Route {
    /// Lower case, without a port or a final dot.
    pub(super) host: Option<String>,
    /// As requests' paths are compared: decoded, slashes merged (see `route_path`).
    pub(super) path_prefix: Box<[u8]>,
    pub(super) name: Arc<str>,
    /// The forwarded headers the service trusts, which name the client in the access log.
    trusted: Option<ForwardedHeaders>,
    pub(super) service: Routed,
}

impl Route {
    pub(in crate::gateway) fn new(
        host: Option<&str>,
        path_prefix: String,
        name: &str,
        service: Routed,
    ) -> Self {
        Self {
            host: host.map(|h| without_port(h).trim_end_matches('.').to_ascii_lowercase()),
            path_prefix: routing_path(&path_prefix).into(),
            name: Arc::from(name),
            trusted: service.get_ref().trusted_forwarded(),
            service,
        }
    }

    /// Whether this route matches every request that `later` matches, so that `later`, tried
    /// after it, is never reached.
    pub(in crate::gateway) fn shadows(&self, later: &Route) -> bool {
        later.path_prefix.starts_with(&self.path_prefix)
            && self
                .host
                .as_ref()
                .is_none_or(|host| later.host.as_ref() == Some(host))
    }

    pub(super) fn matches(&self, host: Option<&str>, path: &[u8]) -> bool {
        path.starts_with(&self.path_prefix)
            && self
                .host
                .as_deref()
                .is_none_or(|want| host.is_some_and(|h| h.eq_ignore_ascii_case(want)))
    }

    /// The access-log entry of `request` to this route's service, from `client`.
    pub(super) fn entry(&self, request: &Request<Incoming>, client: Option<IpAddr>) -> Box<Entry> {
        Entry::begin(request, Arc::clone(&self.name), client, self.trusted)
    }
}
