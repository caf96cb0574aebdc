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

/// A connection that sends nothing, half of HTTP/2's preface, the preface and no request, one
/// HTTP/2 request and then nothing, half an HTTP/1.1 request head, or a head a byte at a time
/// (slowloris), is closed once `header_read_timeout` has passed with no request in flight:
/// otherwise a client could hold any number of connections (file descriptors, tasks) for ever
/// at the cost of a connect each. A request that takes longer than that is answered.
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
        (
            "half an HTTP/1.1 request head",
            b"GET / HTTP/1.1\r\nhost: app\r\n",
        ),
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
    // A head that never ends, a byte every 100 ms: each byte is progress, but no request.
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nx-slow: ")
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 64];
        loop {
            tokio::select! {
                read = client.read(&mut buffer) => if let Ok(0) | Err(_) = read { break },
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if client.write_all(b"a").await.is_err() {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a head sent a byte at a time was never closed"
    );

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
    let mut gateway = common::gateway_with_nofile(&config, 64).await;

    // More connections than the gateway has descriptors: the kernel queues the rest.
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(TcpStream::connect(gateway.addr).await.unwrap());
    }
    gateway
        .logged(
            |line| line.contains("accept failed") && !line.contains("admin"),
            "running out",
        )
        .await;
    // Reset at once if the admin listener is gone: the answer below says so.
    let request = TcpStream::connect(admin).await;
    let mut request = request.expect("the admin listener reset the connection: it ended");
    let _ = request
        .write_all(b"GET /status HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await;
    gateway
        .logged(
            |line| {
                line.contains("admin")
                    && (line.contains("accept failed") || line.contains("stopped"))
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

/// A gateway out of file descriptors (a flood of client connections against `ulimit -n`)
/// can neither connect to its backend nor probe it: its own shortage, which says nothing of
/// the backend. Each request gets a 503 with `Retry-After` (not the waiting page), an error
/// names the service and the cause, and the backend stays up: not marked down, `on_down` not
/// run; once descriptors are back, requests reach it again. The failed connect used to be
/// taken for a gone backend: marked down, `on_down` run, the waiting page served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_out_of_file_descriptors_leaves_its_backend_up() {
    // Each answer closes its connection: each request needs a new one to the backend.
    let backend = common::serve(
        axum::Router::new().fallback(|| async { ([(http::header::CONNECTION, "close")], "hello") }),
    )
    .await;
    let admin = common::refused_addr().await;
    let config = common::TempFile::new(
        "fd-backend",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                               "header_read_timeout": "120s" }},
                 "admin": {{ "listen": "{admin}", "token": "s3cret" }},
                 "services": {{ "app": {{ "url": "http://{}/", "grace_period": "1s",
                                         "on_down": {{ "type": "command", "command": "true" }} }} }} }}"#,
            backend.addr
        ),
    );
    let mut gateway = common::gateway_with_nofile(&config, 64).await;
    // One connection, kept open from before the descriptors run out to the end: no request
    // frees one that the next could take.
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    let mut pending = Vec::new();
    let mut ask = async || common::get_kept_alive(&mut client, &mut pending).await;
    let reply = ask().await;
    assert!(reply.starts_with("http/1.1 200"), "{reply}");
    let up_until = tokio::time::Instant::now() + Duration::from_secs(1);

    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(TcpStream::connect(gateway.addr).await.unwrap());
    }
    let out = |line: &str| line.contains("accept failed") && !line.contains("admin");
    gateway.logged(out, "running out").await;
    // The first most likely within the grace period (the forward fails), the second past it
    // (the request's own probe fails first).
    let reply = ask().await;
    tokio::time::sleep_until(up_until + Duration::from_millis(100)).await;
    let probed = ask().await;
    for reply in [reply, probed] {
        assert!(reply.starts_with("http/1.1 503"), "{reply}");
        assert!(reply.contains("retry-after: 1\r\n"), "{reply}");
        assert!(
            reply.ends_with("service unavailable; try again\n"),
            "{reply}"
        );
    }
    let error = gateway
        .logged(
            |line| line.contains("probe could not be made"),
            "the probe's shortage",
        )
        .await;
    assert!(
        error.contains("ERROR") && error.contains("service=app"),
        "{error}"
    );
    drop(clients);

    let status = common::exchange(
        admin,
        "GET /status HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    let body = status.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let status: serde_json::Value = serde_json::from_str(body).expect(&status);
    assert_eq!(status[0]["state"], "up", "{status}");
    assert_eq!(status[0]["counters"]["wakes"], 0, "on_down ran: {status}");
    assert_eq!(
        status[0]["last_probe"]["result"], "local_resources",
        "{status}"
    );
    let reply = common::get_once(gateway.addr).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "not back: {reply}");
    let _ = gateway.child.kill().await;
    let forward = gateway
        .log
        .iter()
        .find(|line| line.contains("cannot reach the backend"));
    let forward = forward.expect("the failed forward is logged");
    assert!(
        forward.contains("ERROR") && forward.contains("Too many open files"),
        "{forward}"
    );
    assert!(
        !gateway
            .log
            .iter()
            .any(|line| line.contains("marking it down"))
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
