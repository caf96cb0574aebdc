//! The `tower-monitor-gateway` program serving, as an operator runs it: a SIGTERM lets an
//! in-flight download finish and stops the backend program the gateway started, then exits 0;
//! the access log and failed forwards are logged with their service; in hold mode, a request
//! to a backend program that crashed is held while the program is started again.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// A backend whose `/download` sends 20 chunks of 1 KiB, one every 100 ms.
async fn slow_download_backend() -> common::Server {
    common::serve(Router::new().fallback(|| async {
        let chunks = futures::stream::iter(0..20).then(|_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, std::io::Error>(vec![b'x'; 1024])
        });
        Body::from_stream(chunks)
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_download_finish_then_exits_0() {
    let backend = slow_download_backend().await;
    let config = common::TempFile::new(
        "drain",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                              "shutdown_grace": "10s" }},
                 "services": {{ "app": {{ "url": "http://{}/", "grace_period": "30s" }} }} }}"#,
            backend.addr
        ),
    );
    let (mut gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), false).await;

    let mut download = TcpStream::connect(addr).await.unwrap();
    download
        .write_all(b"GET /download HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    // The response has begun: the download is in flight.
    while !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = download.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the gateway closed before answering");
        received.extend_from_slice(&buffer[..n]);
    }
    common::sigterm(&gateway).await;

    // The download completes, every byte of it (chunked: the last chunk is `0\r\n\r\n`).
    tokio::time::timeout(Duration::from_secs(10), async {
        while !received.ends_with(b"0\r\n\r\n") {
            let n = download.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the download was cut: {} bytes", received.len());
            received.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("the download finishes within the grace");
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let body_bytes = received[head_end..].iter().filter(|&&b| b == b'x').count();
    assert_eq!(body_bytes, 20 * 1024);

    let status = tokio::time::timeout(Duration::from_secs(10), gateway.wait())
        .await
        .expect("the gateway exits after the download")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_and_failed_forwards_are_logged_with_their_service() {
    // `/slow-body`: a chunk, and the next 400 ms later; `/endless`: a chunk, then nothing.
    let chunk =
        |text: &'static str| Ok::<_, std::io::Error>(bytes::Bytes::from_static(text.as_bytes()));
    let backend = common::serve(
        Router::new()
            .route(
                "/slow-body",
                axum::routing::get(move || async move {
                    let later = futures::stream::once(async move {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        chunk("b")
                    });
                    Body::from_stream(futures::stream::iter([chunk("a")]).chain(later))
                }),
            )
            .route(
                "/endless",
                axum::routing::get(move || async move {
                    let never = futures::stream::pending();
                    Body::from_stream(futures::stream::iter([chunk("x")]).chain(never))
                }),
            )
            .fallback(|| async { "hi" }),
    )
    .await;
    let (gone, doomed) = doomed_backend().await;
    let config = common::TempFile::new(
        "access",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "access_log": true,
                              "routes": [ {{ "path_prefix": "/gone", "service": "gone" }},
                                          {{ "service": "app" }} ] }},
                 "services": {{ "app": {{ "url": "http://{}/", "grace_period": "30s" }},
                               "gone": {{ "url": "http://{gone}/", "grace_period": "30s" }} }} }}"#,
            backend.addr
        ),
    );
    let (mut gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), true).await;
    let get = |path: &'static str| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        reply
    };
    let reply = get("/hello").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        get("/slow-body")
            .await
            .ends_with("a\r\n1\r\nb\r\n0\r\n\r\n")
    );
    // A client that leaves in the middle of a body.
    let mut endless = TcpStream::connect(addr).await.unwrap();
    endless
        .write_all(b"GET /endless HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !seen.ends_with(b"x\r\n") {
        let mut buffer = [0; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), endless.read(&mut buffer))
            .await
            .expect("the first chunk arrives")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buffer[..n]);
    }
    drop(endless);
    // A backend that goes away while cached up: the forward fails.
    assert!(get("/gone").await.starts_with("HTTP/1.1 200"));
    doomed.abort();
    let _ = doomed.await;
    let give_up = std::time::Instant::now() + Duration::from_secs(5);
    // Its connections close as their tasks are aborted, a moment after the server's own.
    let reply = loop {
        let reply = get("/gone").await;
        if !reply.starts_with("HTTP/1.1 200") {
            break reply;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "the backend is still answering"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The layer learns from the proxy's `BackendGone`: the fallback, not a bare 502.
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");

    common::sigterm(&gateway).await;
    let mut log = String::new();
    let mut stderr = gateway.stderr.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), stderr.read_to_string(&mut log))
        .await
        .expect("the gateway exits")
        .unwrap();
    let access = |path: &str| {
        log.lines()
            .find(|l| l.contains("request") && l.contains(&format!("path={path} ")))
            .unwrap_or_else(|| panic!("no access line for {path} in:\n{log}"))
    };
    for field in [
        "service=app",
        "method=GET",
        "status=200",
        "ms=",
        "bytes=2",
        "complete=true",
        "cold_start_ms=-",
    ] {
        assert!(
            access("/hello").contains(field),
            "{field} missing: {}",
            access("/hello")
        );
    }
    // The duration covers the body, not only its head.
    let ms: u64 = access("/slow-body")
        .split_whitespace()
        .find_map(|field| field.strip_prefix("ms="))
        .and_then(|ms| ms.parse().ok())
        .expect("a duration");
    assert!(ms >= 400, "{}", access("/slow-body"));
    assert!(access("/slow-body").contains("complete=true"));
    assert!(
        access("/endless").contains("bytes=1") && access("/endless").contains("complete=false"),
        "{}",
        access("/endless")
    );
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("backend unreachable")
            && l.contains("service=gone")),
        "no warning for the failed forward in:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes when not on a terminal"
    );
}

