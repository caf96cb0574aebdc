use std::io;
use std::net::SocketAddr;

use futures::future::{BoxFuture, FutureExt};
use tokio::net::TcpStream;
use url::{Host, Url};

use super::Probe;
use crate::{BoxError, local_resources};

/// The default probe: up when a TCP connection to the URL's host and port succeeds.
///
/// The port is the URL's own, or its scheme's well-known one (http 80, https 443, ws 80,
/// wss 443, ftp 21). Host names are resolved and each address is tried in turn. The connection is
/// closed at once; nothing is sent. The monitor bounds the attempt with the service's probe
/// timeout, so a backend that never answers counts as down once it runs out.
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::{MonitoredService, Url, probe::Tcp};
///
/// let url = Url::parse("http://[::1]:8080/").unwrap();
/// let service = MonitoredService::new(url, Duration::from_secs(5)).probe(Tcp);
/// # let _ = service;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Tcp;

impl Probe for Tcp {
    fn probe(&self, url: &Url) -> BoxFuture<'static, Result<bool, BoxError>> {
        let target = target(url);
        async move {
            let (host, port) = target.map_err(BoxError::from)?;
            Ok(connect(host, port).await?.is_some())
        }
        .boxed()
    }

    fn validate_url(&self, url: &Url) -> Result<(), String> {
        target(url).map(|_| ())
    }
}

/// Connects to `host:port`, trying each resolved address in turn. `Ok(None)` when the service
/// cannot be reached (the probe's "down"); `Err` for other failures, among them this process
/// running out of its own file descriptors, local ports or memory (`EMFILE`,
/// `EADDRNOTAVAIL`…), which says nothing of the service: unless another address connects, the
/// probe then fails with that error, even when another was refused (see [`first_connected`]).
pub(crate) async fn connect(host: Host<String>, port: u16) -> Result<Option<TcpStream>, BoxError> {
    let addrs: Vec<SocketAddr> = match host {
        Host::Ipv4(ip) => vec![(ip, port).into()],
        Host::Ipv6(ip) => vec![(ip, port).into()],
        Host::Domain(name) => match tokio::net::lookup_host((name.as_str(), port)).await {
            Ok(addrs) => addrs.collect(),
            // The resolver fails so too when it cannot open `/etc/hosts` or a socket.
            Err(err) if local_resources::ran_out(&err) => return Err(err.into()),
            Err(err) => {
                tracing::debug!(%name, error = %err, "probe: name does not resolve");
                return Ok(None);
            }
        },
    };
    first_connected(addrs, TcpStream::connect).await
}

/// The first of `addrs` that `connect` reaches, tried in turn; `Ok(None)` if each said the
/// service is not there. One that could not be tried for want of this process's own
/// resources makes the whole an error (that one) unless another connects: a name with several
/// addresses (`localhost`: `::1` and `127.0.0.1`) whose service listens on the one not tried
/// is refused on the other, so a refusal beside it cannot tell the service is down, and a
/// backend taken for down would be started again for the process's own shortage.
async fn first_connected<S, F, Fut>(
    addrs: Vec<SocketAddr>,
    mut connect: F,
) -> Result<Option<S>, BoxError>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = io::Result<S>>,
{
    let mut local = None;
    for addr in addrs {
        match connect(addr).await {
            Ok(stream) => return Ok(Some(stream)),
            // Another address may still answer, as with an address of a family the host has
            // none of (IPv6 turned off).
            Err(err) if local_resources::ran_out(&err) => {
                tracing::debug!(
                    %addr,
                    error = %err,
                    "probe: could not connect for want of this process's own resources"
                );
                local.get_or_insert(err);
            }
            Err(err) if means_unreachable(&err) => {
                tracing::debug!(%addr, error = %err, "probe: connect failed");
            }
            Err(err) => return Err(err.into()),
        }
    }
    match local {
        Some(err) => Err(err.into()),
        None => Ok(None),
    }
}

pub(crate) fn target(url: &Url) -> Result<(Host<String>, u16), String> {
    let host = url.host().ok_or("it has no host to connect to")?.to_owned();
    let port = url.port_or_known_default().ok_or_else(|| {
        format!(
            "it has no port and {:?} is not a scheme with a well-known port",
            url.scheme()
        )
    })?;
    Ok((host, port))
}

/// Errors that say "the service is not there" rather than "the probe is broken".
pub(crate) fn means_unreachable(err: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | TimedOut
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One address of a name (`localhost`: `::1`, `127.0.0.1`) refused and the other not tried
    /// for want of this process's own resources: the service may listen on that one, so the
    /// probe cannot tell it is down. It was taken for down, and the backend started again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refusal_beside_an_address_not_tried_for_want_of_resources_is_not_a_down() {
        let addrs: Vec<SocketAddr> = vec![
            "[::1]:8080".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        ];
        let fails = |local: SocketAddr| {
            move |addr: SocketAddr| async move {
                Err::<(), _>(io::Error::from(match addr == local {
                    true => io::ErrorKind::OutOfMemory,
                    false => io::ErrorKind::ConnectionRefused,
                }))
            }
        };
        for local in addrs.clone() {
            let error = first_connected(addrs.clone(), fails(local))
                .await
                .expect_err("the shortage, not a down");
            assert!(
                local_resources::cause(&*error).is_some(),
                "{local}: {error}"
            );
        }
        // Both refused: down. One that connects: up, whatever the other said.
        let refused = |_| async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionRefused)) };
        assert!(
            first_connected(addrs.clone(), refused)
                .await
                .unwrap()
                .is_none()
        );
        let second = |addr: SocketAddr| async move {
            match addr.is_ipv4() {
                true => Ok(()),
                false => Err(io::Error::from(io::ErrorKind::OutOfMemory)),
            }
        };
        assert!(first_connected(addrs, second).await.unwrap().is_some());
    }

    #[test]
    fn default_ports_come_from_the_scheme() {
        let (_, port) = target(&Url::parse("https://example.test/").unwrap()).unwrap();
        assert_eq!(port, 443);
        let (_, port) = target(&Url::parse("http://example.test/").unwrap()).unwrap();
        assert_eq!(port, 80);
    }

    #[test]
    fn urls_without_host_or_port_are_rejected_with_a_reason() {
        let err = Tcp
            .validate_url(&Url::parse("unix:/run/app.sock").unwrap())
            .unwrap_err();
        assert!(err.contains("no host"), "{err}");
        let err = Tcp
            .validate_url(&Url::parse("redis://cache.test/").unwrap())
            .unwrap_err();
        assert!(err.contains("\"redis\""), "{err}");
    }
}
