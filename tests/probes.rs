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
