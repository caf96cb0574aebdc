//! [`Proxy::for_service`]: a builder for the backend of one monitored service, named once.

use std::sync::Arc;

use super::super::Proxy;
use super::ProxyBuilder;
use crate::{MinMonitor, MonitorError};

impl Proxy {
    /// A builder for a proxy to the backend of the service `name` of `monitor`: its target is
    /// the service's URL ([`MinMonitor::url`]; its path is the base path), it
    /// [keeps the service awake](ProxyBuilder::keep_awake) while an upgraded connection
    /// (WebSocket) is open, and its log lines name the service. The same as
    /// `Proxy::builder(monitor.url(name)?).keep_awake(monitor.clone(), name)`; every other
    /// option is set on the builder as usual. Fails with [`MonitorError::UnknownService`] if
    /// the monitor has no such service.
    ///
    /// The monitor's layer goes in front of it as in front of any service, so that each keeps
    /// its own options ([`hold`](crate::MonitorLayer::hold), timeouts):
    ///
    /// ```
    /// # use std::{sync::Arc, time::Duration};
    /// use tower::Layer;
    /// use tower_monitor::{MinMonitor, MonitoredService, Url, proxy::Proxy};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let monitor = Arc::new(MinMonitor::new());
    /// let url = Url::parse("http://127.0.0.1:8081/")?;
    /// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30)))?;
    /// let proxy = Proxy::for_service(&monitor, "app")?.build::<hyper::body::Incoming>()?;
    /// let service = monitor.layer("app")?.layer(proxy);
    /// # let _ = service;
    /// # Ok(())
    /// # }
    /// ```
    pub fn for_service(
        monitor: &Arc<MinMonitor>,
        name: &str,
    ) -> Result<ProxyBuilder, MonitorError> {
        let url = monitor.url(name)?;
        Ok(ProxyBuilder::new(url).keep_awake(Arc::clone(monitor), name))
    }
}
