use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::decision::Decision;
use super::gone::if_gone;
use super::service::Guard;
use super::{FallbackReason, MonitorBody};
use crate::idle::InFlight;

mod out_of_line;

use out_of_line::{Extras, OutOfLine};

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
        state: State<S::Future, Step<S, ReqBody>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R> {
        // The cached-up path of a layer that counts requests in flight (`on_idle`), or checks
        // the inner answer (`backend_gone_when`; out of line, in `poll_other`) before it is
        // returned. Not boxed: a gateway takes this path for every request.
        Counting {
            #[pin]
            future: F,
            extras: Extras,
        },
        // The plainest layer's cached-up path (nothing counted, nothing checked): the inner
        // future alone, with nothing beside it to drop, so dropping it after its answer costs
        // what dropping the inner future does.
        Forwarding {
            #[pin]
            future: F,
        },
        // Everything else, boxed so that it does not make the cached-up future larger (every
        // move copies it), and handled out of line (`poll_other`); with the in-flight count.
        Rare {
            rare: OutOfLine<(Pin<Box<R>>, Option<InFlight>)>,
        },
    }
}

pin_project! {
    #[project = StepProj]
    enum Step<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Deciding {
            decision: BoxFuture<'static, Decision>,
            // The service that was polled ready, and the request it is for.
            ready: Option<(S, Request<ReqBody>)>,
            guard: Arc<Guard>,
        },
        Forwarding {
            #[pin]
            future: S::Future,
            // How long the request was held first, for the `x-cold-start` header.
            held: Option<Duration>,
            // Set when the layer checks inner answers for a gone backend.
            gone_check: Option<Arc<Guard>>,
            // The request was a HEAD: a fallback for a gone backend must have no body.
            head: bool,
        },
        // Answered; never polled again.
        Done,
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    /// The plainest layer's cached-up path: nothing to count or check.
    #[inline]
    pub(crate) fn forward_plain(future: S::Future) -> Self {
        Self {
            state: State::Forwarding { future },
        }
    }

    /// The cached-up path of a layer that counts (`on_idle`) or checks answers: `gone_check`
    /// only when the layer checks them.
    #[inline]
    pub(crate) fn forward(
        future: S::Future,
        in_flight: Option<InFlight>,
        gone_check: Option<Arc<Guard>>,
    ) -> Self {
        Self {
            state: State::Counting {
                future,
                extras: Extras {
                    gone_check: ManuallyDrop::new(gone_check),
                    in_flight: ManuallyDrop::new(in_flight),
                },
            },
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
            state: State::Rare {
                rare: OutOfLine::new(Some((
                    Box::pin(Step::Deciding {
                        decision,
                        ready: Some((service, request)),
                        guard,
                    }),
                    in_flight,
                ))),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<MonitorBody<ResBody>>, S::Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.as_mut().project().state.project() {
            StateProj::Forwarding { future } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => Poll::Ready(Ok(response.map(MonitorBody::inner))),
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            },
            StateProj::Counting { future, extras } if extras.gone_check.is_none() => {
                match future.poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        let (head, body) = response.into_parts();
                        let body = MonitorBody::inner_in_flight(body, extras.in_flight.take());
                        Poll::Ready(Ok(Response::from_parts(head, body)))
                    }
                    Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                    Poll::Pending => Poll::Pending,
                }
            }
            _ => poll_other(self, cx.waker()),
        }
    }
}

/// Every state but the plain cached-up one, out of line: one call in `poll` for all of them.
///
/// It takes the caller's waker, read-only, rather than its `Context`, and polls with a
/// `Context` of its own around that waker (on stable Rust a `Context` carries nothing else). A
/// `Context` passed out of line escapes: the compiler must then assume the caller's waker may
/// have changed, and cannot see through its drop (8 instructions per request on the cached-up
/// path, which never takes this call).
#[inline(never)]
fn poll_other<S, ReqBody, ResBody>(
    response_future: Pin<&mut ResponseFuture<S, ReqBody>>,
    waker: &Waker,
) -> Poll<Result<Response<MonitorBody<ResBody>>, S::Error>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    let cx = &mut Context::from_waker(waker);
    match response_future.project().state.project() {
        StateProj::Counting { future, extras } => {
            let response = ready!(future.poll(cx))?;
            let response = match extras.gone_check.take() {
                // Never a HEAD: those take the rare path (see `MonitorService::call`).
                Some(guard) => match if_gone(response, &guard, false, &mut extras.in_flight) {
                    Ok(inner) => inner,
                    Err(fallback) => return Poll::Ready(Ok(*fallback)),
                },
                None => response,
            };
            Poll::Ready(Ok(response.map(|body| {
                MonitorBody::inner_in_flight(body, extras.in_flight.take())
            })))
        }
        StateProj::Rare { rare } => match rare.as_mut() {
            Some((rare, in_flight)) => poll_rare(rare.as_mut(), in_flight, cx),
            // Never: emptied only by the drop of the future.
            None => Poll::Pending,
        },
        // Handled in `poll`; the same here, should they ever come.
        StateProj::Forwarding { future } => {
            let response = ready!(future.poll(cx))?;
            Poll::Ready(Ok(response.map(MonitorBody::inner)))
        }
    }
}

