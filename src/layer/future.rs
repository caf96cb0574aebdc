use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

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
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, F> {
        Deciding {
            decision: BoxFuture<'static, Decision>,
            // The service that was polled ready, and the request it is for. Boxed so that this
            // rarely used variant does not make the cached-up future (`Forwarding`) as large as
            // a whole request, which every move of the future would copy.
            ready: Option<Box<(S, Request<ReqBody>)>>,
            guard: Arc<Guard>,
        },
        Forwarding {
            #[pin]
            future: F,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    #[inline]
    pub(crate) fn forward(future: S::Future, in_flight: Option<InFlight>) -> Self {
        Self {
            state: State::Forwarding { future },
            in_flight,
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
                decision,
                ready: Some(Box::new((service, request))),
                guard,
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
        let this = self.project();
        let mut state = this.state;
        loop {
            match state.as_mut().project() {
                StateProj::Forwarding { future } => {
                    let response = ready!(future.poll(cx))?;
                    let in_flight = this.in_flight.take();
                    return Poll::Ready(Ok(
                        response.map(|body| MonitorBody::inner(body).in_flight(in_flight))
                    ));
                }
                StateProj::Deciding {
                    decision,
                    ready,
                    guard,
                } => {
                    let decision = ready!(decision.as_mut().poll(cx));
                    match settle(decision, ready.take(), guard) {
                        Settled::Forward(future) => state.set(State::Forwarding { future }),
                        Settled::Answer(response) => {
                            let in_flight = this.in_flight.take();
                            return Poll::Ready(Ok(response.map(|body| body.in_flight(in_flight))));
                        }
                    }
                }
            }
        }
    }
}

enum Settled<F, B> {
    Forward(F),
    Answer(Response<MonitorBody<B>>),
}

/// Acts on a decision: calls the ready service, or builds the fallback answer. Kept out of
/// `poll`, so the cached-up path stays small.
#[cold]
#[inline(never)]
fn settle<S, ReqBody, ResBody>(
    decision: Decision,
    ready: Option<Box<(S, Request<ReqBody>)>>,
    guard: &Guard,
) -> Settled<S::Future, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    let (reason, parts) = match (decision, ready.map(|ready| *ready)) {
        (Decision::Forward, Some((mut service, request))) => {
            return Settled::Forward(service.call(request));
        }
        (Decision::Fallback(reason), Some((_, request))) => (reason, request.into_parts().0),
        // Polled again after completing: answer rather than panic.
        (_, None) => (FallbackReason::Error, Request::new(()).into_parts().0),
    };
    let response = guard.fallback.respond(&parts, reason);
    Settled::Answer(response.map(MonitorBody::fallback))
}
