//! The waiting page in a real browser: headless Chromium opens a guarded URL while the backend
//! sleeps, sees the waiting page, and ends on the app's content by itself (the page refreshes);
//! and an `EventSource` opened while it sleeps gets its events once it is up.
//! Skipped, with a message, only when no Chromium is installed; under `CI=true` (as `.ci/run`
//! sets, and which installs Chromium) a missing Chromium fails the test instead, so CI cannot
//! pass without having tried the page.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get as route_get;
use common::*;
use tokio::net::TcpListener;
use tower_monitor::MonitorLayer;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, trigger};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_page_turns_into_the_app_by_itself() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    // The backend comes up 2 s after `on_down` asks for it.
    let backend = refused_addr().await;
    let start = trigger::from_fn(move || async move {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Ok(listener) = TcpListener::bind(backend).await {
                while listener.accept().await.is_ok() {}
            }
        });
        Ok::<(), BoxError>(())
    });
    let (requests, app_pages, wakes) = (counter(), counter(), counter());
    let monitor = Arc::new(MinMonitor::new());
    monitor
        .add(
            "demo",
            MonitoredService::new(url_for(backend), Duration::from_secs(60))
                .always(counting_trigger(requests.clone(), false))
                .on_down(
                    tower_monitor::trigger::Compound::new()
                        .then(counting_trigger(wakes.clone(), false))
                        .then(start),
                ),
        )
        .unwrap();
    let served = app_pages.clone();
    let router = Router::new()
        .route(
            "/",
            route_get(move || {
                served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async {
                    Html("<!doctype html><title>App</title><h1 id=\"app\">Hello from the app</h1>")
                }
            }),
        )
        .layer(
            monitor
                .layer("demo")
                .unwrap()
                .retry_after(Duration::from_secs(1)),
        );
    let server = serve(router).await;

    let dom = dom_after_a_minute(&browser, server.addr).await;
    assert!(
        dom.contains("Hello from the app"),
        "the browser ended on: {dom}"
    );
    assert!(count(&wakes) >= 1, "the first visit woke the backend");
    assert!(
        count(&requests) >= 2,
        "the browser saw the waiting page first, then refreshed by itself"
    );
    assert_eq!(
        count(&app_pages),
        1,
        "the app was served once, at the end, and the refreshing stopped"
    );
}

/// Opens the page at `addr`, lets its own timers run (a refresh, an `EventSource`'s
/// reconnection) and returns the DOM the browser ends on. Under a virtual time budget those
/// timers run on virtual time, so the page acts far more often than once a second of real
/// time; the mechanism is the same.
async fn dom_after_a_minute(browser: &std::path::Path, addr: std::net::SocketAddr) -> String {
    let url = format!("http://{addr}/");
    let output = run_chromium(
        browser,
        &["--virtual-time-budget=60000", "--dump-dom"],
        &url,
    )
    .await;
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The layer of a monitor with one service, "demo", whose backend comes up as soon as its
/// `on_down` asks for it (a page's virtual time, which its retries spend, runs far faster than
/// real time); its `always` counts the requests in `requests`.
async fn waking_backend(requests: &Arc<std::sync::atomic::AtomicUsize>) -> MonitorLayer {
    let backend = refused_addr().await;
    let start = trigger::from_fn(move || async move {
        tokio::spawn(async move {
            if let Ok(listener) = TcpListener::bind(backend).await {
                while listener.accept().await.is_ok() {}
            }
        });
        Ok::<(), BoxError>(())
    });
    let monitor = Arc::new(MinMonitor::new());
    let service = MonitoredService::new(url_for(backend), Duration::from_secs(60))
        .always(counting_trigger(requests.clone(), false))
        .on_down(start);
    monitor.add("demo", service).unwrap();
    monitor
        .layer("demo")
        .unwrap()
        .retry_after(Duration::from_secs(1))
}

/// An `EventSource` that connects while the backend sleeps gets the fallback, and must come
/// back by itself for its events once the backend is up. It gives up for good on any status
/// but 200 or any type but an event stream (the HTML standard), so the 503 waiting page ended
/// it: the page never got an event however soon the backend came up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_source_opened_while_the_backend_sleeps_gets_its_events() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let (requests, streams) = (counter(), counter());
    let layer = waking_backend(&requests).await;
    let served = streams.clone();
    let events = Router::new()
        .route(
            "/events",
            route_get(move || {
                served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async {
                    (
                        [("content-type", "text/event-stream")],
                        "data: hello from the stream\n\n",
                    )
                }
            }),
        )
        .layer(layer);
    let page = "<!doctype html><title>Events</title><p id=\"got\">nothing yet</p><script>\
                const source = new EventSource('/events');\
                source.onmessage = (e) => { document.getElementById('got').textContent = e.data;\
                source.close(); };</script>";
    let router = Router::new()
        .route("/", route_get(move || async move { Html(page) }))
        .merge(events);
    let server = serve(router).await;

    let dom = dom_after_a_minute(&browser, server.addr).await;
    assert!(
        dom.contains("hello from the stream"),
        "the page ended on: {dom}"
    );
    assert!(
        count(&requests) >= 2,
        "the stream was answered by the fallback first"
    );
    assert_eq!(
        count(&streams),
        1,
        "the backend's stream was opened once, once up"
    );
}
