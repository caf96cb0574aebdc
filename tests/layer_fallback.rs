//! Fallback answers: HTML, JSON and gRPC by negotiation, their headers, and a user's own.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get as route_get;
use common::*;
use http::StatusCode;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower_monitor::layer::{FallbackBody, FallbackReason, default_response};
use tower_monitor::{
    BoxError, MinMonitor, MonitorLayer, MonitoredService, ServiceState, probe, trigger,
};

/// A monitor with "down" (a refused port, probed for real) and "broken" (probe error).
async fn monitor() -> (Arc<MinMonitor>, std::net::SocketAddr) {
    let backend = refused_addr().await;
    let monitor = Arc::new(MinMonitor::new());
    monitor
        .add(
            "down",
            MonitoredService::new(url_for(backend), Duration::ZERO),
        )
        .unwrap();
    let broken = MonitoredService::new(url_for(backend), Duration::ZERO).probe(probe::from_fn(
        |_url| async { Err::<bool, BoxError>("secret detail".into()) },
    ));
    monitor.add("broken", broken).unwrap();
    (monitor, backend)
}

async fn app(layer: MonitorLayer) -> Server {
    serve(
        Router::new()
            .route("/", route_get(|| async { "app" }))
            .layer(layer),
    )
    .await
}

#[tokio::test]
async fn not_ready_is_a_small_html_page_that_is_never_cached() {
    let (monitor, backend) = monitor().await;
    let layer = monitor
        .layer("down")
        .unwrap()
        .retry_after(Duration::from_secs(7));
    let server = app(layer).await;
    let reply = get(server.addr, "/", &[("accept", "text/html,*/*;q=0.8")]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.headers["retry-after"], "7");
    assert!(reply.body.starts_with("<!doctype html>"));
    assert!(reply.body.contains("<title>down is not running</title>"));
    assert!(reply.body.contains(r#"http-equiv="refresh" content="7""#));
    let port = backend.port().to_string();
    assert!(
        !reply.body.contains(&port),
        "the backend's address leaked: {}",
        reply.body
    );
    assert!(
        reply
            .headers
            .values()
            .all(|v| !v.to_str().unwrap_or("").contains(&port))
    );
}

#[tokio::test]
async fn a_client_preferring_json_gets_json() {
    let (monitor, _) = monitor().await;
    let server = app(monitor.layer("down").unwrap()).await;
    let reply = get(server.addr, "/", &[("accept", "application/json")]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["error"], "service_not_ready");
    assert_eq!(body["retry_after"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_naming_json_before_a_wildcard_gets_json() {
    let (monitor, _) = monitor().await;
    let server = app(monitor.layer("down").unwrap()).await;
    // What axios and Angular send: JSON named, HTML only through `*/*`.
    for accept in [
        "application/json, text/plain, */*",
        "application/problem+json",
    ] {
        let reply = get(server.addr, "/", &[("accept", accept)]).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            reply.headers["content-type"], "application/json",
            "{accept}"
        );
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"], "service_not_ready");
    }
    // A browser still gets the page.
    let reply = get(
        server.addr,
        "/",
        &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
    )
    .await;
    assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
}

#[tokio::test]
async fn an_error_is_a_500_without_the_error_text() {
    let (monitor, _) = monitor().await;
    let server = app(monitor.layer("broken").unwrap()).await;
    let html = get(server.addr, "/", &[]).await;
    assert_eq!(html.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(html.body.contains("Internal Server Error"));
    assert!(html.headers.get("retry-after").is_none());
    assert_eq!(html.headers["cache-control"], "no-store");
    let json = get(server.addr, "/", &[("accept", "application/json")]).await;
    assert_eq!(json.status, StatusCode::INTERNAL_SERVER_ERROR);
    for reply in [html, json] {
        assert!(!reply.body.contains("secret detail"), "{}", reply.body);
    }
}

#[tokio::test]
async fn a_custom_fallback_replaces_the_answer_and_still_is_not_cached() {
    let (monitor, _) = monitor().await;
    let layer = monitor.layer("down").unwrap().fallback(|parts, reason| {
        let mut response = default_response(parts, reason, Duration::from_secs(1));
        if reason == FallbackReason::NotReady {
            *response.body_mut() = FallbackBody::from(format!("warming up {}", parts.uri.path()));
            response.headers_mut().remove("cache-control");
        }
        response
    });
    let server = app(layer).await;
    let reply = get(server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "warming up /");
    assert_eq!(reply.headers["cache-control"], "no-store");
}

async fn grpc_server(layer: MonitorLayer) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (addr, task)
}

async fn health_check(addr: std::net::SocketAddr) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_tonic_client_sees_unavailable_then_success() {
    let up = Arc::new(AtomicBool::new(false));
    let monitor = Arc::new(MinMonitor::new());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .probe(switch_probe(up.clone()));
    monitor.add("grpc", service).unwrap();
    let (addr, server) = grpc_server(monitor.layer("grpc").unwrap()).await;

    let status = health_check(addr).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "service not ready");

    up.store(true, Ordering::SeqCst);
    health_check(addr).await.expect("forwarded once up");
    server.abort();
}

#[tokio::test]
async fn a_tonic_client_sees_internal_on_errors() {
    let (monitor, _) = monitor().await;
    let (addr, server) = grpc_server(monitor.layer("broken").unwrap()).await;
    let status = health_check(addr).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal);
    assert!(!status.message().contains("secret detail"));
    server.abort();
}

/// A service up and cached, with an `on_down`, for answers that say the backend is gone.
async fn cached_up(name: &str) -> Arc<MinMonitor> {
    let monitor = Arc::new(MinMonitor::new());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .on_down(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }));
    monitor.add(name, service).unwrap();
    monitor.set_status_up(name).unwrap();
    monitor
}

