//! The admin service over real sockets: `/metrics` accepted by promtool, `/status` matching the
//! states, the status page in headless Chromium, and the actions with and without the token.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get as route_get;
use common::*;
use http::StatusCode;
use tokio::net::TcpListener;
use tower_monitor::{MinMonitor, MonitoredService, ServiceState};

const TOKEN: &str = "correct horse battery staple";

/// "up" (a live backend, marked up, with an `on_idle`) and "down" (a refused port, with an
/// `on_down`), and the admin service on 127.0.0.1.
async fn setup() -> (
    Arc<MinMonitor>,
    SocketAddr,
    Backend,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let backend = Backend::start().await;
    let wakes = counter();
    let monitor = Arc::new(MinMonitor::new());
    monitor
        .add(
            "up",
            MonitoredService::new(backend.url(), Duration::from_secs(60)).on_idle(
                Duration::from_secs(3600),
                counting_trigger(counter(), false),
            ),
        )
        .unwrap();
    monitor
        .add(
            "down",
            MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
                .on_down(counting_trigger(wakes.clone(), false)),
        )
        .unwrap();
    monitor.set_status_up("up").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tower_monitor::admin::serve(
        listener,
        monitor.clone(),
        TOKEN,
    ));
    (monitor, addr, backend, wakes)
}

