//! An axum app whose `/api` routes are guarded by a backend that sleeps until a request wakes it.
//!
//! Run:  cargo run --example axum
//! Then: curl -i http://127.0.0.1:3000/api/hello   (503 while the backend starts, then 200)
//!
//! The "backend" is a TCP listener that this example starts when `on_down` fires (2 s later, as a
//! real VM or container would take a while) and stops again after 20 s, so you can watch the
//! cycle: 503 Service Unavailable, then 200, then 503 again and a new start.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use axum::{Router, routing::get};
use tokio::net::TcpListener;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, Url, trigger};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter("info")
        // Colour codes only on a terminal, not in a file or pipe the output goes to.
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    // Reserve a free port for the backend, which is not running yet.
    let backend_addr = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let start_backend = trigger::from_fn(move || async move {
        println!("on_down: starting the backend (ready in 2 s)");
        tokio::spawn(run_backend_for(backend_addr, Duration::from_secs(20)));
        Ok::<(), BoxError>(())
    });

    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse(&format!("http://{backend_addr}/"))?;
    monitor.add(
        "backend",
        MonitoredService::new(url, Duration::from_secs(1)).on_down(start_backend),
    )?;

    let app = Router::new()
        .route("/api/hello", get(|| async { "hello from the backend\n" }))
        .route_layer(
            monitor
                .layer("backend")?
                .retry_after(Duration::from_secs(1)),
        )
        .route("/", get(|| async { "not guarded: try /api/hello\n" }));

    let listener = TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000");
    println!("try: curl -i http://127.0.0.1:3000/api/hello   (Ctrl-C to stop)");
    axum::serve(listener, app).await?;
    Ok(())
}

/// Stands in for a sleeping backend: comes up after a delay, serves for `lifetime`, then stops.
async fn run_backend_for(addr: std::net::SocketAddr, lifetime: Duration) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let Ok(listener) = TcpListener::bind(addr).await else {
        return; // already running (two starts raced): nothing to do
    };
    println!("backend: up on {addr} for {} s", lifetime.as_secs());
    let serve = async { while listener.accept().await.is_ok() {} };
    let _ = tokio::time::timeout(lifetime, serve).await;
    println!("backend: stopped after {} s", lifetime.as_secs());
}
