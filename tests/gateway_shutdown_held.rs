//! A gateway shutting down while requests are held for a backend that is still starting: each
//! held request is answered 503 (with `Retry-After`) before its connection closes, over
//! HTTP/1.1 and HTTP/2, and the shutdown ends within its grace. Everything on 127.0.0.1.

mod common;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_monitor::ServiceState;

/// A gateway whose one service, "app", never comes up: its `on_down` succeeds (counted) and
/// its address refuses connections. Requests are held for up to a minute; the shutdown grace
/// is `grace`.
async fn gateway_holding_for_a_backend_that_never_boots(
    grace: &str,
) -> (
    common::InProcessGateway,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let backend = common::refused_addr().await;
    let starts = common::counter();
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "shutdown_grace": "{grace}",
                           "services": {{ "app": {{ "hold": {{ "max_wait": "60s" }} }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                                      "start_timeout": "120s", "on_down": {{ "type": "count" }} }} }} }}"#
    );
    let gateway = common::start_gateway(&config, &common::counting_registry(starts.clone())).await;
    (gateway, starts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_held_when_the_gateway_shuts_down_are_answered_503_within_the_grace() {
    let (mut gateway, starts) = gateway_holding_for_a_backend_that_never_boots("3s").await;

    // HTTP/1.1, on a connection of its own.
    let mut http1 = TcpStream::connect(gateway.addr).await.unwrap();
    http1
        .write_all(b"GET /page HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    // HTTP/2, prior knowledge.
    let (mut http2, _connection) = common::http2_connection(gateway.addr).await;
    let request = http::Request::get(format!("http://{}/page", gateway.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let http2_answer = tokio::spawn(http2.send_request(request));

    common::wait_for_state(
        &gateway.monitor,
        "app",
        ServiceState::Starting,
        Duration::from_secs(5),
    )
    .await;
    common::until(
        Duration::from_secs(5),
        "both requests held",
        || gateway.monitor.snapshot()[0].requests_held,
        |held| *held == 2,
    )
    .await;
    assert_eq!(common::count(&starts), 1);
    gateway.shut_down();

    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), http1.read_to_string(&mut reply))
        .await
        .expect("the held HTTP/1.1 request is answered and its connection closed")
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("retry-after:"),
        "{reply}"
    );

    let response = tokio::time::timeout(Duration::from_secs(10), http2_answer)
        .await
        .expect("the held HTTP/2 request is answered")
        .unwrap()
        .expect("an answer, not a reset stream");
    assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(http::header::RETRY_AFTER));
    response.into_body().collect().await.unwrap();

    assert_eq!(
        gateway.ended_within(Duration::from_secs(10)).await,
        Some(true),
        "every connection closed within the grace"
    );
}

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// A gateway program in front of a backend program that would take a minute to listen (a VM
/// booting, say): `script` runs in `sh` after marking its start. With `hold`, requests are held
/// up to a minute; without, answered 503 at once.
struct BootingForever {
    gateway: tokio::process::Child,
    /// Its standard error: the log.
    log: tokio::io::BufReader<tokio::process::ChildStderr>,
    /// A request sent at once (held, with `hold`): its whole reply.
    held: tokio::task::JoinHandle<String>,
    dir: std::path::PathBuf,
    _config: common::TempFile,
}

