//! What the proxy answers when the backend does not: 502 or 504, said once in the log.

use std::io;

use http::{HeaderValue, Method, Response, StatusCode, header};

use super::ProxyBody;
use super::upload::BodyReadTimedOut;
use super::upstream::UpstreamError;
use crate::layer::{BackendGone, event_stream_body, grpc_status, is_grpc, prefers_event_stream};

/// The `Allow` of a 405 to a `TRACE` (RFC 9110 §15.5.6 requires one): the standard methods the
/// proxy forwards. It cannot know the backend's own, and it forwards other methods too
/// (WebDAV's, say), and a `CONNECT` only as a WebSocket.
pub(crate) const ALLOWED: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";

/// Why a forward failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Refused, reset or closed before an answer: the backend is not there (502, `BackendGone`).
    Gone,
    /// The proxy ran out of a resource of its own (file descriptors, local ports, memory) to
    /// reach the backend with: the backend is not to blame, and not taken for gone (503,
    /// `Retry-After: 1`, no `BackendGone`).
    Local,
    /// A kept connection closed or reset under the request, before any answer, by a backend
    /// that took a new connection right after: its close of an idle connection crossed the
    /// request (502, no `BackendGone`: the backend is there).
    KeptClosed,
    /// No connection or no response head within its time (504).
    Timeout,
    /// An answer whose head is more than the proxy reads: too many header lines, or too many
    /// bytes (502).
    HeadTooLarge,
    /// Anything else, such as a malformed answer (502).
    Other,
    /// A request a reverse proxy does not forward: a `CONNECT` that is not a WebSocket, a body
    /// with a transfer coding besides `chunked` (501).
    NotForwarded,
    /// The request's own body failed, as a client's does when it goes away in the middle of an
    /// upload (400): the backend is not to blame, so it is not marked gone.
    ClientBody,
    /// The client sent nothing of its request body for the body read timeout (408).
    ClientSlow,
    /// A `TRACE`, which the backend would answer with the request itself, cookies and
    /// credentials included, for a script to read (cross-site tracing) (405).
    NotAllowed,
    /// A request whose path the proxy does not forward: a dot-segment, which would climb out
    /// of the base path (400).
    BadPath,
    /// A request whose host the proxy does not forward: more than one, or one that is not
    /// `host[:port]` (400).
    BadHost,
    /// The backend had as many requests in flight as the proxy allows for longer than a
    /// request may wait its turn (503, `Retry-After: 1`).
    Busy,
    /// A request whose header list an HTTP/2 backend would not take (431).
    HeaderListTooLarge,
}

impl Failure {
    pub(crate) fn of(error: &UpstreamError) -> Self {
        if let UpstreamError::KeptClosed(_) = error {
            return Self::KeptClosed;
        }
        if source_of::<BodyReadTimedOut>(error).is_some() {
            return Self::ClientSlow;
        }
        // hyper's "user" errors are the sender's: here the request body the client streams
        // (its own I/O errors, an early end, would otherwise read as a dropped backend). One
        // other, "dispatch task is gone", comes only when the connection's task was dropped, as
        // a runtime shutting down drops it: a 400 then is wrong but harmless.
        if source_of::<hyper::Error>(error).is_some_and(hyper::Error::is_user)
            || source_of::<h2::Error>(error).is_some_and(reset_by_us)
        {
            return Self::ClientBody;
        }
        // Before the timeout, the connect and the close: `EMFILE` fails a connect as a refusal
        // does, yet says nothing of the backend.
        if crate::local_resources::cause(error).is_some() {
            return Self::Local;
        }
        let io_kind = io_kind(error);
        if io_kind == Some(io::ErrorKind::TimedOut) {
            return Self::Timeout;
        }
        if error.is_connect() {
            return Self::Gone;
        }
        let closed = matches!(
            io_kind,
            Some(
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            )
        );
        let hyper_error = source_of::<hyper::Error>(error);
        if closed || hyper_error.is_some_and(hyper::Error::is_incomplete_message) {
            Self::Gone
        } else if hyper_error.is_some_and(hyper::Error::is_parse_too_large) {
            Self::HeadTooLarge
        } else {
            Self::Other
        }
    }

