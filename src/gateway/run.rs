//! A gateway's run: serving its listener (on one runtime, or on workers), with what the run
//! begins with (the fleet joined, the admin listener) and ends with (the programs stopped).

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::{Gateway, serve, workers};
#[cfg(doc)]
use {super::default_workers, super::shutdown_signal, crate::MinMonitor};

impl Gateway {
    /// Serves HTTP/1.1 and HTTP/2 on `listener` (over TLS with `gateway.tls`, ALPN choosing
    /// the version; else cleartext, HTTP/2 by prior knowledge) until `shutdown`
    /// completes (e.g. [`shutdown_signal`]); then stops accepting, lets requests in flight
    /// finish within the [`shutdown_grace`](Self::shutdown_grace), stops the backend programs
    /// that the configuration's `process` triggers started (SIGTERM, then SIGKILL after each
    /// one's `stop_grace`, default [`DEFAULT_STOP_GRACE`](crate::trigger::DEFAULT_STOP_GRACE)),
    /// and returns whether all requests finished and all programs stopped.
    ///
    /// The shutdown is for good: the [`monitor`](Self::monitor) ends with its held requests
    /// released ([`MinMonitor::release_held`]), so a [`router`](Self::router) kept and served on
    /// after this holds no request and starts no backend for one.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> bool {
        let Some(admin) = self.begin().await else {
            return false;
        };
        let admin = admin.map(|(task, _)| task);
        let live = self.reload.live();
        let (shutdown, release) =
            serve::announced(shutdown, live.clone(), Arc::clone(&self.monitor));
        let serving = serve::serve(listener, live, shutdown, Arc::default());
        let drained = serve::with_release(serving, release).await;
        serve::drained(drained);
        if let Some(admin) = admin {
            admin.abort();
        }
        // Stopped even when a connection outlived the grace: `&&` would leave them running.
        let stopped = self.stop_programs().await;
        drained && stopped
    }

    /// Like [`serve`](Self::serve), on `workers` threads (e.g. [`default_workers`]), each
    /// with a single-threaded runtime, its own copy of `listener` and its own upstream
    /// connection pools, so that a request is accepted, proxied and answered on one thread.
    /// The monitor (one lifecycle per backend) is shared by all. The `tower-monitor-gateway`
    /// program serves this way.
    ///
    /// ```no_run
    /// use tower_monitor::config::TriggerRegistry;
    /// use tower_monitor::gateway::{Gateway, default_workers, shutdown_signal};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let text = std::fs::read_to_string("gateway.json")?;
    /// let gateway = Gateway::from_config(&text, &TriggerRegistry::new())?;
    /// let listener = std::net::TcpListener::bind(gateway.listen())?;
    /// gateway.serve_on_workers(listener, default_workers(), shutdown_signal()).await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve_on_workers(
        self,
        listener: std::net::TcpListener,
        workers: NonZeroUsize,
        shutdown: impl Future<Output = ()>,
    ) -> bool {
        self.serve_on_workers_then(listener, workers, shutdown, |_| {})
            .await
    }

    /// [`serve_on_workers`](Self::serve_on_workers), calling `ready` once everything it
    /// listens on is bound (the admin listener too, whose address it is given) and the fleet
    /// joined: the program says it
    /// listens only then, so that a script that waits for the line finds the admin there, and
    /// one whose admin cannot listen never says it serves.
    pub(crate) async fn serve_on_workers_then(
        self,
        listener: std::net::TcpListener,
        workers: NonZeroUsize,
        shutdown: impl Future<Output = ()>,
        ready: impl FnOnce(Option<SocketAddr>),
    ) -> bool {
        let Some(admin) = self.begin().await else {
            return false;
        };
        ready(admin.as_ref().map(|(_, addr)| *addr));
        let admin = admin.map(|(task, _)| task);
        let live = self.reload.live();
        let (shutdown, release) =
            serve::announced(shutdown, live.clone(), Arc::clone(&self.monitor));
        let serving = workers::serve_workers(listener, &live, workers, shutdown);
        let (served, runtimes) = serve::with_release(serving, release).await;
        if let Some(admin) = admin {
            admin.abort();
        }
        let drained = match served {
            Ok(drained) => {
                serve::drained(drained);
                drained
            }
            Err(error) => {
                tracing::error!(%error, "cannot start the workers");
                false
            }
        };
        let stopped = self.stop_programs().await;
        // Joining blocks: off this runtime's thread.
        let _ = tokio::task::spawn_blocking(move || runtimes.join()).await;
        drained && stopped
    }

    /// What serving starts with: joining the fleet and starting the admin listener, if
    /// configured. `None` (logged) if either fails; otherwise the admin listener's task and
    /// address.
    async fn begin(&self) -> Option<Option<(tokio::task::JoinHandle<()>, SocketAddr)>> {
        if !self.join_fleet() {
            return None;
        }
        match self.serve_admin().await {
            Ok(admin) => Some(admin),
            Err(error) => {
                // Named, as the gateway's own listener is: the operator must know which port.
                let addr = (self.admin.as_ref()).map_or_else(String::new, |a| a.listen.to_string());
                let hint = in_use_hint(&error, "admin.listen");
                tracing::error!(%error, %addr, "the admin service cannot listen (admin.listen){hint}");
                None
            }
        }
    }

    /// Joins the configured fleet, if any (logged, `false` if it cannot be joined).
    fn join_fleet(&self) -> bool {
        #[cfg(feature = "fleet")]
        if let Some(config) = &self.fleet {
            let joined =
                crate::fleet::Fleet::new(config).and_then(|fleet| self.monitor.join_fleet(fleet));
            if let Err(error) = joined {
                tracing::error!(%error, "cannot join the fleet");
                return false;
            }
            tracing::info!(prefix = %config.prefix, "joined the fleet");
        }
        true
    }

    /// Starts the admin service (`/metrics`, `/status`, the status page, start / stop) if
    /// configured; it ends with the gateway.
    async fn serve_admin(
        &self,
    ) -> std::io::Result<Option<(tokio::task::JoinHandle<()>, SocketAddr)>> {
        let Some(settings) = &self.admin else {
            return Ok(None);
        };
        let listener = TcpListener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        // Made here, not in the task: the recorder is installed before any request is served.
        let serving = crate::admin::Admin::new(Arc::clone(&self.monitor), settings.token.clone())
            .allow_hosts(settings.hosts.iter().cloned())
            .families(Arc::clone(&self.requests) as Arc<dyn crate::admin::Families>)
            .serve(listener);
        let task = tokio::spawn(async move {
            if let Err(error) = serving.await {
                tracing::error!(%error, "the admin service stopped");
            }
        });
        Ok(Some((task, addr)))
    }

    #[cfg(unix)]
    async fn stop_programs(&self) -> bool {
        // The drain may have ended long before the grace (no request held): the starts these
        // stops cut short are the shutdown's doing, not failed starts.
        self.monitor.release_held();
        let running = self.supervisor.running().len();
        if running > 0 {
            tracing::info!(running, "stopping the backend programs the gateway started");
        }
        // Each failure is logged by the supervisor.
        self.supervisor.shutdown_each_with_its_grace().await.is_ok()
    }

    #[cfg(not(unix))]
    async fn stop_programs(&self) -> bool {
        true
    }
}

/// What to do about an address already in use, said after the error: the usual mistake is
/// a second gateway, or another program, on the port `field` names.
pub(super) fn in_use_hint(error: &std::io::Error, field: &str) -> String {
    if error.kind() == std::io::ErrorKind::AddrInUse {
        format!("; another program listens there: stop it, or give {field} another port")
    } else {
        String::new()
    }
}
