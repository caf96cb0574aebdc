//! Held requests released when the server shuts down.
//!
//! A request held for a backend that is still starting holds its connection open. A server
//! shutting down waits for it only up to its grace, then closes the connection: the client
//! gets no answer at all, where a 503 with `Retry-After` would have sent it (or its browser's
//! waiting page) back a moment later, to the server that replaces this one.

use std::sync::atomic::Ordering;

use super::Registered;

impl Registered {
    /// Answers every request held for this backend at once (see `Hold::wait_until_up`), and
    /// holds none from now on.
    pub(crate) fn release_held(&self) {
        if !self.released.swap(true, Ordering::SeqCst) {
            let held = self.held();
            if held > 0 {
                tracing::info!(service = %self.name, held, "shutting down: answering the requests held for {} 503", self.name);
            }
        }
        self.changed.notify_waiters();
    }

    /// Whether held requests have been released: no request is held any more.
    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
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
}
