//! Hold mode with `depends_on`: a held request is released when its backend is up, not when
//! the start it set off ends. Probes and triggers in memory, a multi-thread runtime.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tower::{Layer, ServiceExt};
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, Url, trigger};

/// Far longer than any wait below: only a request released at Up is answered in time.
const LONG: Duration = Duration::from_secs(120);
/// The bound on each event awaited.
const SOON: Duration = Duration::from_secs(10);

fn in_flight(monitor: &MinMonitor, name: &str) -> Option<usize> {
    monitor
        .snapshot()
        .into_iter()
        .find(|service| service.name == name)
        .and_then(|service| service.requests_in_flight)
}

/// The request that set off a start is forwarded as soon as its backend is found up (something
/// else started it), though that start still waits for a dependency; it counts in flight as
/// usual, and the start goes on: once the dependency is up, it ends without running `on_down`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_is_released_at_up_while_its_start_still_waits_for_a_dependency() {
    let url = Url::parse("http://127.0.0.1:9/").unwrap();
    // db: its on_down runs until told to finish, then it answers.
    let (db_up, db_began, db_finish) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    let (up, began, finish) = (db_up.clone(), db_began.clone(), db_finish.clone());
    let db = MonitoredService::new(url.clone(), Duration::ZERO)
        .probe(common::switch_probe(db_up.clone()))
        .trigger_timeout(LONG)
        .start_timeout(LONG)
        .on_down(trigger::from_fn(move || {
            let (up, began, finish) = (up.clone(), began.clone(), finish.clone());
            async move {
                began.notify_one();
                finish.notified().await;
                up.store(true, Ordering::SeqCst);
                Ok::<(), BoxError>(())
            }
        }));
    // app: down until something other than its on_down starts it.
    let (app_up, app_starts) = (Arc::new(AtomicBool::new(false)), common::counter());
    let app = MonitoredService::new(url, Duration::from_secs(60))
        .probe(common::switch_probe(app_up.clone()))
        .on_down(common::counting_trigger(app_starts.clone(), false))
        .on_idle(
            Duration::from_secs(3600),
            common::counting_trigger(common::counter(), false),
        )
        .depends_on("db");
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("db", db).unwrap();
    monitor.add("app", app).unwrap();

    // The backend behind the layer: says it has the request, answers once told to.
    let (forwarded, answer) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (f, a) = (forwarded.clone(), answer.clone());
    let inner = tower::service_fn(move |_request: http::Request<()>| {
        let (forwarded, answer) = (f.clone(), a.clone());
        async move {
            forwarded.notify_one();
            answer.notified().await;
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        }
    });
    let layer = monitor.layer("app").unwrap().hold(LONG);
    let request = tokio::spawn(layer.layer(inner).oneshot(http::Request::new(())));

    tokio::time::timeout(SOON, db_began.notified())
        .await
        .expect("the held request's start never started db");
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Starting);
    app_up.store(true, Ordering::SeqCst);
    tokio::time::timeout(SOON, forwarded.notified())
        .await
        .expect("the held request was not forwarded once app was up");
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
    assert_eq!(
        in_flight(&monitor, "app"),
        Some(1),
        "the released request counts in flight"
    );
    answer.notify_one();
    let response = tokio::time::timeout(SOON, request)
        .await
        .expect("no answer")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert!(response.headers().contains_key("x-cold-start"));
    drop(response);
    assert_eq!(in_flight(&monitor, "app"), Some(0));

    // The start went on without the request: db comes up, and app's on_down, for a start
    // that is over, never runs.
    assert_eq!(monitor.state("db").unwrap(), ServiceState::Starting);
    db_finish.notify_one();
    common::wait_for_state(&monitor, "db", ServiceState::Up, SOON).await;
    // An operator's start joins a start still in flight: answered, that one has ended.
    let joined = tokio::time::timeout(SOON, monitor.start("app")).await;
    assert!(joined.expect("app's start never ended").is_ok());
    assert_eq!(common::count(&app_starts), 0);
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
}
