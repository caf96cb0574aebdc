//! [`Replay`]: a request kept so that it can go again on another connection, should the kept
//! connection it was sent on turn out closed by the backend before any answer.
//!
//! Backends close connections idle for a while (Node's and uvicorn's after 5 s, gunicorn's
//! after 2 s); the pool keeps them 15 s, and its connection tasks notice such a close, or else
//! the pool's look at the socket before a request goes out on it (`socket::Watch`); but a
//! close that crosses the request on its way (the backend closes as the request arrives,
//! unread) fails the request. Without a second try its client would get a 502 (and, unless
//! the backend took a new connection then, the backend would be marked gone). RFC 9112
//! section 9.3.1 lets an idempotent request be sent again then, and nginx does so
//! (`proxy_next_upstream error`).
//!
//! Once, and on a new connection: the other idle connections may have gone idle with the one
//! that failed and be closing as well, and a request that itself makes the backend drop its
//! connection would otherwise go out once per idle connection.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, Method, Request, Uri, Version};
use http_body::Body;

/// The head of a request without a body, whose method is idempotent (RFC 9110 section 9.2.2).
pub(crate) struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Replay {
    /// How long a connection must have been idle before its request is kept to go again
    /// (its connection is then `stale`). A backend's idle close comes after seconds; a busy
    /// connection is taken again within microseconds of its last answer, and so does not pay
    /// for the copy.
    pub(super) const AFTER_IDLE: Duration = Duration::from_millis(100);

    /// A copy of `request` to send again, if it may go again; asked only of a request on a
    /// connection that is stale. A request with a body may not: its body is gone with the
    /// first try.
    /// Nor may a request that is itself a replay.
    pub(super) fn of<B: Body>(request: &Request<B>) -> Option<Self> {
        let idempotent = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        (idempotent && request.body().is_end_stream() && !Self::is_replay(request)).then(|| Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
        })
    }

    /// Whether `request` is one [`again`](Self::again) made: it goes on a new connection.
    pub(super) fn is_replay<B>(request: &Request<B>) -> bool {
        request.extensions().get::<Replayed>().is_some()
    }

    /// The request again, with an empty body, its first try having failed with `error`.
    pub(super) fn again<B: Default>(self, service: &str, error: &dyn fmt::Display) -> Request<B> {
        tracing::debug!(
            %service,
            method = %self.method,
            path = self.uri.path(),
            %error,
            "the backend closed a kept connection under the request; sending it again on another"
        );
        let mut request = Request::new(B::default());
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers;
        request.extensions_mut().insert(Replayed);
        request
    }
}

/// The mark of a request sent again ([`Replay::is_replay`]).
#[derive(Clone, Copy)]
struct Replayed;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    fn request<B>(method: Method, body: B) -> Request<B> {
        Request::builder()
            .method(method)
            .uri("/a?b")
            .header("accept", "text/html")
            .body(body)
            .unwrap()
    }

    #[test]
    fn a_bodiless_idempotent_request_is_kept_whole() {
        let kept = Replay::of(&request(Method::GET, Empty::<Bytes>::new())).unwrap();
        let again: Request<Empty<Bytes>> = kept.again("app", &"closed");
        assert_eq!(again.method(), Method::GET);
        assert_eq!(again.uri(), "/a?b");
        assert_eq!(again.headers()["accept"], "text/html");
        for method in [Method::HEAD, Method::OPTIONS, Method::PUT, Method::DELETE] {
            assert!(Replay::of(&request(method, Empty::<Bytes>::new())).is_some());
        }
        assert!(Replay::is_replay(&again));
        assert!(Replay::of(&again).is_none(), "sent again once only");
    }

    #[test]
    fn a_post_or_a_request_with_a_body_keeps_nothing() {
        let post = request(Method::POST, Empty::<Bytes>::new());
        assert!(Replay::of(&post).is_none());
        let with_body = request(Method::PUT, Full::new(Bytes::from("x")));
        assert!(Replay::of(&with_body).is_none());
    }
}