    /// The answer to the client: a short text, never the backend's address or the error, in
    /// the format the request (its `method`, `Accept` and `Content-Type`) asks for.
    pub(crate) fn response(
        self,
        method: &Method,
        request_headers: &http::HeaderMap,
    ) -> Response<ProxyBody> {
        let (status, text) = match self {
            Self::Timeout => (StatusCode::GATEWAY_TIMEOUT, "gateway timeout\n"),
            Self::Gone | Self::KeptClosed | Self::HeadTooLarge | Self::Other => {
                (StatusCode::BAD_GATEWAY, "bad gateway\n")
            }
            Self::NotForwarded => (StatusCode::NOT_IMPLEMENTED, "not implemented\n"),
            Self::NotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            Self::ClientBody | Self::BadPath | Self::BadHost => {
                (StatusCode::BAD_REQUEST, "bad request\n")
            }
            Self::ClientSlow => (StatusCode::REQUEST_TIMEOUT, "request timeout\n"),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "backend busy; try again\n"),
            Self::Local => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service unavailable; try again\n",
            ),
            Self::HeaderListTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request header fields too large\n",
            ),
        };
        // A gRPC client reads a text body as a malformed message ("protocol error"): it gets
        // the status gRPC maps the HTTP one to, in the headers, as the layer's fallback does.
        // A browser's `EventSource` gives up for good on any status but 200: told to try
        // again, it gets an event stream that says when, as from the layer's fallback.
        let retry = matches!(self, Self::Busy | Self::Local);
        let mut response = if is_grpc(request_headers) {
            self.grpc_response(text.trim_end())
        } else if retry && prefers_event_stream(method, request_headers) {
            let body = event_stream_body(text.trim_end(), 1);
            let mut response = Response::new(ProxyBody::local(body));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            response
        } else {
            let mut response = Response::new(ProxyBody::from_static(text));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self == Self::NotAllowed {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOWED));
        }
        if retry {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self == Self::Gone {
            let gone = BackendGone::for_request(request_headers).for_method(method.clone());
            response.extensions_mut().insert(gone);
        }
        response
    }

    /// A trailers-only gRPC answer: UNAVAILABLE for what gRPC's HTTP mapping makes it (502,
    /// 504), so that clients retry. Metadata past the backend's bound is RESOURCE_EXHAUSTED,
    /// as gRPC's C core reports metadata past its limit: not retried (the same call would fail
    /// again), and not INTERNAL, which would read as a broken proxy.
    fn grpc_response(self, message: &'static str) -> Response<ProxyBody> {
        let code: u16 = match self {
            Self::Gone | Self::Timeout | Self::Other | Self::Busy => 14, // UNAVAILABLE
            Self::Local => 14,                                           // UNAVAILABLE
            Self::KeptClosed => 14,                                      // UNAVAILABLE
            Self::HeadTooLarge => 14,                                    // UNAVAILABLE
            Self::NotForwarded | Self::NotAllowed => 12,                 // UNIMPLEMENTED
            Self::ClientBody | Self::BadPath | Self::BadHost => 13,      // INTERNAL
            Self::ClientSlow => 4,                                       // DEADLINE_EXCEEDED
            Self::HeaderListTooLarge => 8,                               // RESOURCE_EXHAUSTED
        };
        grpc_status(ProxyBody::default(), code, message)
    }

    /// The `reason` label of [`PROXY_FAILURES`](crate::metrics::PROXY_FAILURES).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Gone => "unreachable",
            Self::Local => "local_resources",
            Self::KeptClosed => "kept_closed",
            Self::Timeout => "timeout",
            Self::HeadTooLarge => "head_too_large",
            Self::Other => "failed",
            Self::NotForwarded => "not_forwarded",
            Self::NotAllowed => "not_allowed",
            Self::ClientBody => "client_body",
            Self::ClientSlow => "client_slow",
            Self::BadPath => "bad_path",
            Self::BadHost => "bad_host",
            Self::Busy => "busy",
            Self::HeaderListTooLarge => "request_head_too_large",
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Gone => "backend unreachable",
            Self::Local => {
                "cannot reach the backend: this process is out of file descriptors, local ports \
                 or memory (its own, not the backend's); the backend is not marked down"
            }
            Self::KeptClosed => "the backend closed a kept connection under the request",
            Self::Timeout => "backend timed out",
            Self::HeadTooLarge => "backend answer's head too large",
            Self::Other => "backend request failed",
            Self::NotForwarded => "request not forwarded",
            Self::NotAllowed => "request method not allowed",
            Self::ClientBody => "the request body broke off",
            Self::ClientSlow => "the request body stalled",
            Self::BadPath => "request path not forwarded",
            Self::BadHost => "request host not forwarded",
            Self::Busy => {
                "backend at its limit of requests in flight for longer than a request may wait"
            }
            Self::HeaderListTooLarge => "request header list over the HTTP/2 backend's bound",
        }
    }
}

