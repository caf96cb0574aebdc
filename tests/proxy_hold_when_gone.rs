//! A backend cached up that has gone (crashed, stopped behind the monitor's back): the proxy
//! cannot connect, so its request never left. With `hold_when_gone` the proxy holds it until
//! the backend is up again and sends it again: the client gets its answer late, not a 503.
//! Real backends on 127.0.0.1 (axum, over HTTP/1.1 and HTTP/2), started by `on_down` on the
//! address that refused.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt};
use tower_monitor::layer::BackendGone;
use tower_monitor::proxy::Proxy;
use tower_monitor::{
    BoxError, MinMonitor, MonitorService, MonitoredService, ServiceState, trigger,
};

/// A monitor whose "app" on `addr` is started by `on_down` (an echo server on `addr`, counted
/// in `starts`) and cached up now, while nothing listens there.
fn gone_backend(addr: SocketAddr, starts: &Arc<AtomicUsize>) -> Arc<MinMonitor> {
    common::cached_up_but_gone(addr, starts, &common::open_gate(), common::serve_echo)
}

/// "app" behind its layer (`backend_gone_when`, hold mode for `layer_hold`) and a proxy to
/// `addr` (`hold_when_gone` for `proxy_hold`).
fn guarded(
    monitor: &Arc<MinMonitor>,
    addr: SocketAddr,
    layer_hold: Option<Duration>,
    proxy_hold: Option<Duration>,
) -> MonitorService<Proxy<Full<Bytes>>> {
    let mut proxy = Proxy::builder(common::url_for(addr));
    if let Some(max_wait) = proxy_hold {
        proxy = proxy.hold_when_gone(Arc::clone(monitor), "app", max_wait);
    }
    let mut layer = monitor
        .layer("app")
        .unwrap()
        .backend_gone_when(BackendGone::in_response);
    if let Some(max_wait) = layer_hold {
        layer = layer.hold(max_wait);
    }
    layer.layer(proxy.build().unwrap())
}

