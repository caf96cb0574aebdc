//! The gateway as an attacker on the internet sees it: requests written byte by byte on raw TCP
//! (and by hyper's HTTP/2 client, and curl) to a gateway served in the test's process, in front
//! of a backend that records every request head it receives. Each test names what a client
//! must not be able to reach or make the backend believe. (What a client must not be able to
//! hold for ever: `gateway_exhaustion.rs`.)

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_monitor::config::TriggerRegistry;

/// A backend that records each request head (requests without a body) and answers 200 with
/// the head as its body; to an `Upgrade: h2c` it answers `101`, as an h2c server does, and then
/// answers whatever comes through the tunnel with `tunnel`.
async fn recording_backend() -> (SocketAddr, common::Heads) {
    common::recording_backend(|head| {
        if head.to_ascii_lowercase().contains("\r\nupgrade: h2c\r\n") {
            let switch =
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n";
            return common::RawAnswer::Tunnel(switch.to_vec(), b"tunnel");
        }
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{head}",
            head.len()
        )
        .into()
    })
    .await
}

/// Reads one response (head and a `content-length` body) from the gateway, at most 10 s.
async fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (String, String) {
    tokio::time::timeout(Duration::from_secs(10), async {
        let head = common::read_head(stream, pending)
            .await
            .expect("a response head");
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
    common::gateway_to_app(&format!("http://{backend}/base/"), "{}").await
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

    let (mut sender, _connection) = common::http2_connection(gateway.addr).await;
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
