//! The waiting page in a real browser: headless Chromium opens a guarded URL while the backend
//! sleeps, sees the waiting page, and ends on the app's content by itself (the page refreshes).
//! Skipped, with a message, only when no Chromium is installed; under `CI=true` (as `.ci/run`
//! sets, and which installs Chromium) a missing Chromium fails the test instead, so CI cannot
//! pass without having tried the page.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get as route_get;
use common::*;
use tokio::net::TcpListener;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, trigger};

fn chromium() -> Option<PathBuf> {
    let candidates = ["chromium", "chromium-browser", "google-chrome"];
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
                .flat_map(|dir| candidates.map(|name| dir.join(name))),
        )
        .find(|candidate| candidate.is_file())
}

/// Whether the `CI` variable says so, as CI services and `.ci/run` set it (`true` or `1`).
fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| {
        let value = value.trim();
        value == "1" || value.eq_ignore_ascii_case("true")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_page_turns_into_the_app_by_itself() {
    let Some(browser) = chromium() else {
        let advice = "no Chromium found (install Debian's `chromium` package, as .ci/run does, \
                      or set CHROMIUM to its path)";
        assert!(!running_in_ci(), "CI=true and {advice}");
        eprintln!("skipped: {advice}");
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

    let profile =
        std::env::temp_dir().join(format!("tower-monitor-chromium-{}", std::process::id()));
    let run = tokio::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
        ])
        .args([
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        // Lets the page's own refreshes run, then prints the DOM the browser ends on. Under a
        // virtual time budget the refresh timer runs on virtual time, so the page refreshes far
        // more often than once a second of real time; the mechanism is the same.
        .args(["--virtual-time-budget=60000", "--dump-dom"])
        .arg(format!("http://{}/", server.addr))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(50), run)
        .await
        .expect("the browser run is bounded")
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&output.stdout);
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
