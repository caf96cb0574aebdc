//! [`Activity`]: work that keeps a backend awake without being a request through the layer.

use std::fmt;

use crate::idle::InFlight;

/// Counts as one request in flight until it is dropped: for `on_idle`, and for a gateway's
/// reload, which stops the program of a service it removed once none is left.
///
/// The layer counts a request until its response body ends. Some work outlives that: an
/// upgraded connection (a WebSocket) carries traffic after its `101` answer has been sent. A
/// proxy keeps an `Activity` for as long as such a connection is open, so an open socket keeps
/// its backend awake. It costs one uncontended atomic increment, and a decrement when dropped.
///
/// ```
/// # use std::time::Duration;
/// # use tower_monitor::{MinMonitor, MonitoredService, Url};
/// let monitor = MinMonitor::new();
/// # let url = Url::parse("http://127.0.0.1:9/").unwrap();
/// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30))).unwrap();
/// let open_socket = monitor.activity("app").unwrap();
/// // ... relay the upgraded connection ...
/// drop(open_socket);
/// ```
pub struct Activity(#[allow(dead_code)] pub(crate) InFlight); // held for its drop

impl fmt::Debug for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activity").finish_non_exhaustive()
    }
}
