//! The layer where the `layer` module's docs put it, served for real: around a whole axum
//! `Router` (served by `axum::serve`), under hyper's own server, and on one tonic service.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::response::IntoResponse;
use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tonic::service::LayerExt as _;
use tower::{Layer, ServiceBuilder};
use tower_monitor::MinMonitor;
use tower_monitor::MonitoredService;

/// "app", up or down as the returned flag says.
async fn switchable() -> (Arc<MinMonitor>, Arc<AtomicBool>) {
    let up = Arc::new(AtomicBool::new(false));
    let monitor = Arc::new(MinMonitor::new());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::ZERO)
        .probe(switch_probe(up.clone()));
    monitor.add("app", service).unwrap();
    (monitor, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_router_wrapped_from_outside_is_served_by_axum_serve() {
    let (monitor, up) = switchable().await;
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "app" }));
    let app = ServiceBuilder::new()
        .map_response(IntoResponse::into_response)
        .layer(monitor.layer("app").unwrap())
        .service(router);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let app = axum::ServiceExt::<Request>::into_make_service(app);
        axum::serve(listener, app).await.unwrap();
    });

    // Guarded before routing: an unknown path too.
    for path in ["/", "/nope"] {
        let reply = get(addr, path, &[]).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(reply.headers["cache-control"], "no-store");
    }
    up.store(true, Ordering::SeqCst);
    let reply = get(addr, "/", &[]).await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "app"));
    assert_eq!(get(addr, "/nope", &[]).await.status, StatusCode::NOT_FOUND);
    server.abort();
}

async fn hello(
    _request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    Ok(hyper::Response::new(Full::from("hello")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypers_own_server_serves_the_guarded_tower_service() {
    let (monitor, up) = switchable().await;
    let service = TowerToHyperService::new(
        monitor
            .layer("app")
            .unwrap()
            .layer(tower::service_fn(hello)),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service.clone());
            tokio::spawn(connection);
        }
    });

    assert_eq!(
        get(addr, "/", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    up.store(true, Ordering::SeqCst);
    let reply = get(addr, "/", &[]).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "hello")
    );
    server.abort();
}

/// The `grpc-status` a unary gRPC call of `path`, with an empty message, gets from the server
/// at `addr` (over HTTP/2).
async fn grpc_status(addr: std::net::SocketAddr, path: &str) -> String {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    // One message, uncompressed, of length 0.
    let empty_message = Full::from(vec![0_u8; 5]);
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(empty_message)
        .unwrap();
    let response = client.request(request).await.expect("answered");
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().unwrap().to_owned();
    }
    let trailers = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned();
    let trailers = trailers.expect("a gRPC status in the head or the trailers");
    trailers["grpc-status"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_layer_guards_one_tonic_service_and_not_the_server() {
    let (monitor, up) = switchable().await;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let guarded = monitor.layer("app").unwrap().named_layer(health);
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(guarded)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });

    let check = "/grpc.health.v1.Health/Check";
    // UNAVAILABLE from the layer; another service is the server's own UNIMPLEMENTED.
    assert_eq!(grpc_status(addr, check).await, "14");
    assert_eq!(grpc_status(addr, "/other.Service/Call").await, "12");
    up.store(true, Ordering::SeqCst);
    // OK: the health service itself answered (the server as a whole is SERVING).
    assert_eq!(grpc_status(addr, check).await, "0");
    server.abort();
}
