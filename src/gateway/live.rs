//! What a serving loop takes from the configuration in use, and how a reload hands it the
//! next one: one watch for every worker, read once per connection, never per request.

use std::sync::Arc;

use tokio::sync::watch;

use super::{serve::Timeouts, workers::Routers};

/// The serving settings of one configuration.
pub(super) struct Settings {
    /// Builds the router of a worker (its own upstream pools, the layers shared).
    pub(super) routers: Arc<Routers>,
    pub(super) timeouts: Timeouts,
    /// The certificate and key of an HTTPS listener, as read at the startup or the reload
    /// that made these settings; `None` for cleartext.
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// The serving loops' view of the configuration in use.
pub(super) type Live = watch::Receiver<Arc<Settings>>;

/// Where a reload puts the next configuration's settings.
pub(super) type Publish = watch::Sender<Arc<Settings>>;
