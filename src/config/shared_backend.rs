//! Two services that start or stop the same backend. Each service has its own lifecycle, so
//! the two would act on the one backend against each other: one's idle stop stops it under
//! the other's requests, or both run a program for one port. Found before anything starts,
//! and named.

use super::ConfigError;
use crate::{MonitoredService, Url};

/// Fails at the second of two services (in `services`' order: name, its path in the
/// configuration, the service) that have the same backend address (host and port) and each
/// an `on_down` or an `on_idle`. Services without either only watch a backend, which any
/// number may do.
pub(super) fn check(services: &[(String, String, MonitoredService)]) -> Result<(), ConfigError> {
    let mut acting: Vec<(&str, (String, u16))> = Vec::new();
    for (name, path, service) in services {
        if service.on_down.is_none() && service.on_idle.is_none() {
            continue;
        }
        let Some(address) = address(&service.url) else {
            continue;
        };
        if let Some((first, _)) = acting.iter().find(|(_, seen)| *seen == address) {
            return Err(ConfigError::new(
                format!("{path}.url"),
                format!(
                    "{}:{} is also the backend of service {first:?}, and both start or stop it: \
                     one's idle stop would stop it under the other's requests; route both to one \
                     service, or keep on_down and on_idle in one of them",
                    address.0, address.1
                ),
            ));
        }
        acting.push((name, address));
    }
    Ok(())
}

/// The host (lower case, as written: `localhost` and `127.0.0.1` differ) and port a URL
/// reaches.
fn address(url: &Url) -> Option<(String, u16)> {
    Some((
        url.host_str()?.to_ascii_lowercase(),
        url.port_or_known_default()?,
    ))
}
