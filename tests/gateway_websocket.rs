//! WebSockets from HTTP/1.1 clients (tokio-tungstenite) through the gateway, on 127.0.0.1: to
//! an HTTP/1.1 backend (the upgrade passes through) and to an HTTP/2 one (it becomes an extended
//! CONNECT). An open socket keeps its backend awake and holds the shutdown within its grace.

mod common;

use tower_monitor::config::TriggerRegistry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_an_open_websocket_within_the_grace() {
    let (backend, server) = common::websocket_echo_backend().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "chat" }} ],
                           "shutdown_grace": "10s" }},
             "services": {{ "chat": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    let mut gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gateway.addr))
        .await
        .unwrap();
    common::shutdown_waits_for(&mut gateway, socket).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_echoes_through_the_gateway_and_keeps_its_backend_awake() {
    let (backend, server) = common::websocket_echo_backend().await;
    let idle_runs = common::counter();
    let gateway = common::gateway_counting_idle_stops(backend, &idle_runs).await;

    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", gateway.addr))
            .await
            .expect("the upgrade passes through the gateway");
    assert_eq!(response.status(), 101);
    common::echoes(&mut socket, "hello").await;

    common::keeps_its_backend_awake(socket, &idle_runs).await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_from_http1_reaches_an_http2_backend_as_an_extended_connect() {
    let (backend, server) = common::http2_websocket_echo_backend().await;
    let gateway = common::gateway_to_http2_backend(backend).await;
    // The backend's 200 becomes a 101 with the proof of the client's key (tungstenite checks it).
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", gateway.addr))
            .await
            .expect("the HTTP/1.1 handshake completes");
    assert_eq!(response.status(), 101);
    common::echoes(&mut socket, "from http/1.1").await;
    server.abort();
}
