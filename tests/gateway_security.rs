//! The gateway as an attacker on the internet sees it: requests written byte by byte on raw TCP
//! to a gateway served in the test's process, in front of a backend that records every request
//! head it receives. Each test names what a client must not be able to do.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_monitor::config::TriggerRegistry;

/// The request heads a [`recording_backend`] received, in order.
type Heads = Arc<Mutex<Vec<String>>>;

/// A backend that records each request head (requests without a body) and answers 200 with
/// the head as its body; to an `Upgrade: h2c` it answers `101`, as an h2c server does, and then
/// answers whatever comes through the tunnel with `tunnel`.
async fn recording_backend() -> (SocketAddr, Heads) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Heads::default();
    let recorded = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                while let Some(head) = read_head(&mut stream, &mut pending).await {
                    recorded.lock().unwrap().push(head.clone());
                    if head.to_ascii_lowercase().contains("\r\nupgrade: h2c\r\n") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n")
                            .await;
                        let mut buffer = [0u8; 1024];
                        while let Ok(1..) = stream.read(&mut buffer).await {
                            let _ = stream.write_all(b"tunnel").await;
                        }
                        return;
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{head}",
                        head.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

/// Reads one message head (up to its blank line) from `stream`, keeping what follows it in
/// `pending`; `None` once the stream ends.
async fn read_head(stream: &mut (impl AsyncRead + Unpin), pending: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = pending.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => pending.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Reads one response (head and a `content-length` body) from the gateway, at most 10 s.
async fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (String, String) {
    tokio::time::timeout(Duration::from_secs(10), async {
        let head = read_head(stream, pending).await.expect("a response head");
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while pending.len() < length {
            let mut buffer = [0u8; 4096];
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the body broke off");
            pending.extend_from_slice(&buffer[..n]);
        }
        let body: Vec<u8> = pending.drain(..length).collect();
        (head, String::from_utf8_lossy(&body).into_owned())
    })
    .await
    .expect("a response within 10 s")
}

/// A gateway with one service, "app", whose URL has the base path `/base/`.
async fn gateway_with_base_path(backend: SocketAddr) -> common::InProcessGateway {
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
             "services": {{ "app": {{ "url": "http://{backend}/base/", "grace_period": "30s" }} }} }}"#
    );
    common::start_gateway(&config, &TriggerRegistry::new()).await
}

/// An h2c upgrade the backend accepts would leave the client speaking HTTP/2 straight to the
/// backend: every request through that tunnel would skip the base path (here reaching
/// `/admin` instead of `/base/admin`), the routes and the wake policy. The proxy forwards such
/// a request as an ordinary one, and the connection's next request is the proxy's to route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_opens_no_tunnel_past_the_base_path() {
    let (backend, heads) = recording_backend().await;
    let gateway = gateway_with_base_path(backend).await;

    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(
            b"GET /x HTTP/1.1\r\nhost: app\r\nconnection: Upgrade, HTTP2-Settings\r\n\
              upgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        )
        .await
        .unwrap();
    let mut pending = Vec::new();
    let (head, body) = read_response(&mut client, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "switched: {head}");
    assert!(body.starts_with("GET /base/x HTTP/1.1\r\n"), "{body}");
    assert!(!body.to_ascii_lowercase().contains("upgrade"), "{body}");

    client
        .write_all(b"GET /admin HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut client, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.starts_with("GET /base/admin HTTP/1.1\r\n"), "{body}");
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads.iter().all(|head| head.starts_with("GET /base/")));
}

