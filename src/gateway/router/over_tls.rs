//! [`Router::over_tls`]: the router served behind a TLS listener of the user's own.

use super::Router;
#[cfg(doc)]
use crate::gateway::Gateway;

impl Router {
    /// This router, for a listener of your own that speaks TLS: the forwarded headers it
    /// adds tell the backend the protocol `https` (`X-Forwarded-Proto: https`,
    /// `Forwarded: proto=https`), as the gateway's own listener tells them for each TLS
    /// connection. Without it a [`router`](Gateway::router) you serve says `http`, whatever
    /// your listener speaks. Serving both, mount the router for the cleartext one and this
    /// one for TLS. The client's address goes in each request's extensions, as a
    /// [`ClientAddr`](crate::proxy::ClientAddr), either way.
    ///
    /// ```no_run
    /// use hyper_util::rt::{TokioExecutor, TokioIo};
    /// use hyper_util::server::conn::auto;
    /// use tower_monitor::config::TriggerRegistry;
    /// use tower_monitor::gateway::Gateway;
    /// use tower_monitor::proxy::ClientAddr;
    /// use tower_service::Service;
    ///
    /// # async fn serve(tls: tokio_rustls::TlsAcceptor) -> Result<(), Box<dyn std::error::Error>> {
    /// let text = std::fs::read_to_string("gateway.json")?;
    /// let gateway = Gateway::from_config(&text, &TriggerRegistry::new())?;
    /// let router = gateway.router().over_tls();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
    /// loop {
    ///     let (stream, client) = listener.accept().await?;
    ///     let (tls, router) = (tls.clone(), router.clone());
    ///     tokio::spawn(async move {
    ///         let Ok(stream) = tls.accept(stream).await else { return };
    ///         let service = hyper::service::service_fn(move |mut request: http::Request<_>| {
    ///             request.extensions_mut().insert(ClientAddr(client));
    ///             router.clone().call(request)
    ///         });
    ///         let _ = auto::Builder::new(TokioExecutor::new())
    ///             .serve_connection(TokioIo::new(stream), service)
    ///             .await;
    ///     });
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn over_tls(&self) -> Self {
        Self {
            tls: true,
            ..self.clone()
        }
    }
}
