//! The stacks the layer benches compare, shared by `layer` (criterion, time) and `instructions`
//! (callgrind, instruction counts): the bare service, the floor (a minimal flag-check layer written
//! here), tower-http's `ValidateRequestHeader` and tower's `ConcurrencyLimit` for reference, and the
//! monitor layer with the backend cached up, without and with `on_idle`.

#![allow(dead_code)] // each bench uses its own subset

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::FutureExt;
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_monitor::layer::{FallbackBody, MonitorBody};
use tower_monitor::{BoxError, MinMonitor, MonitoredService, Url, trigger};

/// The inner service of every stack: answers at once.
pub fn inner() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
}

/// `poll_ready`, `call`, and the response future polled to completion (all resolve at once);
/// the response is dropped by the caller, which for the monitor ends the request's in-flight
/// count.
#[inline(never)]
pub fn one_request<S>(service: &mut S) -> Option<S::Response>
where
    S: Service<Request<()>>,
{
    service.ready().now_or_never()?.ok()?;
    service.call(Request::new(())).now_or_never()?.ok()
}

/// A monitor with "app" cached up for an hour; `on_idle` after an hour when `idle` is set.
/// Needs a Tokio runtime entered (the cache's timer).
pub fn monitor(idle: bool) -> Arc<MinMonitor> {
    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse("http://127.0.0.1:9/").expect("static URL");
    let mut service = MonitoredService::new(url, Duration::from_secs(3600));
    if idle {
        let stop = trigger::from_fn(|| async { Ok::<(), BoxError>(()) });
        service = service.on_idle(Duration::from_secs(3600), stop);
    }
    monitor.add("app", service).expect("fresh monitor");
    monitor.set_status_up("app").expect("registered above");
    monitor
}

/// The monitor layer around [`inner`], backend cached up.
pub fn monitor_up(
    monitor: &Arc<MinMonitor>,
) -> impl Service<Request<()>, Response = Response<MonitorBody<()>>, Error = Infallible> + Clone {
    let mut service = monitor
        .layer("app")
        .expect("registered above")
        .layer(inner());
    let forwarded = one_request(&mut service).is_some_and(|r| !r.body().is_fallback());
    assert!(
        forwarded,
        "the backend is cached up: the request goes through"
    );
    service
}

/// The monitor layer around [`inner`], backend cached up, checking every inner answer for a gone
/// backend (`backend_gone_when(BackendGone::in_response)`), as the gateway does.
pub fn monitor_up_gone(
    monitor: &Arc<MinMonitor>,
) -> impl Service<Request<()>, Response = Response<MonitorBody<()>>, Error = Infallible> + Clone {
    let layer = monitor
        .layer("app")
        .expect("registered above")
        .backend_gone_when(tower_monitor::layer::BackendGone::in_response);
    let mut service = layer.layer(inner());
    let forwarded = one_request(&mut service).is_some_and(|r| !r.body().is_fallback());
    assert!(
        forwarded,
        "the backend is cached up: the request goes through"
    );
    service
}

/// tower-http's `ValidateRequestHeader` with a check of the same kind (a flag), for reference.
pub fn validate_request()
-> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    let up = Arc::new(AtomicBool::new(true));
    let check = move |_request: &mut Request<()>| {
        if up.load(Ordering::Relaxed) {
            Ok(())
        } else {
            let mut refused = Response::new(());
            *refused.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Err(refused)
        }
    };
    tower_http::validate_request::ValidateRequestHeaderLayer::custom(check).layer(inner())
}

/// tower's `ConcurrencyLimit`, for reference (an ordinary layer with a shared semaphore).
pub fn concurrency_limit()
-> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
    tower::limit::ConcurrencyLimit::new(inner(), 1024)
}

/// The floor: the least a layer can do that checks a shared "up" flag and answers the same
/// response type as the monitor layer (`MonitorBody`), or a 503 when the flag is down. Its
/// response future carries an `X` beside the inner future: `()` for the floor itself, and a
/// field with drop glue (always `None`) for [`floor_with_drop`], which shows what any future
/// that must own something (the monitor's carries the in-flight guard) pays for that alone.
pub struct FlagCheck<S, X = ()> {
    inner: S,
    up: Arc<AtomicBool>,
    _extra: std::marker::PhantomData<fn() -> X>,
}

impl<S: Clone, X> Clone for FlagCheck<S, X> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            up: Arc::clone(&self.up),
            _extra: std::marker::PhantomData,
        }
    }
}

impl<S, X> FlagCheck<S, X> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            up: Arc::new(AtomicBool::new(true)),
            _extra: std::marker::PhantomData,
        }
    }
}

impl<S, X, ReqBody, ResBody> Service<Request<ReqBody>> for FlagCheck<S, X>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    X: Default,
{
    type Response = Response<MonitorBody<ResBody>>;
    type Error = S::Error;
    type Future = FlagFuture<S::Future, X>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if self.up.load(Ordering::Relaxed) {
            FlagFuture::Forward {
                future: self.inner.call(request),
                _extra: X::default(),
            }
        } else {
            FlagFuture::Refuse
        }
    }
}

pin_project! {
    #[project = FlagProj]
    pub enum FlagFuture<F, X> {
        Forward { #[pin] future: F, _extra: X },
        Refuse,
    }
}

impl<F, X, B, E> Future for FlagFuture<F, X>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<MonitorBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            FlagProj::Forward { future, .. } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(MonitorBody::inner)))
            }
            FlagProj::Refuse => {
                let mut refused = Response::new(MonitorBody::fallback(FallbackBody::empty()));
                *refused.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                Poll::Ready(Ok(refused))
            }
        }
    }
}

/// The floor around [`inner`].
pub fn floor()
-> impl Service<Request<()>, Response = Response<MonitorBody<()>>, Error = Infallible> + Clone {
    FlagCheck::<_, ()>::new(inner())
}

/// The floor, its future also owning a field with drop glue (always `None`).
pub fn floor_with_drop()
-> impl Service<Request<()>, Response = Response<MonitorBody<()>>, Error = Infallible> + Clone {
    FlagCheck::<_, Option<Arc<AtomicBool>>>::new(inner())
}