/// A path with a dot-segment, in any spelling a backend may decode (`%2e`, `%2f`, `\`), would
/// be resolved by the backend to a place outside the service URL's base path: `/base/../admin`
/// is `/admin`. It is answered 400 and never reaches the backend, over HTTP/1.1 and HTTP/2;
/// paths with dots that are not dot-segments pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_climbs_out_of_the_base_path() {
    let (backend, heads) = recording_backend().await;
    let gateway = gateway_with_base_path(backend).await;

    for path in [
        "/../admin",
        "/%2e%2e/admin",
        "/.%2E/admin",
        "/x/..%2f..%2fadmin",
        "/..%5cadmin",
        "/..\\admin",
        "/..;jsessionid=x/admin",
        "/./admin/..",
    ] {
        let mut client = TcpStream::connect(gateway.addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: app\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let (head, _) = read_response(&mut client, &mut Vec::new()).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{path}: {head}");
    }
    let url = format!("http://{}/../admin", gateway.addr);
    let status = common::curl(&[
        "--http2-prior-knowledge",
        "--path-as-is",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
        &url,
    ])
    .await;
    assert_eq!(status, "400 2", "over HTTP/2");
    assert!(heads.lock().unwrap().is_empty(), "{heads:?}");

    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(b"GET /.well-known/a..b/v1.2/... HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut client, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        body.starts_with("GET /base/.well-known/a..b/v1.2/... HTTP/1.1\r\n"),
        "{body}"
    );
}

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

    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
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
        .write_all(b"GET /status HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
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

/// A client on the internet sends forwarded headers of its own: an address to hide behind or
/// blame, `host=evil.example` for the links a backend builds (password-reset poisoning),
/// `proto=https` to pass for a secure origin. The backend gets the gateway's headers alone,
/// whichever family it is set to add; with `trust_forwarded` (a load balancer in front), the
/// client's list is kept and the gateway's entry appended, and its host and scheme are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_a_client_sends_do_not_reach_the_backend() {
    let (backend, _heads) = recording_backend().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0",
                           "routes": [ {{ "host": "rfc", "service": "rfc" }},
                                       {{ "host": "lb", "service": "lb" }},
                                       {{ "service": "app" }} ],
                           "services": {{ "rfc": {{ "forwarded": "forwarded" }},
                                          "lb": {{ "trust_forwarded": true }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s" }},
                            "rfc": {{ "url": "http://{backend}/", "grace_period": "30s" }},
                            "lb": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let spoofed = "x-forwarded-for: 203.0.113.9\r\nx-forwarded-host: evil.example\r\n\
                   x-forwarded-proto: https\r\n\
                   forwarded: for=203.0.113.9;host=evil.example;proto=https\r\n";
    let mut seen = Vec::new();
    for host in ["app", "rfc", "lb"] {
        let mut client = TcpStream::connect(gateway.addr).await.unwrap();
        let request = format!("GET / HTTP/1.1\r\nhost: {host}\r\n{spoofed}\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let (head, body) = read_response(&mut client, &mut Vec::new()).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut forwarded: Vec<String> = body
            .lines()
            .filter(|line| line.starts_with("x-forwarded-") || line.starts_with("forwarded:"))
            .map(str::to_owned)
            .collect();
        forwarded.sort();
        seen.push(forwarded);
    }
    assert_eq!(
        seen[0],
        [
            "x-forwarded-for: 127.0.0.1",
            "x-forwarded-host: app",
            "x-forwarded-proto: http"
        ]
    );
    assert_eq!(
        seen[1],
        [r#"forwarded: for=127.0.0.1;host="rfc";proto=http"#]
    );
    assert_eq!(
        seen[2],
        [
            "forwarded: for=203.0.113.9;host=evil.example;proto=https",
            "x-forwarded-for: 203.0.113.9, 127.0.0.1",
            "x-forwarded-host: evil.example",
            "x-forwarded-proto: https"
        ]
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
        // The monitor's probe connects and closes first.
        let mut stream = loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            if read_head(&mut stream, &mut Vec::new()).await.is_some() {
                break stream;
            }
        };
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

/// The gateway serves cleartext only, but a client can name `https` as its request's scheme:
/// in an absolute-form target (`GET https://app/ HTTP/1.1`) or HTTP/2's `:scheme`. Taken for
/// the connection's, it became `X-Forwarded-Proto: https`, and a backend would skip its
/// redirect to HTTPS, or treat a login over plain HTTP as secure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_naming_https_does_not_make_the_backend_believe_it() {
    let (backend, _heads) = recording_backend().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "services": {{ "app": {{ "forwarded": "both" }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(b"GET https://app/x HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let (head, http1) = read_response(&mut client, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("https://app/x")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let http2 = String::from_utf8_lossy(&body).into_owned();

    for echo in [http1, http2] {
        assert!(echo.contains("\r\nx-forwarded-proto: http\r\n"), "{echo}");
        assert!(echo.contains(";proto=http\r\n"), "{echo}");
    }
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

    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    for i in 0..40 {
        let request = http::Request::get(format!("http://made-up-{i}.example/"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(used.load(Ordering::Relaxed), 1, "backend connections");
}
