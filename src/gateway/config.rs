//! The `gateway` section of a configuration file: listener, routes and per-service settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::{ConfigError, DurationValue, registry::parse_at};
use crate::once_a_minute::OnceAMinute;
use crate::proxy::{DEFAULT_LIMIT_WAIT, ForwardedHeaders, InFlightLimit};
use crate::{MinMonitor, MonitorLayer};

use super::route_host::route_host;
use super::router::{Route, Routed};

mod layer;
mod proxy;
mod tls;

pub(super) use tls::TlsSpec;

/// How long shutdown waits for requests in flight unless `gateway.shutdown_grace` says.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long a client has to send a request head, and a kept-alive connection may stay idle,
/// unless `gateway.header_read_timeout` says: nginx's `keepalive_timeout`, above the 60 s idle
/// timeout of common load balancers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(75);

/// How long a write to a client may wait for it to take a byte unless `gateway.send_timeout`
/// says: nginx's `send_timeout`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"listen\": \"127.0.0.1:8080\", \"routes\": [{\"service\": \"app\"}]}"
)]
pub(super) struct GatewaySpec {
    pub(super) listen: String,
    routes: Vec<RouteSpec>,
    #[serde(default)]
    services: BTreeMap<String, ServiceSettings>,
    shutdown_grace: Option<DurationValue>,
    header_read_timeout: Option<DurationValue>,
    send_timeout: Option<DurationValue>,
    #[serde(default)]
    pub(super) access_log: bool,
    pub(super) tls: Option<TlsSpec>,
}

/// What the routers built for several workers share per service: its layer (and so its hold
/// mode's count: `max_held` is for the whole gateway), its limit of requests in flight, and
/// its proxies' log of the failures for want of the process's own resources (at error once a
/// minute for the gateway, not once for each worker).
#[derive(Clone, Default)]
pub(super) struct Shared {
    pub(super) layers: BTreeMap<String, MonitorLayer>,
    pub(super) limits: BTreeMap<String, InFlightLimit>,
    /// Each layer's count of held requests; before the first build, those a reload keeps.
    pub(super) held: BTreeMap<String, crate::layer::HeldCount>,
    pub(super) said: BTreeMap<String, Arc<OnceAMinute>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"path_prefix\": \"/\", \"service\": \"app\"}"
)]
struct RouteSpec {
    host: Option<String>,
    path_prefix: Option<String>,
    service: String,
}

/// How the gateway treats one service: layer settings and proxy settings.
#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "an object of per-service settings such as {\"hold\": {\"max_wait\": \"30s\"}}"
)]
struct ServiceSettings {
    hold: Option<HoldSpec>,
    retry_after: Option<DurationValue>,
    waiting_page: Option<String>,
    wake: Option<WakeSpec>,
    protocol: Option<Protocol>,
    http2_max_header_list_size: Option<usize>,
    connect_timeout: Option<DurationValue>,
    response_timeout: Option<DurationValue>,
    body_read_timeout: Option<DurationValue>,
    response_body_timeout: Option<DurationValue>,
    max_response_headers: Option<usize>,
    forwarded: Option<ForwardedHeaders>,
    #[serde(default)]
    trust_forwarded: bool,
    #[serde(default)]
    rewrite_host: bool,
    limit: Option<LimitSpec>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"max_in_flight\": 8, \"max_wait\": \"30s\"}"
)]
struct LimitSpec {
    max_in_flight: usize,
    max_wait: Option<DurationValue>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"max_wait\": \"30s\"}"
)]
struct HoldSpec {
    max_wait: DurationValue,
    max_held: Option<usize>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"never_paths\": [\"/healthz\"]}"
)]
struct WakeSpec {
    #[serde(default)]
    never_paths: Vec<String>,
    never_user_agents: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Protocol {
    Http1,
    Http2,
}

impl GatewaySpec {
    /// Reads the `gateway` section out of `document`, leaving the monitor's part.
    pub(super) fn take(document: &mut Value) -> Result<Self, ConfigError> {
        let gateway = document
            .as_object_mut()
            .ok_or_else(|| ConfigError::new("", "the configuration must be a JSON object"))?
            .remove("gateway")
            .ok_or_else(|| {
                ConfigError::new(
                    "gateway",
                    "missing: the gateway needs this section beside \"services\", e.g. \"gateway\": \
                     {\"listen\": \"127.0.0.1:8080\", \"routes\": [{\"service\": \"app\"}]}",
                )
            })?;
        let spec: Self = parse_at("gateway", gateway)?;
        spec.listen_addr("gateway.listen", &spec.listen)?;
        if spec.routes.is_empty() {
            return Err(ConfigError::new(
                "gateway.routes",
                "at least one route is required",
            ));
        }
        Ok(spec)
    }

