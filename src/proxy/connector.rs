//! [`Dial`]: connects to the backend whatever authority a request's URI names.

use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::{BoxError, BoxFuture};

/// The HTTP connector, always dialling the backend. The request's URI can then carry the
/// client's authority, which HTTP/2 sends as `:authority` (its `Host`), while the connection
/// still goes to the backend.
#[derive(Clone)]
pub(crate) struct Dial {
    inner: HttpConnector,
    backend: Uri,
}

impl Dial {
    pub(crate) fn new(inner: HttpConnector, backend: Uri) -> Self {
        Self { inner, backend }
    }
}

impl Service<Uri> for Dial {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<TokioIo<TcpStream>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, _destination: Uri) -> Self::Future {
        let connecting = self.inner.call(self.backend.clone());
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}
