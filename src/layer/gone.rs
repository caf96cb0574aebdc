//! [`BackendGone`]: how an inner service tells the layer that its backend has gone away.

/// A marker an inner service puts in a response's extensions when the backend could not be
/// reached at all (connection refused or reset), as a reverse proxy learns first.
///
/// With [`MonitorLayer::backend_gone_when`]`(`[`BackendGone::in_response`]`)`, the layer then
/// forgets the cached up (as [`MinMonitor::set_status_down`] does), wakes the backend, and
/// answers the fallback instead of the inner response, so clients see "starting" rather than a
/// bare 502 for the rest of the grace period. The request itself has gone to the inner service
/// already, so it is answered, not held; the fallback's format (HTML, JSON, gRPC) is chosen from
/// the gone response's `accept` and `content-type` headers, which a proxy copies from the request.
///
/// [`MonitorLayer::backend_gone_when`]: super::MonitorLayer::backend_gone_when
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

impl BackendGone {
    /// Whether a response carries the marker: the predicate to give
    /// [`MonitorLayer::backend_gone_when`](super::MonitorLayer::backend_gone_when).
    ///
    /// ```
    /// use tower_monitor::layer::BackendGone;
    ///
    /// let mut extensions = http::Extensions::new();
    /// assert!(!BackendGone::in_response(http::StatusCode::BAD_GATEWAY, &http::HeaderMap::new(), &extensions));
    /// extensions.insert(BackendGone);
    /// assert!(BackendGone::in_response(http::StatusCode::BAD_GATEWAY, &http::HeaderMap::new(), &extensions));
    /// ```
    pub fn in_response(
        _status: http::StatusCode,
        _headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> bool {
        extensions.get::<BackendGone>().is_some()
    }
}