    pub(super) fn listen_addr(&self, field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        text.parse().map_err(|_| {
            ConfigError::new(
                field,
                format!(
                    "invalid address {text:?}; write an IP and a port, e.g. \"127.0.0.1:8080\""
                ),
            )
        })
    }

    /// The services the routes send requests to.
    pub(super) fn routed(&self) -> std::collections::BTreeSet<Arc<str>> {
        self.routes
            .iter()
            .map(|r| Arc::from(r.service.as_str()))
            .collect()
    }

    /// Whether a route sends requests to the service `name`.
    pub(super) fn routes_to(&self, name: &str) -> bool {
        self.routes.iter().any(|route| route.service == name)
    }

    pub(super) fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |d| d.0)
    }

    pub(super) fn header_read_timeout(&self) -> Result<Duration, ConfigError> {
        match self.header_read_timeout {
            Some(timeout) => timeout.positive("gateway.header_read_timeout"),
            None => Ok(DEFAULT_HEADER_READ_TIMEOUT),
        }
    }

    /// The TLS acceptor of `tls`, its files read now (relative to `base_dir`), if the
    /// listener speaks TLS.
    pub(super) fn tls_acceptor(
        &self,
        base_dir: Option<&Path>,
    ) -> Result<Option<tokio_rustls::TlsAcceptor>, ConfigError> {
        self.tls
            .as_ref()
            .map(|tls| tls.acceptor(base_dir))
            .transpose()
    }

    pub(super) fn send_timeout(&self) -> Result<Duration, ConfigError> {
        match self.send_timeout {
            Some(timeout) => timeout.positive("gateway.send_timeout"),
            None => Ok(DEFAULT_SEND_TIMEOUT),
        }
    }

    /// One guarded proxy per service a route names, then the routes in their order. A
    /// service's layer and limit are taken from `shared` if there, so that routers built for
    /// several workers share them; otherwise they are built and added.
    pub(super) fn routes(
        &self,
        monitor: &Arc<MinMonitor>,
        base_dir: Option<&Path>,
        shared: &mut Shared,
    ) -> Result<Vec<Route>, ConfigError> {
        let known = monitor.names();
        for name in self.services.keys() {
            if !known.contains(name) {
                return Err(ConfigError::new(
                    format!("gateway.services.{name}"),
                    format!("no service {name:?} in \"services\""),
                ));
            }
        }
        let mut built: BTreeMap<&str, Routed> = BTreeMap::new();
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, route) in self.routes.iter().enumerate() {
            let at = format!("gateway.routes[{i}]");
            if !known.contains(&route.service) {
                return Err(ConfigError::new(
                    format!("{at}.service"),
                    format!("no service {:?} in \"services\"", route.service),
                ));
            }
            let prefix = route.path_prefix.clone().unwrap_or_else(|| "/".into());
            if !prefix.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{at}.path_prefix"),
                    format!("{prefix:?} must start with \"/\""),
                ));
            }
            if prefix.contains(['?', '#']) {
                return Err(ConfigError::new(
                    format!("{at}.path_prefix"),
                    format!(
                        "{prefix:?}: a request's path, which routes match, holds no query or fragment"
                    ),
                ));
            }
            let host = route
                .host
                .as_deref()
                .map(route_host)
                .transpose()
                .map_err(|e| ConfigError::new(format!("{at}.host"), e))?;
            let service = match built.get(route.service.as_str()) {
                Some(service) => service.clone(),
                None => {
                    let settings = self.services.get(&route.service);
                    let service = build(monitor, &route.service, settings, base_dir, shared)?;
                    built.insert(&route.service, service.clone());
                    service
                }
            };
            let built_route = Route::new(host.as_deref(), prefix, &route.service, service);
            // Routes are tried in order (not longest prefix first, as nginx does): one after a
            // route that takes all its requests would silently never serve.
            if let Some(first) = routes.iter().position(|r: &Route| r.shadows(&built_route)) {
                let earlier = &self.routes[first];
                return Err(ConfigError::new(
                    at,
                    format!(
                        "never reached: gateway.routes[{first}] (host {}, path_prefix {:?}) comes \
                         first and takes every request it would match; routes are tried in \
                         order, so put the more specific one first",
                        earlier
                            .host
                            .as_deref()
                            .map_or("any".into(), |h| format!("{h:?}")),
                        earlier.path_prefix.as_deref().unwrap_or("/"),
                    ),
                ));
            }
            routes.push(built_route);
        }
        // The settings of a service no route names are checked all the same: a mistake in
        // them must not wait for the day a route to it is added.
        for (name, settings) in &self.services {
            if !built.contains_key(name.as_str()) {
                build(
                    monitor,
                    name,
                    Some(settings),
                    base_dir,
                    &mut Shared::default(),
                )?;
            }
        }
        Ok(routes)
    }
}

