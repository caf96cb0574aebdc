//! What a serving loop takes from the configuration in use, and how a reload hands it the
//! next one: one watch for every worker, read once per connection, never per request.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{serve::Timeouts, workers::Routers};

/// The serving settings of one configuration.
pub(super) struct Settings {
    /// Builds the router of a worker (its own upstream pools, the layers shared).
    pub(super) routers: Arc<Routers>,
    pub(super) timeouts: Timeouts,
    /// The certificate and key of an HTTPS listener, as read at the startup or the reload
    /// that made these settings; `None` for cleartext.
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    /// Held by every connection accepted under these settings, and by its upgraded
    /// connections: once all are closed, nothing reaches the services a reload removed.
    pub(super) served: Served,
}

/// A token of one configuration's connections (see [`Settings::served`]).
#[derive(Clone)]
pub(super) struct Served(#[allow(dead_code)] mpsc::Sender<()>);

/// Tells when every [`Served`] token of one configuration is gone.
pub(super) struct AllServed(mpsc::Receiver<()>);

impl AllServed {
    /// Completes once every token is dropped.
    pub(super) async fn wait(mut self) {
        let _ = self.0.recv().await;
    }
}

/// A token and what tells when it and all its clones are gone.
pub(super) fn served() -> (Served, AllServed) {
    let (tx, rx) = mpsc::channel(1);
    (Served(tx), AllServed(rx))
}

/// The serving loops' view of the configuration in use.
pub(super) type Live = watch::Receiver<Arc<Settings>>;

/// Where a reload puts the next configuration's settings.
pub(super) type Publish = watch::Sender<Arc<Settings>>;
