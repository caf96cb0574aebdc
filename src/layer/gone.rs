//! [`BackendGone`]: how an inner service tells the layer that its backend has gone away, and
//! the layer's answer then.

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response};
use tokio::time::Instant;

use super::service::Guard;
use super::{FallbackReason, MonitorBody};
use crate::idle::InFlight;

/// A marker an inner service puts in a response's extensions when the backend could not be
/// reached at all (connection refused or reset), as a reverse proxy learns first.
///
/// With [`MonitorLayer::backend_gone_when`]`(`[`BackendGone::in_response`]`)`, the layer then
/// forgets the cached up (as [`MinMonitor::set_status_down`] does), wakes the backend, and
/// answers the fallback instead of the inner response, so clients see "starting" rather than a
/// bare 502 for the rest of the grace period. The request itself has gone to the inner service
/// already, so it is answered, not held. The fallback's format (HTML, JSON, gRPC) follows the
/// request's `accept` and `content-type`, which [`for_request`](Self::for_request) keeps.
///
/// [`MonitorLayer::backend_gone_when`]: super::MonitorLayer::backend_gone_when
/// [`MinMonitor::set_status_down`]: crate::MinMonitor::set_status_down
///
/// ```
/// use tower_monitor::layer::BackendGone;
///
/// let request = http::Request::get("/").header("accept", "application/json").body(()).unwrap();
/// let mut response = http::Response::new(());
/// *response.status_mut() = http::StatusCode::BAD_GATEWAY;
/// response.extensions_mut().insert(BackendGone::for_request(request.headers()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct BackendGone {
    /// The request's headers the fallback looks at.
    request_headers: HeaderMap,
    /// When the request was sent, if known (see [`sent_at`](Self::sent_at)).
    sent_at: Option<Instant>,
    /// The request's method, if known: only a `GET` may be an `EventSource`, answered 200.
    method: Option<Method>,
}

impl PartialEq for BackendGone {
    /// Markers are equal when they keep the same request headers; when the request was sent
    /// is not compared.
    fn eq(&self, other: &Self) -> bool {
        self.request_headers == other.request_headers
    }
}

impl Eq for BackendGone {}

impl BackendGone {
    /// A marker that knows nothing of the request: the fallback's format then follows the
    /// marked answer's `content-type` (gRPC, JSON, or else the HTML page).
    ///
    /// ```
    /// let gone = tower_monitor::layer::BackendGone::new();
    /// # let _ = gone;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A marker for the request with these headers: keeps the two the fallback's format
    /// depends on, `accept` and `content-type` (a gRPC client gets a gRPC status).
    ///
    /// ```
    /// let headers = http::HeaderMap::new();
    /// let gone = tower_monitor::layer::BackendGone::for_request(&headers);
    /// # let _ = gone;
    /// ```
    pub fn for_request(headers: &HeaderMap) -> Self {
        let mut request_headers = HeaderMap::new();
        for name in [ACCEPT, CONTENT_TYPE] {
            if let Some(value) = headers.get(&name) {
                request_headers.insert(name, value.clone());
            }
        }
        Self {
            request_headers,
            sent_at: None,
            method: None,
        }
    }

    /// This marker, for a request with `method`: the fallback answers in its format (a `POST`
    /// that asks for an event stream is no `EventSource`, to be told 200). Without it the
    /// fallback takes the request for a `GET` (a `HEAD` is known to the layer either way).
    /// [`Proxy`](crate::proxy::Proxy) sets it.
    ///
    /// ```
    /// use tower_monitor::layer::BackendGone;
    ///
    /// let headers = http::HeaderMap::new();
    /// let gone = BackendGone::for_request(&headers).for_method(http::Method::POST);
    /// # let _ = gone;
    /// ```
    pub fn for_method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// This marker, for a request sent at `sent_at`: a backend that has come up since (a
    /// start another request asked for) is not the one that failed it, and is not marked down
    /// (and started again). Without it the backend is marked down whatever its state.
    /// [`Proxy`](crate::proxy::Proxy) sets it.
    ///
    /// ```
    /// use tower_monitor::layer::BackendGone;
    ///
    /// let sent = tokio::time::Instant::now();
    /// // … the request fails: the connection was refused.
    /// let gone = BackendGone::new().sent_at(sent);
    /// # let _ = gone;
    /// ```
    pub fn sent_at(mut self, sent_at: Instant) -> Self {
        self.sent_at = Some(sent_at);
        self
    }

    /// The request's headers that were kept.
    pub(crate) fn request_headers(&self) -> &HeaderMap {
        &self.request_headers
    }

    /// Whether a response carries the marker: the predicate to give
    /// [`MonitorLayer::backend_gone_when`](super::MonitorLayer::backend_gone_when).
    ///
    /// ```
    /// use tower_monitor::layer::BackendGone;
    ///
    /// let mut extensions = http::Extensions::new();
    /// assert!(!BackendGone::in_response(http::StatusCode::BAD_GATEWAY, &http::HeaderMap::new(), &extensions));
    /// extensions.insert(BackendGone::new());
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

/// The inner answer (`Ok`), or the fallback if the layer's predicate says the backend is gone: then the
/// cached up is forgotten and the backend woken, so the next request does not go to it again.
pub(super) fn if_gone<B>(
    response: Response<B>,
    guard: &Guard,
    head: bool,
    in_flight: &mut Option<InFlight>,
) -> Result<Response<B>, Box<Response<MonitorBody<B>>>> {
    let gone = guard.gone.as_ref().is_some_and(|gone| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            gone(response.status(), response.headers(), response.extensions())
        }))
        .unwrap_or_else(|_| {
            tracing::error!(service = %guard.registered.name, "the backend_gone_when predicate panicked; forwarding the answer");
            false
        })
    });
    if !gone {
        return Ok(response);
    }
    let registered = &guard.registered;
    tracing::warn!(service = %registered.name, status = %response.status(), "the backend is gone; marking it down and waking it");
    let marker = response.extensions().get::<BackendGone>();
    match marker.and_then(|marker| marker.sent_at) {
        Some(sent_at) => registered.set_status_down_if_up_before(sent_at),
        None => registered.set_status_down(),
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(registered.wake());
    }
    // The request is gone too: answer in the format its headers (kept by the marker) ask for.
    let mut parts = Request::new(()).into_parts().0;
    let kept = response
        .extensions()
        .get::<BackendGone>()
        .map(BackendGone::request_headers)
        .filter(|kept| !kept.is_empty());
    match kept {
        Some(kept) => parts.headers = kept.clone(),
        // Nothing kept (no marker, or `BackendGone::new()`): the inner answer's format is what
        // the client reads, so answer in it. A gRPC client given the HTML page reads a
        // protocol error, not a status.
        None => {
            if let Some(format) = response.headers().get(CONTENT_TYPE) {
                parts.headers.insert(CONTENT_TYPE, format.clone());
                parts.headers.insert(ACCEPT, format.clone());
            }
        }
    }
    if let Some(method) = marker.and_then(|marker| marker.method.clone()) {
        parts.method = method;
    }
    if head {
        // Over HTTP/2 a body after HEAD is a protocol error (hyper sends what it is given).
        parts.method = Method::HEAD;
    }
    let answer = guard
        .fallback
        .respond(&parts, FallbackReason::NotReady, registered);
    Err(Box::new(answer.map(|body| {
        MonitorBody::fallback_in_flight(body, in_flight.take())
    })))
}