impl BootingForever {
    /// Serves, sends the request, and returns once the program has started.
    async fn start(tag: &str, shutdown_grace: &str, script: &str, hold: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("tower-monitor-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let started = dir.join("started");
        let backend = common::refused_addr().await;
        let hold = if hold {
            r#", "services": { "app": { "hold": { "max_wait": "60s" } } }"#
        } else {
            ""
        };
        let config = common::TempFile::new(
            tag,
            &format!(
                r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                                  "shutdown_grace": "{shutdown_grace}"{hold} }},
                     "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                         "on_down": {{ "type": "process", "command": "sh", "stop_grace": "2s",
                                       "args": ["-c", "touch '{started}'; {script}"] }} }} }} }}"#,
                started = started.display()
            ),
        );
        let (mut gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), true).await;
        let log = tokio::io::BufReader::new(gateway.stderr.take().unwrap());
        let held = tokio::spawn(common::get_once(addr));
        common::until(
            Duration::from_secs(10),
            "the backend program started",
            || started.exists(),
            |yes| *yes,
        )
        .await;
        Self {
            gateway,
            log,
            held,
            dir,
            _config: config,
        }
    }

    /// The held request's reply, which must come within 5 s.
    async fn reply(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(5), &mut self.held)
            .await
            .expect("the held request is answered")
            .unwrap()
    }

    /// The log, once the gateway has exited 0 on SIGTERM, says the start the shutdown cut
    /// short at info, and no failed start: no warning, no backoff.
    async fn stops_without_a_failed_start(&mut self) {
        use tokio::io::AsyncReadExt;
        common::sigterm_then_exits_0(&mut self.gateway).await;
        let mut said = String::new();
        tokio::time::timeout(Duration::from_secs(5), self.log.read_to_string(&mut said))
            .await
            .expect("stderr closes")
            .unwrap();
        assert!(
            said.lines().any(
                |l| l.contains("INFO") && l.contains("app did not come up before the shutdown")
            ),
            "{said}"
        );
        assert!(
            !said
                .lines()
                .any(|l| l.contains("WARN") && l.contains("did not come up")),
            "{said}"
        );
    }
}

impl Drop for BootingForever {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_program_answers_a_request_held_for_a_boot_that_outlasts_its_grace() {
    let mut booting = BootingForever::start("held-boot", "2s", "exec sleep 60", true).await;
    booting.stops_without_a_failed_start().await;
    let reply = booting.reply().await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
}

/// A second signal stops waiting for the connections still open: a held request is answered
/// then, while the backend program is stopped, not cut off with the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_answers_the_held_requests_at_once() {
    use tokio::io::AsyncBufReadExt;
    // The grace is long, and the program ignores SIGTERM: its stop takes its whole stop grace,
    // during which the gateway still runs.
    let mut booting =
        BootingForever::start("held-twice", "60s", "trap '' TERM; sleep 60", true).await;
    common::sigterm(&booting.gateway).await;
    let mut said = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !said.contains("waiting for requests in flight") {
            assert!(
                booting.log.read_line(&mut said).await.unwrap() > 0,
                "{said}"
            );
        }
    })
    .await
    .expect("the drain began");
    common::sigterm(&booting.gateway).await;

    let reply = booting.reply().await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    let status = tokio::time::timeout(Duration::from_secs(15), booting.gateway.wait())
        .await
        .expect("the gateway exits")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "a connection was left open past the drain"
    );
}

/// Without hold mode, a request for a down backend is answered 503 at once and the drain has
/// nothing to wait for: the backend programs are stopped well before the grace ends. The start
/// that shutdown cuts short is still logged as such, not as a failed start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_cut_short_by_a_quick_shutdown_is_not_a_failed_start() {
    let mut booting = BootingForever::start("quick-stop", "30s", "exec sleep 60", false).await;
    let reply = booting.reply().await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    booting.stops_without_a_failed_start().await;
}

