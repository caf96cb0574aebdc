//! `depends_on` at the edges of a start: a dependency slower than the dependent's own start
//! timeout, one still stopping when asked, and an operator's start during a shutdown. Real
//! listeners on 127.0.0.1, a multi-thread runtime.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, trigger};

/// A backend that `on_down` makes listen after `boot`, and that `on_idle` closes `linger`
/// after it returns (a backend that takes its time to shut down).
struct Backend {
    addr: SocketAddr,
    boot: Duration,
    linger: Duration,
    task: Mutex<Option<JoinHandle<()>>>,
    starts: Mutex<usize>,
}

impl Backend {
    async fn new(boot: Duration, linger: Duration) -> Arc<Self> {
        Arc::new(Self {
            addr: common::refused_addr().await,
            boot,
            linger,
            task: Mutex::new(None),
            starts: Mutex::new(0),
        })
    }

    fn service(self: &Arc<Self>) -> MonitoredService {
        let (up, down) = (Arc::clone(self), Arc::clone(self));
        MonitoredService::new(common::url_for(self.addr), Duration::ZERO)
            .probe_timeout(Duration::from_millis(500))
            .start_timeout(Duration::from_secs(10))
            .on_down(trigger::from_fn(move || {
                let backend = Arc::clone(&up);
                async move {
                    backend.start();
                    Ok::<(), BoxError>(())
                }
            }))
            .on_idle(
                Duration::from_secs(3600),
                trigger::from_fn(move || {
                    let backend = Arc::clone(&down);
                    async move {
                        let task = backend.task.lock().unwrap().take();
                        let linger = backend.linger;
                        tokio::spawn(async move {
                            tokio::time::sleep(linger).await;
                            if let Some(task) = task {
                                task.abort();
                            }
                        });
                        Ok::<(), BoxError>(())
                    }
                }),
            )
    }

    fn start(&self) {
        *self.starts.lock().unwrap() += 1;
        let (addr, boot) = (self.addr, self.boot);
        let task = tokio::spawn(async move {
            tokio::time::sleep(boot).await;
            let Ok(listener) = TcpListener::bind(addr).await else {
                return;
            };
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        if let Some(old) = self.task.lock().unwrap().replace(task) {
            old.abort();
        }
    }

    /// The backend dies on its own (a crash): closed once this returns.
    async fn crash(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    fn starts(&self) -> usize {
        *self.starts.lock().unwrap()
    }
}

/// Waits (bounded) until `name` is in `state`, panicking with its last state otherwise.
async fn reaches(monitor: &MinMonitor, name: &str, state: ServiceState) {
    let now = || monitor.state(name).unwrap();
    let what = format!("{name} {state}");
    common::until(Duration::from_secs(10), &what, now, |now| *now == state).await;
}

/// The dependent's start timeout is for its own start: a dependency that takes longer than
/// that to come up (within its own bound) does not end the start, and the dependent's
/// `on_down` never runs for a start that has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dependency_slower_than_the_dependents_start_timeout_does_not_end_its_start() {
    let db = Backend::new(Duration::from_millis(900), Duration::ZERO).await;
    let app = Backend::new(Duration::from_millis(50), Duration::ZERO).await;
    let monitor = MinMonitor::new();
    monitor.add("db", db.service()).unwrap();
    let app_service = app
        .service()
        .start_timeout(Duration::from_millis(400))
        .depends_on("db");
    monitor.add("app", app_service).unwrap();

    monitor.start("app").await.unwrap();
    assert_eq!(monitor.state("db").unwrap(), ServiceState::Up);
    let app_state = || (monitor.state("app").unwrap(), app.starts());
    common::until(
        Duration::from_secs(10),
        "app up",
        app_state,
        |(state, _)| *state == ServiceState::Up,
    )
    .await;
    assert_eq!((db.starts(), app.starts()), (1, 1));
}

/// A dependency still stopping when the dependent starts is awaited to the end of its stop,
/// then started: its bound (trigger and start timeouts) counts its start, not the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dependency_stopping_when_asked_is_started_once_it_is_down() {
    let db = Backend::new(Duration::from_millis(50), Duration::from_millis(1200)).await;
    let app = Backend::new(Duration::from_millis(50), Duration::ZERO).await;
    let monitor = MinMonitor::new();
    let db_service = db
        .service()
        .trigger_timeout(Duration::from_millis(500))
        .start_timeout(Duration::from_millis(500));
    monitor.add("db", db_service).unwrap();
    monitor.add("app", app.service().depends_on("db")).unwrap();
    monitor.start("db").await.unwrap();
    reaches(&monitor, "db", ServiceState::Up).await;
    assert!(monitor.stop("db").await.unwrap());
    assert_eq!(monitor.state("db").unwrap(), ServiceState::Stopping);

    monitor.start("app").await.unwrap();
    reaches(&monitor, "app", ServiceState::Up).await;
    assert_eq!(monitor.state("db").unwrap(), ServiceState::Up);
    assert_eq!((db.starts(), app.starts()), (2, 1));
}

/// Once held requests are released (the server shutting down), a request starts nothing, but
/// an operator's start still runs: its dependencies are started for it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operators_start_during_a_shutdown_starts_the_dependencies_too() {
    let db = Backend::new(Duration::from_millis(50), Duration::ZERO).await;
    let app = Backend::new(Duration::from_millis(50), Duration::ZERO).await;
    let monitor = MinMonitor::new();
    monitor.add("db", db.service()).unwrap();
    monitor.add("app", app.service().depends_on("db")).unwrap();
    monitor.release_held();

