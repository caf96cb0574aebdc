//! A service's limit of requests in flight (`gateway.services.<name>.limit`): the backend never
//! sees more at once, the others wait their turn, a wait past `max_wait` is a 503 with
//! `Retry-After`, and an open WebSocket holds its turn until it closes. Real clients and servers
//! on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tower_monitor::config::TriggerRegistry;

/// A backend whose answers each wait for a permit the test gives; it counts the requests that
/// arrived (told through `arrived`) and the most it had in hand at once.
struct HeldBackend {
    addr: SocketAddr,
    _server: common::Server,
    arrived: watch::Receiver<usize>,
    most: Arc<AtomicUsize>,
    answers: Arc<Semaphore>,
}

async fn held_backend() -> HeldBackend {
    let (arrivals, arrived) = watch::channel(0usize);
    let arrivals = Arc::new(arrivals);
    let current = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(Semaphore::new(0));
    let app = axum::Router::new().route(
        "/",
        axum::routing::get({
            let (current, most, answers) = (current.clone(), most.clone(), answers.clone());
            move || async move {
                let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                arrivals.send_modify(|n| *n += 1);
                answers.acquire().await.unwrap().forget();
                current.fetch_sub(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let server = common::serve(app).await;
    HeldBackend {
        addr: server.addr,
        _server: server,
        arrived,
        most,
        answers,
    }
}

async fn gateway(backend: SocketAddr, limit: &str) -> common::InProcessGateway {
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "services": {{ "app": {{ "limit": {limit} }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s" }} }} }}"#
    );
    common::start_gateway(&config, &TriggerRegistry::new()).await
}

async fn until_arrived(arrived: &mut watch::Receiver<usize>, count: usize) {
    tokio::time::timeout(Duration::from_secs(20), arrived.wait_for(|n| *n >= count))
        .await
        .unwrap_or_else(|_| panic!("{count} requests never reached the backend"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_never_has_more_than_the_limit_and_every_request_is_answered() {
    let mut backend = held_backend().await;
    let gateway = gateway(backend.addr, r#"{ "max_in_flight": 2, "max_wait": "60s" }"#).await;
    six_requests_two_at_a_time(gateway.addr, &mut backend).await;
}

/// The program's workers each have their own connection pools, but one limit. (Which worker
/// accepts a connection is the kernel's choice: a limit per worker shows only when the six
/// connections land on more than one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_is_for_the_whole_gateway_whatever_the_workers() {
    let mut backend = held_backend().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "services": {{ "app": {{ "limit": {{ "max_in_flight": 2 }} }} }} }},
             "services": {{ "app": {{ "url": "http://{}/", "grace_period": "30s" }} }} }}"#,
        backend.addr
    );
    let gateway =
        tower_monitor::gateway::Gateway::from_config(&config, &TriggerRegistry::new()).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let workers = std::num::NonZeroUsize::new(3).unwrap();
    let served = tokio::spawn(gateway.serve_on_workers(listener, workers, async move {
        let _ = stopped.await;
    }));
    six_requests_two_at_a_time(addr, &mut backend).await;
    let _ = stop.send(());
    assert!(served.await.unwrap(), "the workers drained");
}

/// Six requests at once, each on a connection of its own: the backend gets two, and each
/// answer lets the next waiting request through.
async fn six_requests_two_at_a_time(addr: SocketAddr, backend: &mut HeldBackend) {
    let clients: Vec<_> = (0..6)
        .map(|_| tokio::spawn(async move { common::get(addr, "/", &[]).await }))
        .collect();
    until_arrived(&mut backend.arrived, 2).await;
    for next in 3..=6 {
        backend.answers.add_permits(1);
        until_arrived(&mut backend.arrived, next).await;
    }
    backend.answers.add_permits(2);
    for client in clients {
        let reply = client.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, "ok");
    }
    assert_eq!(backend.most.load(Ordering::SeqCst), 2, "requests at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_waits_past_max_wait_gets_a_503_and_never_reaches_the_backend() {
    let mut backend = held_backend().await;
    let gateway = gateway(
        backend.addr,
        r#"{ "max_in_flight": 1, "max_wait": "300ms" }"#,
    )
    .await;
    let addr = gateway.addr;
    let first = tokio::spawn(async move { common::get(addr, "/", &[]).await });
    until_arrived(&mut backend.arrived, 1).await;
    let refused = tokio::time::timeout(Duration::from_secs(20), common::get(addr, "/", &[]))
        .await
        .expect("answered once max_wait passed");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(
        *backend.arrived.borrow(),
        1,
        "the refused request reached the backend"
    );
    // A gRPC client reads it as a status it retries.
    let grpc = common::get(addr, "/", &[("content-type", "application/grpc")]).await;
    assert_eq!(grpc.headers["grpc-status"], "14", "{:?}", grpc.headers);
    // A browser's `EventSource`, which gives up for good on any status but 200, is told in
    // its own format when to come back.
    let events = common::get(addr, "/", &[("accept", "text/event-stream")]).await;
    assert_eq!(events.status, 200, "{}", events.body);
    assert_eq!(events.headers["content-type"], "text/event-stream");
    assert!(
        events.body.ends_with("\nretry: 1000\n\n"),
        "{}",
        events.body
    );
    // Only a `GET` is one: a `POST` that asks for an event stream (a fetch-based stream, an
    // MCP client) told 200 would take its request for taken.
    let accept = [("accept", "application/json, text/event-stream")];
    let post = common::send(http::Method::POST, addr, "/", &accept).await;
    assert_eq!(post.status, 503, "{:?}: {}", post.headers, post.body);
    let head = common::send(
        http::Method::HEAD,
        addr,
        "/",
        &[("accept", "text/event-stream")],
    );
    assert_eq!(head.await.status, 503);
    backend.answers.add_permits(1);
    assert_eq!(first.await.unwrap().status, 200);
    backend.answers.add_permits(1);
    assert_eq!(common::get(addr, "/", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_holds_its_turn_until_it_closes() {
    let (backend, server) = common::websocket_echo_backend().await;
    let gateway = gateway(backend, r#"{ "max_in_flight": 1, "max_wait": "200ms" }"#).await;
    let url = format!("ws://{}/chat", gateway.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    common::echoes(&mut socket, "hello").await;
    let (_, refused) = tokio_tungstenite::connect_async(&url)
        .await
        .map(|_| ())
        .map_err(|error| match error {
            tokio_tungstenite::tungstenite::Error::Http(response) => response.status(),
            other => panic!("{other}"),
        })
        .map_or_else(
            |status| ((), status),
            |()| panic!("a second socket got a turn"),
        );
    assert_eq!(refused, 503);
    socket.close(None).await.unwrap();
    drop(socket);
    // The turn comes back once the gateway has seen the socket close.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((mut again, _)) => {
                common::echoes(&mut again, "again").await;
                break;
            }
            Err(error) => assert!(
                tokio::time::Instant::now() < give_up,
                "no turn after the socket closed: {error}"
            ),
        }
    }
    server.abort();
}
