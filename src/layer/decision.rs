//! The per-request order: status, then `always`, then `on_up` (forward) or `on_down` (fallback).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};

use super::FallbackReason;
use crate::registered::Registered;

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Forward,
    Fallback(FallbackReason),
}

/// Decides a request's fate. Boxed because it awaits the status and the triggers, whose
/// futures are boxed already by their traits; the cached-up path without `always` or `on_up`
/// never comes here (see `MonitorService::call`).
pub(crate) fn decide(registered: &Arc<Registered>) -> BoxFuture<'static, Decision> {
    let status = registered.status();
    let registered = Arc::clone(registered);
    let name = Arc::clone(&registered.name);
    AssertUnwindSafe(async move {
        let up = match status.await {
            Ok(up) => up,
            Err(error) => {
                tracing::warn!(service = %registered.name, %error, "status unknown; answering 500");
                return Decision::Fallback(FallbackReason::Error);
            }
        };
        let service = &registered.service;
        if let Some(always) = &service.always {
            if let Err(error) = always.trigger().await {
                tracing::warn!(service = %registered.name, %error, "`always` trigger failed; answering 500");
                return Decision::Fallback(FallbackReason::Error);
            }
        }
        if up {
            if let Some(on_up) = &service.on_up {
                if let Err(error) = on_up.trigger().await {
                    tracing::warn!(service = %registered.name, %error, "`on_up` trigger failed; answering 500");
                    return Decision::Fallback(FallbackReason::Error);
                }
            }
            Decision::Forward
        } else {
            match registered.wake().await {
                Ok(()) => Decision::Fallback(FallbackReason::NotReady),
                Err(error) => {
                    tracing::warn!(service = %registered.name, %error, "`on_down` trigger failed; answering 500");
                    Decision::Fallback(FallbackReason::Error)
                }
            }
        }
    })
    .catch_unwind()
    .map(move |outcome| {
        outcome.unwrap_or_else(|_| {
            tracing::error!(service = %name, "a trigger panicked; answering 500");
            Decision::Fallback(FallbackReason::Error)
        })
    })
    .boxed()
}