/// `backend_gone_when` with a predicate of the user's own (no `BackendGone` marker): a tonic
/// client gets a gRPC status, not the HTML page, which it read as "protocol error: received
/// message with invalid compression flag: 60". The health service's NOT_FOUND for an unknown
/// name stands in for a gRPC service's own "my backend is gone" answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tonic_client_whose_backend_is_found_gone_sees_unavailable() {
    let monitor = cached_up("grpc").await;
    let layer = monitor
        .layer("grpc")
        .unwrap()
        .backend_gone_when(|_status, headers, _| {
            headers.get("grpc-status").is_some_and(|code| code == "5")
        });
    let (addr, server) = grpc_server(layer).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let unknown = HealthCheckRequest {
        service: "unknown".to_string(),
    };
    let status = HealthClient::new(channel).check(unknown).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Unavailable, "service not ready"),
        "{status:?}"
    );
    assert_ne!(monitor.state("grpc").unwrap(), ServiceState::Up);
    server.abort();
}

/// The same for a JSON API behind a predicate of the user's own: its client gets JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_answer_found_gone_is_replaced_by_json() {
    let monitor = cached_up("api").await;
    let layer = monitor
        .layer("api")
        .unwrap()
        .backend_gone_when(|status, _, _| status == StatusCode::BAD_GATEWAY);
    let gone = || async {
        let body = r#"{"error":"upstream refused"}"#;
        (
            StatusCode::BAD_GATEWAY,
            [("content-type", "application/json")],
            body,
        )
    };
    let server = serve(Router::new().route("/", route_get(gone)).layer(layer)).await;
    let reply = get(server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["error"], "service_not_ready");
}

#[tokio::test]
async fn a_custom_waiting_page_gets_the_escaped_service_name_and_retry() {
    let monitor = Arc::new(MinMonitor::new());
    let name = "<app & \"co\">";
    monitor
        .add(
            name,
            MonitoredService::new(url_for(refused_addr().await), Duration::ZERO),
        )
        .unwrap();
    let layer = monitor
        .layer(name)
        .unwrap()
        .retry_after(Duration::from_secs(2))
        .waiting_page("<p>{service} in {retry_after}s</p>");
    let server = app(layer).await;
    let reply = get(server.addr, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, "<p>&lt;app &amp; &quot;co&quot;&gt; in 2s</p>");
    // JSON clients still get JSON.
    let json = get(server.addr, "/", &[("accept", "application/json")]).await;
    assert_eq!(json.headers["content-type"], "application/json");
}

