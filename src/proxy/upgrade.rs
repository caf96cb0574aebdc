//! Relaying an upgraded connection (a WebSocket) once both sides have switched protocols.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::Activity;

/// Copies bytes both ways between the client's and the backend's upgraded connections until
/// either closes, keeping `activity` (the backend counted as busy) for that whole time.
pub(crate) fn relay(
    client: OnUpgrade,
    backend: OnUpgrade,
    activity: Option<Activity>,
    service: Option<Arc<str>>,
) {
    tokio::spawn(async move {
        let _busy = activity;
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
