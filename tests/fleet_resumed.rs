//! Fleet mode: another replica's "resumed" (its stop called off, or its `on_idle` failed) does
//! not mark the backend up on a replica whose own stop's `on_idle` still runs, as a local
//! `set_status_up` does not: two stops can overlap once the first's lease is lost (it expired
//! while its replica could not reach Redis, or Redis restarted) and another replica took it.
#![cfg(feature = "fleet")]

mod common;
mod fleet_support;

use std::sync::Arc;
use std::time::Duration;

use fleet_support::*;
use tokio::sync::Notify;
use tower_monitor::{BoxError, MonitoredService, ServiceState, trigger};

/// The service, started through `backend`, stopped by `on_idle`; no idle stop within the test.
fn stopped_by<F>(
    backend: &Arc<Backend>,
    on_idle: impl Fn() -> F + Send + Sync + 'static,
) -> MonitoredService
where
    F: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let up = Arc::clone(backend);
    MonitoredService::new(backend.url(), Duration::from_secs(10))
        .on_down(trigger::from_fn(move || {
            let backend = Arc::clone(&up);
            async move {
                backend.start();
                Ok::<(), BoxError>(())
            }
        }))
        .on_idle(Duration::from_secs(600), trigger::from_fn(on_idle))
        .probe_timeout(Duration::from_millis(500))
        .stop_timeout(Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_stop_elsewhere_leaves_a_stop_that_runs_here_stopping() {
    let logs = common::logs(tracing::Level::INFO);
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    // b's on_idle runs until released; a's fails (what it would stop does not run there).
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let b_stops = {
        let (entered, release, backend) = (entered.clone(), release.clone(), backend.clone());
        move || {
            let (entered, release, backend) = (entered.clone(), release.clone(), backend.clone());
            async move {
                entered.notify_one();
                release.notified().await;
                backend.stop();
                Ok(())
            }
        }
    };
    let services = std::sync::Mutex::new([
        Some(stopped_by(&backend, || async {
            Err::<(), BoxError>("not running here".into())
        })),
        Some(stopped_by(&backend, b_stops)),
    ]);
    let mut replicas = replicas(&redis, "resumed", &["a", "b"], |i| {
        services.lock().unwrap()[i].take().unwrap()
    })
    .await;
    let (a, b) = (replicas.remove(0), replicas.remove(0));
    a.set_status_up("app").unwrap();
    b.set_status_up("app").unwrap();

    // b stops the backend under the lease; a hears it.
    let stopping = Arc::clone(&b);
    let b_stop = tokio::spawn(async move { stopping.stop("app").await });
    tokio::time::timeout(Duration::from_secs(5), entered.notified())
        .await
        .expect("b's on_idle runs");
    assert!(
        eventually(Duration::from_secs(5), || state(&a)
            == ServiceState::Stopping)
        .await
    );

    // b's lease is lost while its on_idle runs; a, told the backend is up, stops it under a
    // lease of its own, and its on_idle fails: a announces the backend resumed.
    assert_eq!(
        redis
            .command(&["DEL", "resumed:svc:app:lease"])
            .await
            .as_deref(),
        Some(":1\r\n")
    );
    a.set_status_up("app").unwrap();
    assert_eq!(state(&a), ServiceState::Up);
    assert!(a.stop("app").await.is_err(), "a's on_idle fails");
    assert_eq!(state(&a), ServiceState::Up);

    // b's own stop still runs: the backend stays Stopping there, and b says why.
    let heard = ["fleet: replica a called its stop of app off"];
    assert!(
        eventually(Duration::from_secs(5), || {
            state(&b) != ServiceState::Stopping || !logs.lines_with(&heard).is_empty()
        })
        .await
    );
    assert_eq!(
        state(&b),
        ServiceState::Stopping,
        "b took a's word while its stop ran"
    );

    // b's stop ends as any does: the backend down, b Down.
    release.notify_one();
    let stopped = tokio::time::timeout(Duration::from_secs(10), b_stop).await;
    assert!(matches!(stopped, Ok(Ok(Ok(true)))), "{stopped:?}");
    assert!(eventually(Duration::from_secs(10), || state(&b) == ServiceState::Down).await);
    assert_eq!(backend.stops(), 1);
}
