//! [`BackendGone`]: how an inner service tells the layer that its backend has gone away.

/// A marker an inner service puts in a response's extensions when the backend could not be
/// reached at all (connection refused or reset), as a reverse proxy learns first.
///
/// The layer then forgets the cached up (as [`MinMonitor::set_status_down`] does), wakes the
/// backend if the request may wake it, and answers the fallback instead of the inner response,
/// so clients see "starting" rather than a bare 502 for the rest of the grace period.
///
/// [`MinMonitor::set_status_down`]: crate::MinMonitor::set_status_down
///
/// ```
/// use tower_monitor::layer::BackendGone;
///
/// let mut response = http::Response::new(());
/// *response.status_mut() = http::StatusCode::BAD_GATEWAY;
/// response.extensions_mut().insert(BackendGone);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendGone;
