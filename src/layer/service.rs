use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::decision::Decision;
use super::fallback::Fallback;
use super::hold::Hold;
use super::{FallbackReason, MonitorBody, ResponseFuture, decision};
use crate::idle::{InFlight, Shards};
use crate::registered::Registered;
use crate::status::StatusCache;

/// Decides whether a request may wake the backend (run `on_down`, be held).
pub(crate) type WakePolicy =
    dyn Fn(&http::Method, &http::Uri, &http::HeaderMap) -> bool + Send + Sync;

/// Decides whether an inner answer means the backend is gone.
pub(crate) type GonePredicate =
    dyn Fn(http::StatusCode, &http::HeaderMap, &http::Extensions) -> bool + Send + Sync;

/// What every clone of a [`MonitorService`] shares: the guarded backend and the fallback.
#[derive(Clone)]
pub(crate) struct Guard {
    /// Copies of `registered.cache` and, if requests are counted (`on_idle`, a gateway's
    /// layer), `registered.requests`: `call` reads both on every request, and from here they
    /// are one pointer away instead of two.
    pub(crate) cache: Arc<StatusCache>,
    pub(crate) requests: Option<Arc<Shards>>,
    pub(crate) registered: Arc<Registered>,
    pub(crate) fallback: Fallback,
    /// Cached up and no `always` / `on_up` to run: the request can go straight through.
    pub(crate) cached_up_forwards: bool,
    /// `cached_up_forwards`, and nothing to count (`on_idle`) or check (`backend_gone_when`)
    /// either: `call`'s first test, so that the plainest layer pays one flag for all three.
    pub(crate) plain: bool,
    pub(crate) hold: Option<Hold>,
    pub(crate) wake_policy: Option<Arc<WakePolicy>>,
    pub(crate) gone: Option<Arc<GonePredicate>>,
}

/// Tower middleware that forwards requests to the inner service while the backend is up, and
/// otherwise runs the triggers and answers a fallback. Built by [`MonitorLayer`](super::MonitorLayer).
///
/// The inner service must be `Clone` (a `BoxService` is not: take a `BoxCloneService`). A
/// request that waits for a status or a cold start takes the instance polled ready with it,
/// and leaves a clone, to be polled ready in turn, for the next request.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt, service_fn};
/// use tower_monitor::{BoxError, MinMonitor, MonitoredService, Url, probe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let monitor = Arc::new(MinMonitor::new());
/// let backend = MonitoredService::new(Url::parse("http://127.0.0.1:8081/")?, Duration::from_secs(5))
///     .probe(probe::from_fn(|_url| async { Ok::<bool, BoxError>(false) }));
/// monitor.add("app", backend)?;
///
/// let inner = service_fn(|_req: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<bytes::Bytes>::from("hi")))
/// });
/// let service = monitor.layer("app")?.layer(inner);
/// let response = service.oneshot(http::Request::new(String::new())).await?;
/// assert_eq!(response.status(), 503);
/// # Ok(())
/// # }
/// ```
pub struct MonitorService<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S> MonitorService<S> {
    pub(crate) fn new(inner: S, guard: Arc<Guard>) -> Self {
        Self { inner, guard }
    }

    /// Whether the backend is cached up right now: the check [`call`](Service::call) makes
    /// first, a single atomic load. When it holds and the service has no `always` or `on_up`
    /// trigger, the request goes straight to the inner service.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower::Layer;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let monitor = Arc::new(MinMonitor::new());
    /// # let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30))).unwrap();
    /// let service = monitor.layer("app").unwrap().layer(());
    /// assert!(!service.is_cached_up());
    /// monitor.set_status_up("app").unwrap();
    /// assert!(service.is_cached_up());
    /// # }
    /// ```
    #[inline]
    pub fn is_cached_up(&self) -> bool {
        self.guard.cache.is_up()
    }

    /// The inner service.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower::Layer;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// # let monitor = Arc::new(MinMonitor::new());
    /// # monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::ZERO)).unwrap();
    /// let service = monitor.layer("app").unwrap().layer(42_u32);
    /// assert_eq!(*service.get_ref(), 42);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower::Layer;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// # let monitor = Arc::new(MinMonitor::new());
    /// # monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::ZERO)).unwrap();
    /// let mut service = monitor.layer("app").unwrap().layer(42_u32);
    /// *service.get_mut() += 1;
    /// assert_eq!(*service.get_ref(), 43);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, taken out.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use tower::Layer;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// # let monitor = Arc::new(MinMonitor::new());
    /// # monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/").unwrap(), Duration::ZERO)).unwrap();
    /// let service = monitor.layer("app").unwrap().layer(42_u32);
    /// assert_eq!(service.into_inner(), 42);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for MonitorService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            guard: Arc::clone(&self.guard),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for MonitorService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorService")
            .field("service", &self.guard.registered.name)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MonitorService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<MonitorBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let guard = &*self.guard;
        // The hot path: one atomic load, then straight to the service that was polled ready.
        if guard.plain {
            if guard.cache.is_up() {
                return ResponseFuture::forward_plain(self.inner.call(request));
            }
            // Nothing to count: `plain` means no `on_idle`.
            return self.call_rare(request, None);
        }
        // Counted from here, held or not, until the response body ends.
        let in_flight = guard.requests.as_ref().map(|requests| requests.enter());
        // A HEAD checked for a gone backend takes the rare path, which remembers it is a HEAD
        // (its fallback must have no body); the cached-up future stays as small as it is.
        if guard.cached_up_forwards
            && guard.cache.is_up()
            && (guard.gone.is_none() || request.method() != http::Method::HEAD)
        {
            let check = guard.gone.is_some().then(|| Arc::clone(&self.guard));
            return ResponseFuture::forward(self.inner.call(request), in_flight, check);
        }
        self.call_rare(request, in_flight)
    }
}

