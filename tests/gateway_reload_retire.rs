//! The `tower-monitor-gateway` program retiring, at a reload, the definitions of the services
//! removed or changed: each one's program is stopped once that service's own requests in
//! flight (its open WebSockets too) have ended, bounded by `shutdown_grace`, whatever the
//! clients of the other services keep open.

mod common;

use std::time::Duration;

use common::reload::{
    Gateway, Service, config, echoed, finish_download, get, slow_download, websocket, with_grace,
};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Services `a` and `b`, each its program, with a grace long enough (30 s) that a stop
/// waiting for it would be seen.
fn both(script: &str, a: std::net::SocketAddr, b: std::net::SocketAddr) -> String {
    let text = config(
        script,
        &[("/a/", "a"), ("/b/", "b")],
        &[Service("a", a, "one"), Service("b", b, "two")],
    );
    with_grace(&text, "30s")
}

/// `b` alone: `a` removed.
fn b_alone(script: &str, b: std::net::SocketAddr, grace: &str) -> String {
    with_grace(
        &config(script, &[("/b/", "b")], &[Service("b", b, "two")]),
        grace,
    )
}

/// Waits for the log line of `a`'s program stopped; answers how long after `since` it came.
async fn a_stopped(gateway: &mut Gateway, since: Instant) -> Duration {
    let stopped = gateway
        .until(|l| l.contains("backend program stopped"))
        .await;
    assert!(stopped.contains("service=a"), "{stopped}");
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_service_s_program_stops_at_once_whatever_another_service_s_clients_keep_open() {
    let (one, two) = (common::refused_addr().await, common::refused_addr().await);
    let mut gateway = Gateway::start("reload-retire-others", |s| both(s, one, two)).await;
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
    // b's clients keep their connections open: one with no request yet (a browser's
    // preconnection), and a WebSocket, which a reload does not close.
    let idle = TcpStream::connect(gateway.addr).await.unwrap();
    let mut socket = websocket(gateway.addr, "/b/").await;

    let line = gateway.reload(&b_alone(gateway.script(), two, "30s")).await;
    assert!(line.contains("removed: a;"), "{line}");
    let reloaded = Instant::now();
    let after = a_stopped(&mut gateway, reloaded).await;
    assert!(after < Duration::from_secs(10), "stopped {after:?} after");
    assert!(
        TcpStream::connect(one).await.is_err(),
        "a's program still runs"
    );
    // b's WebSocket goes on, its program kept.
    echoed(&mut socket, b"b still").await;
    drop((idle, socket));
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_to_a_removed_service_ends_whole_before_its_program_stops() {
    let (one, two) = (common::refused_addr().await, common::refused_addr().await);
    let mut gateway = Gateway::start("reload-retire-download", |s| both(s, one, two)).await;
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);
    assert_eq!(get(gateway.addr, "/b/").await.0, 200);
    let mut socket = websocket(gateway.addr, "/b/").await;
    let (client, body) = slow_download(gateway.addr, "/a/").await;

    let line = gateway.reload(&b_alone(gateway.script(), two, "30s")).await;
    assert!(line.contains("removed: a;"), "{line}");
    finish_download(client, body).await;
    let whole = Instant::now();
    // Once it is whole: b's WebSocket, still open, holds nothing.
    let after = a_stopped(&mut gateway, whole).await;
    assert!(after < Duration::from_secs(10), "stopped {after:?} after");
    assert!(
        TcpStream::connect(one).await.is_err(),
        "a's program still runs"
    );
    echoed(&mut socket, b"b still").await;
    drop(socket);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_open_to_a_removed_service_holds_its_stop_until_it_closes() {
    let (one, two) = (common::refused_addr().await, common::refused_addr().await);
    let mut gateway = Gateway::start("reload-retire-websocket", |s| both(s, one, two)).await;
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);
    let mut socket = websocket(gateway.addr, "/a/").await;

    let line = gateway.reload(&b_alone(gateway.script(), two, "30s")).await;
    assert!(line.contains("removed: a;"), "{line}");
    // A while in which the stop would have come (its requests are counted every 50 ms):
    // the WebSocket still relays, to a's program, still running.
    tokio::time::sleep(Duration::from_secs(1)).await;
    echoed(&mut socket, b"a still").await;
    assert!(TcpStream::connect(one).await.is_ok(), "a's program stopped");
    assert!(
        !(gateway.seen.iter()).any(|l| l.contains("backend program stopped")),
        "{:?}",
        gateway.seen
    );

    drop(socket);
    let closed = Instant::now();
    let after = a_stopped(&mut gateway, closed).await;
    assert!(after < Duration::from_secs(10), "stopped {after:?} after");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_open_to_a_removed_service_holds_its_stop_no_longer_than_the_grace() {
    let (one, two) = (common::refused_addr().await, common::refused_addr().await);
    let mut gateway = Gateway::start("reload-retire-grace", |s| both(s, one, two)).await;
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);
    let mut socket = websocket(gateway.addr, "/a/").await;

    // The grace in force once the reload applies is the new file's: 2 s.
    let line = gateway.reload(&b_alone(gateway.script(), two, "2s")).await;
    assert!(line.contains("removed: a;"), "{line}");
    let reloaded = Instant::now();
    let late = gateway.until(|l| l.contains("after the grace")).await;
    assert!(late.contains("service") && late.contains('a'), "{late}");
    let after = a_stopped(&mut gateway, reloaded).await;
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(10)).contains(&after),
        "stopped {after:?} after the reload"
    );
    // Its program gone, the WebSocket ends.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut socket, &mut rest),
    );
    let _ = read.await.expect("the WebSocket closed");
    drop(socket);
    gateway.stop().await;
}

