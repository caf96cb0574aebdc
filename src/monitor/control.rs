//! An operator's controls of a monitor: start and stop a service now, mark it up or down,
//! and release the requests held for a shutdown.

use std::sync::PoisonError;

use super::MinMonitor;
use crate::error::MonitorError;

impl MinMonitor {
    /// Marks the service up as of now, cached for its grace period like a successful probe.
    ///
    /// A stop under way is not undone by it: while the service's `on_idle` runs (or an
    /// operator's stop waits for a running `on_down` to end before it, see
    /// [`stop`](Self::stop)), the service stays Stopping and this does nothing but say so at
    /// info, naming the service. It is not applied later either: the stop's end decides the
    /// state (a failed `on_idle` leaves the service Up, a done one Stopping until a probe
    /// finds it down), and the next request's probe finds the backend as it is. Once `on_idle`
    /// has returned, it marks a Stopping service up as it does any other.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let monitor = MinMonitor::new();
    /// # let url = Url::parse("http://127.0.0.1:9/")?;
    /// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30)))?;
    /// monitor.set_status_up("app")?;
    /// assert!(monitor.status("app").await?); // cached: no probe ran
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_status_up(&self, name: &str) -> Result<(), MonitorError> {
        self.lookup(name)?.set_status_up();
        Ok(())
    }

    /// Forgets any cached up of the service, as a failed probe would: the next status request
    /// probes. For callers that learn first that the backend is gone, such as a proxy whose
    /// connection was refused. As after a failed probe, a service whose `on_idle` still runs
    /// stays Stopping (a backend being stopped is expected to refuse): it is Down once a probe
    /// finds it so after `on_idle` has returned, and no request starts it before.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{MinMonitor, MonitoredService, Url};
    /// let monitor = MinMonitor::new();
    /// # let url = Url::parse("http://127.0.0.1:9/").unwrap();
    /// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30))).unwrap();
    /// monitor.set_status_up("app").unwrap();
    /// monitor.set_status_down("app").unwrap();
    /// ```
    pub fn set_status_down(&self, name: &str) -> Result<(), MonitorError> {
        self.lookup(name)?.set_status_down();
        Ok(())
    }