/// A backend whose connections all close when its task is aborted.
async fn doomed_backend() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            connections.spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"soon gone")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_backend_program_the_gateway_started_then_exits_0() {
    let backend = common::refused_addr().await;
    let config = common::TempFile::new("process", &common::process_backend_config(backend, ""));
    let (gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), true).await;
    let status_of = || async move {
        common::get_once(addr)
            .await
            .get(9..12)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        status_of().await,
        "503",
        "the first request starts the program"
    );
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    while status_of().await != "200" {
        assert!(
            std::time::Instant::now() < give_up,
            "the program never came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    common::terminate_gateway_then_backend_is_gone(gateway, backend).await;
}

/// The PID of the Python backend serving on `port` (read from /proc: no tool needed).
#[cfg(target_os = "linux")]
fn python_backend_pid(port: u16) -> Option<u32> {
    let wanted = format!("http.server\0{port}\0");
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(&wanted)
            .then_some(pid)
    })
}

/// An operator's backend program crashes while the gateway has it cached up. In hold mode the
/// next request is not answered 503: its connection was refused before any of it left, so the
/// gateway starts the program again, holds the request until it answers, and sends it then.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_crashed_backend_program_is_held_until_it_is_restarted() {
    let backend = common::refused_addr().await;
    let hold = r#", "services": { "app": { "hold": { "max_wait": "20s" } } }"#;
    let config = common::TempFile::new("crashed", &common::process_backend_config(backend, hold));
    let (gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), false).await;
    let url = format!("http://{addr}/");
    let first = common::curl(&["--include", &url]).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let crashed = python_backend_pid(backend.port()).expect("the backend program runs");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &crashed.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(backend).await.is_ok() {
        assert!(
            std::time::Instant::now() < give_up,
            "the program outlived SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let held = common::curl(&["--include", &url]).await;
    assert!(held.starts_with("HTTP/1.1 200"), "{held}");
    assert!(
        held.to_ascii_lowercase().contains("x-cold-start:"),
        "{held}"
    );
    let restarted = python_backend_pid(backend.port()).expect("the program was started again");
    assert_ne!(restarted, crashed);

    common::terminate_gateway_then_backend_is_gone(gateway, backend).await;
}
