//! A service that needs another up first (`depends_on`): a database its app talks to
//! directly. Real listeners on 127.0.0.1, a multi-thread runtime.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower::{Layer, ServiceExt};
use tower_monitor::{BoxError, MinMonitor, MonitorError, MonitoredService, ServiceState, trigger};

/// What happened, in order, across the backends of one test.
type Events = Arc<Mutex<Vec<String>>>;

/// A backend on a fixed loopback port that `on_down` makes listen after `boot` and `on_idle`
/// closes, each logged in `events`.
struct Backend {
    name: &'static str,
    addr: SocketAddr,
    boot: Duration,
    events: Events,
    task: Mutex<Option<JoinHandle<()>>>,
    /// A backend whose answering each start looks at and logs.
    needs: Option<Arc<Backend>>,
}

impl Backend {
    async fn new(name: &'static str, boot: Duration, events: &Events) -> Arc<Self> {
        Self::needing(name, boot, events, None).await
    }

    async fn needing(
        name: &'static str,
        boot: Duration,
        events: &Events,
        needs: Option<Arc<Backend>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            addr: common::refused_addr().await,
            boot,
            events: Arc::clone(events),
            task: Mutex::new(None),
            needs,
        })
    }

    fn log(&self, what: &str) {
        self.events
            .lock()
            .unwrap()
            .push(format!("{} {what}", self.name));
    }

    /// The service: grace zero (every status probes), `on_down` starts, `on_idle` stops.
    fn service(self: &Arc<Self>, idle: Duration) -> MonitoredService {
        let (up, down) = (Arc::clone(self), Arc::clone(self));
        MonitoredService::new(common::url_for(self.addr), Duration::ZERO)
            .probe_timeout(Duration::from_millis(500))
            .start_timeout(Duration::from_secs(10))
            .on_down(trigger::from_fn(move || {
                let backend = Arc::clone(&up);
                async move {
                    backend.start().await;
                    Ok::<(), BoxError>(())
                }
            }))
            .on_idle(
                idle,
                trigger::from_fn(move || {
                    let backend = Arc::clone(&down);
                    async move {
                        backend.log("stop");
                        if let Some(task) = backend.task.lock().unwrap().take() {
                            task.abort();
                        }
                        Ok::<(), BoxError>(())
                    }
                }),
            )
    }

    /// Logs the start and whether the others were answering then, and listens after `boot`.
    async fn start(&self) {
        if let Some(needed) = &self.needs {
            let answering = needed.answers().await;
            self.log(&format!("saw {} answering: {answering}", needed.name));
        }
        self.log("start");
        let addr = self.addr;
        let boot = self.boot;
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

    async fn answers(&self) -> bool {
        TcpStream::connect(self.addr).await.is_ok()
    }
}

async fn request(monitor: &Arc<MinMonitor>, name: &str) -> u16 {
    let layer = monitor.layer(name).unwrap().hold(Duration::from_secs(20));
    let inner = tower::service_fn(|_request: http::Request<Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("hi"))))
    });
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        layer
            .layer(inner)
            .oneshot(http::Request::new(Full::new(Bytes::new()))),
    )
    .await
    .expect("an answer in time")
    .unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_brings_the_dependency_up_first_and_it_stays_up_until_the_dependent_stops() {
    let events = Events::default();
    let db = Backend::new("db", Duration::from_millis(150), &events).await;
    let app = Backend::needing("app", Duration::from_millis(50), &events, Some(db.clone())).await;
    let monitor = Arc::new(MinMonitor::new());
    // db's idle time is far shorter than app's: only app's hold keeps it running.
    monitor
        .add("db", db.service(Duration::from_millis(100)))
        .unwrap();
    let app_service = app.service(Duration::from_secs(1)).depends_on("db");
    monitor.add("app", app_service).unwrap();

    assert_eq!(request(&monitor, "app").await, 200);
    assert_eq!(monitor.state("db").unwrap(), ServiceState::Up);
    assert!(db.answers().await && app.answers().await);
    assert_eq!(
        *events.lock().unwrap(),
        ["db start", "app saw db answering: true", "app start"]
    );

    // Both stopped in the end (bounded), app first: db's 100 ms passed long before, while app
    // held it.
    let db_state = || (monitor.state("db").unwrap(), events.lock().unwrap().clone());
    common::until(
        Duration::from_secs(10),
        "db stopped",
        db_state,
        |(state, _)| *state == ServiceState::Down,
    )
    .await;
    let events = events.lock().unwrap().clone();
    let stops: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|e| e.ends_with("stop"))
        .collect();
    assert_eq!(stops, ["app stop", "db stop"], "{events:?}");
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Down);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dependency_that_does_not_come_up_fails_the_start_before_on_down_runs() {
    let events = Events::default();
    let app = Backend::new("app", Duration::ZERO, &events).await;
    let monitor = Arc::new(MinMonitor::new());
    // db's on_down succeeds but nothing ever listens: its start times out.
    let db_url = common::url_for(common::refused_addr().await);
    let db = MonitoredService::new(db_url, Duration::ZERO)
        .start_timeout(Duration::from_millis(300))
        .on_down(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }));
    monitor.add("db", db).unwrap();
    monitor
        .add("app", app.service(Duration::from_secs(60)).depends_on("db"))
        .unwrap();

    let error = monitor.start("app").await.unwrap_err();
    assert!(
        error.to_string().contains("its dependency db is not up"),
        "{error}"
    );
    assert!(matches!(error, MonitorError::Trigger { .. }), "{error:?}");
    assert!(events.lock().unwrap().is_empty(), "app's on_down ran");
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Down);
    assert!(!app.answers().await);
}

