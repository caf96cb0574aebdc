//! [`Route`]: one route of the gateway, the requests it takes (host and path prefix) and the
//! service it takes them to.

use std::sync::Arc;

use crate::admin::without_port;

use super::super::route_path::routing_path;
use super::Routed;

/// One route: the first that matches a request takes it.
pub(in crate::gateway) struct Route {
    /// Lower case, without a port or a final dot.
    pub(super) host: Option<String>,
    /// As requests' paths are compared: decoded, slashes merged (see `route_path`).
    pub(super) path_prefix: Box<[u8]>,
    pub(super) name: Arc<str>,
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
}