/// A changed service whose idle stop still runs when the reload retires its definition: the
/// new definition's first start waits for that stop's end, as it waits for the old program's
/// (a start beside a stop of the same backend, a `docker start` beside its `docker stop`,
/// could leave it stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_service_s_first_start_waits_for_the_old_definition_s_stop_under_way() {
    let backend = common::refused_addr().await;
    let events = common::TempFile::new("reload-retire-stopping-events", "");
    let path = events.path().to_string();
    // Each start and each idle stop written down in order; the stop lasts 2 s.
    let logged = move |text: String| {
        let on_idle = format!(
            r#""on_idle": {{ "after": "1s", "trigger": {{ "type": "command", "command": "sh",
                 "args": ["-c", "echo stop-begin >> {path}; sleep 2; echo stop-end >> {path}"] }} }},"#
        );
        text.replace(r#""command": "python3""#, r#""command": "sh""#)
            .replace(
                r#""args": ["#,
                &format!(
                    r#""args": ["-c", "echo start-$2 >> {path} && exec python3 \"$0\" \"$@\"", "#
                ),
            )
            .replace(
                r#""grace_period": "30s","#,
                &format!(r#""grace_period": "30s", {on_idle}"#),
            )
    };
    let v1 = {
        let logged = logged.clone();
        move |script: &str| {
            logged(config(
                script,
                &[("/a/", "app")],
                &[Service("app", backend, "one")],
            ))
        }
    };
    let mut gateway = Gateway::start("reload-retire-stopping", v1).await;
    assert_eq!(get(gateway.addr, "/a/").await.0, 200);
    gateway.until(|l| l.contains("running on_idle")).await;

    let v2 = config(
        gateway.script(),
        &[("/a/", "app")],
        &[Service("app", backend, "two")],
    );
    let line = gateway.reload(&logged(v2)).await;
    assert!(line.contains("changed: app;"), "{line}");
    // Held (or answered 503: until the old program has stopped, the new definition's probe
    // may find it answering, see GATEWAY.md), then served by the new program.
    let _ = get(gateway.addr, "/a/").await;
    gateway
        .until(|l| l.contains("started the backend program"))
        .await;
    let (status, body) = get(gateway.addr, "/a/").await;
    assert!(status == 200 && body.starts_with("two "), "{status} {body}");
    let written = std::fs::read_to_string(events.path()).unwrap();
    let order: Vec<&str> = written.lines().take(4).collect();
    assert_eq!(
        order,
        ["start-one", "stop-begin", "stop-end", "start-two"],
        "{written}"
    );
    gateway.stop().await;
}

