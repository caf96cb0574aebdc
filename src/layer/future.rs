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
    /// On the cached-up path it is the inner service's future, unboxed, and polling it is one
    /// branch more than polling the inner future; otherwise it first awaits the decision (status
    /// and triggers), then calls the inner service that was polled ready, or answers the fallback.
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, S::Future>,
        // Moves into the response body, which holds it until the body ends.
        in_flight: Option<InFlight>,
    }
}

pin_project! {
    // Every variant but `Forwarding` is rare, and is handled out of line (`poll_rare`), so the
    // cached-up path polls one small future. Their extras are behind pointers, so they do not
    // make the cached-up future larger than the inner one plus a tag: every move copies it.
    #[project = StateProj]
    enum State<S, ReqBody, F> {
        // The cached-up path: the inner answer is returned as it is.
        Forwarding {
            #[pin]
            future: F,
        },
        // Forwarding, with something to do with the inner answer: see `After`.
        Checking {
            #[pin]
            future: F,
            // Taken when the answer comes.
            after: Option<After>,
        },
        Deciding {
            pending: Box<Pending<S, ReqBody>>,
        },
        // Answered; never polled again.
        Done,
    }
}

/// What to do with an inner answer besides returning it.
enum After {
    /// Check whether it says the backend is gone (the layer's `backend_gone_when`).
    Gone(Arc<Guard>),
    /// The request was held this long before being forwarded (the `x-cold-start` header); and
    /// perhaps the gone check too.
    Held(Box<(Duration, Option<Arc<Guard>>)>),
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
    /// The cached-up path: `gone_check` only when the layer checks inner answers.
    #[inline]
    pub(crate) fn forward(
        future: S::Future,
        in_flight: Option<InFlight>,
        gone_check: Option<Arc<Guard>>,
    ) -> Self {
        let state = match gone_check {
            None => State::Forwarding { future },
            Some(guard) => State::Checking {
                future,
                after: Some(After::Gone(guard)),
            },
        };
        Self { state, in_flight }
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
        let mut this = self.project();
        if let StateProj::Forwarding { future } = this.state.as_mut().project() {
            let response = ready!(future.poll(cx))?;
            let in_flight = this.in_flight.take();
            return Poll::Ready(Ok(
                response.map(|body| MonitorBody::inner_in_flight(body, in_flight))
            ));
        }
        poll_rare(this.state, this.in_flight, cx)
    }
}

/// Every state but the cached-up path's: awaits the decision, then forwards or answers.
#[cold]
#[inline(never)]
fn poll_rare<S, ReqBody, ResBody>(
    mut state: Pin<&mut State<S, ReqBody, S::Future>>,
    in_flight: &mut Option<InFlight>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<MonitorBody<ResBody>>, S::Error>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    loop {
        match state.as_mut().project() {
            StateProj::Forwarding { future } => {
                let response = ready!(future.poll(cx))?;
                state.set(State::Done);
                return Poll::Ready(Ok(
                    response.map(|body| MonitorBody::inner_in_flight(body, in_flight.take()))
                ));
            }
            StateProj::Checking { future, after } => {
                let response = ready!(future.poll(cx))?;
                let (held, gone) = match after.take() {
                    Some(After::Gone(guard)) => (None, Some(guard)),
                    Some(After::Held(held)) => (Some(held.0), held.1),
                    None => (None, None),
                };
                state.set(State::Done);
                let mut response = match gone {
                    Some(guard) => if_gone(response, &guard, in_flight),
                    None => response.map(|body| MonitorBody::inner_in_flight(body, in_flight.take())),
                };
                if let Some(held) = held {
                    mark_cold_start(&mut response, held);
                }
                return Poll::Ready(Ok(response));
            }
            StateProj::Deciding { pending } => {
                let decision = ready!(pending.decision.as_mut().poll(cx));
                match settle(decision, pending.ready.take(), &pending.guard, in_flight) {
                    Settled::Forward(future, held) => {
                        let gone = pending.guard.gone.is_some().then(|| Arc::clone(&pending.guard));
                        let next = match (held, gone) {
                            (None, None) => State::Forwarding { future },
                            (None, Some(guard)) => State::Checking {
                                future,
                                after: Some(After::Gone(guard)),
                            },
                            (Some(held), gone) => State::Checking {
                                future,
                                after: Some(After::Held(Box::new((held, gone)))),
                            },
                        };
                        state.set(next);
                    }
                    Settled::Answer(response) => {
                        state.set(State::Done);
                        return Poll::Ready(Ok(response));
                    }
                }
            }
            // Polled after it answered: a contract breach by the caller. Never answer twice;
            // staying pending is what `Fuse` does, and cannot panic inside someone's server.
            StateProj::Done => return Poll::Pending,
        }
    }
}

enum Settled<F, B> {
    Forward(F, Option<Duration>),
    Answer(Response<MonitorBody<B>>),
}

/// Acts on a decision: calls the ready service, or builds the fallback answer.
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

/// The inner answer, or the fallback if the layer's predicate says the backend is gone: then the
/// cached up is forgotten and the backend woken, so the next request does not go to it again.
fn if_gone<B>(
    response: Response<B>,
    guard: &Guard,
    in_flight: &mut Option<InFlight>,
) -> Response<MonitorBody<B>> {
    let gone = guard.gone.as_ref().is_some_and(|gone| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            gone(response.status(), response.headers(), response.extensions())
        }))
        .unwrap_or(false)
    });
    if !gone {
        return response.map(|body| MonitorBody::inner_in_flight(body, in_flight.take()));
    }
    let registered = &guard.registered;
    tracing::warn!(service = %registered.name, status = %response.status(), "the backend is gone; marking it down and waking it");
    registered.set_status_down();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(registered.wake());
    }
    // The request is gone too: answer in the format its headers, copied by the proxy, ask for.
    let mut parts = Request::new(()).into_parts().0;
    parts.headers = response.into_parts().0.headers;
    let answer = guard
        .fallback
        .respond(&parts, FallbackReason::NotReady, &registered.name);
    answer.map(|body| MonitorBody::fallback_in_flight(body, in_flight.take()))
}

/// Tells the client its request waited for a cold start, and for how long.
fn mark_cold_start<B>(response: &mut Response<B>, held: Duration) {
    let millis = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
    response
        .headers_mut()
        .insert("x-cold-start", http::HeaderValue::from(millis));
}
