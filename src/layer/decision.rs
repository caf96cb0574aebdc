//! The per-request order: status, then `always`, then `on_up` (forward) or `on_down` (fallback).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};

use super::FallbackReason;
use super::hold::Hold;
use crate::lifecycle::ServiceState;
use crate::registered::{Registered, ShuttingDown, StartCalledOff};
use crate::trigger::run_bounded;

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Forward; with how long the request was held first, if it was.
    Forward(Option<Duration>),
    Fallback(FallbackReason),
}

/// Decides a request's fate. Boxed because it awaits the status and the triggers, whose
/// futures are boxed already by their traits; the cached-up path without `always` or `on_up`
/// never comes here (see `MonitorService::call`).
///
/// `may_wake` is the wake policy's verdict: when false, a down backend is answered without
/// running `on_down` (nor holding). With `hold`, a down backend holds the request until it is up.
pub(crate) fn decide(
    registered: &Arc<Registered>,
    may_wake: bool,
    hold: Option<Hold>,
) -> BoxFuture<'static, Decision> {
    let registered = Arc::clone(registered);
    let name = Arc::clone(&registered.name);
    // A held request's max_wait counts from its arrival, the status probe and `always` included.
    let arrived = tokio::time::Instant::now();
    // A request that would be held is answered 504 at `max_wait` even while its status probe
    // runs (a blackholed backend, under a probe timeout longer than `max_wait`).
    let held_until = hold
        .as_ref()
        .filter(|hold| may_wake && hold.max_held > 0)
        .map(|hold| crate::deadline::saturating_after(arrived, hold.max_wait));
    AssertUnwindSafe(async move {
        let status = match held_until {
            Some(deadline) => match tokio::time::timeout_at(deadline, is_up(&registered)).await {
                Ok(status) => status,
                Err(_) => {
                    // The probe goes on (it is shared): the start this request would have
                    // asked for is asked once it ends, or a hung backend would never be woken.
                    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                        let registered = Arc::clone(&registered);
                        runtime.spawn(async move {
                            if let Ok(false) = is_up(&registered).await {
                                let _ = registered.wake().await;
                            }
                        });
                    }
                    return Decision::Fallback(FallbackReason::Timeout);
                }
            },
            None => is_up(&registered).await,
        };
        let up = match status {
            Ok(up) => up,
            // The probe could not be made for want of this process's own resources (`EMFILE`
            // under a flood of clients): the backend's last known state stands. One last
            // known up is forwarded to (the proxy may still reach it on a kept connection, and
            // answers for itself if not); any other is answered 503 with `Retry-After: 1`, as
            // the proxy answers for the same cause, not woken (the probe has logged it, at most
            // once a minute: not once a request).
            Err(error) if crate::local_resources::cause(&error).is_some() => {
                let name = &registered.name;
                if registered.state() != ServiceState::Up {
                    tracing::debug!(service = %name, %error, "status unknown; answering 503");
                    return Decision::Fallback(FallbackReason::LocalResources);
                }
                tracing::debug!(
                    service = %name,
                    %error,
                    "status unknown; the backend was last up, so forwarding"
                );
                true
            }
            Err(error) => {
                tracing::warn!(service = %registered.name, %error, "status unknown; answering 500");
                return Decision::Fallback(FallbackReason::Error);
            }
        };
        let service = &registered.service;
        let timeout = service.trigger_timeout;
        if let Some(always) = &service.always {
            if run_bounded(
                always,
                timeout,
                &registered.stats,
                &registered.name,
                "always",
            )
            .await
            .is_err()
            {
                return Decision::Fallback(FallbackReason::Error);
            }
        }
        let mut held = None;
        if !up {
            registered.say_nothing_starts_it();
            if !may_wake {
                return Decision::Fallback(FallbackReason::NotReady);
            }
            // `max_held(0)` holds none: answered as without hold mode, so the backend is
            // still woken (held requests are what wakes it in hold mode).
            let Some(hold) = hold.filter(|hold| hold.max_held > 0) else {
                return match registered.wake().await {
                    // Not started because the server is shutting down: not a failed start,
                    // answered as a released held request is, to come back later.
                    Err(error) if error.downcast_ref::<ShuttingDown>().is_some() => {
                        Decision::Fallback(FallbackReason::NotReady)
                    }
                    // Called off by an operator's stop before on_down ran: nothing failed,
                    // the backend is being stopped on purpose.
                    Err(error) if error.downcast_ref::<StartCalledOff>().is_some() => {
                        Decision::Fallback(FallbackReason::NotReady)
                    }
                    Err(_) => Decision::Fallback(FallbackReason::StartFailed),
                    Ok(()) => Decision::Fallback(FallbackReason::NotReady),
                };
            };
            match hold.wait_until_up(&registered, arrived).await {
                Ok(waited) => held = Some(waited),
                Err(reason) => return Decision::Fallback(reason),
            }
        }
        if let Some(on_up) = &service.on_up {
            if run_bounded(on_up, timeout, &registered.stats, &registered.name, "on_up")
                .await
                .is_err()
            {
                return Decision::Fallback(FallbackReason::Error);
            }
        }
        Decision::Forward(held)
    })
    .catch_unwind()
    .map(move |outcome| {
        outcome.unwrap_or_else(|_| {
            tracing::error!(service = %name, "the request's decision panicked; answering 500");
            Decision::Fallback(FallbackReason::Error)
        })
    })
    .boxed()
}

/// Whether to forward: a cached up; no while starting or stopping (the monitor polls the
/// backend then, so requests do not each probe it); otherwise a probe's answer.
async fn is_up(registered: &Registered) -> Result<bool, crate::MonitorError> {
    if registered.cache.is_up_now() {
        return Ok(true);
    }
    match registered.state() {
        ServiceState::Starting | ServiceState::Stopping => {
            // Only the poller ends these states: make sure one runs (a runtime that shut down
            // took the last one with it).
            registered.ensure_polling();
            Ok(false)
        }
        _ => registered.status().await,
    }
}
