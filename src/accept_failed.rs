//! A listener's failed accept (the gateway's and the admin service's): the process is out of
//! file descriptors, as a flood of clients against `ulimit -n` makes it. The listener pauses
//! and tries again, so it serves again by itself once descriptors are back; the log says so
//! once a minute, not at every try.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::once_a_minute::OnceAMinute;

/// How long a listener whose accept failed waits before it tries again: not so long that the
/// connections waiting are kept waiting once descriptors are back, not so short that a
/// listener out of them spins.
pub(crate) const PAUSE: Duration = Duration::from_millis(50);

/// Logs a failed accept on `listener` (`what` names it in the message: `"admin: "`, or empty
/// for the gateway's): at error, since while it lasts no client is served, but at most once a
/// minute through `said`, as it fails again every [`PAUSE`] for as long as the process
/// is out of file descriptors; the others at debug and counted.
pub(crate) fn log(
    listener: &TcpListener,
    error: &std::io::Error,
    said: &Arc<OnceAMinute>,
    what: &'static str,
) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "-".to_string(), |addr| addr.to_string());
    let counted_addr = addr.clone();
    said.say(
        |quietly| {
            tracing::error!(
                %addr,
                %error,
                accept_quietly = quietly,
                "{what}accept failed; trying again every 50 ms, new connections wait meanwhile \
                 (logged at error at most once a minute; accept_quietly: those logged at debug \
                 since the last one)"
            );
        },
        || tracing::debug!(%addr, %error, "{what}accept failed"),
        move |quietly| {
            tracing::error!(
                addr = %counted_addr,
                accept_quietly = quietly,
                "{what}accepts failed in the last minute, logged at debug: {quietly}"
            );
        },
    );
}
