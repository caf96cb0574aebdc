//! Every answer of the layer's fallback carries its `FallbackReason` in its extensions, so that
//! a layer or a log outside (the gateway's access log) can tell it from the inner service's.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt};
use tower_monitor::layer::FallbackReason;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, Url, probe, trigger};

fn probe_says(up: bool) -> impl tower_monitor::Probe {
    probe::from_fn(move |_| async move { Ok::<bool, BoxError>(up) })
}

async fn answer(
    monitor: &Arc<MinMonitor>,
    name: &str,
) -> Response<tower_monitor::layer::MonitorBody<()>> {
    let app = tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let layer = monitor.layer(name).unwrap();
    layer.layer(app).oneshot(Request::new(())).await.unwrap()
}

#[tokio::test]
async fn the_fallbacks_answers_carry_their_reason_and_the_backends_none() {
    let url = Url::parse("http://127.0.0.1:9/").unwrap();
    let failing = trigger::from_fn(|| async { Err::<(), BoxError>("no".into()) });
    let monitor = Arc::new(MinMonitor::new());
    let service =
        |up| MonitoredService::new(url.clone(), Duration::from_secs(30)).probe(probe_says(up));
    monitor.add("down", service(false)).unwrap();
    monitor
        .add("fails", service(false).on_down(failing))
        .unwrap();
    monitor.add("up", service(true)).unwrap();

    for (name, status, reason) in [
        (
            "down",
            StatusCode::SERVICE_UNAVAILABLE,
            Some(FallbackReason::NotReady),
        ),
        (
            "fails",
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(FallbackReason::StartFailed),
        ),
        ("up", StatusCode::OK, None),
    ] {
        let response = answer(&monitor, name).await;
        assert_eq!(response.status(), status, "{name}");
        assert_eq!(
            response.extensions().get::<FallbackReason>().copied(),
            reason,
            "{name}"
        );
    }
}
