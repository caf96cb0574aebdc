//! The webhook trigger over `https`: a local TLS server with a self-signed certificate made for
//! the test, trusted through `root_certificate_pem` (in code and in the JSON configuration).
#![cfg(feature = "rustls")]

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower_monitor::config::TriggerRegistry;
use tower_monitor::trigger::{Webhook, WebhookError};
use tower_monitor::{Trigger, Url};

/// What the server was asked: method, path, the `x-token` header, and the TLS server name (SNI).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: Method,
    path: String,
    token: Option<String>,
    sni: Option<String>,
}

struct Server {
    port: u16,
    pem: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// An HTTPS server on 127.0.0.1 with a fresh self-signed certificate for "localhost": `/fail`
/// answers 500, any other path 200; every request is recorded.
async fn https_server() -> Server {
    let (acceptor, pem) = common::self_signed_localhost();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().map(str::to_string);
                let answer = service_fn(move |request: Request<Incoming>| {
                    record.lock().unwrap().push(Seen {
                        method: request.method().clone(),
                        path: request.uri().path().to_string(),
                        token: request
                            .headers()
                            .get("x-token")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string),
                        sni: sni.clone(),
                    });
                    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                    if request.uri().path() == "/fail" {
                        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), answer)
                    .await;
            });
        }
    });
    Server { port, pem, seen }
}

fn hook(url: &str) -> Webhook {
    Webhook::new(Method::PUT, Url::parse(url).unwrap())
        .unwrap()
        .timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn https_with_the_root_certificate_reaches_the_server_and_succeeds() {
    let server = https_server().await;
    hook(&format!("https://localhost:{}/vms/app/start", server.port))
        .root_certificate_pem(server.pem.as_bytes())
        .unwrap()
        .header("x-token", "t0k3n")
        .unwrap()
        .trigger()
        .await
        .unwrap();
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [Seen {
            method: Method::PUT,
            path: "/vms/app/start".to_string(),
            token: Some("t0k3n".to_string()),
            sni: Some("localhost".to_string()),
        }]
    );
}

#[tokio::test]
async fn https_without_the_root_certificate_fails_naming_tls_and_the_redacted_url() {
    let server = https_server().await;
    let err = hook(&format!(
        "https://alice:s3cret@localhost:{}/start",
        server.port
    ))
    .trigger()
    .await
    .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<WebhookError>(),
            Some(WebhookError::Tls { .. })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("https://***@localhost:{}/start", server.port)),
        "{text}"
    );
    assert!(
        text.contains("TLS") && text.contains("certificate"),
        "{text}"
    );
    let all = common::all_text(&err);
    assert!(!all.contains("alice") && !all.contains("s3cret"), "{all}");
    assert!(
        server.seen.lock().unwrap().is_empty(),
        "no request got through"
    );
}

#[tokio::test]
async fn an_https_500_is_a_failure_with_the_status() {
    let server = https_server().await;
    let err = hook(&format!("https://localhost:{}/fail", server.port))
        .root_certificate_pem(server.pem.as_bytes())
        .unwrap()
        .trigger()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<WebhookError>(),
            Some(WebhookError::Status { status, .. }) if *status == StatusCode::INTERNAL_SERVER_ERROR
        ),
        "{err:?}"
    );
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_timeout_bounds_a_tls_handshake_that_never_ends() {
    // Accepts connections and holds them without a word: the handshake waits forever.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut streams = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            streams.push(stream);
        }
    });
    let started = Instant::now();
    let err = hook(&format!("https://localhost:{port}/"))
        .timeout(Duration::from_millis(300))
        .trigger()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<WebhookError>(),
            Some(WebhookError::Timeout { .. })
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    held.abort();
}

#[tokio::test]
async fn a_configured_https_webhook_with_its_root_certificate_fires() {
    let server = https_server().await;
    let spec = serde_json::json!({
        "type": "webhook",
        "url": format!("https://localhost:{}/wake", server.port),
        "headers": { "x-token": "from-config" },
        "root_certificate_pem": server.pem,
    });
    let trigger = TriggerRegistry::new()
        .build_at("services.app.on_down", &spec)
        .unwrap();
    trigger.trigger().await.unwrap();
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.clone(), seen[0].path.as_str()),
        (Method::POST, "/wake")
    );
    assert_eq!(seen[0].token.as_deref(), Some("from-config"));
}

#[test]
fn a_bad_root_certificate_pem_in_the_configuration_is_named() {
    let spec = serde_json::json!({
        "type": "webhook",
        "url": "https://localhost:1/wake",
        "root_certificate_pem": "not a certificate",
    });
    let Err(err) = TriggerRegistry::new().build_at("services.app.on_down", &spec) else {
        panic!("a bad PEM is refused");
    };
    assert_eq!(err.path(), "services.app.on_down.root_certificate_pem");
    assert!(err.message().contains("root certificate PEM"), "{err}");
}
