//! [`MinMonitor`]: the registry of monitored services.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use crate::activity::Activity;
use crate::error::MonitorError;
use crate::layer::MonitorLayer;
use crate::lifecycle::ServiceState;
use crate::registered::Registered;
use crate::service::MonitoredService;
use url::Url;

mod control;
mod reload;

/// A registry of named services and their cached statuses.
///
/// An up status is cached for the service's grace period; a down status is never cached, so a
/// reported down always means that a probe has just run and failed. Concurrent requests for the
/// status of a service that is not cached up share one probe.
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::{BoxError, MinMonitor, MonitoredService, Url, probe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let monitor = MinMonitor::new();
/// let service = MonitoredService::new(Url::parse("http://127.0.0.1:8081/")?, Duration::from_secs(30))
///     .probe(probe::from_fn(|_url| async { Ok::<bool, BoxError>(true) }));
/// monitor.add("app", service)?;
/// assert!(monitor.status("app").await?);
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct MinMonitor {
    services: RwLock<HashMap<String, Arc<Registered>>>,
    /// Fleet hook: the fleet this monitor joined, if any.
    #[cfg(feature = "fleet")]
    fleet: std::sync::OnceLock<Arc<crate::fleet::Shared>>,
    /// The names of the services a reload removed (and none added back since): their series
    /// stay in the process's metrics recorder, and `/metrics` leaves them out.
    #[cfg(feature = "gateway")]
    removed: RwLock<std::collections::BTreeSet<String>>,
}

impl MinMonitor {
    /// An empty monitor.
    ///
    /// ```
    /// let monitor = tower_monitor::MinMonitor::new();
    /// # let _ = monitor;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a service under `name` (case-sensitive).
    ///
    /// Fails with [`MonitorError::DuplicateServiceRegistration`] if the name is taken, with
    /// [`MonitorError::InvalidServiceName`] if it is empty or holds a control character (logs,
    /// metrics and admin paths carry it), and with [`MonitorError::InvalidUrl`] if the service's
    /// probe cannot probe its URL; in each case nothing is added or started.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_monitor::{MinMonitor, MonitorError, MonitoredService, Url};
    ///
    /// let monitor = MinMonitor::new();
    /// let service = MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::from_secs(1));
    /// monitor.add("app", service.clone()).unwrap();
    /// assert!(matches!(monitor.add("app", service.clone()), Err(MonitorError::DuplicateServiceRegistration(_))));
    /// assert!(matches!(monitor.add("two\nlines", service), Err(MonitorError::InvalidServiceName(_))));
    /// ```
    pub fn add(
        &self,
        name: impl Into<String>,
        service: MonitoredService,
    ) -> Result<(), MonitorError> {
        let name = name.into();
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(MonitorError::InvalidServiceName(name));
        }
        service
            .probe
            .validate_url(&service.url)
            .map_err(|reason| MonitorError::InvalidUrl {
                url: crate::redact::url(&service.url),
                reason,
            })?;
        let mut services = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let dependencies = service
            .depends_on
            .iter()
            .map(|dependency| {
                services.get(&**dependency).cloned().ok_or_else(|| {
                    MonitorError::UnknownDependency {
                        service: name.clone(),
                        dependency: dependency.to_string(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let slot = match services.entry(name) {
            Entry::Occupied(taken) => {
                return Err(MonitorError::DuplicateServiceRegistration(
                    taken.key().clone(),
                ));
            }
            Entry::Vacant(slot) => slot,
        };
        let probe_now = service.probe_on_add;
        let name = slot.key().clone();
        let registered = slot.insert(Registered::with_dependencies(name, service, dependencies));
        // Fleet hook: a service added after joining takes part too.
        #[cfg(feature = "fleet")]
        if let Some(fleet) = self.fleet.get() {
            fleet.attach(registered);
        }
        if probe_now && !registered.start_probe() {
            tracing::warn!(
                service = %registered.name,
                "probe_on_add needs a Tokio runtime; the first probe waits for the first status request"
            );
        }
        Ok(())
    }

    /// Whether the service is up: the cached up if a probe (or [`set_status_up`](Self::set_status_up))
    /// succeeded within the grace period, otherwise the result of a probe run now.
    ///
    /// Probing needs a Tokio runtime. An unreachable service is `Ok(false)`; a probe that fails
    /// for another reason is [`MonitorError::Probe`] (one that failed because this process is
    /// out of file descriptors, local ports or memory leaves the state as it was: see
    /// [`probe`](crate::probe)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{BoxError, MinMonitor, MonitoredService, Url, probe};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let monitor = MinMonitor::new();
    /// # let url = Url::parse("http://127.0.0.1:8081/")?;
    /// let service = MonitoredService::new(url, Duration::from_secs(30))
    ///     .probe(probe::from_fn(|_url| async { Ok::<bool, BoxError>(false) }));
    /// monitor.add("app", service)?;
    /// assert!(!monitor.status("app").await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn status(&self, name: &str) -> Result<bool, MonitorError> {
        let pending = {
            let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
            let registered = lookup(&services, name)?;
            if registered.cache.is_up_now() {
                return Ok(true);
            }
            registered.status()
        };
        pending.await
    }

    /// Probes the service now, whatever the cache says, and caches the result as
    /// [`status`](Self::status) does. If a probe is already in flight, its result is shared.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{BoxError, MinMonitor, MonitoredService, Url, probe};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let monitor = MinMonitor::new();
    /// # let url = Url::parse("http://127.0.0.1:8081/")?;
    /// # let service = MonitoredService::new(url, Duration::from_secs(30))
    /// #     .probe(probe::from_fn(|_url| async { Ok::<bool, BoxError>(true) }));
    /// monitor.add("app", service)?;
    /// assert!(monitor.reprobe("app").await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reprobe(&self, name: &str) -> Result<bool, MonitorError> {
        let pending = self.lookup(name)?.reprobe();
        pending.await
    }

    /// An [`Activity`] of the service: counts as one request in flight for `on_idle` until
    /// dropped (for an upgraded connection, say, that outlives its response).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// let monitor = MinMonitor::new();
    /// # let url = Url::parse("http://127.0.0.1:9/").unwrap();
    /// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30))).unwrap();
    /// let _socket = monitor.activity("app").unwrap();
    /// assert!(monitor.activity("nope").is_err());
    /// ```
    pub fn activity(&self, name: &str) -> Result<Activity, MonitorError> {
        Ok(self.lookup(name)?.activity())
    }

    /// Where the service is in its life: Down, Starting, Up or Stopping. Reading it probes
    /// nothing and runs nothing.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, ServiceState, Url};
    /// let monitor = MinMonitor::new();
    /// # let url = Url::parse("http://127.0.0.1:9/").unwrap();
    /// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30))).unwrap();
    /// assert_eq!(monitor.state("app").unwrap(), ServiceState::Down);
    /// ```
    pub fn state(&self, name: &str) -> Result<ServiceState, MonitorError> {
        Ok(self.lookup(name)?.state())
    }

    /// A [`MonitorLayer`] guarding a service with the status of the one registered as `name`.
    /// Fails with [`MonitorError::UnknownService`] here, never per request. It is called on an
    /// `Arc<MinMonitor>`; for a monitor held otherwise, [`MonitorLayer::new(&monitor,
    /// name)`](MonitorLayer::new) makes the same layer (it holds the service, not the monitor).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// let monitor = Arc::new(MinMonitor::new());
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30))).unwrap();
    /// let layer = monitor.layer("app").unwrap();
    /// assert!(monitor.layer("typo").is_err());
    /// # let _ = layer;
    /// ```
    pub fn layer(self: &Arc<Self>, name: &str) -> Result<MonitorLayer, MonitorError> {
        MonitorLayer::new(self, name)
    }

    /// The URL the service registered as `name` is probed at (for a proxy, where to send).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// let monitor = MinMonitor::new();
    /// let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// monitor.add("app", MonitoredService::new(url.clone(), Duration::from_secs(30))).unwrap();
    /// assert_eq!(monitor.url("app").unwrap(), url);
    /// ```
    pub fn url(&self, name: &str) -> Result<Url, MonitorError> {
        Ok(self.lookup(name)?.service.url.clone())
    }

    /// The names of the registered services, in no particular order.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// let monitor = MinMonitor::new();
    /// # let url = Url::parse("http://127.0.0.1:9/").unwrap();
    /// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30))).unwrap();
    /// assert_eq!(monitor.names(), vec!["app".to_string()]);
    /// ```
    pub fn names(&self) -> Vec<String> {
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
        services.keys().cloned().collect()
    }

    /// Whether another service [`depends_on`](MonitoredService::depends_on) the service `name`.
    #[cfg(feature = "gateway")]
    pub(crate) fn is_needed(&self, name: &str) -> bool {
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
        services
            .values()
            .any(|other| other.service.depends_on.iter().any(|d| **d == *name))
    }

    /// Joins a fleet: from now on this monitor is one replica of several sharing each backend's
    /// lifecycle through Redis (see [`fleet`](crate::fleet)). Services added before and after
    /// take part. Join before serving, from within a Tokio runtime; a monitor joins one fleet,
    /// once.
    ///
    /// ```no_run
    /// use tower_monitor::MinMonitor;
    /// use tower_monitor::fleet::{Fleet, FleetConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let monitor = MinMonitor::new();
    /// let fleet = Fleet::new(&FleetConfig::new("redis://127.0.0.1:6379/").prefix("shop"))?;
    /// monitor.join_fleet(fleet)?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "fleet")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fleet")))]
    pub fn join_fleet(&self, fleet: crate::fleet::Fleet) -> Result<(), crate::fleet::FleetError> {
        if self.fleet.get().is_some() {
            return Err(crate::fleet::FleetError::AlreadyJoined);
        }
        let shared = fleet.start()?;
        // The lock keeps `add` from slipping a service in between the two steps.
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
        self.fleet
            .set(Arc::clone(&shared))
            .map_err(|_| crate::fleet::FleetError::AlreadyJoined)?;
        for registered in services.values() {
            shared.attach(registered);
        }
        Ok(())
    }

    pub(crate) fn lookup(&self, name: &str) -> Result<Arc<Registered>, MonitorError> {
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
        lookup(&services, name).cloned()
    }
}

fn lookup<'a>(
    services: &'a HashMap<String, Arc<Registered>>,
    name: &str,
) -> Result<&'a Arc<Registered>, MonitorError> {
    services
        .get(name)
        .ok_or_else(|| MonitorError::UnknownService(name.to_string()))
}

impl fmt::Debug for MinMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("MinMonitor")
            .field("services", &services.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// So that [`MonitorLayer::new`] takes a monitor by reference as well as in an `Arc`: one kept
/// in an app's state or a `static` makes layers too (they share the service, not the monitor).
///
/// ```
/// # use std::time::Duration;
/// use tower_monitor::{MinMonitor, MonitorLayer, MonitoredService, Url};
/// let monitor = MinMonitor::new();
/// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
/// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30))).unwrap();
/// let layer = MonitorLayer::new(&monitor, "app").unwrap();
/// # let _ = layer;
/// ```
impl AsRef<MinMonitor> for MinMonitor {
    fn as_ref(&self) -> &MinMonitor {
        self
    }
}
