//! [`GoneHold`]: a request that found its backend gone before any of it left (the connection
//! was refused: the backend crashed, or was stopped behind the monitor's back) is held until
//! the backend is up again, then sent again, instead of being answered 502.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::layer::Hold;
use crate::registered::Registered;

/// Where a proxy with [`ProxyBuilder::hold_when_gone`](super::ProxyBuilder::hold_when_gone)
/// waits for its backend: the monitored service and the longest wait.
#[derive(Clone)]
pub(crate) struct GoneHold {
    registered: Arc<Registered>,
    hold: Hold,
}

impl GoneHold {
    /// Holds in `hold`: its own, or a layer's, so that one `max_held` bounds the requests
    /// both hold.
    pub(crate) fn new(registered: Arc<Registered>, hold: Hold) -> Self {
        Self { registered, hold }
    }

    /// Marks the backend down (so that the requests after this one do not try it), unless it
    /// has come up since the request was sent at `sent_at` or is being stopped (then the stop
    /// ends first); wakes it and waits for it to be up:
    /// how long that took, or `None` if it was not up within the longest wait.
    pub(crate) async fn until_up(&self, sent_at: Instant) -> Option<Duration> {
        let registered = &self.registered;
        // The refusal itself is logged at warn with the request; this says what comes of it.
        tracing::debug!(service = %registered.name, "holding the request until the backend is up, to send it again");
        registered.set_status_down_if_up_before(sent_at);
        self.hold
            .wait_until_up(registered, Instant::now())
            .await
            .ok()
    }
}
