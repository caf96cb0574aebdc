//! Reading a whole configuration into what a gateway serves with: at startup, and at each
//! reload, which checks every field as the startup does before anything is applied.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::config::{self, GatewaySpec};
use super::{Router, admin, answered, fleet, own_address, serve, workers};
use crate::MinMonitor;
use crate::config::{ConfigError, Reused, TriggerRegistry};
use crate::layer::HeldCount;
use crate::proxy::InFlightLimit;
use crate::service::MonitoredService;

/// A configuration read and checked, not yet serving.
pub(super) struct Built {
    pub(super) listen: SocketAddr,
    pub(super) timeouts: serve::Timeouts,
    /// The certificate and key the listener serves HTTPS with, read from their files now.
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(super) admin: Option<admin::AdminSettings>,
    pub(super) fleet: Option<fleet::FleetSettings>,
    /// Its services; at a reload, a monitor of its own, whose services (the unchanged ones
    /// the very ones in use) the gateway's monitor takes at the commit.
    pub(super) monitor: Arc<MinMonitor>,
    pub(super) router: Router,
    pub(super) routers: workers::Routers,
    pub(super) routes: usize,
    /// The services the routes name.
    pub(super) routed: std::collections::BTreeSet<Arc<str>>,
    /// The limits of requests in flight, by service.
    pub(super) limits: BTreeMap<String, InFlightLimit>,
    /// The counts of held requests, by service.
    pub(super) held: BTreeMap<String, HeldCount>,
    pub(super) sections: Sections,
}

/// The sections as written, which a reload compares with those in use.
#[derive(Clone, Default)]
pub(super) struct Sections {
    pub(super) listen: String,
    /// Whether the listener speaks TLS (not which files: those a reload reads again anyway).
    pub(super) tls: bool,
    pub(super) admin: Option<Value>,
    pub(super) fleet: Option<Value>,
    pub(super) services: serde_json::Map<String, Value>,
    /// Each `gateway.services.NAME.limit`.
    pub(super) limits: BTreeMap<String, Value>,
}

/// What a reload asks of the build: a look at the sections before any service is built (a
/// setting that needs a restart refuses the reload there), and, for each service built and
/// checked, whether to take the one in use instead.
pub(super) trait Reuse {
    fn sections(&mut self, sections: &Sections) -> Result<(), ConfigError>;
    /// The limits of requests in flight to take as they are (a kept service's, its `limit`
    /// unchanged: its requests in flight count against the same limit across the reload).
    fn limits(&mut self, sections: &Sections) -> BTreeMap<String, InFlightLimit>;
    /// The counts of held requests to take as they are (a kept service's: the requests held
    /// before the reload count against its `max_held` after it).
    fn held(&mut self) -> BTreeMap<String, HeldCount>;
    fn service(
        &mut self,
        name: &str,
        service: MonitoredService,
    ) -> Result<MonitoredService, Reused>;
}

