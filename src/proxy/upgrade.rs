//! Switching protocols through the proxy (WebSockets): which requests switch, what the
//! backend's answer must be, and relaying the bytes once both sides have switched.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use http::{Request, StatusCode, Version, response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::{headers, websocket};

/// The client's side of a request that switches protocols.
pub(crate) struct ClientUpgrade {
    on: OnUpgrade,
    guard: Option<UpgradeGuard>,
    switch: Switch,
}

/// How the request switches on its way to the backend.
enum Switch {
    /// An HTTP/1.1 `Upgrade`, passed on as it is: the backend answers `101`.
    Http1,
    /// An HTTP/2 WebSocket to an HTTP/1.1 backend: translated ([`websocket::Handshake`]).
    WebSocket(websocket::Handshake),
    /// An HTTP/2 WebSocket to an HTTP/2 backend: the extended `CONNECT` passed on as it is;
    /// the backend answers `2xx`.
    Tunnel,
    /// An HTTP/1.1 WebSocket to an HTTP/2 backend: translated ([`websocket::ClientHandshake`]).
    WebSocketToHttp2(websocket::ClientHandshake),
}

/// What to do with the backend's answer to a switching request.
pub(crate) enum Verdict {
    /// It switched: relay the bytes, and answer the client with these parts.
    Relay,
    /// An ordinary answer (a refusal such as 401 or 404): pass it on.
    Pass,
    /// It cannot be relayed as what the client asked for: answer 502, saying why in the log.
    Refuse(&'static str),
}

impl ClientUpgrade {
    /// Takes the client's side of the switch `request` asks for, if any, and prepares the
    /// request for a backend that speaks HTTP/2 (`upstream_h2`) or HTTP/1.1.
    pub(crate) fn take<B>(request: &mut Request<B>, upstream_h2: bool) -> Option<Self> {
        let switch = if websocket::is_extended_connect(request) {
            if upstream_h2 {
                Switch::Tunnel
            } else {
                Switch::WebSocket(websocket::Handshake::begin(request))
            }
        } else if request.version() == Version::HTTP_11 && headers::wants_upgrade(request.headers())
        {
            if !upstream_h2 {
                Switch::Http1
            } else if websocket::is_http1_websocket(request) {
                Switch::WebSocketToHttp2(websocket::ClientHandshake::begin(request))
            } else {
                // No other upgrade has an HTTP/2 form: the request goes on without it.
                return None;
            }
        } else {
            return None;
        };
        let guard = request.extensions_mut().remove::<UpgradeGuard>();
        Some(Self {
            on: hyper::upgrade::on(request),
            guard,
            switch,
        })
    }

    /// Whether the request to the backend carries `Upgrade` (HTTP/1.1): its hop-by-hop
    /// `Upgrade` and `Connection: upgrade` must then stay.
    pub(crate) fn is_http1(&self) -> bool {
        matches!(self.switch, Switch::Http1 | Switch::WebSocket(_))
    }

    /// Judges the backend's answer, and turns a switch into what the client expects.
    pub(crate) fn verdict(&self, parts: &mut response::Parts) -> Verdict {
        let switched = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        match &self.switch {
            Switch::Http1 if switched => {
                without_hop_by_hop(parts, true);
                Verdict::Relay
            }
            Switch::WebSocket(handshake) if switched => {
                if !handshake.accepted(&parts.headers) {
                    return Verdict::Refuse(
                        "backend answered the WebSocket handshake without its proof",
                    );
                }
                without_hop_by_hop(parts, true);
                websocket::Handshake::answer(parts);
                Verdict::Relay
            }
            // A 2xx would open the client's tunnel on a backend that did not switch.
            Switch::WebSocket(_) if parts.status.is_success() => {
                Verdict::Refuse("backend did not switch to WebSocket")
            }
            Switch::Tunnel if parts.status.is_success() => {
                without_hop_by_hop(parts, false);
                // A switch has no body; a length would contradict it (RFC 9110 section 9.3.6).
                parts.headers.remove(http::header::CONTENT_LENGTH);
                Verdict::Relay
            }
            Switch::WebSocketToHttp2(handshake) if parts.status.is_success() => {
                without_hop_by_hop(parts, false);
                parts.headers.remove(http::header::CONTENT_LENGTH);
                handshake.answer(parts);
                Verdict::Relay
            }
            _ if switched => Verdict::Refuse("backend switched protocols unasked"),
            _ => Verdict::Pass,
        }
    }

    /// Relays the bytes between this client and `backend` once both have switched, holding
    /// `held` (the backend counted busy, the request's turn) until either closes.
    pub(crate) fn relay(
        self,
        backend: OnUpgrade,
        held: impl Send + 'static,
        service: Option<Arc<str>>,
    ) {
        relay(self.on, backend, held, self.guard, service);
    }
}

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

/// The hop-by-hop headers of a switch's answer removed: it has no body, so its transfer
/// coding, if any, frames nothing.
fn without_hop_by_hop(parts: &mut response::Parts, upgrade: bool) {
    let _no_body = headers::remove_hop_by_hop(&mut parts.headers, upgrade);
}

/// Copies bytes both ways between the client's and the backend's upgraded connections until
/// either closes, keeping `held` for that whole time.
fn relay(
    client: OnUpgrade,
    backend: OnUpgrade,
    held: impl Send + 'static,
    guard: Option<UpgradeGuard>,
    service: Option<Arc<str>>,
) {
    tokio::spawn(async move {
        let _busy = (held, guard);
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
