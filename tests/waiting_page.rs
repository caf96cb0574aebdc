//! The waiting page as people see it (both themes, in headless Chromium, with screenshots kept
//! under the target directory), and a custom fallback that panics.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get as route_get;
use common::*;
use http::StatusCode;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, trigger};

/// A monitor whose "demo" is down (a refused port) and can be started (a no-op `on_down`).
async fn monitor() -> Arc<MinMonitor> {
    let monitor = Arc::new(MinMonitor::new());
    let start = trigger::from_fn(|| async { Ok::<(), BoxError>(()) });
    monitor
        .add(
            "demo",
            MonitoredService::new(url_for(refused_addr().await), Duration::ZERO).on_down(start),
        )
        .unwrap();
    monitor
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_fallback_is_a_500_logged_with_the_service_and_the_server_keeps_serving() {
    let logs = logs(tracing::Level::ERROR);
    let monitor = monitor().await;
    let layer = monitor
        .layer("demo")
        .unwrap()
        .fallback(|_parts, _reason| panic!("a bug in the user's fallback"));
    let server = serve(
        Router::new()
            .route("/", route_get(|| async { "app" }))
            .layer(layer),
    )
    .await;
    for _ in 0..2 {
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            get(server.addr, "/", &[("accept", "application/json")]),
        )
        .await
        .expect("answered in time");
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.body, r#"{"error":"internal_error","status":500}"#);
        assert_eq!(reply.headers["cache-control"], "no-store");
    }
    // Found by its words (only this test's fallback panics); it must name the service.
    let line = logs.line_with(&["ERROR", "the fallback panicked"]);
    assert!(line.contains("demo"), "logged with the service: {line}");
}

/// Opens `url` in headless Chromium with the given colour scheme and saves a screenshot.
async fn screenshot(browser: &Path, url: &str, dark: bool, file: &Path) {
    // Blink's `preferredColorScheme`: 0 dark, 1 light; set both ways, so the machine's own
    // theme does not decide.
    let scheme = format!(
        "--blink-settings=preferredColorScheme={}",
        if dark { 0 } else { 1 }
    );
    let shot = format!("--screenshot={}", file.display());
    let output = run_chromium(browser, &[&scheme, "--window-size=800,600", &shot], url).await;
    assert!(
        file.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The image's pixels as RGB rows.
fn pixels(file: &Path) -> (usize, usize, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(file).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let rgb = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width as usize, info.height as usize, rgb)
}

fn luminance([r, g, b]: [u8; 3]) -> u32 {
    (u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000
}

/// Checks a screenshot: the page's background in the corner, and a card of another colour
/// centred on the middle row.
fn check(file: &Path, dark: bool) {
    let (width, height, rgb) = pixels(file);
    let at = |x: usize, y: usize| rgb[y * width + x];
    let background = at(2, 2);
    if dark {
        assert!(
            luminance(background) < 40,
            "dark background: {background:?}"
        );
    } else {
        assert!(
            luminance(background) > 215,
            "light background: {background:?}"
        );
    }
    let middle = height / 2;
    let row: Vec<_> = (0..width).map(|x| at(x, middle)).collect();
    let left = row.iter().position(|p| *p != background).expect("a card");
    let right = width - 1 - row.iter().rposition(|p| *p != background).expect("a card");
    assert!(left > 50, "the card does not fill the width: {left}");
    assert!(
        left.abs_diff(right) <= 2,
        "centred: {left} px left, {right} px right"
    );
    let card = at(left + 6, middle);
    assert_ne!(card, background, "the card stands out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_page_in_light_and_dark_is_centred_and_themed() {
    let _logs = logs(tracing::Level::ERROR);
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let monitor = monitor().await;
    // A long refresh, so the screenshot is of the page and not of a reload.
    let layer = monitor
        .layer("demo")
        .unwrap()
        .retry_after(Duration::from_secs(60));
    let server = serve(
        Router::new()
            .route("/", route_get(|| async { "app" }))
            .layer(layer),
    )
    .await;
    let url = format!("http://{}/", server.addr);
    let page = get(server.addr, "/", &[]).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.body.len() <= 4096, "{} bytes", page.body.len());

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("waiting-page");
    std::fs::create_dir_all(&dir).unwrap();
    for (dark, name) in [(false, "light.png"), (true, "dark.png")] {
        let file = dir.join(name);
        let _ = std::fs::remove_file(&file);
        screenshot(&browser, &url, dark, &file).await;
        check(&file, dark);
        eprintln!("screenshot: {}", file.display());
    }
}

/// Serves a layer on `service` and answers one request (HTML unless `accept` says otherwise).
async fn page_of(layer: tower_monitor::MonitorLayer, accept: &str) -> Reply {
    let server = serve(
        Router::new()
            .route("/", route_get(|| async { "app" }))
            .layer(layer),
    )
    .await;
    get(server.addr, "/", &[("accept", accept)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_words_are_true_in_each_case() {
    let _logs = logs(tracing::Level::ERROR);
    let down = url_for(refused_addr().await);
    let monitor = Arc::new(MinMonitor::new());
    let no_op = || trigger::from_fn(|| async { Ok::<(), BoxError>(()) });
    let failing = trigger::from_fn(|| async { Err::<(), BoxError>("no start for you".into()) });
    monitor
        .add(
            "starting",
            MonitoredService::new(down.clone(), Duration::ZERO).on_down(no_op()),
        )
        .unwrap();
    monitor
        .add(
            "manual",
            MonitoredService::new(down.clone(), Duration::ZERO),
        )
        .unwrap();
    monitor
        .add(
            "broken",
            MonitoredService::new(down.clone(), Duration::ZERO).on_down(failing),
        )
        .unwrap();
    monitor
        .add(
            "slow",
            MonitoredService::new(down, Duration::ZERO).on_down(no_op()),
        )
        .unwrap();
    let html = "text/html";

    let reply = page_of(monitor.layer("starting").unwrap(), html).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.body.contains("<h1>starting is starting</h1>"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("Started 0 s ago."), "{}", reply.body);

    let reply = page_of(monitor.layer("manual").unwrap(), html).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.body.contains("<h1>manual is not running</h1>"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("not set up to start on demand"));
    assert!(!reply.body.contains("is starting"));

    let reply = page_of(monitor.layer("broken").unwrap(), html).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reply.body.contains("<h1>broken could not be started</h1>"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains(r#"http-equiv="refresh""#),
        "it tries again by itself"
    );
    assert!(!reply.body.contains("no start for you"), "no error text");
    let reply = page_of(monitor.layer("broken").unwrap(), "application/json").await;
    assert_eq!(
        reply.body,
        r#"{"error":"service_start_failed","status":500,"retry_after":5}"#
    );

    let held = monitor
        .layer("slow")
        .unwrap()
        .hold(Duration::from_millis(200));
    let reply = page_of(held, html).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        reply.body.contains("<h1>slow has not started yet</h1>"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("It has been starting for 0 s."),
        "{}",
        reply.body
    );
}
