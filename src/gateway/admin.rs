//! The gateway's admin listener: `"admin": { "listen": "127.0.0.1:9901", "token": "…" }` beside
//! `gateway` and `services`, off unless configured; `"hosts": ["gateway-1"]` adds host names it
//! answers to besides IP addresses and `localhost` (see `Admin::allow_hosts`).

use std::net::SocketAddr;

use serde::Deserialize;
use serde_json::Value;

use crate::config::ConfigError;

/// Where the admin service listens unless `admin.listen` says: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"listen\": \"127.0.0.1:9901\", \"token\": \"…\"}"
)]
struct AdminSpec {
    listen: Option<String>,
    token: String,
    #[serde(default)]
    hosts: Vec<String>,
}

/// The admin listener's settings, checked.
#[derive(Clone)]
pub(super) struct AdminSettings {
    pub(super) listen: SocketAddr,
    pub(super) token: String,
    /// Host names answered besides IP addresses and `localhost`.
    pub(super) hosts: Vec<String>,
}

/// Without the token: a gateway written to a log must not give it away.
impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("listen", &self.listen)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl AdminSettings {
    /// An error unless the admin listener can bind beside the gateway's on `gateway`: not on
    /// its port (0 aside, which picks a free one each time) on the same address, or with
    /// either on all addresses.
    pub(super) fn check_beside(&self, gateway: SocketAddr) -> Result<(), ConfigError> {
        let (admin, port) = (self.listen, self.listen.port());
        let clash = port == gateway.port()
            && port != 0
            && (admin.ip() == gateway.ip()
                || admin.ip().is_unspecified()
                || gateway.ip().is_unspecified());
        if clash {
            return Err(ConfigError::new(
                "admin.listen",
                format!(
                    "\"{admin}\" is where gateway.listen serves too; give the admin service a port of its own"
                ),
            ));
        }
        Ok(())
    }

    /// Takes the `admin` section out of the document, if there is one.
    pub(super) fn take(document: &mut Value) -> Result<Option<Self>, ConfigError> {
        let Some(section) = document.as_object_mut().and_then(|doc| doc.remove("admin")) else {
            return Ok(None);
        };
        let spec: AdminSpec = crate::config::registry::parse_at("admin", section)?;
        if spec.token.trim().is_empty() {
            return Err(ConfigError::new(
                "admin.token",
                "must not be empty: the start and stop actions need it",
            ));
        }
        // A header value has no control characters, and its ends are trimmed on the way in:
        // such a token could never be presented, and the actions would refuse everyone.
        if spec.token.chars().any(char::is_control) || spec.token.trim() != spec.token {
            return Err(ConfigError::new(
                "admin.token",
                "has control characters or spaces at an end, which no Authorization header can carry",
            ));
        }
        let text = spec.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
        let listen = text.parse().map_err(|_| {
            ConfigError::new(
                "admin.listen",
                format!("invalid address {text:?}; write an IP and a port, e.g. \"{DEFAULT_ADMIN_LISTEN}\""),
            )
        })?;
        for (i, host) in spec.hosts.iter().enumerate() {
            let bad = host.is_empty()
                || (host != "*"
                    && !host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')));
            if bad {
                return Err(ConfigError::new(
                    format!("admin.hosts[{i}]"),
                    format!(
                        "{host:?} is not a host name; write a name without scheme or port, e.g. \"gateway-1\", or \"*\" for any"
                    ),
                ));
            }
        }
        Ok(Some(Self {
            listen,
            token: spec.token,
            hosts: spec.hosts,
        }))
    }
}