/// A service its dependent keeps awake (`depends_on`), both changed by a reload: the
/// dependent's hold on it, which lasts until the dependent's own program is stopped, is no
/// request of its own, so their programs stop at once, not after the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_dependency_s_program_stops_at_once_though_its_dependent_was_up() {
    let (app, db) = (common::refused_addr().await, common::refused_addr().await);
    let text = move |script: &str, db_tag: &str| {
        let text = config(
            script,
            &[("/a/", "app")],
            &[Service("app", app, "one"), Service("db", db, db_tag)],
        );
        let text = text.replace(
            r#""app": { "url""#,
            r#""app": { "depends_on": ["db"], "url""#,
        );
        with_grace(&text, "30s")
    };
    let mut gateway = Gateway::start("reload-retire-dependency", |s| text(s, "one")).await;
    let (status, body) = get(gateway.addr, "/a/").await;
    assert!(status == 200 && body.starts_with("one "), "{status} {body}");

    // db changed, and so app, which depends on it.
    let line = gateway.reload(&text(gateway.script(), "two")).await;
    assert!(line.contains("changed: app, db;"), "{line}");
    let reloaded = Instant::now();
    let mut stopped = Vec::new();
    while stopped.len() < 2 {
        let line = gateway
            .until(|l| l.contains("backend program stopped"))
            .await;
        stopped.push(line);
    }
    let after = reloaded.elapsed();
    assert!(after < Duration::from_secs(10), "stopped {after:?} after");
    assert!(
        !(gateway.seen.iter()).any(|l| l.contains("after the grace")),
        "{:?}",
        gateway.seen
    );
    // Then the new definitions serve: db's new program started for app's.
    let (status, body) = get(gateway.addr, "/a/").await;
    assert!(status == 200 && body.starts_with("one "), "{status} {body}");
    gateway.stop().await;
}

/// A connection opened before a reload whose first request comes after it (a browser's
/// preconnection) takes the reload's routes: its request to a service the reload changed is
/// the new definition's, not the old one's, whose program may have stopped already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_s_first_request_after_a_reload_takes_the_new_routes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = common::refused_addr().await;
    let text = move |script: &str, tag: &str| {
        let text = config(script, &[("/a/", "app")], &[Service("app", backend, tag)]);
        with_grace(&text, "30s")
    };
    let mut gateway = Gateway::start("reload-retire-preconnect", |s| text(s, "one")).await;
    let mut early = TcpStream::connect(gateway.addr).await.unwrap();
    // Accepted in turn: once a later connection is answered, this one has been accepted.
    let (status, body) = get(gateway.addr, "/a/").await;
    assert!(status == 200 && body.starts_with("one "), "{status} {body}");

    let line = gateway.reload(&text(gateway.script(), "two")).await;
    assert!(line.contains("changed: app;"), "{line}");
    // The old definition's program stops at once: nothing of its own is in flight.
    let stopped = gateway
        .until(|l| l.contains("backend program stopped"))
        .await;
    assert!(stopped.contains("service=app"), "{stopped}");

    let request = "GET /a/ HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n";
    early.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    let read = tokio::time::timeout(Duration::from_secs(20), early.read_to_string(&mut reply));
    read.await.expect("an answer in time").unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains("\r\n\r\ntwo "),
        "{reply}"
    );
    gateway.stop().await;
}