/// `Gateway::serve` that ends before its grace has passed (no connection left to drain) leaves
/// nothing behind: its monitor, which a library user may go on using, is not released later by
/// the timer that answers held requests before the grace ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_ending_before_its_grace_releases_nothing_later() {
    use std::sync::Arc;
    use tower::Layer;
    use tower::ServiceExt;

    let backend = common::refused_addr().await;
    // Held requests would be answered 1 s after the shutdown began.
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "shutdown_grace": "2s" }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    let gateway = tower_monitor::gateway::Gateway::from_config(
        &config,
        &tower_monitor::config::TriggerRegistry::new(),
    )
    .unwrap();
    let monitor = Arc::clone(gateway.monitor());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = tokio::time::timeout(
        Duration::from_secs(5),
        gateway.serve(listener, std::future::ready(())),
    )
    .await
    .expect("nothing to drain: serve returns at once");
    assert!(served);
    assert_eq!(
        Arc::strong_count(&monitor),
        1,
        "nothing of the finished serve holds the monitor"
    );

    // Used on: a service added now is started by a request, even past the moment the timer
    // would have released it.
    let starts = common::counter();
    let url = common::url_for(common::refused_addr().await);
    let service = tower_monitor::MonitoredService::new(url, Duration::from_secs(60))
        .on_down(common::counting_trigger(starts.clone(), false));
    monitor.add("late", service).unwrap();
    // A moment that must pass without a release: nothing to wait for but its end.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let guarded = monitor.layer("late").unwrap().layer(tower::service_fn(
        |_request: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        },
    ));
    let response = guarded
        .oneshot(http::Request::get("/").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(common::count(&starts), 1, "the request started it");
    assert_eq!(monitor.state("late").unwrap(), ServiceState::Starting);
}

/// A backend that goes away during the grace, after the held requests were answered, is not
/// started again by the request it failed: the gateway is about to stop (or would leave
/// running) what it starts now. The request gets the 503 with `Retry-After` a held one got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_gone_after_the_release_is_not_started_again() {
    // "app" answers no request: each connection that sends one is handed to the test, which
    // closes it when the backend is to go away. Probes (connections sending nothing) find it up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    let (reached, mut requests) = tokio::sync::mpsc::channel::<TcpStream>(4);
    let backend = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reached = reached.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let _ = reached.send(stream).await;
            });
        }
    });
    // "boot" never comes up: the request held for it is answered when the gateway releases.
    let boot = common::refused_addr().await;
    let starts = common::counter();
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0",
                           "routes": [ {{ "host": "boot", "service": "boot" }}, {{ "service": "app" }} ],
                           "shutdown_grace": "3s",
                           "services": {{ "boot": {{ "hold": {{ "max_wait": "60s" }} }} }} }},
             "services": {{
                 "app": {{ "url": "http://{app}/", "grace_period": "30s", "on_down": {{ "type": "count" }} }},
                 "boot": {{ "url": "http://{boot}/", "grace_period": "30s", "start_timeout": "120s",
                            "on_down": {{ "type": "count" }} }} }} }}"#
    );
    let mut gateway =
        common::start_gateway(&config, &common::counting_registry(starts.clone())).await;
    let monitor = gateway.monitor.clone();
    let state = |name: &str| monitor.state(name).unwrap();

    let mut to_app = TcpStream::connect(gateway.addr).await.unwrap();
    to_app
        .write_all(b"GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let at_app = tokio::time::timeout(Duration::from_secs(5), requests.recv())
        .await
        .expect("the request reached the app")
        .unwrap();
    assert_eq!(state("app"), ServiceState::Up);
    let mut to_boot = TcpStream::connect(gateway.addr).await.unwrap();
    to_boot
        .write_all(b"GET / HTTP/1.1\r\nhost: boot\r\n\r\n")
        .await
        .unwrap();
    common::wait_for_state(
        &gateway.monitor,
        "boot",
        ServiceState::Starting,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(common::count(&starts), 1, "boot's start");

    gateway.shut_down();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(10), to_boot.read_to_string(&mut reply))
        .await
        .expect("the held request is answered before the grace ends")
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");

    // Released: now the app goes away under its request.
    backend.abort();
    drop(at_app);
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), to_app.read_to_string(&mut reply))
        .await
        .expect("the app's request is answered")
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("retry-after:"),
        "{reply}"
    );
    // The start a gone backend asks for is decided before the answer is sent.
    assert_eq!(state("app"), ServiceState::Down, "not started again");
    assert_eq!(
        gateway.ended_within(Duration::from_secs(10)).await,
        Some(true)
    );
    assert_eq!(common::count(&starts), 1, "only boot's start ran");
}
