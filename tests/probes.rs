//! The HTTP and dialogue probes against local servers on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get as route_get, post};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower_monitor::probe::{Expect, Http};
use tower_monitor::{MinMonitor, MonitorError, MonitoredService, Probe, Url};

async fn http_backend() -> Server {
    let router = Router::new()
        .route("/ok", route_get(|| async { "all good" }))
        .route(
            "/fail",
            route_get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "starting") }),
        )
        .route("/maintenance", route_get(|| async { "maintenance mode" }))
        .route("/teapot", route_get(|| async { StatusCode::IM_A_TEAPOT }))
        .route(
            "/auth",
            route_get(|headers: HeaderMap| async move {
                match headers.get("x-token").map(|v| v.as_bytes()) {
                    Some(b"s3cret") => StatusCode::OK,
                    _ => StatusCode::UNAUTHORIZED,
                }
            }),
        )
        .route("/echo", post(|body: String| async move { body }));
    serve(router).await
}

/// A server that accepts connections and never says a word.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

fn url(server: &Server, path: &str) -> Url {
    Url::parse(&format!("http://{}{path}", server.addr)).unwrap()
}

#[tokio::test]
async fn http_accepted_and_rejected_statuses() {
    let server = http_backend().await;
    assert!(Http::new().probe(&url(&server, "/ok")).await.unwrap());
    assert!(!Http::new().probe(&url(&server, "/fail")).await.unwrap());
    assert!(!Http::new().probe(&url(&server, "/teapot")).await.unwrap());
    assert!(
        Http::new()
            .accept([418..=418])
            .probe(&url(&server, "/teapot"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn http_body_must_match_and_must_not_match() {
    let server = http_backend().await;
    let healthy = Http::new().body_matches("^all good$").unwrap();
    assert!(healthy.probe(&url(&server, "/ok")).await.unwrap());
    assert!(!healthy.probe(&url(&server, "/maintenance")).await.unwrap());
    let not_in_maintenance = Http::new().body_excludes("maintenance").unwrap();
    assert!(
        not_in_maintenance
            .probe(&url(&server, "/ok"))
            .await
            .unwrap()
    );
    assert!(
        !not_in_maintenance
            .probe(&url(&server, "/maintenance"))
            .await
            .unwrap()
    );
    // Only the first bytes are read: a match beyond them does not count.
    let short = Http::new().max_body_bytes(3).body_matches("good").unwrap();
    assert!(!short.probe(&url(&server, "/ok")).await.unwrap());
}

#[tokio::test]
async fn http_sends_the_configured_request() {
    let server = http_backend().await;
    let root = url(&server, "/");
    assert!(!Http::new().path("/auth").probe(&root).await.unwrap());
    let with_token = Http::new()
        .path("/auth")
        .header("x-token", "s3cret")
        .unwrap();
    assert!(with_token.probe(&root).await.unwrap());
    let echo = Http::new()
        .method(http::Method::POST)
        .path("/echo")
        .body("pong")
        .body_matches("^pong$")
        .unwrap();
    assert!(echo.probe(&root).await.unwrap());
}

#[tokio::test]
async fn http_refused_is_down_and_silence_times_out_down() {
    assert!(
        !Http::new()
            .probe(&url_for(refused_addr().await))
            .await
            .unwrap()
    );
    // A server that accepts and never answers: the monitor's timeout makes it down.
    let (addr, _silent) = silent_server().await;
    let monitor = MinMonitor::new();
    monitor
        .add(
            "silent",
            MonitoredService::new(url_for(addr), Duration::ZERO)
                .probe(Http::new())
                .probe_timeout(Duration::from_millis(200)),
        )
        .unwrap();
    assert!(!monitor.status("silent").await.unwrap());
}

/// A gRPC server speaks HTTP/2 only: the HTTP/1.1 probe's error said "invalid HTTP version
/// parsed", and nothing of why, while every request behind the layer was a 500. The server
/// here answers as an HTTP/2 server does, with its SETTINGS frame, and keeps the connection
/// open: a real one (tonic) then sends GOAWAY and closes, and whether the probe reads the
/// frames or the reset first depends on timing (a closed connection is a plain down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_probe_of_an_http2_only_server_says_what_answered() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).await;
        // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
        stream
            .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        // Open until the test ends.
        let _ = stream.read(&mut request).await;
    });
    let monitor = MinMonitor::new();
    let service = MonitoredService::new(url_for(addr), Duration::ZERO).probe(Http::new());
    monitor.add("grpc", service).unwrap();
    let error = monitor.status("grpc").await.unwrap_err();
    assert!(matches!(error, MonitorError::Probe { .. }), "{error:?}");
    let error = error.to_string();
    assert!(
        error.contains("not HTTP/1.1") && error.contains("probe::Tcp"),
        "{error}"
    );
    server.abort();
}

#[tokio::test]
async fn http_probe_rejects_urls_it_cannot_speak_to() {
    let monitor = MinMonitor::new();
    let url = Url::parse("redis://127.0.0.1:6379/").unwrap();
    let err = monitor
        .add(
            "r",
            MonitoredService::new(url, Duration::ZERO).probe(Http::new()),
        )
        .unwrap_err();
    assert!(
        matches!(err, MonitorError::InvalidUrl { .. }) && err.to_string().contains("\"redis\""),
        "{err}"
    );
}

#[test]
fn http_probe_rejects_a_path_that_is_no_request_target() {
    let monitor = MinMonitor::new();
    let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    for path in ["/a b", "healthz"] {
        let err = monitor
            .add(
                "p",
                MonitoredService::new(url.clone(), Duration::ZERO).probe(Http::new().path(path)),
            )
            .unwrap_err();
        assert!(
            matches!(err, MonitorError::InvalidUrl { .. }) && err.to_string().contains(path),
            "{err}"
        );
    }
}

#[cfg(feature = "rustls")]
mod https {
    use super::*;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    /// A local HTTPS server with a fresh self-signed certificate for "localhost"; returns its
    /// port and the certificate's PEM.
    async fn https_backend() -> (u16, String, tokio::task::JoinHandle<()>) {
        let (acceptor, pem) = self_signed_localhost();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::<bytes::Bytes>::from("secure ok"),
                        ))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (port, pem, task)
    }

    #[tokio::test]
    async fn https_with_a_trusted_self_signed_certificate_is_up() {
        let (port, pem, _server) = https_backend().await;
        let url = Url::parse(&format!("https://localhost:{port}/")).unwrap();
        let probe = Http::new()
            .root_certificate_pem(pem.as_bytes())
            .unwrap()
            .body_matches("secure")
            .unwrap();
        assert!(probe.probe(&url).await.unwrap());
    }

    #[tokio::test]
    async fn https_with_an_untrusted_certificate_is_an_error_not_a_down() {
        let (port, _pem, _server) = https_backend().await;
        let url = Url::parse(&format!("https://localhost:{port}/")).unwrap();
        let err = Http::new().probe(&url).await.unwrap_err();
        assert!(err.to_string().contains("TLS handshake"), "{err}");
    }
}

