use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Response, request::Parts};
use tower_layer::Layer;

use super::fallback::Fallback;
use super::service::Guard;
use super::{FallbackBody, FallbackReason, MonitorService};
use crate::error::MonitorError;
use crate::monitor::MinMonitor;

/// A [`Layer`] that guards a service with the status of one monitored backend.
///
/// Made by [`MinMonitor::layer`] or [`MonitorLayer::new`]; an unknown name fails here, never
/// per request.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower_monitor::{MinMonitor, MonitorLayer, MonitoredService, Url};
///
/// let monitor = Arc::new(MinMonitor::new());
/// let url = Url::parse("http://127.0.0.1:8081/").unwrap();
/// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30))).unwrap();
///
/// let layer = MonitorLayer::new(&monitor, "app").unwrap().retry_after(Duration::from_secs(2));
/// assert!(MonitorLayer::new(&monitor, "other").is_err());
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct MonitorLayer {
    guard: Arc<Guard>,
}

impl MonitorLayer {
    /// A layer for the service registered as `name` in `monitor`.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitorError, MonitorLayer, MonitoredService, Url};
    /// let monitor = Arc::new(MinMonitor::new());
    /// let err = MonitorLayer::new(monitor, "app").unwrap_err();
    /// assert!(matches!(err, MonitorError::UnknownService(_)));
    /// ```
    pub fn new(monitor: impl AsRef<MinMonitor>, name: &str) -> Result<Self, MonitorError> {
        let registered = monitor.as_ref().lookup(name)?;
        let service = &registered.service;
        let cached_up_forwards = service.always.is_none() && service.on_up.is_none();
        Ok(Self {
            guard: Arc::new(Guard {
                cache: Arc::clone(&registered.cache),
                idle: registered.idle.clone(),
                registered,
                fallback: Fallback::default(),
                cached_up_forwards,
            }),
        })
    }

    /// The `Retry-After` of the default 503 answer (default 5 s; rounded up to whole seconds).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// # let monitor = Arc::new(MinMonitor::new());
    /// # monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::ZERO)).unwrap();
    /// let layer = monitor.layer("app").unwrap().retry_after(Duration::from_secs(10));
    /// # let _ = layer;
    /// ```
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        Arc::make_mut(&mut self.guard).fallback.retry_after = retry_after;
        self
    }

    /// Replaces the fallback answers with `fallback`, called with the request's head and the
    /// reason. `Cache-Control: no-store` is added unless the response sets its own.
    /// [`default_response`](super::default_response) is there to delegate to.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// use tower_monitor::layer::{FallbackBody, FallbackReason};
    ///
    /// # let monitor = Arc::new(MinMonitor::new());
    /// # monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::ZERO)).unwrap();
    /// let layer = monitor.layer("app").unwrap().fallback(|_parts, reason| {
    ///     http::Response::builder()
    ///         .status(reason.status_code())
    ///         .body(FallbackBody::from("warming up, hold on"))
    ///         .unwrap_or_default()
    /// });
    /// # let _ = layer;
    /// ```
    pub fn fallback<F>(mut self, fallback: F) -> Self
    where
        F: Fn(&Parts, FallbackReason) -> Response<FallbackBody> + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.guard).fallback.custom = Some(Arc::new(fallback));
        self
    }
}

impl<S> Layer<S> for MonitorLayer {
    type Service = MonitorService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MonitorService::new(inner, Arc::clone(&self.guard))
    }
}

impl fmt::Debug for MonitorLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorLayer")
            .field("service", &self.guard.registered.name)
            .field("fallback", &self.guard.fallback)
            .finish()
    }
}
