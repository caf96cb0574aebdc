//! Ports on 127.0.0.1 where nothing listens, for backends that are down until a test starts
//! them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;

/// An address on 127.0.0.1 where nothing listens (bound, then released), on a port below the
/// kernel's ephemeral range. A closed port inside that range is refused only almost always: a
/// connect whose own ephemeral port happens to be the same port connects to itself (TCP's
/// simultaneous open), and a listener that another test binds to port 0 may get it; either
/// turned a test's "down" backend up now and then. No connect's own port, and no port-0
/// listener, is ever below the range.
pub async fn refused_addr() -> SocketAddr {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    const SPAN: usize = 10_000;
    let base = usize::from(low).saturating_sub(SPAN).max(1024);
    // Each process starts at its own place, so that parallel test binaries rarely try the same.
    let start = std::process::id() as usize * 7_919;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + (start + n * 7) % SPAN) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
            return listener.local_addr().unwrap();
        }
    }
    panic!("no free port below {low} on 127.0.0.1");
}
