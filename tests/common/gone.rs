//! Backends cached up but gone (crashed): nothing listens on their address until their
//! `on_down` serves there, for the tests of `hold_when_gone`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, trigger};

/// A monitor whose "app" on `addr` is cached up while nothing listens there. Its `on_down`
/// (counted in `starts`) binds `addr` and runs `serve` on it, once `gate` gives it a permit.
pub fn cached_up_but_gone<F, Fut>(
    addr: SocketAddr,
    starts: &Arc<AtomicUsize>,
    gate: &Arc<Semaphore>,
    serve: F,
) -> Arc<MinMonitor>
where
    F: Fn(TcpListener) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (starts, gate, serve) = (Arc::clone(starts), Arc::clone(gate), Arc::new(serve));
    let start = trigger::from_fn(move || {
        starts.fetch_add(1, Ordering::SeqCst);
        let (gate, serve) = (Arc::clone(&gate), Arc::clone(&serve));
        async move {
            gate.acquire().await?.forget();
            let listener = TcpListener::bind(addr).await?;
            tokio::spawn(serve(listener));
            Ok::<(), BoxError>(())
        }
    });
    let service =
        MonitoredService::new(super::url_for(addr), Duration::from_secs(30)).on_down(start);
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", service).unwrap();
    monitor.set_status_up("app").unwrap();
    monitor
}

/// A gate that lets every start through at once.
pub fn open_gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(Semaphore::MAX_PERMITS))
}

/// `POST /echo` echoes its body; `GET /slow` sends one chunk, then nothing; anything else is
/// answered "up".
pub async fn serve_echo(listener: TcpListener) {
    let slow = || async {
        let chunks = futures::stream::iter([Ok::<_, Infallible>(Bytes::from("first"))])
            .chain(futures::stream::pending());
        Body::from_stream(chunks)
    };
    let app = Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/slow", get(slow))
        .fallback(|| async { "up" });
    let _ = axum::serve(listener, app).await;
}