/// Sends `n` echoes of `text` at once; each answer's status and body.
async fn herd(
    service: &MonitorService<Proxy<Full<Bytes>>>,
    n: usize,
    text: &'static str,
) -> Vec<(http::StatusCode, Bytes)> {
    let herd: Vec<_> = (0..n)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                let answer = service.oneshot(echo(text)).await.unwrap();
                let status = answer.status();
                (
                    status,
                    answer.into_body().collect().await.unwrap().to_bytes(),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in herd {
        let answer = tokio::time::timeout(Duration::from_secs(15), request)
            .await
            .expect("the hold is bounded")
            .unwrap();
        answers.push(answer);
    }
    answers
}

fn echo(body: &'static str) -> http::Request<Full<Bytes>> {
    http::Request::post("/echo")
        .header("host", "app.localhost")
        .body(Full::from(body))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_finds_its_cached_up_backend_gone_is_held_and_sent_again_once_it_is_up() {
    for http2 in [false, true] {
        let addr = common::refused_addr().await;
        let starts = Arc::new(AtomicUsize::new(0));
        let monitor = gone_backend(addr, &starts);
        let proxy = Proxy::builder(common::url_for(addr))
            .http2(http2)
            .hold_when_gone(Arc::clone(&monitor), "app", Duration::from_secs(10));
        let service = monitor
            .layer("app")
            .unwrap()
            .hold(Duration::from_secs(10))
            .backend_gone_when(BackendGone::in_response)
            .layer(proxy.build::<Full<Bytes>>().unwrap());
        let answer = tokio::time::timeout(
            Duration::from_secs(15),
            service.oneshot(echo("the body, sent twice")),
        )
        .await
        .expect("the hold is bounded")
        .unwrap();
        assert_eq!(answer.status(), 200, "http2: {http2}");
        assert!(
            answer.headers().contains_key("x-cold-start"),
            "held: {:?}",
            answer.headers()
        );
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"the body, sent twice");
        assert_eq!(starts.load(Ordering::SeqCst), 1, "started once");
        assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
    }
}

/// `hold_when_gone_for_service` holds for the service the builder is for, named once: that of
/// `Proxy::for_service`, or of `keep_awake` set after it; a builder for no service fails to
/// build, naming the option.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_for_a_service_holds_for_it_with_the_name_given_once() {
    let addr = common::refused_addr().await;
    let starts = Arc::new(AtomicUsize::new(0));
    let monitor = gone_backend(addr, &starts);
    let proxy = Proxy::for_service(&monitor, "app")
        .unwrap()
        .hold_when_gone_for_service(Duration::from_secs(10));
    // No hold of the layer's: only the proxy's turns the refusal into a late answer.
    let service = monitor
        .layer("app")
        .unwrap()
        .backend_gone_when(BackendGone::in_response)
        .layer(proxy.build::<Full<Bytes>>().unwrap());
    let answer = tokio::time::timeout(Duration::from_secs(15), service.oneshot(echo("held")))
        .await
        .expect("the hold is bounded")
        .unwrap();
    assert_eq!(answer.status(), 200, "{:?}", answer.headers());
    assert!(answer.headers().contains_key("x-cold-start"));
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"held");
    assert_eq!(starts.load(Ordering::SeqCst), 1, "started once");

    Proxy::builder(common::url_for(addr))
        .hold_when_gone_for_service(Duration::from_secs(10))
        .keep_awake(Arc::clone(&monitor), "app")
        .build::<Full<Bytes>>()
        .expect("the service kept awake is the one held for, whichever is set first");
    let error = Proxy::builder(common::url_for(addr))
        .hold_when_gone_for_service(Duration::from_secs(10))
        .build::<Full<Bytes>>()
        .unwrap_err()
        .to_string();
    assert!(error.contains("hold_when_gone_for_service"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_it_the_request_is_answered_the_fallback_and_the_backend_woken() {
    let addr = common::refused_addr().await;
    let starts = Arc::new(AtomicUsize::new(0));
    let monitor = gone_backend(addr, &starts);
    let service = guarded(&monitor, addr, None, None);
    // A herd: the refusals that come after the backend is up again do not mark it down
    // (and start it) again.
    for (status, _) in herd(&service, 50, "lost").await {
        assert!(status == 503 || status == 200, "{status}");
    }
    common::until(
        Duration::from_secs(10),
        "the backend is woken",
        || monitor.state("app").unwrap(),
        |state| *state == ServiceState::Up,
    )
    .await;
    assert_eq!(starts.load(Ordering::SeqCst), 1);
}

/// Without it, the fallback answers in the request's format: a browser's `EventSource` (a
/// `GET`) a 200 event stream that tells it when to come back; a `POST` that asks for one (a
/// fetch-based stream, an MCP client) the 503, as it is no `EventSource`: told 200, its client
/// would take the request it sent for taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_it_only_a_get_found_gone_is_answered_as_an_event_source() {
    let addr = common::refused_addr().await;
    let starts = Arc::new(AtomicUsize::new(0));
    // Never started: each request below finds it gone.
    let closed = Arc::new(tokio::sync::Semaphore::new(0));
    let monitor = common::cached_up_but_gone(addr, &starts, &closed, common::serve_echo);
    let service = guarded(&monitor, addr, None, None);
    let accept = "application/json, text/event-stream";
    for (method, status) in [("POST", 503), ("GET", 200)] {
        monitor.set_status_up("app").unwrap();
        let request = http::Request::builder().method(method).uri("/echo");
        let request = request.header("accept", accept).body(Full::default());
        let answer = service.clone().oneshot(request.unwrap()).await.unwrap();
        assert_eq!(answer.status(), status, "{method}: {:?}", answer.headers());
        let events = answer.headers()["content-type"] == "text/event-stream";
        assert_eq!(events, method == "GET", "{method}: {:?}", answer.headers());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gone_backend_that_does_not_come_back_within_max_wait_is_answered_the_fallback() {
    let addr = common::refused_addr().await;
    let starts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&starts);
    // A start that starts nothing: the backend stays gone.
    let service = MonitoredService::new(common::url_for(addr), Duration::from_secs(30)).on_down(
        trigger::from_fn(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), BoxError>(()) }
        }),
    );
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    monitor.set_status_up("app").unwrap();
    let service = guarded(&monitor, addr, None, Some(Duration::from_millis(300)));
    let answer = tokio::time::timeout(Duration::from_secs(10), service.oneshot(echo("x")))
        .await
        .expect("max_wait bounds the hold")
        .unwrap();
    // The proxy's 502 after the wait carries `BackendGone`: the layer answers its fallback.
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    assert!(!answer.headers().contains_key("x-cold-start"));
    assert!(starts.load(Ordering::SeqCst) >= 1, "the backend was woken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_herd_that_finds_the_backend_gone_starts_it_once_and_is_served_whole() {
    let addr = common::refused_addr().await;
    let starts = Arc::new(AtomicUsize::new(0));
    let monitor = gone_backend(addr, &starts);
    let hold = Some(Duration::from_secs(10));
    let service = guarded(&monitor, addr, hold, hold);
    for (status, body) in herd(&service, 50, "herd").await {
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"herd");
    }
    assert_eq!(starts.load(Ordering::SeqCst), 1, "one start for the herd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_request_is_held_and_sent_again_without_a_body() {
    let addr = common::refused_addr().await;
    let starts = Arc::new(AtomicUsize::new(0));
    let monitor = gone_backend(addr, &starts);
    let hold = Some(Duration::from_secs(10));
    let service = guarded(&monitor, addr, hold, hold);
    let head = http::Request::head("/echo")
        .header("host", "app.localhost")
        .body(Full::default())
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(15), service.oneshot(head))
        .await
        .expect("the hold is bounded")
        .unwrap();
    // The echo route takes POST only: the backend's own answer, not the proxy's or the layer's.
    assert_eq!(answer.status(), 405);
    assert!(answer.headers().contains_key("x-cold-start"));
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
    assert_eq!(starts.load(Ordering::SeqCst), 1);
}

/// A backend whose probe answers up once after each start while its address still refuses
/// (the probe looks elsewhere): the held request is sent again once, not held again; its
/// second refusal marks the backend down once more (it is started again) and the layer
/// answers its fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_comes_up_and_refuses_again_gets_the_request_once_more_only() {
    let addr = common::refused_addr().await;
    let starts = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (counted, starting) = (Arc::clone(&starts), Arc::clone(&started));
    let service = MonitoredService::new(common::url_for(addr), Duration::from_secs(30))
        .probe(tower_monitor::probe::from_fn(move |_url| {
            let up = started.swap(false, Ordering::SeqCst);
            async move { Ok::<bool, BoxError>(up) }
        }))
        .on_down(trigger::from_fn(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            starting.store(true, Ordering::SeqCst);
            async { Ok::<(), BoxError>(()) }
        }));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    monitor.set_status_up("app").unwrap();
    let hold = Some(Duration::from_secs(10));
    let service = guarded(&monitor, addr, hold, hold);
    let answer = tokio::time::timeout(Duration::from_secs(15), service.oneshot(echo("twice")))
        .await
        .expect("one resend, then an answer")
        .unwrap();
    assert_eq!(answer.status(), 503);
    assert!(!answer.headers().contains_key("x-cold-start"));
    common::until(
        Duration::from_secs(10),
        "a start for each refusal",
        || starts.load(Ordering::SeqCst),
        |&starts| starts == 2,
    )
    .await;
}
