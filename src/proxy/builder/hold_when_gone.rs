//! [`ProxyBuilder::hold_when_gone`]: a request refused by a backend gone while cached up, held
//! until the service is up again.

use std::sync::Arc;
use std::time::Duration;

use super::ProxyBuilder;
use crate::MinMonitor;
use crate::layer::Hold;

/// The service a request refused by a gone backend waits for.
#[derive(Clone)]
pub(super) enum GoneService {
    /// Named with the option ([`ProxyBuilder::hold_when_gone`]).
    Named(Arc<MinMonitor>, Arc<str>),
    /// The builder's own ([`ProxyBuilder::hold_when_gone_for_service`]): the one it keeps
    /// awake, known when it is built, whichever option was set first.
    Kept,
}

impl ProxyBuilder {
    /// When the backend refuses the connection (it is gone: crashed, or stopped behind the
    /// monitor's back, while the service `name` of `monitor` was cached up), hold the request,
    /// none of which has left, until the service is up again (its `on_down` started, as a
    /// request to a down backend would), then send it: the client gets its answer late, with
    /// `x-cold-start: <ms>`, instead of a 502. At most `max_wait` from the refusal; then the
    /// 502, whose [`BackendGone`](crate::layer::BackendGone) tells a layer in front. A request
    /// that broke off after it was sent is never sent twice: the backend may have seen it (but
    /// for the idempotent one a backend's idle close crossed, see the
    /// [module docs](crate::proxy)). Sent again once only: refused again, it gets the 502. A
    /// held request keeps no turn of a [`limit`](Self::limit). A backend being stopped
    /// (`on_idle`) is not marked down: the request waits for the stop to end, then for the
    /// start. At most [`DEFAULT_MAX_HELD`](crate::layer::DEFAULT_MAX_HELD) requests are held at
    /// once by this proxy and its clones (the others get the 502). Also sets the
    /// [`service_name`](Self::service_name) if none is set.
    ///
    /// Meant beside the layer's [`hold`](crate::MonitorLayer::hold), which holds requests
    /// that find the backend down; this one holds those that found it cached up but gone.
    /// A builder from [`Proxy::for_service`](crate::proxy::Proxy::for_service) names the
    /// service once with [`hold_when_gone_for_service`](Self::hold_when_gone_for_service).
    ///
    /// ```
    /// # use std::{sync::Arc, time::Duration};
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url, proxy::Proxy};
    /// let monitor = Arc::new(MinMonitor::new());
    /// let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// monitor.add("app", MonitoredService::new(url.clone(), Duration::from_secs(30))).unwrap();
    /// let proxy = Proxy::builder(url)
    ///     .hold_when_gone(monitor, "app", Duration::from_secs(30))
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap();
    /// # let _ = proxy;
    /// ```
    pub fn hold_when_gone(self, monitor: Arc<MinMonitor>, name: &str, max_wait: Duration) -> Self {
        self.hold_when_gone_in(monitor, name, Hold::new(max_wait))
    }

    /// [`hold_when_gone`](Self::hold_when_gone) for the service this builder is for: the one
    /// [`Proxy::for_service`](crate::proxy::Proxy::for_service) named (or
    /// [`keep_awake`](Self::keep_awake) did), so that it is named once. [`build`](Self::build)
    /// fails if the builder has no such service (one from
    /// [`Proxy::builder`](crate::proxy::Proxy::builder) without `keep_awake`).
    ///
    /// ```
    /// # use std::{sync::Arc, time::Duration};
    /// use tower_monitor::{MinMonitor, MonitoredService, Url, proxy::Proxy};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let monitor = Arc::new(MinMonitor::new());
    /// let url = Url::parse("http://127.0.0.1:8081/")?;
    /// monitor.add("app", MonitoredService::new(url.clone(), Duration::from_secs(30)))?;
    /// let proxy = Proxy::for_service(&monitor, "app")?
    ///     .hold_when_gone_for_service(Duration::from_secs(30))
    ///     .build::<hyper::body::Incoming>()?;
    /// # let _ = proxy;
    ///
    /// // A builder made from a URL is for no service: nothing to hold for.
    /// let error = Proxy::builder(url)
    ///     .hold_when_gone_for_service(Duration::from_secs(30))
    ///     .build::<hyper::body::Incoming>()
    ///     .unwrap_err();
    /// assert!(error.to_string().contains("Proxy::for_service"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn hold_when_gone_for_service(mut self, max_wait: Duration) -> Self {
        self.gone_hold = Some((GoneService::Kept, Hold::new(max_wait)));
        self
    }

    /// [`hold_when_gone`](Self::hold_when_gone), holding in `hold`: given a layer's, the
    /// gateway's proxies (one per worker) and the service's layer share one `max_held`.
    pub(crate) fn hold_when_gone_in(
        mut self,
        monitor: Arc<MinMonitor>,
        name: &str,
        hold: Hold,
    ) -> Self {
        if self.service.is_none() {
            self.service = Some(Arc::from(name));
        }
        self.gone_hold = Some((GoneService::Named(monitor, Arc::from(name)), hold));
        self
    }
}

impl GoneService {
    /// The monitor and name of the service, `kept` being the builder's
    /// [`keep_awake`](ProxyBuilder::keep_awake); `None` for its own when it keeps none awake.
    pub(super) fn resolve(
        self,
        kept: Option<&(Arc<MinMonitor>, Arc<str>)>,
    ) -> Option<(Arc<MinMonitor>, Arc<str>)> {
        match self {
            Self::Named(monitor, name) => Some((monitor, name)),
            Self::Kept => kept.cloned(),
        }
    }
}
