//! The pause after a series of failed starts, as clients and operators meet it: a request
//! during the pause is told to come back when the pause ends (`Retry-After`), and is not
//! started; an operator's start (`MinMonitor::start`, the admin's `POST …/start`) is not
//! refused by it.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_monitor::{MinMonitor, MonitorError, MonitoredService, ServiceState};

/// A down backend whose `on_down` always fails (counted in the returned counter).
async fn failing_starts() -> (Arc<MinMonitor>, Arc<std::sync::atomic::AtomicUsize>) {
    let starts = counter();
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(switch_probe(Arc::new(AtomicBool::new(false))))
        .on_down(counting_trigger(starts.clone(), true));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    (monitor, starts)
}

async fn one_request(
    monitor: &Arc<MinMonitor>,
) -> Response<tower_monitor::layer::MonitorBody<Full<Bytes>>> {
    let layer = monitor
        .layer("app")
        .unwrap()
        .retry_after(Duration::from_secs(1));
    let service = layer.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Full::from("app")))
    }));
    let request = Request::get("/")
        .header("accept", "application/json")
        .body(())
        .unwrap();
    service.oneshot(request).await.unwrap()
}

// On a real clock: what is left of the 2 s pause, rounded up, is still 2 s unless the next
// request comes a whole second after the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_during_the_pause_is_told_to_retry_when_it_ends() {
    let (monitor, starts) = failing_starts().await;
    for expected in ["1", "1", "2"] {
        let response = one_request(&monitor).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // The layer's own, until the third failure in a row begins a pause of 2 s.
        assert_eq!(response.headers()["retry-after"], expected);
    }
    assert_eq!(count(&starts), 3, "two free retries, then the pause");

    let response = one_request(&monitor).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response.headers()["retry-after"],
        "2",
        "the pause's end, not the layer's 1 s"
    );
    assert_eq!(count(&starts), 3, "not started during the pause");

    // Once the pause has passed, the next request starts it; that start fails too, and
    // the pause doubles.
    // The pause is a span of time: nothing to wait for but its end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let response = one_request(&monitor).await;
    assert_eq!(count(&starts), 4);
    assert_eq!(response.headers()["retry-after"], "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_start_is_not_refused_by_the_pause() {
    let (monitor, starts) = failing_starts().await;
    for _ in 0..3 {
        one_request(&monitor).await;
    }
    assert_eq!(count(&starts), 3);
    assert_eq!(
        one_request(&monitor).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(count(&starts), 3, "paused for requests");

    // Its cause fixed, the operator starts it: `on_down` runs now (and fails here again).
    let started = monitor.start("app").await;
    assert!(
        matches!(
            started,
            Err(MonitorError::Trigger {
                trigger: "on_down",
                ..
            })
        ),
        "{started:?}"
    );
    assert_eq!(count(&starts), 4, "started despite the pause");
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Down);
    // A new series: its first failure is retried at once.
    one_request(&monitor).await;
    assert_eq!(count(&starts), 5);
}
