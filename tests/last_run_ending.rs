//! A start's wait (up to 1 s) for what `on_down` started last to end (`Trigger::ended` not
//! resolved yet): a panic in that future, and an operator's stop that calls the start off
//! while it waits, or a start that is over once the wait ends.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use futures::future::{BoxFuture, FutureExt};
use http::{Request, StatusCode};
use tower::{Layer, ServiceExt};
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, Trigger, trigger};

/// An `on_down` counting its runs whose `ended` gives `ended()`.
struct Ends<F> {
    runs: Arc<AtomicUsize>,
    ended: F,
}

impl<F: Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static> Trigger for Ends<F> {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }.boxed()
    }

    fn ended(&self) -> Option<BoxFuture<'static, ()>> {
        Some((self.ended)())
    }
}

/// A request to `app` (its backend refused) whose `on_down` is `on_down`: its answer.
async fn request_with(monitor: &Arc<MinMonitor>, on_down: impl Trigger) -> StatusCode {
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .on_down(on_down);
    monitor.add("app", service).unwrap();
    let service = monitor.layer("app").unwrap().layer(inner());
    let response = service.oneshot(Request::new(())).await.unwrap();
    response.status()
}

/// An operator's start of `app`, in the background, once it is Starting (its `on_down`'s
/// last run never ends here, so the start waits for it).
async fn start_waiting(
    monitor: &Arc<MinMonitor>,
) -> tokio::task::JoinHandle<Result<(), tower_monitor::MonitorError>> {
    let start = tokio::spawn({
        let monitor = monitor.clone();
        async move { monitor.start("app").await }
    });
    wait_for_state(
        monitor,
        "app",
        ServiceState::Starting,
        Duration::from_secs(5),
    )
    .await;
    start
}

/// An `ended` future that panics at its first poll: the start goes on, `on_down` runs (503,
/// Starting), rather than the request's decision panicking into a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_that_panics_at_once_leaves_the_start_standing() {
    let _logs = logs(tracing::Level::ERROR);
    let runs = counter();
    let on_down = Ends {
        runs: runs.clone(),
        ended: || async { panic!("ended bug") }.boxed(),
    };
    let monitor = Arc::new(MinMonitor::new());
    assert_eq!(
        request_with(&monitor, on_down).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Starting);
    assert_eq!(count(&runs), 1);
}

/// An `ended` future that panics later, while the start waits for it: the start goes on and
/// `on_down` runs, rather than the start failing without it ("failed to start", 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_that_panics_while_waited_for_leaves_the_start_standing() {
    let _logs = logs(tracing::Level::ERROR);
    let runs = counter();
    let on_down = Ends {
        runs: runs.clone(),
        ended: || {
            async {
                tokio::task::yield_now().await;
                panic!("ended bug")
            }
            .boxed()
        },
    };
    let monitor = Arc::new(MinMonitor::new());
    assert_eq!(
        request_with(&monitor, on_down).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Starting);
    assert_eq!(count(&runs), 1);
}

/// A start waiting for what `on_down` started last to end (which it never does here), its
/// backend found up meanwhile: an operator's stop whose trigger timeout (300 ms) is shorter
/// than that wait calls the start off and goes on, rather than being refused after 300 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_stop_calls_off_a_start_waiting_for_the_last_run_to_end() {
    let (runs, stops) = (counter(), counter());
    let on_down = Ends {
        runs: runs.clone(),
        ended: || futures::future::pending().boxed(),
    };
    let monitor = Arc::new(MinMonitor::new());
    let counted = stops.clone();
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .on_down(on_down)
        .on_idle(
            Duration::from_secs(3600),
            trigger::from_fn(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), BoxError>(()) }
            }),
        )
        .trigger_timeout(Duration::from_millis(300));
    monitor.add("app", service).unwrap();
    let start = start_waiting(&monitor).await;
    // Found up while the start still waits (an operator's word here).
    monitor.set_status_up("app").unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), monitor.stop("app")).await;
    assert!(
        stopped
            .expect("the stop never ended")
            .expect("the stop failed"),
        "nothing was stopped"
    );
    assert_eq!(count(&stops), 1);
    let started = tokio::time::timeout(Duration::from_secs(5), start).await;
    let started = started.expect("the start never ended").unwrap();
    assert!(started.is_err(), "the called-off start succeeded");
    assert_eq!(count(&runs), 0, "the called-off start ran on_down");
}

/// A start waiting for what `on_down` started last to end (which it never does here), its
/// backend found up meanwhile: once the wait is over (1 s), the start ends with the service
/// Up and runs no `on_down` for a start that is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_found_up_during_the_wait_runs_no_on_down() {
    let runs = counter();
    let on_down = Ends {
        runs: runs.clone(),
        ended: || futures::future::pending().boxed(),
    };
    let monitor = Arc::new(MinMonitor::new());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .on_down(on_down);
    monitor.add("app", service).unwrap();
    let start = start_waiting(&monitor).await;
    monitor.set_status_up("app").unwrap();
    let started = tokio::time::timeout(Duration::from_secs(5), start).await;
    let started = started.expect("the start never ended").unwrap();
    assert!(started.is_ok(), "a start that ended up failed: {started:?}");
    assert_eq!(count(&runs), 0, "on_down ran for a start that was over");
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
}