    monitor.start("app").await.unwrap();
    reaches(&monitor, "app", ServiceState::Up).await;
    assert_eq!(monitor.state("db").unwrap(), ServiceState::Up);
}

/// In a chain app → db → disk, the app's wait for db allows for db's own wait for disk: a disk
/// slower than db's trigger and start timeouts together (db's start_timeout leaves that wait
/// out) does not fail the app's start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dependency_waiting_for_its_own_dependency_is_given_that_time_too() {
    let disk = Backend::new(Duration::from_millis(900), Duration::ZERO).await;
    let db = Backend::new(Duration::from_millis(50), Duration::ZERO).await;
    let app = Backend::new(Duration::from_millis(50), Duration::ZERO).await;
    let monitor = MinMonitor::new();
    monitor.add("disk", disk.service()).unwrap();
    let db_service = db
        .service()
        .trigger_timeout(Duration::from_millis(200))
        .start_timeout(Duration::from_millis(300))
        .depends_on("disk");
    monitor.add("db", db_service).unwrap();
    monitor.add("app", app.service().depends_on("db")).unwrap();

    monitor.start("app").await.unwrap();
    reaches(&monitor, "app", ServiceState::Up).await;
    assert_eq!(monitor.state("db").unwrap(), ServiceState::Up);
    assert_eq!(monitor.state("disk").unwrap(), ServiceState::Up);
    assert_eq!((disk.starts(), db.starts(), app.starts()), (1, 1, 1));
}

/// A dependency that crashes while its dependent is up (nothing but the app talks to it, so no
/// request through the monitor finds it down) is started again the next time a probe finds the
/// app up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dependency_that_crashed_under_an_up_dependent_is_started_again() {
    let db = Backend::new(Duration::from_millis(50), Duration::ZERO).await;
    let app = Backend::new(Duration::from_millis(50), Duration::ZERO).await;
    let monitor = MinMonitor::new();
    monitor.add("db", db.service()).unwrap();
    monitor.add("app", app.service().depends_on("db")).unwrap();
    monitor.start("app").await.unwrap();
    reaches(&monitor, "app", ServiceState::Up).await;

    db.crash().await;
    // The app's grace period is zero: each status is a probe, which finds the app up.
    assert!(monitor.status("app").await.unwrap());
    let db_state = || (monitor.state("db").unwrap(), db.starts());
    common::until(
        Duration::from_secs(5),
        "db started again",
        db_state,
        |now| *now == (ServiceState::Up, 2),
    )
    .await;
    assert_eq!(app.starts(), 1, "the app itself was not started again");
}
