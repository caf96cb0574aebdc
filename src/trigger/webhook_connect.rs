//! The webhook's connections: TCP, and for `https` TLS trusting the roots of the HTTP probe's
//! [`TlsRoots`](crate::probe::tls::TlsRoots) (one TLS setup for the crate).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use http::Uri;
use http::uri::Scheme;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::BoxError;
#[cfg(feature = "rustls")]
use crate::probe::tls::{TlsRoots, server_name};

/// Connects to the webhook's host; `https` adds a TLS handshake whose SNI is the URL's host.
#[derive(Clone)]
pub(super) struct Connector {
    tcp: HttpConnector,
    #[cfg(feature = "rustls")]
    tls: TlsRoots,
}

/// The TLS handshake failed (an untrusted certificate, a host name it does not carry, a server
/// that does not speak TLS): found in a request's error chain, it becomes
/// [`WebhookError::Tls`](super::WebhookError::Tls).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct TlsFailure(pub(super) String);

impl Connector {
    pub(super) fn new(#[cfg(feature = "rustls")] tls: TlsRoots) -> Self {
        let mut tcp = HttpConnector::new();
        // `Webhook::new` has checked the scheme; an `https` URL comes here for its TCP stream.
        tcp.enforce_http(false);
        Self {
            tcp,
            #[cfg(feature = "rustls")]
            tls,
        }
    }
}

impl Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Stream, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tcp = self.tcp.call(uri.clone());
        #[cfg(feature = "rustls")]
        let tls = self.tls.clone();
        async move {
            let tcp = tcp.await?;
            if uri.scheme() != Some(&Scheme::HTTPS) {
                return Ok(Stream::Plain(tcp));
            }
            #[cfg(feature = "rustls")]
            {
                let failed = |e: &dyn std::fmt::Display| TlsFailure(e.to_string());
                let name = server_name(uri.host().unwrap_or_default()).map_err(|e| failed(&e))?;
                let stream = tls
                    .connector()
                    .connect(name, tcp.into_inner())
                    .await
                    .map_err(|e| failed(&e))?;
                Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
            }
            // `Webhook::new` refuses https without the feature; this is never reached.
            #[cfg(not(feature = "rustls"))]
            Err("https needs the `rustls` feature of tower-monitor".into())
        }
        .boxed()
    }
}

/// A webhook connection, plain or TLS.
pub(super) enum Stream {
    Plain(TokioIo<TcpStream>),
    /// Boxed: rustls's state is a kilobyte, a plain stream's a few words.
    #[cfg(feature = "rustls")]
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(stream) => stream.connected(),
            #[cfg(feature = "rustls")]
            Stream::Tls(stream) => stream.inner().get_ref().0.connected(),
        }
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            #[cfg(feature = "rustls")]
            Stream::Tls(stream) => Pin::new(&mut **stream).poll_read(cx, buf),
        }
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            #[cfg(feature = "rustls")]
            Stream::Tls(stream) => Pin::new(&mut **stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            #[cfg(feature = "rustls")]
            Stream::Tls(stream) => Pin::new(&mut **stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            #[cfg(feature = "rustls")]
            Stream::Tls(stream) => Pin::new(&mut **stream).poll_shutdown(cx),
        }
    }
}
