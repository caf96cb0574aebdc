//! An axum app that reverse-proxies `/app` to a backend started on demand and stopped when idle:
//! the library's `Proxy` behind the monitor layer, mounted as an ordinary axum service.
//!
//! Run:  cargo run --example axum_proxy
//! Then: curl -i http://127.0.0.1:3002/app/hello   (held while the backend boots, then its answer)
//!
//! The backend is an axum server this example starts when `on_down` fires (it takes a second
//! to listen, as a container would) and stops when `on_idle` fires, 10 s after the last request.

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::Layer;
use tower_monitor::proxy::Proxy;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, Url, trigger};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter("info")
        // Colour codes only on a terminal, not in a file or pipe the output goes to.
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    // A free port for the backend, which is not running yet.
    let backend = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let running: Arc<Mutex<Option<JoinHandle<()>>>> = Arc::default();
    let (start, stop) = (running.clone(), running);
    let on_down = trigger::from_fn(move || {
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let app = Router::new().fallback(|uri: axum::http::Uri| async move {
                format!("hello from the backend, you asked for {uri}\n")
            });
            if let Ok(listener) = TcpListener::bind(backend).await {
                let _ = axum::serve(listener, app).await;
            }
        });
        *start.lock().unwrap() = Some(task);
        async { Ok::<(), BoxError>(()) }
    });
    let on_idle = trigger::from_fn(move || {
        if let Some(task) = stop.lock().unwrap().take() {
            task.abort();
        }
        async { Ok::<(), BoxError>(()) }
    });

    let url = Url::parse(&format!("http://{backend}/"))?;
    let monitor = Arc::new(MinMonitor::new());
    monitor.add(
        "app",
        MonitoredService::new(url, Duration::from_secs(5))
            .on_down(on_down)
            .on_idle(Duration::from_secs(10), on_idle),
    )?;
    // A proxy to the service's URL, which counts an open upgraded connection (a WebSocket) as
    // busy, like a request; its log lines name the service.
    let proxy = Proxy::for_service(&monitor, "app")?
        // At most 8 requests at once reach the backend that has just woken (the held ones
        // included); the others wait their turn for up to 30 s.
        .max_in_flight(NonZeroUsize::new(8).unwrap(), Duration::from_secs(30))
        // A request that finds the backend gone while cached up (it crashed) is held until
        // it is started again, then sent, rather than answered 502.
        .hold_when_gone_for_service(Duration::from_secs(10))
        .build::<Body>()?;
    // Hold requests while the backend boots, instead of answering 503.
    let guarded = monitor
        .layer("app")?
        .hold(Duration::from_secs(10))
        .layer(proxy);

    let app = Router::new().nest_service("/app", guarded);
    let listener = TcpListener::bind("127.0.0.1:3002").await?;
    println!("listening on http://127.0.0.1:3002");
    println!("try: curl -i http://127.0.0.1:3002/app/hello   (Ctrl-C to stop)");
    axum::serve(listener, app).await?;
    Ok(())
}
