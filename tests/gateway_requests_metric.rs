//! `tower_monitor_gateway_requests_total{service, code}` on the admin's `/metrics`: the
//! `tower-monitor-gateway` program on two workers in front of real backends on 127.0.0.1,
//! requests with each kind of outcome, then one scrape with the exact counts and the duration
//! histogram (`tower_monitor_gateway_request_duration_seconds`), which promtool accepts.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode as AxumStatus;
use axum::routing::get;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// `GET path` for `host`, on a connection of its own; the reply's status line.
async fn status_of(addr: SocketAddr, method: &str, host: &str, path: &str) -> String {
    let reply = common::exchange(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"),
    )
    .await;
    reply.lines().next().unwrap_or_default().to_owned()
}

/// The admin's answer to `GET path` (its body).
async fn admin_get(admin: SocketAddr, path: &str) -> String {
    let reply = common::exchange(
        admin,
        &format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// A backend that accepts connections and never answers (its connections kept open).
async fn hung_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            kept.push(stream);
        }
    });
    addr
}

/// Waits (bounded: 10 s) until `/metrics` has `line`; returns the last scrape.
async fn scrape_until(admin: SocketAddr, line: &str) -> String {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = admin_get(admin, "/metrics").await;
        if text.lines().any(|l| l == line) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "never {line} in {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_service_and_code_over_the_workers() {
    let app = common::serve(
        axum::Router::new()
            .route("/", get(|| async { "hello" }))
            .route(
                "/teapot",
                get(|| async { (AxumStatus::IM_A_TEAPOT, "short and stout") }),
            ),
    )
    .await;
    let (hung, refused) = (hung_backend().await, common::refused_addr().await);
    let config = common::TempFile::new(
        "requests-metric",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0",
                   "routes": [ {{ "host": "app", "service": "app" }},
                               {{ "host": "app2", "service": "app" }},
                               {{ "host": "down", "service": "down" }},
                               {{ "host": "hung", "service": "hung" }},
                               {{ "host": "sleepy", "service": "sleepy" }} ],
                   "services": {{ "hung": {{ "response_timeout": "300ms" }},
                                  "sleepy": {{ "hold": {{ "max_wait": "20s" }} }} }} }},
                 "admin": {{ "listen": "127.0.0.1:0", "token": "t" }},
                 "services": {{
                   "app": {{ "url": "http://{app}/", "grace_period": "1h" }},
                   "down": {{ "url": "http://{refused}/", "grace_period": "1h", "probe_timeout": "300ms" }},
                   "hung": {{ "url": "http://{hung}/", "grace_period": "1h" }},
                   "sleepy": {{ "url": "http://{refused}/", "grace_period": "1h", "probe_timeout": "300ms",
                                "on_down": {{ "type": "command", "command": "true" }} }} }} }}"#,
            app = app.addr
        ),
    );
    let mut gateway = tokio::process::Command::new(PROGRAM)
        .args(["--config", config.path(), "--workers", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    while said.len() < 2 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the gateway starts")
            .unwrap()
            .expect("the gateway prints its addresses");
        said.push(line);
    }
    let addr: SocketAddr = said[0]
        .strip_prefix("gateway: listening on http://")
        .unwrap_or_else(|| panic!("no address: {said:?}"))
        .parse()
        .unwrap();
    let admin: SocketAddr = said[1]
        .strip_prefix("gateway: admin on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("no admin address: {said:?}"))
        .parse()
        .unwrap();

    // Nothing answered yet: no series.
    let before = admin_get(admin, "/metrics").await;
    assert!(
        !before.contains("tower_monitor_gateway_requests_total"),
        "{before}"
    );

    // Each on a connection of its own, so that both workers take some.
    for _ in 0..3 {
        assert_eq!(status_of(addr, "GET", "app", "/").await, "HTTP/1.1 200 OK");
    }
    assert_eq!(
        status_of(addr, "HEAD", "app2", "/").await,
        "HTTP/1.1 200 OK"
    );
    // Over HTTP/2, routed by `:authority`.
    let h2 = common::curl(&[
        "--http2-prior-knowledge",
        "--connect-to",
        &format!("app:{port}:{addr}", port = addr.port()),
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_version} %{http_code}",
        &format!("http://app:{}/", addr.port()),
    ])
    .await;
    assert_eq!(h2, "2 200");
    let teapot = status_of(addr, "GET", "app", "/teapot").await;
    assert!(teapot.starts_with("HTTP/1.1 418"), "{teapot}");
    // The fallback: a backend down with no `on_down`.
    for _ in 0..2 {
        let down = status_of(addr, "GET", "down", "/").await;
        assert!(down.starts_with("HTTP/1.1 503"), "{down}");
    }
    // The proxy's own 504: the backend took the request and never answered.
    let hung = status_of(addr, "GET", "hung", "/").await;
    assert!(hung.starts_with("HTTP/1.1 504"), "{hung}");
    // No route, for a GET and a HEAD.
    let nowhere = status_of(addr, "GET", "other", "/").await;
    assert!(nowhere.starts_with("HTTP/1.1 404"), "{nowhere}");
    let nowhere = status_of(addr, "HEAD", "other", "/x").await;
    assert!(nowhere.starts_with("HTTP/1.1 404"), "{nowhere}");

    // A request held for a cold start that never ends, whose client leaves: 499.
    let mut held = TcpStream::connect(addr).await.unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nhost: sleepy\r\n\r\n")
        .await
        .unwrap();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&admin_get(admin, "/status").await).unwrap();
        let sleepy = status
            .as_array()
            .and_then(|services| services.iter().find(|s| s["name"] == "sleepy"))
            .cloned()
            .unwrap_or_default();
        if sleepy["requests_held"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "never held: {sleepy}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);

    let name = "tower_monitor_gateway_requests_total";
    let text = scrape_until(
        admin,
        &format!(r#"{name}{{service="sleepy",code="499"}} 1"#),
    )
    .await;
    let counted: Vec<&str> = text.lines().filter(|l| l.contains(name)).collect();
    assert_eq!(
        counted,
        [
            &*format!(
                "# HELP {name} Requests the gateway answered, by service (the route's; \"-\" for no route) and status code (499: the client went away first)."
            ),
            &*format!("# TYPE {name} counter"),
            &*format!(r#"{name}{{service="-",code="404"}} 2"#),
            // Two routes to `app`: one series.
            &*format!(r#"{name}{{service="app",code="200"}} 5"#),
            &*format!(r#"{name}{{service="app",code="418"}} 1"#),
            &*format!(r#"{name}{{service="down",code="503"}} 2"#),
            &*format!(r#"{name}{{service="hung",code="504"}} 1"#),
            &*format!(r#"{name}{{service="sleepy",code="499"}} 1"#),
        ],
        "{text}"
    );
    // Each answer timed to its head: as many as counted, by service; the 504 after its 300 ms
    // response timeout, the held request until its client left.
    let histogram = "tower_monitor_gateway_request_duration_seconds";
    for (service, count) in [
        ("-", 2),
        ("app", 6),
        ("down", 2),
        ("hung", 1),
        ("sleepy", 1),
    ] {
        let line = format!(r#"{histogram}_count{{service="{service}"}} {count}"#);
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    let line = format!(r#"{histogram}_bucket{{service="hung",le="0.25"}} 0"#);
    assert!(text.lines().any(|l| l == line), "{line} in {text}");
    let line = format!(r#"{histogram}_bucket{{service="hung",le="0.5"}} 1"#);
    assert!(text.lines().any(|l| l == line), "{line} in {text}");
    common::promtool_accepts(&text).await;
    common::sigterm_then_exits_0(&mut gateway).await;
}
