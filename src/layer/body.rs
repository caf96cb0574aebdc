use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::idle::InFlight;

pin_project! {
    /// The body of a fallback response: a small page, JSON document, or nothing (gRPC).
    ///
    /// ```
    /// use tower_monitor::layer::FallbackBody;
    ///
    /// let body = FallbackBody::from("try again soon");
    /// # let _ = body;
    /// ```
    #[derive(Debug, Default)]
    pub struct FallbackBody {
        #[pin]
        inner: Full<Bytes>,
    }
}

impl FallbackBody {
    /// A body with no content.
    ///
    /// ```
    /// use http_body::Body;
    /// use tower_monitor::layer::FallbackBody;
    ///
    /// assert!(FallbackBody::empty().is_end_stream());
    /// ```
    pub fn empty() -> Self {
        Self::default()
    }
}

impl<T: Into<Bytes>> From<T> for FallbackBody {
    fn from(content: T) -> Self {
        Self {
            inner: Full::new(content.into()),
        }
    }
}

impl Body for FallbackBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The response body of [`MonitorService`](super::MonitorService): the inner service's body
    /// when the request was forwarded, or the fallback's.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use tower_monitor::layer::MonitorBody;
    ///
    /// let body = MonitorBody::inner(Full::<Bytes>::from("hello"));
    /// assert!(!body.is_fallback());
    /// ```
    #[derive(Debug)]
    pub struct MonitorBody<B> {
        #[pin]
        kind: Kind<B>,
        // Keeps the request counted as in flight (for `on_idle`) until the body ends or drops.
        in_flight: Option<InFlight>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner { #[pin] body: B },
        // Boxed: fallback answers are rare, and an inline `Full<Bytes>` would make every
        // forwarded response larger, which every move of it pays for.
        Fallback { body: Box<FallbackBody> },
    }
}

impl<B> MonitorBody<B> {
    /// Wraps the inner service's body.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use http_body_util::Full;
    /// use tower_monitor::layer::MonitorBody;
    /// let body = MonitorBody::inner(Full::<Bytes>::from("from the backend"));
    /// # let _ = body;
    /// ```
    #[inline]
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
            in_flight: None,
        }
    }

    /// Wraps a fallback answer's body.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use http_body_util::Full;
    /// use tower_monitor::layer::{FallbackBody, MonitorBody};
    /// let body = MonitorBody::<Full<Bytes>>::fallback(FallbackBody::from("not ready"));
    /// assert!(body.is_fallback());
    /// ```
    #[inline]
    pub fn fallback(body: FallbackBody) -> Self {
        Self {
            kind: Kind::Fallback {
                body: Box::new(body),
            },
            in_flight: None,
        }
    }

    /// The inner service's body, keeping the request counted as in flight until it ends.
    #[inline]
    pub(crate) fn inner_in_flight(body: B, in_flight: Option<InFlight>) -> Self {
        Self {
            kind: Kind::Inner { body },
            in_flight,
        }
    }

    /// A fallback body, keeping the request counted as in flight until it ends.
    pub(crate) fn fallback_in_flight(body: FallbackBody, in_flight: Option<InFlight>) -> Self {
        Self {
            kind: Kind::Fallback {
                body: Box::new(body),
            },
            in_flight,
        }
    }

    /// Whether this is a fallback answer rather than the inner service's.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use http_body_util::Full;
    /// use tower_monitor::layer::MonitorBody;
    /// assert!(!MonitorBody::inner(Full::<Bytes>::default()).is_fallback());
    /// ```
    pub fn is_fallback(&self) -> bool {
        matches!(self.kind, Kind::Fallback { .. })
    }
}

/// An empty inner body, as tower-http's `TimeoutLayer` needs for its own answer.
impl<B: Default> Default for MonitorBody<B> {
    fn default() -> Self {
        Self::inner(B::default())
    }
}

/// Any inner body whose data a fallback's [`Bytes`] converts into: `Bytes` itself (axum, tonic,
/// hyper's `Incoming`), `BytesMut`, or a `Buf` of the user's with `From<Bytes>`.
impl<B> Body for MonitorBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = match this.kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Fallback { body } => match Pin::new(&mut **body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    Poll::Ready(Some(Ok(frame.map_data(B::Data::from))))
                }
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        };
        if matches!(frame, Poll::Ready(None)) {
            // Sent to the end: the request is no longer in flight.
            this.in_flight.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Fallback { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Fallback { body } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn fallback_body_reports_its_exact_size_and_end() {
        let body = MonitorBody::<Full<Bytes>>::fallback(FallbackBody::from("abc"));
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abc");
        assert!(FallbackBody::empty().is_end_stream());
        assert_eq!(FallbackBody::empty().size_hint().exact(), Some(0));
    }

    #[tokio::test]
    async fn inner_body_passes_through() {
        let body = MonitorBody::inner(Full::<Bytes>::from("hello"));
        assert_eq!(body.size_hint().exact(), Some(5));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
    }
}
