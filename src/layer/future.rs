use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::decision::Decision;
use super::service::Guard;
use super::{FallbackReason, MonitorBody};
use crate::idle::InFlight;

pin_project! {
    /// The response future of [`MonitorService`](super::MonitorService).
    ///
    /// On the cached-up path it is the inner service's future, unboxed; otherwise it first
    /// awaits the decision (status and triggers), then calls the inner service that was polled
    /// ready, or answers the fallback.
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, S::Future>,
        // Moves into the response body, which holds it until the body ends.
        in_flight: Option<InFlight>,
        // How long the request was held before being forwarded, for the `x-cold-start` header.
        // Boxed: rare, and the cached-up future should stay small.
        held: Option<Box<Duration>>,
        // Set only when the layer checks inner answers for a gone backend.
        gone_check: Option<Arc<Guard>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, F> {
        Deciding {
            // Boxed, so that this rarely used variant does not make the cached-up future
            // (`Forwarding`) larger than the inner one: every move of the future copies it.
            pending: Box<Pending<S, ReqBody>>,
        },
        Forwarding {
            #[pin]
            future: F,
        },
    }
}

/// A request waiting for its decision.
struct Pending<S, ReqBody> {
    decision: BoxFuture<'static, Decision>,
    /// The service that was polled ready, and the request it is for.
    ready: Option<(S, Request<ReqBody>)>,
    guard: Arc<Guard>,
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    #[inline]
    pub(crate) fn forward(
        future: S::Future,
        in_flight: Option<InFlight>,
        gone_check: Option<Arc<Guard>>,
    ) -> Self {
        Self {
            state: State::Forwarding { future },
            in_flight,
            held: None,
            gone_check,
        }
    }

    pub(crate) fn decide(
        decision: BoxFuture<'static, Decision>,
        service: S,
        request: Request<ReqBody>,
        guard: Arc<Guard>,
        in_flight: Option<InFlight>,
    ) -> Self {
        Self {
            state: State::Deciding {
                pending: Box::new(Pending {
                    decision,
                    ready: Some((service, request)),
                    guard,
                }),
            },
            in_flight,
            held: None,
            gone_check: None,
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<MonitorBody<ResBody>>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut state = this.state;
        loop {
            match state.as_mut().project() {
                StateProj::Forwarding { future } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(guard) = this.gone_check.take() {
                        response = match if_gone(response, &guard, this.in_flight) {
                            Ok(inner) => inner,
                            Err(fallback) => return Poll::Ready(Ok(*fallback)),
                        };
                    }
                    let in_flight = this.in_flight.take();
                    let mut response =
                        response.map(|body| MonitorBody::inner_in_flight(body, in_flight));
                    if let Some(held) = this.held.take() {
                        mark_cold_start(&mut response, *held);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Deciding { pending } => {
                    let decision = ready!(pending.decision.as_mut().poll(cx));
                    match settle(
                        decision,
                        pending.ready.take(),
                        &pending.guard,
                        this.in_flight,
                    ) {
                        Settled::Forward(future, held) => {
                            *this.held = held.map(Box::new);
                            if pending.guard.gone.is_some() {
                                *this.gone_check = Some(Arc::clone(&pending.guard));
                            }
                            state.set(State::Forwarding { future });
                        }
                        Settled::Answer(response) => return Poll::Ready(Ok(response)),
                    }
                }
            }
        }
    }
}

enum Settled<F, B> {
    Forward(F, Option<Duration>),
    Answer(Response<MonitorBody<B>>),
}

/// Acts on a decision: calls the ready service, or builds the fallback answer. Kept out of
/// `poll`, so the cached-up path stays small.
#[cold]
#[inline(never)]
fn settle<S, ReqBody, ResBody>(
    decision: Decision,
    ready: Option<(S, Request<ReqBody>)>,
    guard: &Guard,
    in_flight: &mut Option<InFlight>,
) -> Settled<S::Future, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    let (reason, parts) = match (decision, ready) {
        (Decision::Forward(held), Some((mut service, request))) => {
            return Settled::Forward(service.call(request), held);
        }
        (Decision::Fallback(reason), Some((_, request))) => (reason, request.into_parts().0),
        // Cannot happen: `ready` is taken only here, once, when the decision completes. Should it
        // ever, a 500 is a better answer than a panic inside someone's server.
        (_, None) => (FallbackReason::Error, Request::new(()).into_parts().0),
    };
    let response = guard
        .fallback
        .respond(&parts, reason, &guard.registered.name);
    Settled::Answer(response.map(|body| MonitorBody::fallback_in_flight(body, in_flight.take())))
}

/// The inner answer (`Ok`), or the fallback if the layer's predicate says the backend is gone: then the
/// cached up is forgotten and the backend woken, so the next request does not go to it again.
#[cold]
#[inline(never)]
fn if_gone<B>(
    response: Response<B>,
    guard: &Guard,
    in_flight: &mut Option<InFlight>,
) -> Result<Response<B>, Box<Response<MonitorBody<B>>>> {
    let gone = guard.gone.as_ref().is_some_and(|gone| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            gone(response.status(), response.headers(), response.extensions())
        }))
        .unwrap_or(false)
    });
    if !gone {
        return Ok(response);
    }
    let registered = &guard.registered;
    tracing::warn!(service = %registered.name, status = %response.status(), "the backend is gone; marking it down and waking it");
    registered.set_status_down();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(registered.wake());
    }
    // The request is gone too: answer in the format its headers (kept by the marker) ask for.
    let mut parts = Request::new(()).into_parts().0;
    if let Some(marker) = response.extensions().get::<super::BackendGone>() {
        parts.headers = marker.request_headers().clone();
    }
    let answer = guard
        .fallback
        .respond(&parts, FallbackReason::NotReady, &registered.name);
    Err(Box::new(answer.map(|body| {
        MonitorBody::fallback_in_flight(body, in_flight.take())
    })))
}

/// Tells the client its request waited for a cold start, and for how long.
#[cold]
fn mark_cold_start<B>(response: &mut Response<B>, held: Duration) {
    let millis = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
    response
        .headers_mut()
        .insert("x-cold-start", http::HeaderValue::from(millis));
}
