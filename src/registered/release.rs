//! Held requests released when the server shuts down, and the starts refused from then on.
//!
//! A request held for a backend that is still starting holds its connection open. A server
//! shutting down waits for it only up to its grace, then closes the connection: the client
//! gets no answer at all, where a 503 with `Retry-After` would have sent it (or its browser's
//! waiting page) back a moment later, to the server that replaces this one.
//!
//! For the same reason a request no longer starts a backend that is down once released: the
//! server is going away, and would stop (or leave running, unwatched) what it starts now. Such
//! a request gets the same 503. An operator's start is an explicit action, and still runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::Registered;
use crate::error::SharedError;
use crate::lifecycle::ServiceState;

/// Who asks for a backend to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Asker {
    /// A request: through the layer, held, a backend found gone by one, or a start one asked
    /// for while the backend was stopping. Refused once held requests are released.
    Request,
    /// An operator (`MinMonitor::start`, the admin's `POST …/start`): never refused.
    Operator,
}

/// Whether held requests are released, and whether a start refused since has been logged.
#[derive(Debug, Default)]
pub(super) struct Release {
    released: AtomicBool,
    refusal_told: AtomicBool,
}

/// Why a request did not start its backend: the server it came through is shutting down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ShuttingDown;

impl std::fmt::Display for ShuttingDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not started: the server is shutting down")
    }
}

impl std::error::Error for ShuttingDown {}

impl Registered {
    /// Answers every request held for this backend at once (see `Hold::wait_until_up`), holds
    /// none from now on, and lets no request start the backend any more (see `start_for`).
    pub(crate) fn release_held(&self) {
        if !self.release.released.swap(true, Ordering::SeqCst) {
            let held = self.held();
            if held > 0 {
                tracing::info!(service = %self.name, held, "shutting down, or removed by a reload: answering the requests held for {} 503", self.name);
            }
        }
        self.changed.notify_waiters();
    }

    /// Whether held requests have been released: no request is held any more.
    pub(crate) fn is_released(&self) -> bool {
        self.release.released.load(Ordering::SeqCst)
    }

    /// Completes once held requests are released.
    pub(crate) async fn released(&self) {
        loop {
            let changed = self.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_released() {
                return;
            }
            changed.await;
        }
    }

    /// A request's start, once released: refused (failing with [`ShuttingDown`]) if the
    /// backend is down or stopping; nothing to do if it is starting or up. Nothing is counted
    /// as a failed start: no start was made.
    pub(super) fn start_refused(&self) -> Option<BoxFuture<'static, Result<(), SharedError>>> {
        if matches!(self.state(), ServiceState::Up | ServiceState::Starting) {
            return None;
        }
        // Once per service at info: the operator must know why a backend stays down during
        // the shutdown; the requests still coming must not fill the log.
        if !self.release.refusal_told.swap(true, Ordering::SeqCst) {
            tracing::info!(service = %self.name, "shutting down: a request for {} does not start it; answering 503", self.name);
        } else {
            tracing::debug!(service = %self.name, "shutting down: not started; answering 503");
        }
        let refused: SharedError = Arc::new(ShuttingDown);
        Some(futures::future::ready(Err(refused)).boxed())
    }
}
