//! Expose the monitor's snapshot from your own axum app, beside the guarded routes.
//!
//! Run: cargo run --example snapshot
//! Then: curl -s http://127.0.0.1:3000/ (503 while the backend is down: it is started on
//! demand, and up about a second later) and curl -s http://127.0.0.1:3000/internal/status
//!
//! `GET /internal/status` answers `MinMonitor::snapshot()` as JSON: every service's state and
//! since when, the last probe, requests in flight and held, the idle deadline and counters. The
//! route is not behind the monitor's layer, so it answers whatever the backend's state.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceSnapshot, Url, trigger};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("tower_monitor=info")
        // Colour codes only on a terminal, not in a file or pipe the output goes to.
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    // A backend that `on_down` starts in the background, and `on_idle` stops again.
    let backend_addr = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let running = Arc::new(tokio::sync::Mutex::new(None::<tokio::task::JoinHandle<()>>));
    let (start, stop) = (running.clone(), running);
    let on_down = trigger::from_fn(move || {
        let running = start.clone();
        async move {
            let mut running = running.lock().await;
            if running.is_none() {
                *running = Some(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if let Ok(listener) = TcpListener::bind(backend_addr).await {
                        while listener.accept().await.is_ok() {}
                    }
                }));
            }
            Ok::<(), BoxError>(())
        }
    });
    let on_idle = trigger::from_fn(move || {
        let running = stop.clone();
        async move {
            if let Some(task) = running.lock().await.take() {
                task.abort();
            }
            Ok::<(), BoxError>(())
        }
    });

    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse(&format!("http://{backend_addr}/"))?;
    monitor.add(
        "backend",
        MonitoredService::new(url, Duration::from_secs(5))
            .on_down(on_down)
            .on_idle(Duration::from_secs(30), on_idle),
    )?;

    let status = {
        let monitor = monitor.clone();
        move || async move { Json::<Vec<ServiceSnapshot>>(monitor.snapshot()) }
    };
    let app = Router::new()
        .route("/", get(|| async { "hello from the backend's app\n" }))
        .layer(monitor.layer("backend")?)
        .route("/internal/status", get(status));

    let listener = TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "app on http://{}/ ; snapshot on http://{0}/internal/status",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