/// Every state but the cached-up path's: awaits the decision, then forwards or answers.
#[cold]
#[inline(never)]
fn poll_rare<S, ReqBody, ResBody>(
    mut step: Pin<&mut Step<S, ReqBody>>,
    in_flight: &mut Option<InFlight>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<MonitorBody<ResBody>>, S::Error>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    loop {
        match step.as_mut().project() {
            StepProj::Forwarding {
                future,
                held,
                gone_check,
                head,
            } => {
                let response = ready!(future.poll(cx))?;
                let (held, gone_check, head) = (held.take(), gone_check.take(), *head);
                step.set(Step::Done);
                let response = match gone_check {
                    Some(guard) => match if_gone(response, &guard, head, in_flight) {
                        Ok(inner) => inner,
                        Err(fallback) => return Poll::Ready(Ok(*fallback)),
                    },
                    None => response,
                };
                let mut response =
                    response.map(|body| MonitorBody::inner_in_flight(body, in_flight.take()));
                if let Some(held) = held {
                    mark_cold_start(&mut response, held);
                }
                return Poll::Ready(Ok(response));
            }
            StepProj::Deciding {
                decision,
                ready,
                guard,
            } => {
                let decision = ready!(decision.as_mut().poll(cx));
                match settle(decision, ready.take(), guard, in_flight) {
                    Settled::Forward(future, held, head) => {
                        let gone_check = guard.gone.is_some().then(|| Arc::clone(guard));
                        step.set(Step::Forwarding {
                            future,
                            held,
                            gone_check,
                            head,
                        });
                    }
                    Settled::Answer(response) => {
                        step.set(Step::Done);
                        return Poll::Ready(Ok(response));
                    }
                }
            }
            // Polled after it answered: a contract breach by the caller. Never answer twice;
            // staying pending is what `Fuse` does, and cannot panic inside someone's server.
            StepProj::Done => return Poll::Pending,
        }
    }
}

enum Settled<F, B> {
    /// The inner future, how long the request was held, and whether it is a HEAD.
    Forward(F, Option<Duration>, bool),
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
            let head = request.method() == Method::HEAD;
            return Settled::Forward(service.call(request), held, head);
        }
        (Decision::Fallback(reason), Some((_, request))) => (reason, request.into_parts().0),
        // Cannot happen: `ready` is taken only here, once, when the decision completes. Should it
        // ever, a 500 is a better answer than a panic inside someone's server.
        (_, None) => (FallbackReason::Error, Request::new(()).into_parts().0),
    };
    let response = guard.fallback.respond(&parts, reason, &guard.registered);
    Settled::Answer(response.map(|body| MonitorBody::fallback_in_flight(body, in_flight.take())))
}

/// Whether a request has reached its backend: its layer forwarded it, and the inner service
/// did not answer it itself. An HTTP/2 client's reset of a request counts toward the gateway's
/// rapid-reset bound only then: a request held for a cold start, or refused, costs the backend
/// nothing, and a client with short deadlines resets many of those.
///
/// Asked only of a request reset before its answer: nothing is kept for it beside the states
/// the futures have anyway.
#[cfg(feature = "gateway")]
pub(crate) trait AtBackend {
    fn at_backend(&self) -> bool;
}

#[cfg(feature = "gateway")]
impl<S, ReqBody> AtBackend for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
    S::Future: AtBackend,
{
    fn at_backend(&self) -> bool {
        match &self.state {
            State::Counting { future, .. } | State::Forwarding { future } => future.at_backend(),
            State::Rare { rare } => match rare.as_ref().map(|(step, _)| &**step) {
                Some(Step::Forwarding { future, .. }) => future.at_backend(),
                // Held, or waiting for the backend's status; or answered already.
                Some(Step::Deciding { .. } | Step::Done) | None => false,
            },
        }
    }
}

/// Tells the client its request waited for a cold start, and for how long.
pub(crate) fn mark_cold_start<B>(response: &mut Response<B>, held: Duration) {
    let millis = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
    response
        .headers_mut()
        .insert("x-cold-start", http::HeaderValue::from(millis));
}