/// A stream the proxy's own HTTP/2 client reset: over HTTP/2, hyper reports a request body that
/// failed as a reset of its own (neither the backend's nor a protocol error h2 found).
fn reset_by_us(error: &h2::Error) -> bool {
    error.is_reset() && !error.is_remote() && !error.is_library()
}

fn io_kind(error: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    source_of::<io::Error>(error).map(io::Error::kind)
}

/// The first error of type `E` in `error`'s chain, itself included.
fn source_of<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<E>() {
            return Some(found);
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_backend_is_a_502_with_the_marker_and_a_timeout_a_504_without() {
        let gone = Failure::Gone.response(&Method::GET, &http::HeaderMap::new());
        assert_eq!(gone.status(), StatusCode::BAD_GATEWAY);
        assert!(gone.extensions().get::<BackendGone>().is_some());
        let late = Failure::Timeout.response(&Method::GET, &http::HeaderMap::new());
        assert_eq!(late.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(late.extensions().get::<BackendGone>().is_none());
    }

    /// `err` as hyper-util's connector gives it: its own error, the `io::Error` its cause.
    fn connect_error(err: io::Error) -> UpstreamError {
        #[derive(Debug)]
        struct ConnectError(io::Error);
        impl std::fmt::Display for ConnectError {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("tcp open error")
            }
        }
        impl std::error::Error for ConnectError {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        UpstreamError::Connect(Box::new(ConnectError(err)))
    }

    #[test]
    fn a_connect_the_process_own_shortage_failed_is_not_a_gone_backend() {
        // `EADDRNOTAVAIL` too, on a host with IPv6 (see `local_resources::ran_out`).
        let kinds = [io::ErrorKind::OutOfMemory];
        // EMFILE, ENFILE, ENOBUFS: no `ErrorKind` of their own.
        #[cfg(target_os = "linux")]
        let codes = [24, 23, 105].map(io::Error::from_raw_os_error);
        #[cfg(not(target_os = "linux"))]
        let codes: [io::Error; 0] = [];
        for err in kinds.map(io::Error::from).into_iter().chain(codes) {
            let text = err.to_string();
            let failure = Failure::of(&connect_error(err));
            assert_eq!(failure, Failure::Local, "{text}");
            let answer = failure.response(&Method::GET, &http::HeaderMap::new());
            assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "{text}");
            assert_eq!(answer.headers()[header::RETRY_AFTER], "1");
            assert!(answer.extensions().get::<BackendGone>().is_none(), "{text}");
        }
        let refused = connect_error(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(Failure::of(&refused), Failure::Gone);
        let late = connect_error(io::Error::from(io::ErrorKind::TimedOut));
        assert_eq!(Failure::of(&late), Failure::Timeout);
    }
}
