//! [`ProxyBody`]: the backend's body streamed through, or the proxy's own short answer.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;

use super::upstream::UpstreamBody;
use crate::BoxError;

/// The body of a [`Proxy`](super::Proxy) response: the backend's, streamed as it arrives, or
/// the proxy's own short text when the backend could not answer (502, 504).
///
/// ```
/// use http_body::Body;
/// use tower_monitor::proxy::ProxyBody;
///
/// let body = ProxyBody::from_static("bad gateway\n");
/// assert_eq!(body.size_hint().exact(), Some(12));
/// ```
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Upstream(UpstreamBody),
    Local(Full<Bytes>),
}

impl ProxyBody {
    /// The backend's body, passed through frame by frame.
    pub(crate) fn upstream(body: UpstreamBody) -> Self {
        Self {
            kind: Kind::Upstream(body),
        }
    }

    /// A body the proxy writes itself.
    ///
    /// ```
    /// let body = tower_monitor::proxy::ProxyBody::from_static("");
    /// # let _ = body;
    /// ```
    pub fn from_static(text: &'static str) -> Self {
        Self {
            kind: Kind::Local(Full::new(Bytes::from_static(text.as_bytes()))),
        }
    }
}

impl ProxyBody {
    /// A body the proxy writes itself, made at the time.
    pub(crate) fn local(text: String) -> Self {
        Self {
            kind: Kind::Local(Full::new(Bytes::from(text))),
        }
    }
}

impl Default for ProxyBody {
    fn default() -> Self {
        Self::from_static("")
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    /// The backend connection's failure, or [`ProxyBuilder::response_body_timeout`]'s.
    ///
    /// [`ProxyBuilder::response_body_timeout`]: super::ProxyBuilder::response_body_timeout
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Both bodies are `Unpin`: no projection needed.
        match &mut self.get_mut().kind {
            Kind::Upstream(body) => Pin::new(body).poll_frame(cx),
            Kind::Local(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::Local(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(body) => body.size_hint(),
            Kind::Local(body) => body.size_hint(),
        }
    }
}