    /// Starts the service now, as the first request to a down service would: runs `on_down`
    /// if the service is Down (or joins the run in flight), and does nothing if it is Starting
    /// or Up; a Stopping service is started once it is down. Unlike a request, it does not wait
    /// out the pause after a series of failed starts (whose cause an operator has likely just
    /// fixed): it starts the service now, and a failure begins a new series. Nor is it
    /// refused once held requests are released for a shutdown (see
    /// [`release_held`](Self::release_held)), as a request's start is. Fails with
    /// [`MonitorError::Trigger`] if `on_down` fails. A service without `on_down` has nothing
    /// to run, whatever its state: the call fails with [`MonitorError::NothingToStart`] and
    /// changes nothing.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{BoxError, MinMonitor, MonitorError, MonitoredService, ServiceState, Url, trigger};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let monitor = MinMonitor::new();
    /// # let url = Url::parse("http://127.0.0.1:9/")?;
    /// let service = MonitoredService::new(url, Duration::from_secs(30))
    ///     .on_down(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }));
    /// monitor.add("app", service)?;
    /// monitor.start("app").await?;
    /// assert_eq!(monitor.state("app")?, ServiceState::Starting);
    ///
    /// # let url = Url::parse("http://127.0.0.1:9/")?;
    /// monitor.add("watched", MonitoredService::new(url, Duration::from_secs(30)))?;
    /// let err = monitor.start("watched").await.unwrap_err();
    /// assert!(matches!(err, MonitorError::NothingToStart(ref name) if name == "watched"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(&self, name: &str) -> Result<(), MonitorError> {
        let registered = self.lookup(name)?;
        if registered.service.on_down.is_none() {
            return Err(MonitorError::NothingToStart(name.to_string()));
        }
        registered
            .wake_requested()
            .await
            .map_err(|source| MonitorError::Trigger {
                service: name.to_string(),
                trigger: "on_down",
                source,
            })
    }

    /// Stops the service now, as its idle time passing would: if it is Up and has `on_idle`,
    /// forgets the cached up, runs `on_idle` and answers `true` (the service is Stopping until
    /// a probe finds it down). Answers `false` if there was nothing to stop: a service that
    /// is Starting is not stopped (its start goes on; stop it once it is up). Requests in
    /// flight are not waited for. Fails with [`MonitorError::Trigger`] if `on_idle` fails,
    /// and in fleet mode with [`MonitorError::FleetRefused`] if the fleet cannot agree to the
    /// stop now.
    ///
    /// A backend may answer before its `on_down` has returned (a start command that waits for
    /// more than the port). The stop then waits for that `on_down` to end before `on_idle`
    /// begins, so that the two never run at once: Stopping meanwhile, requests get the
    /// fallback or are held, as during `on_idle`, and a request's start is made once the
    /// stop is done and the backend down. The wait is bounded by the service's
    /// `trigger_timeout` (`on_down`'s own bound); should that `on_down` still run then, the
    /// stop is called off (the service is Up again) and fails with [`MonitorError::Trigger`].
    /// A start that has not begun its `on_down` (it still waits for the service's
    /// [dependencies](crate::MonitoredService::depends_on), which may take far longer) is
    /// called off instead and the stop goes on: the backend was found up since that start
    /// began, so it would run no `on_down` any more. Whoever waited for that start hears at
    /// once that it was called off (a request is answered 503, as for a backend not ready
    /// yet; [`start`](Self::start) fails); a held request goes on waiting, as any held
    /// during a stop does, and wakes the backend again once it is down. The dependencies'
    /// own starts go on.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, Url, trigger};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let monitor = MinMonitor::new();
    /// # let url = Url::parse("http://127.0.0.1:9/")?;
    /// let stop = trigger::from_fn(|| async { Ok::<(), BoxError>(()) });
    /// monitor.add("app", MonitoredService::new(url, Duration::from_secs(30)).on_idle(Duration::from_secs(60), stop))?;
    /// monitor.set_status_up("app")?;
    /// assert!(monitor.stop("app").await?);
    /// assert_eq!(monitor.state("app")?, ServiceState::Stopping);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn stop(&self, name: &str) -> Result<bool, MonitorError> {
        let registered = self.lookup(name)?;
        registered.stop_requested().await.map_err(|source| {
            #[cfg(feature = "fleet")]
            if let Some(refused) = source.downcast_ref::<crate::fleet::Refused>() {
                return MonitorError::FleetRefused {
                    service: name.to_string(),
                    reason: refused.0,
                };
            }
            MonitorError::Trigger {
                service: name.to_string(),
                trigger: "on_idle",
                source,
            }
        })
    }

    /// For a server shutting down: every request held for a backend to come up (hold mode,
    /// and a proxy's [`hold_when_gone`](crate::proxy::ProxyBuilder::hold_when_gone)) is
    /// answered at once with the fallback (503 with `Retry-After`; a proxy without a layer in
    /// front answers its 502, which a layer's
    /// [`backend_gone_when`](crate::MonitorLayer::backend_gone_when) turns into the fallback,
    /// as the gateway's does), and none is held from now on, for the services registered now.
    /// Otherwise a held request keeps its connection open until the server's grace ends and
    /// the connection is closed with no answer at all.
    /// A start that ends without the backend up from now on is logged as ended by the
    /// shutdown, not as a failed start. It cannot be undone.
    ///
    /// From now on, too, no request starts a backend that is down or stopping: what its
    /// `on_down` started, the server would stop a moment later, or leave running when it
    /// exits. Such a request gets the same 503 with `Retry-After` (held or not, arrived after
    /// the release or deciding as it came), a start asked for while the backend was stopping
    /// is not made, and a proxy's gone backend is not started again. That is said once per
    /// service at info, and is no failed start: no pause follows. A start already under way
    /// goes on. An operator's [`start`](Self::start) (the admin's `POST
    /// /services/{name}/start`) is an explicit action, and still runs `on_down`: the gateway
    /// stops what it starts with the other backend programs (once it has begun stopping
    /// them, a `process` trigger refuses to start). In a fleet, the replica also takes no lease
    /// on the fleet's behalf from then on: it neither takes over a start whose holder vanished
    /// nor runs the fleet's idle stop, and leaves both to the replicas that stay.
    ///
    /// The gateway does this shortly before its `shutdown_grace` ends, so that a backend
    /// coming up within the grace still serves the requests held for it, and in any case
    /// before it stops the backend programs.
    ///
    /// An axum server's graceful shutdown would otherwise wait for each held request up to its
    /// `max_wait`:
    ///
    /// ```no_run
    /// use std::{sync::Arc, time::Duration};
    /// use axum::{Router, routing::get};
    /// use tower_monitor::{MinMonitor, MonitoredService, Url};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let monitor = Arc::new(MinMonitor::new());
    /// monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/")?, Duration::from_secs(30)))?;
    /// let layer = monitor.layer("app")?.hold(Duration::from_secs(60));
    /// let app = Router::new().route("/", get(|| async { "hi" })).layer(layer);
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app)
    ///     .with_graceful_shutdown(async move {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///         monitor.release_held();
    ///     })
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn release_held(&self) {
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
        for registered in services.values() {
            registered.release_held();
        }
    }
}
