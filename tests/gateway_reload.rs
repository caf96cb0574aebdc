//! The `tower-monitor-gateway` program reloading its configuration file on SIGHUP: routes
//! added and removed, files refused whole, and connections open across the reload. What a
//! reload does to the services is in `gateway_reload_services.rs`.

mod common;

use common::reload::{Gateway, Service, config, get};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_added_serves_and_a_route_removed_answers_404() {
    let backend = common::refused_addr().await;
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let mut gateway = Gateway::start("reload-routes", v1).await;
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);
    assert_eq!(get(gateway.addr, "/b/").await.0, 404);

    let v2 = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    );
    let line = gateway.reload(&v2).await;
    assert!(line.contains("kept: app; 1 routes"), "{line}");
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
    assert_eq!(get(gateway.addr, "/a/").await.0, 404);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_or_a_new_listen_address_changes_nothing() {
    let backend = common::refused_addr().await;
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let mut gateway = Gateway::start("reload-refused", v1).await;
    let (status, before) = get(gateway.addr, "/a/").await;
    assert_eq!(status, 200);
    let valid = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    );

    let no_routes = config(gateway.script(), &[], &[Service("app", backend, "one")]);
    let line = gateway.reload(&no_routes).await;
    assert!(
        line.contains("reload refused") && line.contains("gateway.routes:"),
        "{line}"
    );
    let moved = valid.replace("127.0.0.1:0", "127.0.0.1:1");
    let line = gateway.reload(&moved).await;
    assert!(
        line.contains("reload refused") && line.contains("gateway.listen:"),
        "{line}"
    );
    assert!(line.contains("restart"), "{line}");
    let admin = valid.replacen('{', r#"{ "admin": { "token": "t" },"#, 1);
    let line = gateway.reload(&admin).await;
    assert!(
        line.contains("reload refused") && line.contains("admin:"),
        "{line}"
    );

    // The configuration in use serves as before: /a/, not /b/, and the same program.
    assert_eq!(get(gateway.addr, "/a/").await, (200, before));
    assert_eq!(get(gateway.addr, "/b/").await.0, 404);
    gateway.stop().await;
}

/// With `--listen`, the file's `gateway.listen` is not where the gateway listens: a reload may
/// change it, and checks the services against the address `--listen` gave (a service there
/// would be the gateway itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_listen_given_a_reload_checks_the_services_against_it_not_the_file() {
    let (backend, flag) = (common::refused_addr().await, common::refused_addr().await);
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let args = ["--listen", &flag.to_string()];
    let mut gateway = Gateway::start_with("reload-listen-flag", v1, &args).await;
    assert_eq!(gateway.addr, flag);

    let moved = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    )
    .replace("127.0.0.1:0", "127.0.0.1:1");
    let line = gateway.reload(&moved).await;
    assert!(line.contains("configuration reloaded"), "{line}");
    assert_eq!(get(flag, "/b/").await.0, 200);

    let looped = config(
        gateway.script(),
        &[("/a/", "app")],
        &[Service("app", flag, "one")],
    );
    let line = gateway.reload(&looped).await;
    assert!(
        line.contains("reload refused") && line.contains("--listen"),
        "{line}"
    );
    assert_eq!(
        get(flag, "/b/").await.0,
        200,
        "the configuration in use goes on"
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_at_a_reload_and_the_gateway_serves_on() {
    let backend = common::refused_addr().await;
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let mut gateway = Gateway::start("reload-idle", v1).await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(b"GET /a/ HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    let head = common::read_head(&mut client, &mut pending).await;
    assert!(head.is_some_and(|h| h.starts_with("HTTP/1.1 200")));

    let v2 = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    );
    gateway.reload(&v2).await;
    // Kept alive, it would serve the old routes: closed, its answer having been sent whole.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await;
    read.expect("closed at the reload").unwrap();
    pending.extend_from_slice(&rest);
    assert!(
        pending.starts_with(b"one "),
        "{:?}",
        String::from_utf8_lossy(&pending)
    );
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
    gateway.stop().await;
}

/// A client that has connected but not yet sent its request when a reload comes (a browser's
/// preconnection, or one that connected in the same instant) gets its answer, then the close:
/// closed at once, as a shutdown closes it, it would get none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_request_yet_at_a_reload_is_answered_then_closed() {
    let backend = common::refused_addr().await;
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let mut gateway = Gateway::start("reload-fresh", v1).await;
    let mut early = TcpStream::connect(gateway.addr).await.unwrap();
    // Accepted in order: once a later connection is answered, the gateway has this one.
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);

    let v2 = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    );
    gateway.reload(&v2).await;
    let answer = common::first_request_once_kept_open(&mut early, "/b/").await;
    // Accepted before the reload, its request after it takes the reload's routes, as a new
    // connection's does (the old ones' services may be stopped already).
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_gets_a_goaway_at_a_reload() {
    let backend = common::refused_addr().await;
    let v1 = |script: &str| config(script, &[("/a/", "app")], &[Service("app", backend, "one")]);
    let mut gateway = Gateway::start("reload-h2", v1).await;
    let (mut sender, connection) =
        common::http2_connection::<http_body_util::Empty<bytes::Bytes>>(gateway.addr).await;
    let request = http::Request::get(format!("http://{}/a/", gateway.addr))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);

    let v2 = config(
        gateway.script(),
        &[("/b/", "app")],
        &[Service("app", backend, "one")],
    );
    gateway.reload(&v2).await;
    // Told to go (GOAWAY), with no stream open: the connection ends, cleanly.
    let ended = tokio::time::timeout(Duration::from_secs(5), connection).await;
    ended.expect("the connection ends").unwrap().unwrap();
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
    gateway.stop().await;
}
