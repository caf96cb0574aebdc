//! [`serve`]: the admin service on its own listener.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::Admin;
use crate::MinMonitor;

/// How long a client has to send a request head: without a bound, one that sends half of one
/// and waits keeps its connection (and task) for ever. Also how long a kept-alive connection may
/// stay idle (hyper starts the clock when the previous answer ends).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves [`Admin`] for `monitor` on `listener` (HTTP/1.1), with `token` for the actions,
/// until the returned future is dropped. Each connection is served on its own task; a
/// connection that fails is logged at debug and does not stop the others, nor does a failed
/// accept (out of file descriptors: logged at error at most once a minute, tried again 50 ms
/// later). A client has 10 s
/// to send each request head.
///
/// The Prometheus recorder is installed by this call, not when the future is first polled,
/// so nothing counted meanwhile (a spawned server's first requests) is lost.
///
/// ```no_run
/// # use std::sync::Arc;
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let monitor = Arc::new(tower_monitor::MinMonitor::new());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9901").await?;
/// tokio::spawn(tower_monitor::admin::serve(listener, monitor, "token"));
/// # Ok(())
/// # }
/// ```
pub fn serve(
    listener: TcpListener,
    monitor: Arc<MinMonitor>,
    token: impl Into<String>,
) -> impl Future<Output = std::io::Result<()>> + Send {
    Admin::new(monitor, token).serve(listener)
}

impl Admin {
    /// Serves this admin service on `listener`, as [`serve`] does (HTTP/1.1, a task per
    /// connection, a bound on each request head), with its settings ([`Admin::allow_hosts`],
    /// [`Admin::prometheus`]).
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # #[tokio::main]
    /// # async fn main() -> std::io::Result<()> {
    /// use tower_monitor::{MinMonitor, admin::Admin};
    ///
    /// let monitor = Arc::new(MinMonitor::new());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:9901").await?;
    /// let admin = Admin::new(monitor, "token").allow_hosts(["gateway-1"]);
    /// tokio::spawn(admin.serve(listener));
    /// # Ok(())
    /// # }
    /// ```
    pub fn serve(self, listener: TcpListener) -> impl Future<Output = std::io::Result<()>> + Send {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "admin service listening");
        }
        accept(listener, self)
    }
}

async fn accept(listener: TcpListener, admin: Admin) -> std::io::Result<()> {
    let said = Arc::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, as clients of the proxy beside it can make it: pause
                // rather than spin, and go on once they are back, not end the admin service.
                // One connection's own error (reset before it was accepted) goes on at once.
                crate::accept_failed::after(&listener, &error, &said, "admin: ").await;
                continue;
            }
        };
        let mut admin = admin.clone();
        admin.peer = Some(peer);
        let service = TowerToHyperService::new(admin);
        tokio::spawn(async move {
            if let Err(error) = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %error, "admin connection ended with an error");
            }
        });
    }
}
