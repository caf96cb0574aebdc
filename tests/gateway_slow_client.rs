//! A client that sends half a request head and waits (by accident or as an attack) is closed
//! after a bound, so it neither stays open for ever nor holds a shutdown for its whole grace;
//! one that vanishes without closing (or a backend that does) is found out by TCP keepalive.

mod common;

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_head_is_closed_and_holds_no_shutdown() {
    // A grace longer than the test's bound: a connection that held the shutdown fails it.
    let config = common::TempFile::new(
        "half-head",
        r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ],
                          "shutdown_grace": "120s", "header_read_timeout": "1s" },
             "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "30s" } } }"#,
    );
    let (mut gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), false).await;

    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: app\r\n")
        .await
        .unwrap();
    common::sigterm(&gateway).await;

    let status = tokio::time::timeout(Duration::from_secs(30), gateway.wait())
        .await
        .expect("the half-sent head held the shutdown")
        .unwrap();
    assert_eq!(status.code(), Some(0), "every connection closed in time");
    common::closed_without_answer(&mut client, Duration::from_secs(5)).await;
}

/// SIGTERM, then a second one while a connection holds the drain: the gateway stops waiting
/// (exit 1: not clean) and still stops the backend program it started, which `kill -9` would
/// have left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_the_drain_and_still_stops_the_backend() {
    let backend = common::refused_addr().await;
    let fields = r#", "shutdown_grace": "120s", "header_read_timeout": "120s""#;
    let config = common::TempFile::new(
        "second-signal",
        &common::process_backend_config(backend, fields),
    );
    let (mut gateway, addr) = common::spawn_gateway_program(PROGRAM, config.path(), false).await;
    // Wake the backend program and wait until it answers.
    let _ = common::get_once(addr).await;
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(backend).await.is_err() {
        assert!(
            std::time::Instant::now() < give_up,
            "the program never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Half a head: this connection holds the drain for the whole grace.
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();

    common::sigterm(&gateway).await;
    // The drain has begun once the listener is closed.
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(std::time::Instant::now() < give_up, "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    common::sigterm(&gateway).await;
    let status = tokio::time::timeout(Duration::from_secs(20), gateway.wait())
        .await
        .expect("the second signal ended the wait")
        .unwrap();
    assert_eq!(status.code(), Some(1), "not a clean drain");
    assert!(
        TcpStream::connect(backend).await.is_err(),
        "the backend program outlived the gateway"
    );
}

/// A peer gone without closing (a laptop shut, a VM suspended) sends nothing and takes nothing:
/// an upgraded connection relayed to it, idle, would never end, holding the backend counted busy
/// and a turn of its limit. Both the gateway's client connections and its backend connections
/// have TCP keepalive on, which the kernel shows as the keepalive timer of the socket (the `tr`
/// column of `/proc/net/tcp` is 2); the test's own sockets, without it, show none.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_backend_connections_have_tcp_keepalive() {
    use tokio::io::AsyncReadExt;
    let backend =
        common::serve(axum::Router::new().route("/", axum::routing::get(|| async { "ok" }))).await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
             "services": {{ "app": {{ "url": "http://{}/", "grace_period": "30s" }} }} }}"#,
        backend.addr
    );
    let gateway =
        common::start_gateway(&config, &tower_monitor::config::TriggerRegistry::new()).await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 512];
    let read = client.read(&mut answer).await.unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    // Both connections are open and idle now (the backend one kept in the gateway's pool).
    let client_port = client.local_addr().unwrap().port();
    let sockets = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let timer = |local: u16, remote: Option<u16>| {
        sockets
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
                let matches = port(fields[1]) == Some(local)
                    && remote.is_none_or(|remote| port(fields[2]) == Some(remote))
                    && fields[3] == "01"; // established
                matches.then(|| fields[5].split(':').next().unwrap_or("").to_string())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(timer(client_port, None), ["00"], "the test's own socket");
    assert_eq!(
        timer(gateway.addr.port(), Some(client_port)),
        ["02"],
        "the gateway's side of the client connection"
    );
    // The gateway's connection to the backend (from one of its ports), and the backend's side.
    let to_backend: Vec<_> = sockets
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| {
            fields[3] == "01" && fields[2].ends_with(&format!(":{:04X}", backend.addr.port()))
        })
        .map(|fields| fields[5].split(':').next().unwrap_or("").to_string())
        .collect();
    assert!(!to_backend.is_empty(), "no connection to the backend");
    assert!(
        to_backend.iter().all(|timer| timer == "02"),
        "{to_backend:?}"
    );
}