#[tokio::test]
async fn a_dependency_is_added_first() {
    let events = Events::default();
    let app = Backend::new("app", Duration::ZERO, &events).await;
    let monitor = MinMonitor::new();
    let error = monitor
        .add("app", app.service(Duration::from_secs(60)).depends_on("db"))
        .unwrap_err();
    assert!(
        matches!(&error, MonitorError::UnknownDependency { service, dependency }
            if service == "app" && dependency == "db"),
        "{error:?}"
    );
    assert!(error.to_string().contains("add \"db\" first"), "{error}");
    // Nothing was added: the name is free, and a service cannot need itself.
    let error = monitor
        .add(
            "app",
            app.service(Duration::from_secs(60)).depends_on("app"),
        )
        .unwrap_err();
    assert!(
        matches!(error, MonitorError::UnknownDependency { .. }),
        "{error:?}"
    );
    assert!(monitor.names().is_empty());
}

#[test]
fn a_configuration_lists_dependencies_in_any_order_and_names_the_wrong_ones() {
    let config = |app_depends: &str, db_depends: &str| {
        format!(
            r#"{{ "services": {{
                "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s", "depends_on": {app_depends} }},
                "db": {{ "url": "tcp://127.0.0.1:9", "grace_period": "1s", "depends_on": {db_depends} }},
                "queue": {{ "url": "tcp://127.0.0.1:9", "grace_period": "1s" }} }} }}"#
        )
    };
    // app comes first in the file (and in name order) but needs db, which needs queue.
    let monitor = MinMonitor::from_config(&config(r#"["db"]"#, r#"["queue"]"#)).unwrap();
    assert_eq!(monitor.names().len(), 3);

    let error = MinMonitor::from_config(&config(r#"["db", "cache"]"#, "[]")).unwrap_err();
    assert_eq!(error.path(), "services.app.depends_on[1]");
    assert!(error.message().contains("\"cache\""), "{error}");

    let error = MinMonitor::from_config(&config(r#"["db"]"#, r#"["app"]"#)).unwrap_err();
    assert_eq!(error.path(), "services.app.depends_on");
    assert!(error.message().contains("app → db → app"), "{error}");

    let error = MinMonitor::from_config(&config(r#""db""#, "[]")).unwrap_err();
    assert_eq!(error.path(), "services.app.depends_on");
}

/// A dependency whose trigger timeout is `Duration::MAX` (no bound, as `tokio::time::timeout`
/// takes it) is awaited without a bound of its own, not past an `Instant`'s range: the start
/// goes on, the dependency started first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_with_an_unbounded_trigger_timeout_is_started_first() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let db_up = Arc::new(AtomicBool::new(false));
    let (probed, started) = (db_up.clone(), db_up.clone());
    let db = MonitoredService::new(
        common::url_for(common::refused_addr().await),
        Duration::ZERO,
    )
    .probe(tower_monitor::probe::from_fn(move |_| {
        let up = probed.load(Ordering::SeqCst);
        async move { Ok::<bool, BoxError>(up) }
    }))
    .on_down(trigger::from_fn(move || {
        started.store(true, Ordering::SeqCst);
        async { Ok::<(), BoxError>(()) }
    }))
    .trigger_timeout(Duration::MAX);
    let app = MonitoredService::new(
        common::url_for(common::refused_addr().await),
        Duration::from_secs(60),
    )
    .on_down(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }))
    .depends_on("db");
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("db", db).unwrap();
    monitor.add("app", app).unwrap();

    let m = monitor.clone();
    let start = tokio::spawn(async move { m.start("app").await });
    let started = tokio::time::timeout(Duration::from_secs(5), start).await;
    let started = started.expect("the start never ended");
    started.expect("the start panicked").unwrap();
    assert!(db_up.load(Ordering::SeqCst), "db was not started");
    assert_eq!(monitor.state("db").unwrap(), ServiceState::Up);
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Starting);
}
