//! The program's signals: SIGTERM and SIGINT stop the gateway, SIGHUP reloads its
//! configuration.

use std::future::Future;

use tokio::sync::oneshot;

/// Completes on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                tracing::warn!("cannot listen for signals; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Listens for SIGTERM, SIGINT (Ctrl-C) and SIGHUP from this call on (within a Tokio runtime),
/// and returns what tells each of `tells` in turn, one per SIGTERM or SIGINT: the drain, then
/// giving up on the connections, then killing the backend programs; a SIGHUP before the
/// first reloads the configuration with `reload` (or, without one, says there is nothing to
/// reload). Listening before the program says it serves means a signal sent as soon as it
/// does is not missed (it would otherwise end the process at once, leaving the backend
/// programs it started running: SIGHUP's default too, as when its terminal closes); the same
/// listeners wait for every signal, so a quick next one is not missed either.
pub(crate) fn signals<const N: usize>(
    tells: [oneshot::Sender<()>; N],
    reload: Option<super::Reloader>,
) -> impl Future<Output = ()> {
    #[cfg(unix)]
    let listeners = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        )
    };
    async move {
        #[cfg(unix)]
        if let (Ok(mut term), Ok(mut int), Ok(mut hup)) = listeners {
            let mut told = 0;
            for tell in tells {
                loop {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM received"),
                        _ = int.recv() => tracing::info!("SIGINT received"),
                        _ = hup.recv() => {
                            hangup(reload.as_ref(), told > 0).await;
                            continue;
                        }
                    }
                    break;
                }
                told += 1;
                let _ = tell.send(());
            }
            return;
        } else {
            tracing::warn!("cannot listen for signals; Ctrl-C only");
        }
        let _ = reload;
        for tell in tells {
            let _ = tokio::signal::ctrl_c().await;
            let _ = tell.send(());
        }
    }
}

/// A SIGHUP: the configuration reloaded (one at a time: those that come meanwhile are one
/// more reload after it), unless there is no file to read or the gateway is stopping.
#[cfg(unix)]
async fn hangup(reload: Option<&super::Reloader>, stopping: bool) {
    match reload {
        _ if stopping => tracing::info!("SIGHUP received while shutting down: not reloading"),
        None => tracing::warn!(
            "SIGHUP received: no configuration file (the built-in demo), nothing to reload"
        ),
        Some(reload) => {
            tracing::info!("SIGHUP received: reloading the configuration");
            // Logged by the reload, either way.
            let _ = reload.reload().await;
        }
    }
}
