//! What a client of the gateway must not be able to hold for ever, or multiply: connections
//! with no request, a backend connection behind an answer it does not read (over HTTP/1.1; one
//! HTTP/2 stream: `gateway_stalled_stream.rs`) or an upload it does not send, a backend
//! connection per `Host` it makes up, or the admin listener once file descriptors ran out.
//! Real clients and servers on 127.0.0.1; the gateway in the test's process, or the program.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_monitor::config::TriggerRegistry;

/// A connection that sends nothing, half of HTTP/2's preface, the preface and no request, or
/// one HTTP/2 request and then nothing, is closed once `header_read_timeout` has passed with no
/// request in flight, as an HTTP/1.1 one is: otherwise a client could hold any number of
/// connections (file descriptors, tasks) for ever at the cost of a connect each. A request that
/// takes longer than that is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_with_no_request_in_flight_is_closed_after_the_header_read_timeout() {
    let backend = common::serve(axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        "slow"
    }))
    .await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "header_read_timeout": "500ms" }},
             "services": {{ "app": {{ "url": "http://{}/", "grace_period": "30s" }} }} }}"#,
        backend.addr
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    // The preface, then an empty SETTINGS frame.
    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    for (what, sent) in [
        ("nothing", &b""[..]),
        ("half the HTTP/2 preface", &preface[..16]),
        ("the HTTP/2 preface", preface),
    ] {
        let mut client = TcpStream::connect(gateway.addr).await.unwrap();
        client.write_all(sent).await.unwrap();
        // Over HTTP/2 the gateway sends its SETTINGS first: read to the end, bounded.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buffer = [0u8; 1024];
            while let Ok(1..) = client.read(&mut buffer).await {}
        })
        .await;
        assert!(ended.is_ok(), "a client that sent {what} was never closed");
    }

    let (mut sender, connection) = common::http2_connection(gateway.addr).await;
    let request = http::Request::get("http://app/")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "answered after longer than the bound"
    );
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "slow");
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the idle HTTP/2 connection was never closed")
        .unwrap()
        .ok();
}

/// Clients of the proxy can use up the gateway's file descriptors (here 64 of them). The admin
/// listener, which failed its accept then, used to end for good, leaving the operator without
/// `/status` and the start / stop actions until a restart; it serves again once the
/// descriptors are back, as the proxy's listener does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_outlives_running_out_of_file_descriptors() {
    use tokio::io::AsyncBufReadExt;
    let admin = common::refused_addr().await;
    let config = common::TempFile::new(
        "fd-exhaustion",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                               "header_read_timeout": "120s" }},
                 "admin": {{ "listen": "{admin}", "token": "s3cret" }},
                 "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "30s" }} }} }}"#
        ),
    );
    let mut gateway = tokio::process::Command::new("sh")
        .args([
            "-c",
            r#"ulimit -n 64 && exec "$0" --config "$1" --workers 1"#,
        ])
        .args([env!("CARGO_BIN_EXE_tower-monitor-gateway"), config.path()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut gateway).await;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let mut stderr = tokio::io::BufReader::new(gateway.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let _ = lines_tx.send(line);
        }
    });
    let mut logged = async |wanted: &dyn Fn(&str) -> bool, what: &str| {
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.recv().await {
                if wanted(&line) {
                    return;
                }
            }
            panic!("the gateway's log ended");
        })
        .await;
        assert!(found.is_ok(), "the gateway never logged {what}");
    };

    // More connections than the gateway has descriptors: the kernel queues the rest.
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(TcpStream::connect(addr).await.unwrap());
    }
    logged(
        &|line| line.contains("accept failed") && !line.contains("admin"),
        "running out",
    )
    .await;
    // Reset at once if the admin listener is gone: the answer below says so.
    let request = TcpStream::connect(admin).await;
    let mut request = request.expect("the admin listener reset the connection: it ended");
    let _ = request
        .write_all(b"GET /status HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await;
    logged(
        &|line| {
            line.contains("admin") && (line.contains("accept failed") || line.contains("stopped"))
        },
        "the admin listener's failed accept",
    )
    .await;
    drop(clients);

    let mut reply = String::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), request.read_to_string(&mut reply)).await;
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "the admin listener did not answer: {read:?} {reply:?}"
    );
}