/// Reads `json` (its relative paths from `base_dir`), counting its routers' answers in
/// `requests`, each service given to `reuse` (the startup's, or a reload's plan).
pub(super) fn build(
    json: &str,
    registry: &TriggerRegistry,
    base_dir: Option<&Path>,
    requests: &Arc<answered::Requests>,
    reuse: &mut dyn Reuse,
) -> Result<Built, ConfigError> {
    if json.trim().is_empty() {
        return Err(ConfigError::new("", "the configuration is empty"));
    }
    crate::config::duplicates::check(json)?;
    let mut document: Value = serde_json::from_str(json)
        .map_err(|e| ConfigError::new("", format!("not valid JSON: {e}")))?;
    // Before the sections are taken, so that a misspelt one (`gatway`) is said to be that,
    // not the section missing; the monitor would name only `services` as known.
    const SECTIONS: [&str; 4] = ["gateway", "admin", "fleet", "services"];
    if let Some(unknown) = document
        .as_object()
        .and_then(|doc| doc.keys().find(|key| !SECTIONS.contains(&key.as_str())))
    {
        return Err(ConfigError::new(
            crate::config::registry::field_name(unknown),
            crate::config::error::plain_words(format!(
                "unknown field `{unknown}`, expected one of `gateway`, `admin`, `fleet`, `services`"
            )),
        ));
    }
    let mut sections = Sections {
        admin: document.get("admin").cloned(),
        fleet: document.get("fleet").cloned(),
        services: (document.get("services").and_then(Value::as_object).cloned())
            .unwrap_or_default(),
        limits: (document
            .pointer("/gateway/services")
            .and_then(Value::as_object))
        .into_iter()
        .flatten()
        .filter_map(|(name, settings)| Some((name.clone(), settings.get("limit")?.clone())))
        .collect(),
        ..Sections::default()
    };
    let spec = GatewaySpec::take(&mut document)?;
    let admin = admin::AdminSettings::take(&mut document)?;
    let fleet = fleet::take(&mut document)?;
    let listen = spec.listen_addr("gateway.listen", &spec.listen)?;
    if let Some(admin) = &admin {
        admin.check_beside(listen)?;
    }
    let timeouts = serve::Timeouts {
        grace: spec.shutdown_grace(),
        header_read: spec.header_read_timeout()?,
        send: spec.send_timeout()?,
    };
    let tls = spec.tls_acceptor(base_dir)?;
    sections.listen.clone_from(&spec.listen);
    sections.tls = tls.is_some();
    let mut shared = config::Shared::default();
    reuse.sections(&sections)?;
    shared.limits = reuse.limits(&sections);
    shared.held = reuse.held();
    // The triggers' relative paths count from the file's folder, as the waiting page's do.
    let mut in_dir;
    let registry = match base_dir {
        Some(dir) => {
            in_dir = registry.clone();
            &*in_dir.relative_to(dir)
        }
        None => registry,
    };
    let monitor =
        MinMonitor::from_config_value_reusing(document, registry, &mut |n, s| reuse.service(n, s))?;
    let monitor = Arc::new(monitor);
    own_address::check(&monitor, listen, "gateway.listen")?;
    let routes = spec.routes(&monitor, base_dir, &mut shared)?;
    let limits = shared.limits.clone();
    let held = shared.held.clone();
    // Valid (the admin may start and stop it, another service may need it), but most
    // likely a route forgotten.
    let unreached = |name: &&String| !spec.routes_to(name) && !monitor.is_needed(name);
    for name in monitor.names().iter().filter(unreached) {
        tracing::warn!(service = %name, "no route in gateway.routes names {name:?}: no request reaches it");
    }
    let count = routes.len();
    let routed = spec.routed();
    let router = Router::new(routes, spec.access_log, requests);
    Ok(Built {
        listen,
        timeouts,
        tls,
        admin,
        fleet,
        routers: worker_routers(spec, &monitor, base_dir, &router, shared, requests),
        router,
        routes: count,
        routed,
        limits,
        held,
        monitor,
        sections,
    })
}

/// Rebuilds the routes for each worker, so that each has its own upstream connection pools;
/// the layers and limits (`shared`, as the first build made them) are shared. The configuration was
/// checked when `router` was built; should building fail anyway, the worker shares `router`.
fn worker_routers(
    spec: GatewaySpec,
    monitor: &Arc<MinMonitor>,
    base_dir: Option<&Path>,
    router: &Router,
    shared: config::Shared,
    requests: &Arc<answered::Requests>,
) -> workers::Routers {
    let (monitor, base_dir, first, requests) = (
        Arc::clone(monitor),
        base_dir.map(Path::to_path_buf),
        router.clone(),
        Arc::clone(requests),
    );
    workers::Routers(Box::new(move || {
        spec.routes(&monitor, base_dir.as_deref(), &mut shared.clone())
            .map(|routes| Router::new(routes, spec.access_log, &requests))
            .unwrap_or_else(|_| first.clone())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each worker builds its own proxies (its own connection pools); their failures for want
    /// of the process's own resources, which come with the same cause on every worker at once,
    /// go through one log per service, so that the gateway says so once a minute, not once for
    /// each worker.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_workers_proxies_of_a_service_share_one_log_of_local_failures() {
        let json = r#"{
          "gateway": {
            "listen": "127.0.0.1:0",
            "routes": [
              { "path_prefix": "/a/", "service": "app" },
              { "path_prefix": "/b/", "service": "app" },
              { "path_prefix": "/", "service": "other" }
            ]
          },
          "services": {
            "app": { "url": "http://127.0.0.1:9/" },
            "other": { "url": "http://127.0.0.1:9/" }
          }
        }"#;
        let requests = Arc::new(answered::Requests::default());
        let mut startup = super::super::reload::Startup::new();
        let built = build(json, &TriggerRegistry::new(), None, &requests, &mut startup).unwrap();
        let workers = [(built.routers.0)(), (built.routers.0)()];
        let saids = |name: &str| -> Vec<_> {
            std::iter::once(&built.router)
                .chain(&workers)
                .flat_map(Router::proxies)
                .filter(|(service, _)| *service == name)
                .map(|(_, proxy)| Arc::clone(proxy.local_said()))
                .collect()
        };
        let (app, other) = (saids("app"), saids("other"));
        assert_eq!((app.len(), other.len()), (6, 3), "routes of three routers");
        assert!(app.iter().all(|said| Arc::ptr_eq(said, &app[0])));
        assert!(other.iter().all(|said| Arc::ptr_eq(said, &other[0])));
        assert!(!Arc::ptr_eq(&app[0], &other[0]), "one for each service");
    }
}
