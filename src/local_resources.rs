//! Errors that say this process ran out of a resource of its own (file descriptors, local
//! ports, memory), not that the peer it tried to reach is missing.
//!
//! A connect that fails with `EMFILE` never reached the backend: a flood of client connections
//! against `ulimit -n` made it fail, and the backend may be perfectly well. Taken for a dead
//! backend, it would be marked down and started again (`on_down`), and every client would get
//! the waiting page, for the proxy's own trouble. So the proxy and the probes look for such a
//! cause first (see `proxy::failure` and `registered::probe`).

use std::error::Error;
use std::io;

use crate::SharedError;

/// Whether `error` is this process running out of a resource of its own: file descriptors
/// (`EMFILE`, or `ENFILE` for the whole system's), local ports (`EADDRNOTAVAIL`, which is what
/// a connect gets once the ephemeral ports towards that address are all in use), buffer space
/// (`ENOBUFS`) or memory (`ENOMEM`).
///
/// `EADDRNOTAVAIL` is also what a connect to `::1` gets on a host with IPv6 turned off
/// (Docker's default), where a service at `localhost` resolves to `127.0.0.1` and `::1`: a
/// backend that crashed is refused on the first, and the error is the second's. On such a host
/// it is not taken for a shortage: the backend is then gone, as it is.
pub(crate) fn ran_out(error: &io::Error) -> bool {
    ran_out_on(error, ipv6_usable)
}

/// [`ran_out`] on a host where IPv6 is usable or not, asked only of an `EADDRNOTAVAIL`.
fn ran_out_on(error: &io::Error, ipv6_usable: impl FnOnce() -> bool) -> bool {
    match error.kind() {
        io::ErrorKind::OutOfMemory => return true,
        io::ErrorKind::AddrNotAvailable => return ipv6_usable(),
        _ => {}
    }
    // No `ErrorKind` names these (they are `Uncategorized`): their numbers, on Linux.
    #[cfg(target_os = "linux")]
    {
        const ENFILE: i32 = 23;
        const EMFILE: i32 = 24;
        const ENOBUFS: i32 = 105;
        if matches!(error.raw_os_error(), Some(ENFILE | EMFILE | ENOBUFS)) {
            return true;
        }
    }
    false
}

/// Whether this host can use IPv6's loopback address, looked at once (a socket bound and
/// dropped): a host with IPv6 turned off cannot. A look that fails for want of this process's
/// own descriptors or memory (the very shortage that brings the first errors here) says
/// nothing of the host: it is not kept, and meanwhile the `EADDRNOTAVAIL` is taken for a
/// shortage too, as the process is short of resources then.
fn ipv6_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if let Some(&usable) = USABLE.get() {
        return usable;
    }
    match looked(std::net::UdpSocket::bind((
        std::net::Ipv6Addr::LOCALHOST,
        0,
    ))) {
        Some(usable) => *USABLE.get_or_init(|| usable),
        None => true,
    }
}

/// What a bind to IPv6's loopback address says of the host: `None` if it failed for want of
/// this process's own resources.
fn looked<T>(bound: io::Result<T>) -> Option<bool> {
    match bound {
        Ok(_) => Some(true),
        Err(error) if ran_out_on(&error, || false) => None,
        Err(_) => Some(false),
    }
}

/// The first I/O error in `error`'s chain, itself included, that says this process ran out of
/// a resource of its own ([`ran_out`]), if there is one.
pub(crate) fn cause<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a io::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<io::Error>() {
            if ran_out(io) {
                return Some(io);
            }
        }
        // A probe's error shared by the callers of one probe: the `Arc` hides the error it
        // holds from the chain (its `source` is that error's source), so it is looked into.
        next = match error.downcast_ref::<SharedError>() {
            Some(shared) => Some(&**shared as &(dyn Error + 'static)),
            None => error.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn out_of_ports_or_memory_is_the_process_own_shortage() {
        for kind in [io::ErrorKind::AddrNotAvailable, io::ErrorKind::OutOfMemory] {
            assert!(ran_out_on(&io::Error::from(kind), || true), "{kind:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn out_of_descriptors_or_buffers_on_linux_is_the_process_own_shortage() {
        // EMFILE, ENFILE, ENOBUFS, and EADDRNOTAVAIL and ENOMEM by their numbers.
        for code in [24, 23, 105, 99, 12] {
            let error = io::Error::from_raw_os_error(code);
            assert!(ran_out_on(&error, || true), "{code}: {error}");
        }
    }

    #[test]
    fn out_of_ports_on_a_host_without_ipv6_is_not_a_shortage() {
        let error = io::Error::from(io::ErrorKind::AddrNotAvailable);
        assert!(ran_out_on(&error, || true));
        assert!(!ran_out_on(&error, || false), "what ::1 gets with IPv6 off");
        let out_of_memory = io::Error::from(io::ErrorKind::OutOfMemory);
        assert!(ran_out_on(&out_of_memory, || false));
        #[cfg(target_os = "linux")]
        assert!(
            ran_out_on(&io::Error::from_raw_os_error(24), || false),
            "EMFILE"
        );
    }

    // The first error looked at is often the shortage itself: a bind that failed for want of
    // descriptors was kept as "IPv6 off" for the process's life, and the local ports running
    // out later were taken for a dead backend.
    #[test]
    fn a_look_at_ipv6_made_without_descriptors_says_nothing_of_the_host() {
        #[cfg(target_os = "linux")]
        assert_eq!(looked::<()>(Err(io::Error::from_raw_os_error(24))), None);
        let no_memory = io::Error::from(io::ErrorKind::OutOfMemory);
        assert_eq!(looked::<()>(Err(no_memory)), None);
        let ipv6_off = io::Error::from(io::ErrorKind::AddrNotAvailable);
        assert_eq!(looked::<()>(Err(ipv6_off)), Some(false));
        let no_ipv6 = io::Error::from(io::ErrorKind::Unsupported);
        assert_eq!(looked::<()>(Err(no_ipv6)), Some(false));
        assert_eq!(looked(Ok(())), Some(true));
    }

    #[test]
    fn what_the_backend_or_the_network_says_is_not() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::TimedOut,
            io::ErrorKind::HostUnreachable,
            io::ErrorKind::NetworkUnreachable,
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::Other,
        ] {
            assert!(!ran_out(&io::Error::from(kind)), "{kind:?}");
        }
        #[cfg(target_os = "linux")]
        for code in [111, 104, 110, 113, 101] {
            assert!(!ran_out(&io::Error::from_raw_os_error(code)), "{code}");
        }
    }

    /// An error wrapping another, as hyper-util's connect error wraps the `io::Error`.
    #[derive(Debug)]
    struct Wrapped(io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("tcp open error")
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_cause_is_found_down_the_chain_and_through_a_shared_error() {
        let out = || io::Error::from(io::ErrorKind::OutOfMemory);
        let wrapped = Wrapped(out());
        assert!(cause(&wrapped).is_some());
        let shared: SharedError = Arc::new(Wrapped(out()));
        let monitor = crate::MonitorError::Probe {
            service: "app".into(),
            source: shared,
        };
        assert!(cause(&monitor).is_some());
        let refused = Wrapped(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(cause(&refused).is_none());
        let boxed: crate::BoxError = Box::new(out());
        let shared: SharedError = Arc::from(boxed);
        assert!(
            cause(&crate::MonitorError::Probe {
                service: "app".into(),
                source: shared,
            })
            .is_some()
        );
    }
}
