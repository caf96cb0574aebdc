//! A listener's failed accept (the gateway's and the admin service's). Two kinds of failure
//! come there: one connection's own (reset or aborted by its client while it waited in the
//! queue, refused by a firewall rule, a network error pending on it), which takes that
//! connection from the queue and says nothing of the next; and the process's own shortage (out
//! of file descriptors, as a flood of clients against `ulimit -n` makes it, or of memory),
//! which lasts. The first is logged at debug and the next connection accepted at once; the
//! second pauses the listener, which tries again and so serves again by itself once
//! descriptors are back, and is logged at error once a minute, not at every try.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::local_resources;
use crate::once_a_minute::OnceAMinute;

/// How long a listener whose accept failed waits before it tries again: not so long that the
/// connections waiting are kept waiting once descriptors are back, not so short that a
/// listener out of them spins.
pub(crate) const PAUSE: Duration = Duration::from_millis(50);

/// What a failed accept says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    /// One connection's own error: the next accept may well succeed at once.
    OneConnection,
    /// This process is out of a resource of its own ([`local_resources::ran_out`]).
    Shortage,
    /// Anything else (a listener that is no longer one): taken as a shortage is, paused and
    /// logged at error, as it may last.
    Other,
}

/// What `error`, from an accept, says. One connection's own errors are those Linux's
/// accept(2) names as network errors already pending on the new connection (`ENETDOWN`,
/// `EPROTO`, `ENOPROTOOPT`, `EHOSTDOWN`, `ENONET`, `EHOSTUNREACH`, `EOPNOTSUPP`,
/// `ENETUNREACH`), to be retried as `EAGAIN` is; `ECONNABORTED` (the client gave up before it
/// was accepted, as BSD and macOS say), `ECONNRESET` and `ECONNREFUSED` (what hyper's server
/// took for one connection's error), `ETIMEDOUT`, `EPERM` (a firewall rule refused it) and
/// `EINTR`.
fn failed(error: &io::Error) -> Failed {
    use io::ErrorKind::*;
    if local_resources::ran_out(error) {
        return Failed::Shortage;
    }
    // `EACCES` is `PermissionDenied` as `EPERM` is, but no connection's: a security module
    // (SELinux, AppArmor) refuses the accept itself, before a connection is taken from the
    // queue, so the next accept fails at once again, as long as the policy stands. Going on
    // at once, the listener would spin, logged at debug only.
    #[cfg(target_os = "linux")]
    if error.raw_os_error() == Some(13) {
        return Failed::Other;
    }
    if matches!(
        error.kind(),
        ConnectionAborted
            | ConnectionReset
            | ConnectionRefused
            | Interrupted
            | PermissionDenied
            | TimedOut
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    ) {
        return Failed::OneConnection;
    }
    // No `ErrorKind` names these (they are `Uncategorized`, or `Unsupported` for a function
    // the system lacks, which `EOPNOTSUPP` is not): their numbers, on Linux.
    #[cfg(target_os = "linux")]
    {
        const ENONET: i32 = 64;
        const EPROTO: i32 = 71;
        const ENOPROTOOPT: i32 = 92;
        const EOPNOTSUPP: i32 = 95;
        const EHOSTDOWN: i32 = 112;
        if matches!(
            error.raw_os_error(),
            Some(ENONET | EPROTO | ENOPROTOOPT | EOPNOTSUPP | EHOSTDOWN)
        ) {
            return Failed::OneConnection;
        }
    }
    Failed::Other
}

/// After a failed accept on `listener` (`what` names it in the messages: `"admin: "`, or empty
/// for the gateway's): one connection's own error is logged at debug and the listener goes on
/// at once; any other, out of file descriptors most often, is logged at error, since while it
/// lasts no client is served, but at most once a minute through `said` (the others at debug
/// and counted), as it fails again every [`PAUSE`], which this waits.
pub(crate) async fn after(
    listener: &TcpListener,
    error: &io::Error,
    said: &Arc<OnceAMinute>,
    what: &'static str,
) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "-".to_string(), |addr| addr.to_string());
    if failed(error) == Failed::OneConnection {
        tracing::debug!(%addr, %error, "{what}accept failed for that connection only");
        return;
    }
    log(addr, error, said, what);
    tokio::time::sleep(PAUSE).await;
}

fn log(addr: String, error: &io::Error, said: &Arc<OnceAMinute>, what: &'static str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_gone_before_it_was_accepted_is_that_connections_own() {
        use io::ErrorKind::*;
        for kind in [
            ConnectionAborted,
            ConnectionReset,
            ConnectionRefused,
            Interrupted,
            PermissionDenied,
            TimedOut,
            HostUnreachable,
            NetworkUnreachable,
            NetworkDown,
        ] {
            assert_eq!(
                failed(&io::Error::from(kind)),
                Failed::OneConnection,
                "{kind:?}"
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_network_errors_linux_accept_passes_on_are_the_connections_own() {
        // ECONNABORTED, ECONNRESET, EINTR, EPERM, then accept(2)'s list: ENETDOWN, EPROTO,
        // ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH.
        for code in [103, 104, 4, 1, 100, 71, 92, 112, 64, 113, 95, 101] {
            let error = io::Error::from_raw_os_error(code);
            assert_eq!(failed(&error), Failed::OneConnection, "{code}: {error}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn out_of_descriptors_buffers_or_memory_is_the_process_own_shortage() {
        // EMFILE, ENFILE, ENOBUFS, ENOMEM.
        for code in [24, 23, 105, 12] {
            let error = io::Error::from_raw_os_error(code);
            assert_eq!(failed(&error), Failed::Shortage, "{code}: {error}");
        }
    }

    #[test]
    fn anything_else_pauses_as_a_shortage_does() {
        assert_eq!(
            failed(&io::Error::from(io::ErrorKind::OutOfMemory)),
            Failed::Shortage
        );
        #[cfg(target_os = "linux")]
        for code in [9, 22, 88, 13] {
            // EBADF, EINVAL (not listening), ENOTSOCK, EACCES (a security module's refusal,
            // before any connection is taken from the queue: it would spin).
            let error = io::Error::from_raw_os_error(code);
            assert_eq!(failed(&error), Failed::Other, "{code}: {error}");
        }
    }

    /// The loop's side: one connection's error is not waited after, a shortage is.
    #[tokio::test(start_paused = true)]
    async fn only_a_shortage_pauses_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let said = Arc::default();
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        let start = tokio::time::Instant::now();
        after(&listener, &aborted, &said, "").await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "paused after one connection's error"
        );
        let short = io::Error::from(io::ErrorKind::OutOfMemory);
        after(&listener, &short, &said, "").await;
        assert_eq!(start.elapsed(), PAUSE);
    }
}
