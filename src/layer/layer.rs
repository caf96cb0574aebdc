use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Response, request::Parts};
use tower_layer::Layer;

use super::fallback::Fallback;
use super::hold::{DEFAULT_MAX_HELD, Hold};
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
    /// The bound [`hold`](Self::hold) takes, kept here so that `max_held` may come first.
    max_held: usize,
}

impl MonitorLayer {
    /// A layer for the service registered as `name` in `monitor`, given in an `Arc` or by
    /// reference (`&monitor`: the layer holds the service, not the monitor).
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
                // Counted for the idle watch; a gateway's layer counts for its reload too.
                requests: (registered.idle.as_ref()).map(|_| Arc::clone(&registered.requests)),
                plain: cached_up_forwards && registered.idle.is_none(),
                registered,
                fallback: Fallback::default(),
                cached_up_forwards,
                hold: None,
                wake_policy: None,
                gone: None,
            }),
            max_held: DEFAULT_MAX_HELD,
        })
    }

    /// The `Retry-After` of the default 503 answer (default 5 s; rounded up to whole seconds).
    /// A custom [`fallback`](Self::fallback) sets its own.
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
    /// The layer's settings for its built-in answers, [`retry_after`](Self::retry_after) and
    /// [`waiting_page`](Self::waiting_page), are then not used: give `default_response` your
    /// own `Retry-After`.
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

impl MonitorLayer {
    /// Hold mode: when the backend is down, run `on_down` as usual, then keep the request and
    /// forward it the moment the backend is up (the monitor polls a starting backend every
    /// 50 ms and releases every held request at once), with an `x-cold-start: <milliseconds>`
    /// header on the response. At `max_wait` after its arrival the request is answered 504
    /// (zero is not "no limit": every held request is answered 504 at once).
    /// At most [`max_held`](Self::max_held) requests are held at once; beyond that they are
    /// answered 503 at once.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// # let monitor = Arc::new(MinMonitor::new());
    /// # monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::ZERO)).unwrap();
    /// let layer = monitor.layer("app").unwrap().hold(Duration::from_secs(30));
    /// # let _ = layer;
    /// ```
    pub fn hold(mut self, max_wait: Duration) -> Self {
        let mut hold = Hold::new(max_wait);
        hold.max_held = self.max_held;
        Arc::make_mut(&mut self.guard).hold = Some(hold);
        self
    }

    /// How many requests hold mode keeps at once (default 10,000), set before or after
    /// [`hold`](Self::hold); without `hold` nothing is held, so it has no effect. Zero holds
    /// none: requests are answered as without hold mode (`on_down` runs, then 503).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// # let monitor = Arc::new(MinMonitor::new());
    /// # monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::ZERO)).unwrap();
    /// let layer = monitor.layer("app").unwrap().hold(Duration::from_secs(30)).max_held(500);
    /// # let _ = layer;
    /// ```
    pub fn max_held(mut self, max_held: usize) -> Self {
        self.max_held = max_held;
        if let Some(hold) = Arc::make_mut(&mut self.guard).hold.as_mut() {
            hold.max_held = max_held;
        }
        self
    }

