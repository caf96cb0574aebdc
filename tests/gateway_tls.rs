//! The gateway's HTTPS listener (`gateway.tls`), on 127.0.0.1 with certificates made here:
//! curl over HTTP/2 (ALPN) and HTTP/1.1, the backend told `https`, a WebSocket over TLS, a
//! client that never completes its handshake, a plain HTTP request on the port, a client that
//! breaks the protocol (not warned of), the certificate rotated by a reload (SIGHUP), and
//! headless Chromium loading a page over HTTP/2 whose WebSocket echoes. The errors of each bad
//! file are in `gateway_config.rs`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Folder, SelfSigned, TLS, https_get, tls_config as config, tls_folder as folder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// A backend that answers the forwarded headers it got: `X-Forwarded-Proto`, then `Forwarded`.
async fn forwarded_echo() -> common::Server {
    common::serve(
        axum::Router::new().fallback(|headers: http::HeaderMap| async move {
            let header = |name: &str| {
                let value = headers.get(name).map(|v| v.to_str().unwrap().to_string());
                value.unwrap_or_else(|| "-".into())
            };
            format!("{} {}", header("x-forwarded-proto"), header("forwarded"))
        }),
    )
    .await
}

/// The gateway program on the configuration in `folder`, with `--workers 2`: the program, the
/// address it listens on, and its log, line by line.
async fn program(
    folder: &Folder,
) -> (
    tokio::process::Child,
    SocketAddr,
    mpsc::UnboundedReceiver<String>,
) {
    let (mut program, addr) = common::spawn_gateway_program_with(
        PROGRAM,
        folder.path("gateway.json"),
        true,
        &["--workers", "2"],
    )
    .await;
    let log = common::stderr_lines(&mut program);
    (program, addr, log)
}