fn build(
    monitor: &Arc<MinMonitor>,
    name: &str,
    settings: Option<&ServiceSettings>,
    base_dir: Option<&Path>,
    shared: &mut Shared,
) -> Result<Routed, ConfigError> {
    let default = ServiceSettings::default();
    let settings = settings.unwrap_or(&default);
    let at = format!("gateway.services.{name}");
    let mut proxy = proxy::builder(monitor, name, settings, &at)?;
    let layer = match shared.layers.get(name) {
        Some(layer) => layer.clone(),
        None => {
            let mut layer =
                layer::layer(monitor, name, settings, &at, base_dir)?.counting_requests();
            if let Some(count) = shared.held.get(name) {
                layer = layer.count_held_in(count);
            }
            if let Some(count) = layer.held_count() {
                shared.held.insert(name.to_string(), count);
            }
            shared.layers.insert(name.to_string(), layer.clone());
            layer
        }
    };
    if let Some(hold) = layer.hold_state() {
        // A request that finds the backend cached up but gone (crashed) is held too, within
        // the same `max_held` as the layer's (one count for every worker).
        proxy = proxy.hold_when_gone_in(Arc::clone(monitor), name, hold);
    }
    if let Some(spec) = &settings.limit {
        let limit = match shared.limits.get(name) {
            Some(limit) => limit.clone(),
            None => {
                let max = NonZeroUsize::new(spec.max_in_flight).ok_or_else(|| {
                    ConfigError::new(
                        format!("{at}.limit.max_in_flight"),
                        "must be at least 1 (leave `limit` out for no limit)",
                    )
                })?;
                let max_wait = spec.max_wait.map_or(DEFAULT_LIMIT_WAIT, |wait| wait.0);
                let limit = InFlightLimit::new(max, max_wait);
                shared.limits.insert(name.to_string(), limit.clone());
                limit
            }
        };
        proxy = proxy.limit(limit);
    }
    let said = shared.said.entry(name.to_string()).or_default();
    let proxy = proxy
        .local_said(Arc::clone(said))
        .build()
        .map_err(|e| ConfigError::new(format!("services.{name}.url"), e.to_string()))?;
    Ok(tower_layer::Layer::layer(&layer, proxy))
}
