//! Helpers shared by the integration tests: real listeners on 127.0.0.1, port 0.
#![allow(dead_code)]

mod example;
mod gateway;
mod gone;
mod logs;
mod nofile;
mod ports;
mod promtool;
mod raw_h2;
mod recording;
/// The gateway program reloading its configuration (`reload::Gateway`), for the reload tests.
pub mod reload;
mod tls;
mod websocket;
#[allow(unused_imports)] // each test binary uses its own subset
pub use example::*;
#[allow(unused_imports)]
pub use gateway::*;
#[allow(unused_imports)]
pub use gone::*;
#[allow(unused_imports)]
pub use logs::*;
#[allow(unused_imports)]
pub use nofile::*;
#[allow(unused_imports)]
pub use ports::*;
#[allow(unused_imports)]
pub use promtool::*;
#[allow(unused_imports)]
pub use raw_h2::*;
#[allow(unused_imports)]
pub use recording::*;
#[allow(unused_imports)]
pub use tls::*;
#[allow(unused_imports)]
pub use websocket::*;

use std::net::SocketAddr;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tower_monitor::{BoxError, Probe, Url, probe, trigger};

/// A TCP backend that accepts and closes connections until stopped.
pub struct Backend {
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind test backend");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        Self {
            addr,
            task: Some(task),
        }
    }

    pub fn url(&self) -> Url {
        url_for(self.addr)
    }

    /// Stops listening: connections to the address are refused from now on.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn url_for(addr: SocketAddr) -> Url {
    Url::parse(&format!("http://{addr}/")).unwrap()
}

/// A listener that never accepts, with its accept queue filled, so a new connect gets no answer.
/// Returns the listener (keep it alive) and the connections that filled it.
pub async fn blackhole() -> (tokio::net::TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            // The queue is full: this connect hangs, which is the state we want.
            _ => break,
        }
    }
    (listener, fillers)
}

/// A probe that counts its runs and answers what `up` says.
pub fn counting_probe(runs: Arc<AtomicUsize>, up: bool) -> impl Probe {
    probe::from_fn(move |_url| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok::<bool, BoxError>(up)
        }
    })
}

/// A trigger that counts its runs and fails when `fail` is set.
pub fn counting_trigger(runs: Arc<AtomicUsize>, fail: bool) -> impl tower_monitor::Trigger {
    trigger::from_fn(move || {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            if fail {
                Err::<(), BoxError>("trigger failed on purpose".into())
            } else {
                Ok(())
            }
        }
    })
}

/// The service behind a layer in tests: answers `app` at once.
pub fn inner() -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<http_body_util::Full<bytes::Bytes>>,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::from("app")))
    })
}

pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

pub fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

/// A probe whose answer is whatever `up` holds.
pub fn switch_probe(up: Arc<std::sync::atomic::AtomicBool>) -> impl Probe {
    probe::from_fn(move |_url| {
        let up = up.clone();
        async move { Ok::<bool, BoxError>(up.load(Ordering::SeqCst)) }
    })
}

/// Serves an axum router on 127.0.0.1:0 until the returned handle is dropped.
pub async fn serve(router: axum::Router) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Server { addr, task }
}

pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a client saw: status, headers and the body as text.
pub struct Reply {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// Sends a GET with the given headers and reads the whole answer.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(http::Method::GET, addr, path, headers).await
}

/// Sends a request with `method`, the given headers and no body, and reads the whole answer.
pub async fn send(
    method: http::Method,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(http_body_util::Empty::new()).unwrap())
        .await
        .expect("request failed");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Waits (bounded) until `now` returns what `done` accepts, checking every 5 ms; panics with
/// `what` and the last value if `within` passes first.
pub async fn until<T: std::fmt::Debug>(
    within: Duration,
    what: &str,
    mut now: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) {
    let give_up = tokio::time::Instant::now() + within;
    loop {
        let value = now();
        if done(&value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "never {what}; last {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (bounded) until `name` is in `state`.
pub async fn wait_for_state(
    monitor: &tower_monitor::MinMonitor,
    name: &str,
    state: tower_monitor::ServiceState,
    within: Duration,
) {
    let what = format!("{name} reached {state:?}");
    until(
        within,
        &what,
        || monitor.state(name).unwrap(),
        |now| *now == state,
    )
    .await;
}

/// A trigger registry whose `start` trigger counts its runs in `runs` and serves `backend` (an
/// axum app answering "app answers") after 300 ms, as a booting backend would.
pub fn booting_backend_registry(
    runs: Arc<AtomicUsize>,
    backend: SocketAddr,
) -> tower_monitor::config::TriggerRegistry {
    let mut registry = tower_monitor::config::TriggerRegistry::new();
    registry.register("start", move |_spec| {
        let runs = runs.clone();
        Ok(Arc::new(trigger::from_fn(move || {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let app = axum::Router::new().fallback(|| async { "app answers" });
                if let Ok(listener) = TcpListener::bind(backend).await {
                    let _ = axum::serve(listener, app).await;
                }
            });
            async { Ok::<(), BoxError>(()) }
        })) as Arc<dyn tower_monitor::Trigger>)
    });
    registry
}

/// Headless Chromium, as `$CHROMIUM` or found on `PATH`. `None` (the caller skips, which is
/// printed) only outside CI: with `CI` set to `true` or `1`, a missing browser fails the test.
pub fn chromium_or_skip() -> Option<std::path::PathBuf> {
    let candidates = ["chromium", "chromium-browser", "google-chrome"];
    let found = std::env::var_os("CHROMIUM")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(
            std::env::var_os("PATH")
                .into_iter()
                .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
                .flat_map(|dir| candidates.map(|name| dir.join(name))),
        )
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let advice = "no Chromium found (install Debian's `chromium` package, as .ci/run does, \
                      or set CHROMIUM to its path)";
        let in_ci = std::env::var("CI").is_ok_and(|value| {
            let value = value.trim();
            value == "1" || value.eq_ignore_ascii_case("true")
        });
        assert!(!in_ci, "CI is set and {advice}");
        eprintln!("skipped: {advice}");
    }
    found
}

/// Headless Chromium (`browser`) on `url` with `args`, in the profile folder `profile`, with
/// its background traffic off; killed when dropped.
pub fn chromium_command(
    browser: &std::path::Path,
    profile: &std::path::Path,
    args: &[&str],
    url: &str,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true);
    command
}

/// Runs headless Chromium (`browser`) on `url` with `args`, in a profile of its own that is
/// removed afterwards and with its background traffic off; bounded to 50 s.
pub async fn run_chromium(browser: &std::path::Path, args: &[&str], url: &str) -> Output {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "tower-monitor-chromium-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::SeqCst)
    ));
    let run = chromium_command(browser, &profile, args, url).output();
    let output = tokio::time::timeout(Duration::from_secs(50), run)
        .await
        .expect("the browser run is bounded")
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    output
}

/// A trigger registry whose `count` trigger counts its runs in `runs` and succeeds.
pub fn counting_registry(runs: Arc<AtomicUsize>) -> tower_monitor::config::TriggerRegistry {
    let mut registry = tower_monitor::config::TriggerRegistry::new();
    registry.register("count", move |_spec| {
        Ok(Arc::new(counting_trigger(runs.clone(), false)) as Arc<dyn tower_monitor::Trigger>)
    });
    registry
}

/// Every text an error offers: its `Display`, its `Debug` and those of its sources.
pub fn all_text(error: &BoxError) -> String {
    let mut text = format!("{error} {error:?}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    text
}
