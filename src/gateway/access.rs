//! The access log: one line per request, written when its response body has been sent (or
//! dropped), so that the duration covers the whole answer, as a proxy's request time does.

use std::fmt;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use http::{HeaderValue, Method, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::answered::CLIENT_GONE;
use crate::layer::{FallbackReason, MonitorBody};
use crate::proxy::{ForwardedHeaders, ProxyBody};

mod client;

use client::Forwarded;

pin_project! {
    /// The body of every gateway response: the layer's body (the backend's, or the fallback),
    /// with the request's access-log entry when the access log is on.
    pub struct GatewayBody {
        #[pin]
        inner: MonitorBody<ProxyBody>,
        // Boxed: only with the access log on, and then logged when dropped.
        entry: Option<Box<Entry>>,
    }
}

impl GatewayBody {
    /// A response body that is not logged.
    pub(super) fn plain(inner: MonitorBody<ProxyBody>) -> Self {
        Self { inner, entry: None }
    }

    /// `response` with its access-log entry: the line is written when the body has been sent
    /// to its end or dropped before it.
    pub(super) fn logged(
        response: Response<MonitorBody<ProxyBody>>,
        mut entry: Box<Entry>,
    ) -> Response<Self> {
        let (parts, inner) = response.into_parts();
        // HTTP/1.1 sends no body for these (nor for a CONNECT's 2xx, a switch): hyper drops
        // it unpolled, and nothing was left unsent.
        let bodiless = entry.method == Method::HEAD
            || parts.status.is_informational()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED
            || (entry.method == Method::CONNECT && parts.status.is_success());
        let length = inner.size_hint().exact();
        entry.status = Some(parts.status.as_u16());
        entry.cold_start = parts.headers.get("x-cold-start").cloned();
        entry.fallback = parts.extensions.get::<FallbackReason>().copied();
        entry.length = length;
        entry.complete = bodiless || inner.is_end_stream() || length == Some(0);
        Response::from_parts(
            parts,
            Self {
                inner,
                entry: Some(entry),
            },
        )
    }
}

impl GatewayBody {
    /// This body emptied, its log entry kept: the answer to a `HEAD` request, which HTTP/2
    /// would otherwise send whole.
    pub(super) fn emptied(self) -> Self {
        Self {
            inner: MonitorBody::fallback(crate::layer::FallbackBody::from("")),
            entry: self.entry,
        }
    }
}

impl fmt::Debug for GatewayBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayBody")
            .field("inner", &self.inner)
            .field("logged", &self.entry.is_some())
            .finish()
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::BoxError>>> {
        let mut this = self.project();
        let frame = this.inner.as_mut().poll_frame(cx);
        if let Some(entry) = this.entry {
            match &frame {
                Poll::Ready(Some(Ok(frame))) => {
                    entry.bytes += frame.data_ref().map_or(0, |data| data.remaining() as u64);
                    // The sender may stop polling after the last frame: after trailers, or
                    // once the length it announced is written (before the backend's own end
                    // of stream has arrived).
                    entry.complete = entry.complete
                        || frame.is_trailers()
                        || this.inner.is_end_stream()
                        || entry.length == Some(entry.bytes);
                }
                Poll::Ready(None) => entry.complete = true,
                Poll::Ready(Some(Err(_))) | Poll::Pending => {}
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One request's line in the access log, written when dropped: begun when the request comes
/// in, so that a request the client gives up on is logged too.
pub(super) struct Entry {
    method: Method,
    uri: Uri,
    started: Instant,
    service: Arc<str>,
    /// The address of the connection's client, when the gateway serves the connection.
    client: Option<IpAddr>,
    /// Where the forwarded headers name the client, when the service trusts them.
    forwarded: Option<Forwarded>,
    user_agent: Option<HeaderValue>,
    /// `None` until the answer's head.
    status: Option<u16>,
    cold_start: Option<HeaderValue>,
    /// Why the layer answered instead of the backend, if it did.
    fallback: Option<FallbackReason>,
    bytes: u64,
    /// The body's length, when announced (`content-length`).
    length: Option<u64>,
    complete: bool,
}

impl Entry {
    /// The entry of `request` to `service`, from `client`; `trusted` is which forwarded
    /// headers the service keeps from its clients, if it trusts them (they name the client).
    pub(super) fn begin<B>(
        request: &http::Request<B>,
        service: Arc<str>,
        client: Option<IpAddr>,
        trusted: Option<ForwardedHeaders>,
    ) -> Box<Self> {
        Box::new(Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            started: Instant::now(),
            service,
            client,
            forwarded: trusted.map(|which| Forwarded::of(request.headers(), which)),
            user_agent: request.headers().get(http::header::USER_AGENT).cloned(),
            status: None,
            cold_start: None,
            fallback: None,
            bytes: 0,
            length: None,
            complete: false,
        })
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let cold_start = self.cold_start.as_ref().and_then(|v| v.to_str().ok());
        // The client's words: quoted, with quotes, backslashes and control characters escaped
        // (Debug), bytes that are not UTF-8 replaced (U+FFFD), so that no value can pass for
        // another field or line. Printable characters past ASCII are written as they are.
        let user_agent = self
            .user_agent
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        // Behind a trusted proxy, the client it names, and the proxy as the `peer`.
        let peer = Client(self.client);
        let named = self.forwarded.as_ref().and_then(Forwarded::client);
        let client: &dyn fmt::Display = named.as_ref().map_or(&peer, |named| named);
        tracing::info!(
            target: "tower_monitor::access",
            service = %self.service,
            client = %client,
            peer = self.forwarded.is_some().then_some(tracing::field::display(&peer)),
            method = %self.method,
            path = %self.uri.path(),
            status = self.status.unwrap_or(CLIENT_GONE),
            ms = self.started.elapsed().as_millis() as u64,
            bytes = self.bytes,
            complete = self.complete,
            cold_start_ms = %cold_start.unwrap_or("-"),
            fallback = %self.fallback.map_or("-", FallbackReason::as_str),
            user_agent = ?user_agent.as_deref().unwrap_or("-"),
            "request"
        );
    }
}

/// The client's address as the access log writes it: `-` when unknown (a router a library user
/// serves without a connection).
struct Client(Option<IpAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("-"),
        }
    }
}