    /// Which requests may wake the backend. A request the policy rejects, when the backend is
    /// down, gets the fallback answer without running `on_down` or being held (say, crawlers,
    /// or a load balancer's own health checks). By default every request may wake it.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// # let monitor = Arc::new(MinMonitor::new());
    /// # monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::ZERO)).unwrap();
    /// let layer = monitor.layer("app").unwrap().wake_when(|_method, uri, headers| {
    ///     let bot = headers.get("user-agent").and_then(|v| v.to_str().ok()).is_some_and(|ua| ua.contains("bot"));
    ///     uri.path() != "/healthz" && !bot
    /// });
    /// # let _ = layer;
    /// ```
    pub fn wake_when<F>(mut self, policy: F) -> Self
    where
        F: Fn(&http::Method, &http::Uri, &http::HeaderMap) -> bool + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.guard).wake_policy = Some(Arc::new(policy));
        self
    }

    /// Replaces the waiting page (the HTML answer while the backend starts, did not start, or
    /// is not set up to start). `{service}` (the service's name), `{retry_after}` (seconds),
    /// `{waited}` (seconds the start has lasted), `{case}`, `{title}` and `{message}` are
    /// replaced, HTML-escaped; see [`DEFAULT_WAITING_PAGE`](super::DEFAULT_WAITING_PAGE) for
    /// what each holds. Keep a `<meta http-equiv="refresh" content="{retry_after}">` for the
    /// page to turn into the app by itself. A custom [`fallback`](Self::fallback) replaces
    /// the page too.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// # let monitor = Arc::new(MinMonitor::new());
    /// # monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::ZERO)).unwrap();
    /// let layer = monitor.layer("app").unwrap().waiting_page(
    ///     r#"<!doctype html><html lang="en"><meta http-equiv="refresh" content="{retry_after}">
    ///        <title>Warming up</title><p>Waking {service}…</p></html>"#,
    /// );
    /// # let _ = layer;
    /// ```
    pub fn waiting_page(mut self, template: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.guard).fallback.page = Some(Arc::from(template.into()));
        self
    }
}

impl MonitorLayer {
    /// Tells the layer which answers of the inner service mean that the backend is gone (say,
    /// a proxy's 502 on a refused connection, marked with [`BackendGone`](super::BackendGone)).
    /// Such an answer forgets the cached up, wakes the backend and is replaced by the fallback
    /// (503), instead of forwarding to a dead backend for the rest of the grace period. The
    /// fallback's format follows the request's headers kept by a
    /// [`BackendGone::for_request`](super::BackendGone::for_request) marker; without them, the
    /// inner answer's `content-type` (a gRPC answer is replaced by a gRPC status, a JSON one by
    /// JSON, anything else by the HTML page). A predicate that panics counts as "not gone": the
    /// answer is forwarded and the panic logged at error.
    ///
    /// Checking costs each forwarded request a reference count on the layer's shared state,
    /// so it is off unless asked for.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// use tower_monitor::layer::BackendGone;
    /// # let monitor = Arc::new(MinMonitor::new());
    /// # monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::ZERO)).unwrap();
    /// let layer = monitor.layer("app").unwrap().backend_gone_when(BackendGone::in_response);
    /// # let _ = layer;
    /// ```
    pub fn backend_gone_when<F>(mut self, gone: F) -> Self
    where
        F: Fn(http::StatusCode, &http::HeaderMap, &http::Extensions) -> bool
            + Send
            + Sync
            + 'static,
    {
        let guard = Arc::make_mut(&mut self.guard);
        guard.gone = Some(Arc::new(gone));
        guard.plain = false;
        self
    }
}

impl MonitorLayer {
    /// The layer's hold settings and count, if it holds: what a proxy behind it shares.
    #[cfg(feature = "gateway")]
    pub(crate) fn hold_state(&self) -> Option<Hold> {
        self.guard.hold.clone()
    }

    /// Counts each request in the service's requests in flight, `on_idle` or not: a gateway's
    /// reload stops a removed service's program once none is left.
    #[cfg(feature = "gateway")]
    pub(crate) fn counting_requests(mut self) -> Self {
        let guard = Arc::make_mut(&mut self.guard);
        guard.requests = Some(Arc::clone(&guard.registered.requests));
        guard.plain = false;
        self
    }

    /// The layer's count of held requests, if it holds.
    #[cfg(feature = "gateway")]
    pub(crate) fn held_count(&self) -> Option<super::hold::HeldCount> {
        self.guard.hold.as_ref().map(Hold::held_count)
    }

    /// Counts the requests it holds in `count` (the layer's that a reload replaced), against
    /// its own `max_held`; nothing if it does not hold.
    #[cfg(feature = "gateway")]
    pub(crate) fn count_held_in(mut self, count: &super::hold::HeldCount) -> Self {
        if let Some(hold) = Arc::make_mut(&mut self.guard).hold.as_mut() {
            hold.count_in(count);
        }
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
