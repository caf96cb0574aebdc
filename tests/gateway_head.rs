//! `HEAD` through the gateway with curl over HTTP/1.1 and HTTP/2: whoever answers (the backend,
//! the layer's waiting page, the router's 404), the answer has headers and no body. HTTP/1.1
//! drops a `HEAD` answer's body by itself; HTTP/2 sends whatever body it is given, and a client
//! takes one after `HEAD` as a protocol error.

mod common;

use axum::Router;
use tower_monitor::config::TriggerRegistry;

/// curl's `HEAD` of `url` over `version`: its status line and headers.
async fn head(version: &str, url: &str) -> String {
    common::curl(&["--head", version, url]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_request_gets_a_head_and_no_body_whoever_answers() {
    let backend =
        common::serve(Router::new().fallback(|| async { "hello from the backend\n" })).await;
    let down = common::refused_addr().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [
               {{ "path_prefix": "/up/", "service": "up" }},
               {{ "path_prefix": "/down/", "service": "down" }} ] }},
             "services": {{ "up": {{ "url": "http://{}/", "grace_period": "30s" }},
                            "down": {{ "url": "http://{down}/", "grace_period": "30s" }} }} }}"#,
        backend.addr
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    for version in ["--http1.1", "--http2-prior-knowledge"] {
        for (path, status) in [("/up/x", "200"), ("/down/x", "503"), ("/elsewhere", "404")] {
            let reply = head(version, &format!("http://{}{path}", gateway.addr)).await;
            let status_line = reply.lines().next().unwrap_or_default();
            assert!(
                status_line.contains(&format!(" {status}")),
                "{version} {path}: {reply}"
            );
        }
    }
    // The waiting page's head says how long its body would be.
    let reply = head(
        "--http2-prior-knowledge",
        &format!("http://{}/down/x", gateway.addr),
    )
    .await;
    assert!(reply.contains("content-length: "), "{reply}");
    assert!(!reply.contains("content-length: 0\r"), "{reply}");
}
