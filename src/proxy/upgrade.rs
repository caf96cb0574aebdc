//! Relaying an upgraded connection (a WebSocket) once both sides have switched protocols.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::Activity;

/// Kept alive for as long as a connection upgraded through the [`Proxy`](super::Proxy) stays
/// open, when put in the request's extensions: a server that waits for its connections at
/// shutdown hands one out per upgrade request, so an open WebSocket is waited for too.
///
/// ```
/// use tower_monitor::proxy::UpgradeGuard;
///
/// let (open, _all_closed) = tokio::sync::mpsc::channel::<()>(1);
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(UpgradeGuard::new(open));
/// ```
#[derive(Clone)]
pub struct UpgradeGuard(#[allow(dead_code)] Arc<dyn Any + Send + Sync>);

impl UpgradeGuard {
    /// Holds `held` until the upgraded connection closes (or the request ends without one).
    pub fn new(held: impl Any + Send + Sync) -> Self {
        Self(Arc::new(held))
    }
}

impl fmt::Debug for UpgradeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UpgradeGuard")
    }
}

/// Copies bytes both ways between the client's and the backend's upgraded connections until
/// either closes, keeping `activity` (the backend counted as busy) for that whole time.
pub(crate) fn relay(
    client: OnUpgrade,
    backend: OnUpgrade,
    activity: Option<Activity>,
    guard: Option<UpgradeGuard>,
    service: Option<Arc<str>>,
) {
    tokio::spawn(async move {
        let _busy = (activity, guard);
        let service = service.as_deref().unwrap_or("-");
        // The client's side switches once hyper has sent it the 101: after this returns.
        let (client, backend) = match futures::future::try_join(client, backend).await {
            Ok(both) => both,
            Err(error) => {
                tracing::warn!(service = %service, %error, "upgrade failed");
                return;
            }
        };
        let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => {
                tracing::debug!(service = %service, up, down, "upgraded connection closed")
            }
            Err(error) => tracing::debug!(service = %service, %error, "upgraded connection ended"),
        }
    });
}