/// The next line of `log` that contains `wanted` (bounded wait).
async fn logged(log: &mut mpsc::UnboundedReceiver<String>, wanted: &str) -> String {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = log.recv().await {
            if line.contains(wanted) {
                return line;
            }
        }
        panic!("the log ended before {wanted:?}");
    });
    found
        .await
        .unwrap_or_else(|_| panic!("never logged {wanted:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_http2_and_http11_over_tls_and_the_backend_is_told_https() {
    let backend = forwarded_echo().await;
    let certificate = SelfSigned::new();
    let folder = folder("curl", &certificate, backend.addr, "");
    let (mut gateway, addr, _log) = program(&folder).await;
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let cacert = folder.path("cert.pem");
    let cacert = cacert.to_str().unwrap();
    let told = format!(
        r#"https for=127.0.0.1;host="127.0.0.1:{}";proto=https"#,
        addr.port()
    );
    // ALPN offering h2 and http/1.1, http/1.1 alone, nothing (curl then speaks HTTP/1.1).
    let cases = [("--http2", "2"), ("--http1.1", "1.1"), ("--no-alpn", "1.1")];
    for (flag, version) in cases {
        let said = common::curl(&["--cacert", cacert, flag, "-w", " %{http_version}", &url]).await;
        assert_eq!(said, format!("{told} {version}"), "curl {flag}");
    }
    common::sigterm_then_exits_0(&mut gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_tls_echoes_and_holds_the_shutdown() {
    let (backend, server) = common::websocket_echo_backend().await;
    let certificate = SelfSigned::new();
    let folder = folder(
        "websocket",
        &certificate,
        backend,
        r#", "shutdown_grace": "10s""#,
    );
    let mut gateway = common::start_gateway_from_file(&folder.path("gateway.json")).await;
    let tls = common::tls_connect(gateway.addr, &certificate.cert, &[b"http/1.1"])
        .await
        .unwrap();
    let url = format!("wss://127.0.0.1:{}/chat", gateway.addr.port());
    let (socket, response) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(response.status(), 101);
    common::shutdown_waits_for(&mut gateway, socket).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_complete_its_handshake_holds_no_one_up_and_is_closed() {
    let backend = forwarded_echo().await;
    let certificate = SelfSigned::new();
    let fields = r#", "header_read_timeout": "1s""#;
    let folder = folder("handshake", &certificate, backend.addr, fields);
    let gateway = common::start_gateway_from_file(&folder.path("gateway.json")).await;
    let began = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(gateway.addr).await.unwrap();
    // A TLS record's header, announcing a handshake message that never comes.
    let mut halfway = TcpStream::connect(gateway.addr).await.unwrap();
    halfway.write_all(&[22, 3, 1, 0, 200]).await.unwrap();
    // Answered meanwhile: the accept loop does not wait for a handshake.
    let reply = https_get(gateway.addr, &certificate.cert).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.ends_with("https for=127.0.0.1;host=\"app\";proto=https"),
        "{reply}"
    );
    let mut byte = [0u8; 1];
    let open = silent.try_read(&mut byte);
    assert!(
        matches!(&open, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "{open:?}"
    );
    // Once through its handshake, a client that asks nothing is closed by the idle watch, as
    // a cleartext one is (within twice the bound).
    let mut quiet = common::tls_connect(gateway.addr, &certificate.cert, &[b"h2"])
        .await
        .unwrap();
    common::closed_without_answer(&mut silent, Duration::from_secs(5)).await;
    common::closed_without_answer(&mut halfway, Duration::from_secs(5)).await;
    assert!(
        began.elapsed() >= Duration::from_millis(900),
        "closed before the bound"
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), quiet.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the idle connection stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_closes_a_connection_still_in_its_handshake() {
    let backend = forwarded_echo().await;
    let certificate = SelfSigned::new();
    let fields = r#", "header_read_timeout": "30s", "shutdown_grace": "10s""#;
    let folder = folder("shutdown", &certificate, backend.addr, fields);
    let mut gateway = common::start_gateway_from_file(&folder.path("gateway.json")).await;
    let mut silent = TcpStream::connect(gateway.addr).await.unwrap();
    // Accepted after the silent one: that one is in its handshake.
    let reply = https_get(gateway.addr, &certificate.cert).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    gateway.shut_down();
    let ended = gateway.ended_within(Duration::from_secs(3)).await;
    assert_eq!(ended, Some(true), "the shutdown waited for the handshake");
    common::closed_without_answer(&mut silent, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_request_on_the_tls_port_is_answered_400_and_https_goes_on() {
    let backend = forwarded_echo().await;
    let certificate = SelfSigned::new();
    let folder = folder("plain", &certificate, backend.addr, "");
    let gateway = common::start_gateway_from_file(&folder.path("gateway.json")).await;
    let request = "GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n";
    let reply = common::exchange(gateway.addr, request).await;
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    assert!(
        reply.ends_with("use https:// instead of http://\n"),
        "{reply}"
    );
    let reply = https_get(gateway.addr, &certificate.cert).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_breaks_the_tls_protocol_is_not_warned_of() {
    let backend = forwarded_echo().await;
    let certificate = SelfSigned::new();
    let fields = r#", "access_log": true"#;
    let folder = folder("quiet", &certificate, backend.addr, fields);
    let (mut gateway, addr, mut log) = program(&folder).await;
    // What a scanner may send first: application data, a ChangeCipherSpec, a warning alert.
    let records: [&[u8]; 3] = [
        &[23, 3, 3, 0, 1, 0],
        &[20, 3, 3, 0, 1, 1],
        &[21, 3, 3, 0, 2, 1, 0],
    ];
    for record in records {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(record).await.unwrap();
        // Its end too: the warning alert alone would leave the handshake waiting.
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest));
        assert!(read.await.is_ok(), "{record:?}: the connection stayed open");
    }
    // Logged after whatever those were: the log is written as it happens.
    let reply = https_get(addr, &certificate.cert).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let mut before = Vec::new();
    let request = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = log.recv().await {
            if line.contains("path=/") {
                return;
            }
            before.push(line);
        }
    });
    assert!(request.await.is_ok(), "no access log line: {before:#?}");
    assert!(
        !before.iter().any(|line| line.contains("WARN")),
        "{before:#?}"
    );
    common::sigterm_then_exits_0(&mut gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rotates_the_certificate_and_a_bad_one_is_refused() {
    let (backend, server) = common::websocket_echo_backend().await;
    let (old, new) = (SelfSigned::new(), SelfSigned::new());
    let folder = folder("rotate", &old, backend, "");
    let (mut gateway, addr, mut log) = program(&folder).await;
    let tls = common::tls_connect(addr, &old.cert, &[b"http/1.1"])
        .await
        .unwrap();
    let url = format!("wss://127.0.0.1:{}/chat", addr.port());
    let (mut socket, _) = tokio_tungstenite::client_async(&url, tls).await.unwrap();
    common::echoes(&mut socket, "before").await;

    // Renewed as certbot renews: the same files, new contents, then SIGHUP.
    folder.certificate(&new);
    common::signal(&gateway, "HUP").await;
    let line = logged(&mut log, "configuration reloaded").await;
    assert!(
        line.contains("TLS certificate and key read again"),
        "{line}"
    );
    let refused = common::tls_connect(addr, &old.cert, &[b"http/1.1"]).await;
    assert!(
        refused.is_err(),
        "a new connection still gets the old certificate"
    );
    common::tls_connect(addr, &new.cert, &[b"http/1.1"])
        .await
        .expect("the new certificate");
    // The socket opened before goes on, on its session of the old certificate.
    common::echoes(&mut socket, "after").await;

    // A key that does not match: the whole file is refused, the new certificate stays.
    folder.write("key.pem", &old.key);
    common::signal(&gateway, "HUP").await;
    let line = logged(&mut log, "reload refused").await;
    assert!(
        line.contains("gateway.tls.key: the private key in \"key.pem\""),
        "{line}"
    );
    assert!(
        line.contains("does not match the certificate in \"cert.pem\""),
        "{line}"
    );
    common::tls_connect(addr, &new.cert, &[b"http/1.1"])
        .await
        .expect("the certificate in use");

    // Turning TLS off needs a restart.
    folder.write("gateway.json", &config(backend, "", ""));
    common::signal(&gateway, "HUP").await;
    let line = logged(&mut log, "reload refused").await;
    assert!(
        line.contains("gateway.tls: turning TLS off needs a restart"),
        "{line}"
    );
    common::echoes(&mut socket, "still").await;
    drop(socket);
    common::sigterm_then_exits_0(&mut gateway).await;
    server.abort();
}

/// The page the browser loads: it opens a WebSocket to `/chat` on its own origin, and reports
/// to `/report` the protocol its own load used and the echo of what it sent (or the error).
const PAGE: &str = r#"<!doctype html><title>over TLS</title>
<script>
const [navigation] = performance.getEntriesByType("navigation");
const report = (what) => fetch("/report?" + new URLSearchParams({
    protocol: navigation.nextHopProtocol, ...what }));
const socket = new WebSocket("wss://" + location.host + "/chat");
socket.onopen = () => socket.send("hello over TLS");
socket.onmessage = (message) => report({ echoed: message.data });
socket.onerror = () => report({ echoed: "(a WebSocket error)" });
</script>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_loads_a_page_over_http2_and_its_websocket_echoes() {
    let Some(browser) = common::chromium_or_skip() else {
        return;
    };
    let (reports, mut reported) = mpsc::unbounded_channel();
    let page = axum::Router::new()
        .route(
            "/report",
            axum::routing::get(move |query: axum::extract::RawQuery| {
                let _ = reports.send(query.0.unwrap_or_default());
                async { http::StatusCode::NO_CONTENT }
            }),
        )
        .fallback(|| async { axum::response::Html(PAGE) });
    let page = common::serve(page).await;
    let (sockets, server) = common::websocket_echo_backend().await;
    let certificate = SelfSigned::new();
    let folder = Folder::new("chromium");
    folder.certificate(&certificate);
    folder.write(
        "gateway.json",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "access_log": true{TLS},
                               "routes": [ {{ "path_prefix": "/chat", "service": "chat" }},
                                           {{ "service": "page" }} ] }},
                 "services": {{
                     "page": {{ "url": "http://{}/", "grace_period": "30s" }},
                     "chat": {{ "url": "http://{sockets}/", "grace_period": "30s" }} }} }}"#,
            page.addr
        ),
    );
    let (mut gateway, addr, mut log) = program(&folder).await;
    // Trusted by its public key: Chromium on Linux takes an authority from an NSS database
    // only, which no tool at hand writes; this trusts that one key, not any certificate.
    let trust = format!(
        "--ignore-certificate-errors-spki-list={}",
        certificate.spki_sha256
    );
    let url = format!("https://127.0.0.1:{}/", addr.port());
    let profile = Folder::new("chromium-profile");
    // Left open until the page has reported: a DOM dumped at its load would not wait for
    // the WebSocket.
    let mut chromium = common::chromium_command(&browser, &profile.path(""), &[&trust], &url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(30), reported.recv()).await;
    // Stopped as a user closes it, so that it stops its own processes.
    common::sigterm(&chromium).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), chromium.wait()).await;
    if stopped.is_err() {
        chromium.kill().await.unwrap();
    }
    let report = report.expect("the page reports").unwrap();
    assert_eq!(report, "protocol=h2&echoed=hello+over+TLS");
    // Over the page's HTTP/2 connection (RFC 8441), not an HTTP/1.1 one of its own.
    let socket = logged(&mut log, "path=/chat").await;
    assert!(socket.contains("method=CONNECT"), "{socket}");
    common::sigterm_then_exits_0(&mut gateway).await;
    server.abort();
}
