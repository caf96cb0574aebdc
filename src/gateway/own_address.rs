//! A service whose URL is the gateway's own address: the gateway would proxy each request to
//! itself, again and again, until it runs out of file descriptors (and its TCP probe finds
//! the gateway itself up). Copying `gateway.listen` into a service's `url` is an easy slip.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::Gateway;
use crate::MinMonitor;
use crate::config::ConfigError;

/// The checks `gateway.listen` had, for the address `--listen` gives instead: the admin
/// listener's port, and the services' URLs.
pub(super) fn check_listen_flag(gateway: &Gateway, listen: SocketAddr) -> Result<(), ConfigError> {
    if let Some(admin) = &gateway.admin {
        admin.check_beside(listen).map_err(|error| {
            let message = format!("{} (given with --listen)", error.message());
            ConfigError::new(error.path(), message)
        })?;
    }
    check(gateway.monitor(), listen, "--listen")
}

/// An error naming the first service of `monitor` whose URL is where the gateway listens
/// (`field`: `gateway.listen` or `--listen`): the same port on the same IP, on a loopback
/// address when the gateway listens on all addresses, `localhost` when it listens on a
/// loopback one, or a URL naming all addresses. Port 0 picks a free port, never a service's.
pub(super) fn check(
    monitor: &MinMonitor,
    listen: SocketAddr,
    field: &str,
) -> Result<(), ConfigError> {
    if listen.port() == 0 {
        return Ok(());
    }
    for name in monitor.names() {
        let Ok(url) = monitor.url(&name) else {
            continue;
        };
        if url.port_or_known_default() != Some(listen.port()) {
            continue;
        }
        let (ip, localhost) = match url.host() {
            Some(url::Host::Ipv4(ip)) => (IpAddr::V4(ip), false),
            Some(url::Host::Ipv6(ip)) => (IpAddr::V6(ip), false),
            Some(url::Host::Domain(host)) if host.eq_ignore_ascii_case("localhost") => {
                (IpAddr::V4(Ipv4Addr::LOCALHOST), true)
            }
            _ => continue,
        };
        let gateway = listen.ip();
        let same = ip == gateway
            || ip.is_unspecified()
            || (gateway.is_unspecified() && ip.is_loopback())
            || (localhost && gateway.is_loopback());
        if same {
            let shown = crate::redact::url(&url);
            return Err(ConfigError::new(
                format!(
                    "services.{}.url",
                    crate::config::registry::field_name(&name)
                ),
                format!(
                    "\"{shown}\" is where the gateway listens ({field}: {listen}): it would proxy \
                     every request to itself; give the backend an address of its own"
                ),
            ));
        }
    }
    Ok(())
}