/// Sends a request and reads the whole answer.
async fn send(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Reply {
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(request.body(http_body_util::Empty::new()).unwrap()),
    )
    .await
    .expect("answered in time")
    .expect("request failed");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Lets a request through a layer on "down", so the fallback metrics move.
async fn one_fallback(monitor: &Arc<MinMonitor>) {
    let app = serve(
        Router::new()
            .route("/", route_get(|| async { "app" }))
            .layer(monitor.layer("down").unwrap()),
    )
    .await;
    let reply = get(app.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_that_promtool_accepts() {
    let (monitor, addr, _backend, _) = setup().await;
    one_fallback(&monitor).await;
    assert!(monitor.reprobe("up").await.unwrap(), "a probe, timed");
    let reply = send(addr, "GET", "/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    assert!(
        reply
            .body
            .contains(r#"tower_monitor_fallbacks_total{service="down",reason="not_ready"} 1"#),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains(r#"tower_monitor_requests_held{service="down"} 0"#),
        "sampled at the scrape: {}",
        reply.body
    );
    for expected in [
        r#"tower_monitor_probe_duration_seconds_bucket{service="up",result="up",le="0.0005"}"#,
        r#"tower_monitor_probes_total{service="up",result="up"}"#,
        r#"tower_monitor_state{service="down",state="starting"} 1"#,
    ] {
        assert!(
            reply.body.contains(expected),
            "{expected} in {}",
            reply.body
        );
    }

    promtool_accepts(&reply.body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_the_snapshot_as_json_matching_the_states() {
    let (monitor, addr, _backend, _) = setup().await;
    let reply = send(addr, "GET", "/status", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let services = json.as_array().expect("an array of services");
    let names: Vec<_> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["down", "up"], "sorted by name");
    for service in services {
        let name = service["name"].as_str().unwrap();
        assert_eq!(service["state"], monitor.state(name).unwrap().as_str());
    }
    assert_eq!(services[0]["state"], "down");
    assert_eq!(services[1]["state"], "up");
    assert!(services[0]["counters"]["probes"].is_u64());
    assert_eq!(
        services[1]["requests_in_flight"], 0,
        "counted: it has on_idle"
    );
    assert!(
        services[0]["requests_in_flight"].is_null(),
        "not counted without on_idle"
    );
    assert!(
        services[1]["idle_deadline"].is_string(),
        "armed when it came up"
    );

    // Starting, as the page and the JSON both say.
    monitor.start("down").await.unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&send(addr, "GET", "/status", None).await.body).unwrap();
    assert_eq!(json[0]["state"], "starting");
    assert_eq!(json[0]["counters"]["wakes"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_token_and_run_the_triggers() {
    let (monitor, addr, _backend, wakes) = setup().await;
    for token in [None, Some("wrong"), Some("")] {
        for path in ["/services/down/start", "/services/up/stop"] {
            let reply = send(addr, "POST", path, token).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path} {token:?}");
            assert_eq!(reply.headers["www-authenticate"], "Bearer");
            let why = match token {
                None => "a bearer token is needed",
                Some(_) => "the bearer token given is not the admin's token",
            };
            assert_eq!(reply.body.trim_end(), why, "{path} {token:?}");
        }
    }
    assert_eq!(count(&wakes), 0, "refused actions run nothing");
    assert_eq!(monitor.state("up").unwrap(), ServiceState::Up);

    let reply = send(addr, "POST", "/services/down/start", Some(TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        r#"{"service":"down","action":"start","acted":true,"state":"starting"}"#
    );
    assert_eq!(count(&wakes), 1);
    // "up" has no on_down: a start has nothing to run, and says so.
    let reply = send(addr, "POST", "/services/up/start", Some(TOKEN)).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(reply.body, "the service has no on_down to start it\n");
    assert_eq!(monitor.state("up").unwrap(), ServiceState::Up);
    let reply = send(addr, "POST", "/services/up/stop", Some(TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(monitor.state("up").unwrap(), ServiceState::Stopping);
    let reply = send(addr, "POST", "/services/down/stop", Some(TOKEN)).await;
    assert_eq!(
        reply.status,
        StatusCode::CONFLICT,
        "no on_idle: {}",
        reply.body
    );
    let reply = send(addr, "POST", "/services/nope/start", Some(TOKEN)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = send(addr, "GET", "/services/down/start", Some(TOKEN)).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_told_which_methods_are_allowed() {
    let (_monitor, addr, _backend, _) = setup().await;
    for (method, path, allow) in [
        ("GET", "/services/down/start", "POST"),
        ("DELETE", "/services/up/stop", "POST"),
        ("PUT", "/status", "GET, HEAD"),
        ("POST", "/metrics", "GET, HEAD"),
        ("DELETE", "/", "GET, HEAD"),
    ] {
        let reply = send(addr, method, path, Some(TOKEN)).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        // RFC 9110 (15.5.6): a 405 must say what is allowed.
        let allowed = reply.headers.get("allow").map(|v| v.to_str().unwrap());
        assert_eq!(allowed, Some(allow), "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_changed_state_has_its_state_series() {
    let (monitor, addr, _backend, _) = setup().await;
    // Its own name (the recorder is the process's, shared by the tests), with characters the
    // text format must escape.
    let name = "qu\"i\\et";
    monitor
        .add(
            name,
            MonitoredService::new(url_for(refused_addr().await), Duration::ZERO),
        )
        .unwrap();
    let reply = send(addr, "GET", "/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    for expected in [
        r#"tower_monitor_state{service="qu\"i\\et",state="down"} 1"#,
        r#"tower_monitor_state{service="qu\"i\\et",state="up"} 0"#,
    ] {
        assert!(
            reply.body.contains(expected),
            "{expected} in {}",
            reply.body
        );
    }
}

/// A start of a service that is up runs nothing, and says so as a stop of a down one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_of_an_up_service_says_it_did_nothing() {
    let (monitor, addr, backend, _) = setup().await;
    let wakes = counter();
    let service = MonitoredService::new(backend.url(), Duration::from_secs(60))
        .on_down(counting_trigger(wakes.clone(), false));
    monitor.add("running", service).unwrap();
    monitor.set_status_up("running").unwrap();
    let reply = send(addr, "POST", "/services/running/start", Some(TOKEN)).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.body);
    assert_eq!(
        reply.body,
        r#"{"service":"running","action":"start","acted":false,"state":"up"}"#
    );
    assert_eq!(count(&wakes), 0);
}

/// An alert on `increase(tower_monitor_failed_starts_total[10m]) > 0` must see a service's
/// first failed start: its series is at 0 before it, from the first scrape on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_event_counters_start_at_zero() {
    let (monitor, addr, _backend, _) = setup().await;
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .on_down(counting_trigger(counter(), false))
        .on_idle(Duration::from_secs(60), counting_trigger(counter(), false));
    monitor.add("fresh", service).unwrap();
    let reply = send(addr, "GET", "/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    for expected in [
        r#"tower_monitor_wakes_total{service="fresh"} 0"#,
        r#"tower_monitor_failed_starts_total{service="fresh"} 0"#,
        r#"tower_monitor_trigger_failures_total{service="fresh",trigger="on_down"} 0"#,
        r#"tower_monitor_idle_stops_total{service="fresh"} 0"#,
        r#"tower_monitor_trigger_failures_total{service="fresh",trigger="on_idle"} 0"#,
        r#"tower_monitor_holds_total{service="fresh"} 0"#,
        r#"tower_monitor_fallbacks_total{service="fresh",reason="start_failed"} 0"#,
        r#"tower_monitor_fallbacks_total{service="fresh",reason="not_ready"} 0"#,
    ] {
        assert!(
            reply.body.contains(expected),
            "{expected} in {}",
            reply.body
        );
    }
    // "up" has no on_down: no series for what it cannot do.
    assert!(
        !reply
            .body
            .contains(r#"tower_monitor_wakes_total{service="up"}"#)
    );
    promtool_accepts(&reply.body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_head_is_closed_after_a_bound() {
    use tokio::io::AsyncWriteExt;
    let (_monitor, addr, _backend, _) = setup().await;
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /status HTTP/1.1\r\nhost: admin\r\n")
        .await
        .unwrap();
    common::closed_without_answer(&mut client, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_chromium_lists_every_service_with_its_state() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let (monitor, addr, _backend, _) = setup().await;
    monitor.start("down").await.unwrap();
    let url = format!("http://{addr}/");
    let dom = String::from_utf8_lossy(&run_chromium(&browser, &["--dump-dom"], &url).await.stdout)
        .into_owned();
    assert!(dom.contains("<title>tower-monitor status</title>"), "{dom}");
    for (name, state) in [("down", "starting"), ("up", "up")] {
        let row = format!(
            r#"<tr><th scope="row">{name}</th><td class="state {state}" data-state="{state}">{state}</td>"#
        );
        assert!(dom.contains(&row), "{row} in {dom}");
    }
    // Kept for a person to look at, never committed.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-status.png");
    let _ = std::fs::remove_file(&shot);
    let screenshot = format!("--screenshot={}", shot.display());
    run_chromium(&browser, &["--window-size=1100,300", &screenshot], &url).await;
    assert!(shot.is_file(), "a screenshot of the status page");
}

/// A service's name is the operator's, but may hold anything: the status page shows it as
/// text, never as markup a browser would run with the admin listener's origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_service_name_as_text() {
    let (monitor, addr, _backend, _) = setup().await;
    let name = r#"<script>alert("x")</script>"#;
    monitor
        .add(
            name,
            MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(1)),
        )
        .unwrap();
    let reply = send(addr, "GET", "/", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.body.contains("<script"), "{}", reply.body);
    assert!(
        reply
            .body
            .contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
        "{}",
        reply.body
    );
}