#[tokio::test]
async fn the_default_waiting_page_names_the_service_and_refreshes() {
    let (monitor, _) = monitor().await;
    let server = app(monitor
        .layer("down")
        .unwrap()
        .retry_after(Duration::from_secs(3)))
    .await;
    let reply = get(server.addr, "/", &[]).await;
    assert!(
        reply.body.contains("<h1>down is not running</h1>")
            && reply.body.contains(r#"role="status" aria-live="polite""#),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains(r#"<meta http-equiv="refresh" content="3">"#)
    );
    assert!(reply.body.contains(r#"<html lang="en">"#));
    assert!(
        !reply.body.contains("http://") && !reply.body.contains("src="),
        "no external resources"
    );
}

#[tokio::test]
async fn a_head_request_gets_the_fallbacks_head_and_no_body() {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};

    let (monitor, _) = monitor().await;
    let service =
        monitor
            .layer("down")
            .unwrap()
            .layer(tower::service_fn(|_: http::Request<()>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            }));
    let answer = |method: http::Method| {
        let service = service.clone();
        async move {
            let request = http::Request::builder()
                .method(method)
                .uri("/")
                .body(())
                .unwrap();
            let (parts, body) = service.oneshot(request).await.unwrap().into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };
    let (get, page) = answer(http::Method::GET).await;
    let (head, nothing) = answer(http::Method::HEAD).await;
    assert_eq!(head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(nothing.is_empty(), "a body after HEAD: {nothing:?}");
    assert!(!page.is_empty());
    assert_eq!(head.headers["content-length"], page.len().to_string());
    assert_eq!(head.headers["content-type"], get.headers["content-type"]);
    assert_eq!(head.headers["retry-after"], get.headers["retry-after"]);
}

/// A HEAD whose forward finds the backend gone gets the fallback's head and no body: the body
/// went out after HEAD, and over HTTP/2 (a hyper server, with no axum to strip it) curl saw
/// "stream 1 was not closed cleanly: PROTOCOL_ERROR".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_request_that_finds_the_backend_gone_gets_no_body() {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};
    use tower_monitor::layer::BackendGone;

    let monitor = cached_up("app").await;
    let service = monitor
        .layer("app")
        .unwrap()
        .backend_gone_when(BackendGone::in_response)
        .layer(tower::service_fn(|_: http::Request<()>| async {
            let mut response = http::Response::new(String::from("bad gateway"));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response.extensions_mut().insert(BackendGone::new());
            Ok::<_, std::convert::Infallible>(response)
        }));
    let head = http::Request::head("/").body(()).unwrap();
    let (parts, body) = service.oneshot(head).await.unwrap().into_parts();
    assert_eq!(parts.status, StatusCode::SERVICE_UNAVAILABLE);
    let nothing = body.collect().await.unwrap().to_bytes();
    assert!(nothing.is_empty(), "a body after HEAD: {nothing:?}");
    assert!(parts.headers.contains_key("content-length"));
    assert_ne!(monitor.state("app").unwrap(), ServiceState::Up);
}

/// A gRPC answer marked with `BackendGone::new()`, which keeps no request headers (a gRPC
/// proxy of the user's own): replaced by a gRPC status, not the HTML page a tonic client
/// reads as a protocol error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_answer_marked_gone_without_request_headers_gets_a_grpc_status() {
    use tower::{Layer, ServiceExt};
    use tower_monitor::layer::BackendGone;

    let monitor = cached_up("grpc").await;
    let service = monitor
        .layer("grpc")
        .unwrap()
        .backend_gone_when(BackendGone::in_response)
        .layer(tower::service_fn(|_: http::Request<()>| async {
            let mut response = http::Response::new(String::new());
            let headers = response.headers_mut();
            headers.insert("content-type", "application/grpc".parse().unwrap());
            headers.insert("grpc-status", "14".parse().unwrap());
            response.extensions_mut().insert(BackendGone::new());
            Ok::<_, std::convert::Infallible>(response)
        }));
    let call = http::Request::post("/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let response = service.oneshot(call).await.unwrap();
    assert!(response.body().is_fallback());
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "gRPC errors are HTTP 200"
    );
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "14");
}