/// A client that asks for a large answer and reads none of it would hold its request, the
/// backend connection behind it and the backend's wakefulness for as long as it likes; a few
/// thousand such clients, as many backend connections. Once it has taken nothing for
/// `send_timeout`, the gateway closes it, and so the backend connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_releases_the_backend_after_the_send_timeout() {
    const BODY: usize = 256 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (released, backend_released) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut stream = first_request(&listener).await;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BODY}\r\n\r\n");
        let mut written = match stream.write_all(head.as_bytes()).await {
            Ok(()) => 0,
            Err(_) => return,
        };
        let chunk = vec![0u8; 1 << 16];
        while written < BODY {
            if stream.write_all(&chunk).await.is_err() {
                let _ = released.send(written);
                return;
            }
            written += chunk.len();
        }
    });
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "send_timeout": "1s" }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(b"GET /large HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let written = tokio::time::timeout(Duration::from_secs(30), backend_released)
        .await
        .expect("the backend connection was never released")
        .unwrap();
    assert!(written < BODY, "{written}");
    drop(client);
}

/// An HTTP/2 backend gets the client's `Host` as `:authority`. Each `Host` a client makes up
/// must not cost a connection to the backend: forty requests with forty hosts, on one client
/// connection, reach the backend on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_hosts_do_not_open_a_backend_connection_each() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    // Connections that carried a request (the monitor's probe carries none).
    let used = Arc::new(AtomicUsize::new(0));
    let counted = used.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counted = counted.clone();
            let first = Arc::new(AtomicBool::new(true));
            let service = hyper::service::service_fn(move |_request| {
                if first.swap(false, Ordering::Relaxed) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let gateway = common::gateway_to_http2_backend(backend).await;

    let (mut sender, _connection) = common::http2_connection(gateway.addr).await;
    for i in 0..40 {
        let request = http::Request::get(format!("http://made-up-{i}.example/"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(used.load(Ordering::Relaxed), 1, "backend connections");
}

/// A client that announces an upload and then sends nothing more held its request, the
/// backend connection it was streamed on, and so the backend awake, for ever. Once the backend
/// has waited `body_read_timeout` for the next bytes, the client gets a 408 and the backend
/// connection is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_upload_stalls_gets_a_408_and_releases_the_backend() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (released, backend_released) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut stream = first_request(&listener).await;
        // Reads what comes of the body until the gateway ends the connection.
        let mut buffer = [0u8; 1024];
        while let Ok(1..) = stream.read(&mut buffer).await {}
        let _ = released.send(());
    });
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "services": {{ "app": {{ "body_read_timeout": "1s" }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(
            b"POST /upload HTTP/1.1\r\nhost: app\r\ncontent-length: 100000\r\n\r\nfirst bytes",
        )
        .await
        .unwrap();
    let head = tokio::time::timeout(
        Duration::from_secs(20),
        common::read_head(&mut client, &mut Vec::new()),
    )
    .await
    .expect("answered once the upload stalled")
    .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    tokio::time::timeout(Duration::from_secs(10), backend_released)
        .await
        .expect("the backend connection was let go")
        .unwrap();
}

/// The first connection to `listener` that sends a request head, its head read (the monitor's
/// probe connects and closes first).
async fn first_request(listener: &TcpListener) -> TcpStream {
    loop {
        let (mut stream, _) = listener.accept().await.unwrap();
        if common::read_head(&mut stream, &mut Vec::new())
            .await
            .is_some()
        {
            return stream;
        }
    }
}