/// A one-connection-at-a-time dialogue server: answers what `reply` says to what it reads.
async fn dialogue_server(reply: fn(&[u8]) -> Option<&'static [u8]>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 1024];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    match reply(&buf[..n]) {
                        Some(answer) => {
                            let _ = stream.write_all(answer).await;
                        }
                        None => return, // hang up
                    }
                }
            });
        }
    });
    addr
}

fn redis_ping() -> Expect {
    Expect::new()
        .send("PING\r\n")
        .expect(r"^\+PONG\r\n")
        .unwrap()
}

#[tokio::test]
async fn expect_dialogue_success() {
    let addr = dialogue_server(|said| (said == b"PING\r\n").then_some(&b"+PONG\r\n"[..])).await;
    assert!(redis_ping().probe(&url_for(addr)).await.unwrap());
}

#[tokio::test]
async fn expect_wrong_reply_then_hang_up_is_down() {
    let addr = dialogue_server(|_| Some(&b"-ERR unknown command\r\n"[..])).await;
    let two_step = Expect::new().send("PING\r\n").expect(r"^\+PONG").unwrap();
    // The server keeps talking nonsense; give it a short timeout through the monitor.
    let monitor = MinMonitor::new();
    monitor
        .add(
            "r",
            MonitoredService::new(url_for(addr), Duration::ZERO)
                .probe(two_step)
                .probe_timeout(Duration::from_millis(300)),
        )
        .unwrap();
    assert!(!monitor.status("r").await.unwrap());

    let hangs_up = dialogue_server(|_| None).await;
    assert!(!redis_ping().probe(&url_for(hangs_up)).await.unwrap());
}

#[tokio::test]
async fn expect_silence_is_down_at_the_timeout() {
    let (addr, _silent) = silent_server().await;
    let monitor = MinMonitor::new();
    let timeout = Duration::from_millis(300);
    monitor
        .add(
            "silent",
            MonitoredService::new(url_for(addr), Duration::ZERO)
                .probe(redis_ping())
                .probe_timeout(timeout),
        )
        .unwrap();
    let started = Instant::now();
    assert!(!monitor.status("silent").await.unwrap());
    assert!(
        started.elapsed() >= timeout,
        "down only once the timeout ran out"
    );
}