impl<S> MonitorService<S> {
    /// Everything but the cached-up path: the decision (status, triggers, hold) comes first.
    #[cold]
    #[inline(never)]
    fn call_rare<ReqBody, ResBody>(
        &mut self,
        request: Request<ReqBody>,
        in_flight: Option<InFlight>,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    {
        let guard = &self.guard;
        // The ready instance goes with the request; this one is replaced by a clone that will be
        // polled ready before its own call (tower's "be careful when cloning inner services").
        let fresh = self.inner.clone();
        let ready = mem::replace(&mut self.inner, fresh);
        let decision = match may_wake(guard, &request) {
            Some(may_wake) => decision::decide(&guard.registered, may_wake, guard.hold.clone()),
            None => Box::pin(std::future::ready(Decision::Fallback(
                FallbackReason::Error,
            ))),
        };
        ResponseFuture::decide(decision, ready, request, Arc::clone(guard), in_flight)
    }
}

/// The wake policy's verdict, or `None` if it panicked (answered 500, logged).
fn may_wake<B>(guard: &Guard, request: &Request<B>) -> Option<bool> {
    let Some(policy) = guard.wake_policy.as_ref() else {
        return Some(true);
    };
    let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        policy(request.method(), request.uri(), request.headers())
    }));
    if verdict.is_err() {
        tracing::error!(service = %guard.registered.name, "the wake policy panicked; answering 500");
    }
    verdict.ok()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::time::Duration;

    use futures::FutureExt;
    use http::{Request, Response};
    use tower::{Layer, Service, ServiceExt, service_fn};

    use crate::layer::BackendGone;
    use crate::{BoxError, MinMonitor, MonitoredService, Url, trigger};

    /// A monitor whose "app" counts requests in flight (`on_idle` after an hour).
    fn counting_monitor() -> Arc<MinMonitor> {
        let monitor = Arc::new(MinMonitor::new());
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let stop = trigger::from_fn(|| async { Ok::<(), BoxError>(()) });
        let service = MonitoredService::new(url, Duration::from_secs(3600))
            .on_idle(Duration::from_secs(3600), stop);
        monitor.add("app", service).unwrap();
        monitor
    }

    fn in_flight(monitor: &MinMonitor) -> usize {
        monitor.snapshot()[0]
            .requests_in_flight
            .expect("counted: on_idle is set")
    }

    fn inner() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
        service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
    }

    /// A request's response future, dropped before it is polled, no longer counts; one polled
    /// to its answer counts until the answer (its body) drops.
    async fn counted_until_dropped<S>(monitor: &MinMonitor, service: &mut S)
    where
        S: Service<Request<()>, Error = Infallible>,
    {
        assert!(service.ready().await.is_ok());
        let unpolled = service.call(Request::new(()));
        assert_eq!(in_flight(monitor), 1);
        drop(unpolled);
        assert_eq!(
            in_flight(monitor),
            0,
            "a dropped response future ends the request"
        );

        assert!(service.ready().await.is_ok());
        let answer = service.call(Request::new(())).now_or_never();
        assert!(matches!(answer, Some(Ok(_))), "cached up: answered at once");
        assert_eq!(in_flight(monitor), 1, "the answer's body still counts");
        drop(answer);
        assert_eq!(in_flight(monitor), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_response_future_state_ends_the_request_when_dropped() {
        let monitor = counting_monitor();
        // Not cached up: the decision (a probe) is still to come when the future drops.
        let mut deciding = monitor.layer("app").unwrap().layer(inner());
        assert!(deciding.ready().await.is_ok());
        let unpolled = deciding.call(Request::new(()));
        assert_eq!(in_flight(&monitor), 1);
        drop(unpolled);
        assert_eq!(in_flight(&monitor), 0);

        monitor.set_status_up("app").unwrap();
        let mut forwarding = monitor.layer("app").unwrap().layer(inner());
        counted_until_dropped(&monitor, &mut forwarding).await;
        let checking = monitor
            .layer("app")
            .unwrap()
            .backend_gone_when(BackendGone::in_response);
        counted_until_dropped(&monitor, &mut checking.layer(inner())).await;
    }
}
