//! The start and stop actions, and their log: who asked (the client's address), for which
//! service, and what came of it.

use std::fmt;
use std::net::SocketAddr;

use http::{Response, StatusCode};

use super::{Admin, AdminBody, text, with_type};

impl Admin {
    /// Runs `on_down` (start) or `on_idle` (stop) now; answers the state it left the service in.
    pub(super) async fn act(&self, name: &str, action: &str) -> Response<AdminBody> {
        let Ok(registered) = self.monitor.lookup(name) else {
            return text(StatusCode::NOT_FOUND, "no such service\n");
        };
        let peer = Peer(self.peer);
        tracing::info!(service = %name, action, %peer, "admin action asked");
        let mut asked = Asked {
            name,
            action,
            peer: &peer,
            open: true,
        };
        let outcome = if action == "start" {
            if registered.service.on_down.is_none() {
                return asked.refused("the service has no on_down to start it\n");
            }
            // `start` does nothing to an Up service: say so, as a stop of a down one does,
            // rather than claim a start that never ran.
            if registered.state() == crate::ServiceState::Up {
                Ok(false)
            } else {
                self.monitor.start(name).await.map(|()| true)
            }
        } else {
            if registered.service.on_idle.is_none() {
                return asked.refused("the service has no on_idle to stop it\n");
            }
            self.monitor.stop(name).await
        };
        asked.open = false;
        let state = registered.state().as_str();
        match &outcome {
            Ok(acted) => {
                tracing::info!(service = %name, action, %peer, acted, state, "admin action done")
            }
            Err(error) => {
                tracing::warn!(service = %name, action, %peer, %error, state, "admin action failed")
            }
        }
        match outcome {
            Ok(acted) => {
                let body = format!(
                    r#"{{"service":{},"action":"{action}","acted":{acted},"state":"{state}"}}"#,
                    serde_json::Value::from(name)
                );
                // A start of an up service, or a stop of one that is not up, has nothing to
                // do: say so with 409.
                let status = if acted {
                    StatusCode::OK
                } else {
                    StatusCode::CONFLICT
                };
                with_type(status, body.into_bytes(), "application/json")
            }
            // Temporary, and nothing was run: the operator may try again.
            Err(crate::MonitorError::FleetRefused { reason, .. }) => with_type(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not stopped: {reason}\n").into_bytes(),
                "text/plain; charset=utf-8",
            ),
            // The trigger's error is logged where it ran; it may hold details for the log only.
            Err(_) => text(
                StatusCode::BAD_GATEWAY,
                "the trigger failed; the log says why\n",
            ),
        }
    }
}

/// An action asked, until its outcome is logged: every "asked" line has one outcome line
/// (done, failed, refused), or, should its client go away while it runs (the answer's future
/// dropped), one saying so.
struct Asked<'a> {
    name: &'a str,
    action: &'a str,
    peer: &'a Peer,
    /// No outcome logged yet.
    open: bool,
}

impl Asked<'_> {
    /// Refused with 409: the service has no trigger for it.
    fn refused(mut self, why: &'static str) -> Response<AdminBody> {
        self.open = false;
        let Self { name, action, .. } = self;
        let peer = self.peer;
        tracing::info!(service = %name, action, %peer, "admin action refused: {}", why.trim_end());
        text(StatusCode::CONFLICT, why)
    }
}

impl Drop for Asked<'_> {
    fn drop(&mut self) {
        if self.open {
            let Self { name, action, .. } = self;
            let peer = self.peer;
            tracing::info!(
                service = %name,
                action,
                %peer,
                "admin action left: its client went away before its outcome"
            );
        }
    }
}

/// The client's address as the log writes it: `-` when the service was not given it.
pub(super) struct Peer(pub(super) Option<SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}