/// A probe that fails because this process is out of a resource of its own (here its memory,
/// `ENOMEM`; out of file descriptors, `EMFILE`, or local ports, alike) says nothing of the
/// backend: a service up stays up, its requests still go to it (the proxy answers for itself
/// if it cannot reach it either), and nothing starts it. It used to be marked down, and its
/// requests answered 500. A service not last up is answered as the proxy answers for the same
/// cause, a 503 to retry in a second (it was a 500), and not started; a probe's error of
/// another kind is still a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_out_of_local_resources_leaves_a_backend_up_and_forwarded_to() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower_monitor::{BoxError, ProbeResult, ServiceState, probe};

    let short = Arc::new(AtomicBool::new(false));
    let shortage = Arc::clone(&short);
    let probe = probe::from_fn(move |_url| {
        let short = shortage.load(Ordering::SeqCst);
        async move {
            if short {
                let error = std::io::Error::from(std::io::ErrorKind::OutOfMemory);
                return Err::<bool, BoxError>(error.into());
            }
            Ok(true)
        }
    });
    let wakes = counter();
    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse("http://127.0.0.1:9/").unwrap();
    let service = MonitoredService::new(url, Duration::ZERO)
        .probe(probe)
        .on_down(counting_trigger(Arc::clone(&wakes), false));
    monitor.add("app", service).unwrap();
    assert!(monitor.status("app").await.unwrap());

    short.store(true, Ordering::SeqCst);
    let error = monitor.reprobe("app").await.unwrap_err();
    assert!(matches!(error, MonitorError::Probe { .. }), "{error}");
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
    let last = monitor.snapshot()[0].last_probe.unwrap();
    assert_eq!(last.result, ProbeResult::LocalResources);

    // No grace period: the request's own probe fails so too.
    let layer = monitor.layer("app").unwrap();
    let server = serve(
        Router::new()
            .route("/", route_get(|| async { "app" }))
            .layer(layer),
    )
    .await;
    let reply = get(server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "app");
    assert_eq!(monitor.state("app").unwrap(), ServiceState::Up);
    assert_eq!(count(&wakes), 0, "on_down ran");

    // Never up: its status cannot be known, and it is not started for that.
    let failing = |kind: std::io::ErrorKind| {
        probe::from_fn(move |_url| async move {
            Err::<bool, BoxError>(std::io::Error::from(kind).into())
        })
    };
    let url = Url::parse("http://127.0.0.1:9/").unwrap();
    let service = MonitoredService::new(url.clone(), Duration::ZERO)
        .probe(failing(std::io::ErrorKind::OutOfMemory))
        .on_down(counting_trigger(Arc::clone(&wakes), false));
    monitor.add("cold", service).unwrap();
    let service = MonitoredService::new(url, Duration::ZERO)
        .probe(failing(std::io::ErrorKind::Other))
        .on_down(counting_trigger(Arc::clone(&wakes), false));
    monitor.add("broken", service).unwrap();
    let behind = |name| {
        let layer = monitor.layer(name).unwrap();
        serve(
            Router::new()
                .route("/", route_get(|| async { "app" }))
                .layer(layer),
        )
    };
    let (cold, broken) = (behind("cold").await, behind("broken").await);
    let reply = get(cold.addr, "/", &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(
        reply.headers["cache-control"], "no-store",
        "{:?}",
        reply.headers
    );
    let grpc = get(cold.addr, "/", &[("content-type", "application/grpc")]).await;
    assert_eq!(grpc.status, StatusCode::OK);
    assert_eq!(grpc.headers["grpc-status"], "14", "UNAVAILABLE");
    let json = get(cold.addr, "/", &[("accept", "application/json")]).await;
    assert_eq!(json.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(json.body.contains(r#""status":503"#), "{}", json.body);
    let fallbacks = monitor
        .snapshot()
        .into_iter()
        .find(|service| &*service.name == "cold")
        .unwrap()
        .counters
        .fallbacks;
    assert_eq!(fallbacks, 3);
    assert_eq!(
        count(&wakes),
        0,
        "on_down ran for want of the process's resources"
    );
    let reply = get(broken.addr, "/", &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        reply.body
    );
    assert!(reply.headers.get("retry-after").is_none());
}

/// A start whose probes can no longer be made (this process out of its own resources) ends at
/// its start timeout saying so, rather than blaming the backend for being down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_times_out_with_no_probe_made_says_so() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower_monitor::{BoxError, ServiceState, probe, trigger};

    let logs = common::logs(tracing::Level::INFO);
    let short = Arc::new(AtomicBool::new(false));
    let shortage = Arc::clone(&short);
    let probe = probe::from_fn(move |_url| {
        let short = shortage.load(Ordering::SeqCst);
        async move {
            match short {
                true => Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory).into()),
                false => Ok::<bool, BoxError>(false),
            }
        }
    });
    let monitor = Arc::new(MinMonitor::new());
    let url = Url::parse("http://127.0.0.1:9/").unwrap();
    let service = MonitoredService::new(url, Duration::from_secs(1))
        .probe(probe)
        .on_down(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }))
        .start_timeout(Duration::from_secs(1));
    monitor.add("unprobed", service).unwrap();
    let starting = Arc::clone(&monitor);
    let _start = tokio::spawn(async move { starting.start("unprobed").await });
    let state = |monitor: &MinMonitor| monitor.state("unprobed").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&monitor) != ServiceState::Starting {
        assert!(Instant::now() < deadline, "never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    short.store(true, Ordering::SeqCst);
    while state(&monitor) != ServiceState::Down {
        assert!(Instant::now() < deadline, "the start never timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let line = logs.line_with(&["unprobed did not come up"]);
    assert!(
        line.contains("not probed: this process is out of"),
        "{line}"
    );
}
