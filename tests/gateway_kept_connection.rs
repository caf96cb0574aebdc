//! A kept connection that its backend closes just as a request goes out on it: backends close
//! connections idle for a while (Node's and uvicorn's after 5 s), and a request sent in the
//! moment before the gateway notices is lost on the way. A bodiless `GET` then goes again on
//! a new connection, as RFC 9112 section 9.3.1 allows and nginx does; a `POST` does not (the
//! backend may have acted on it). A gateway served in the test's process, in front of a raw
//! backend on 127.0.0.1 that closes its first connection under that connection's second
//! request, as an idle close that crosses the request does.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Long enough idle for a backend's idle close to be expected (the gateway keeps a request to
/// send again only on a connection idle at least 100 ms).
const IDLE: Duration = Duration::from_millis(300);

/// The request lines the backend read, in order, each with the number of its connection.
type Seen = Arc<Mutex<Vec<(usize, String)>>>;

/// A backend that answers `ok` to every request, but for the first request that comes second
/// on its connection: that one it reads, then closes the connection without a word. (The
/// gateway's probe, a TCP connect, opens connections that carry no request.) With `dies`, it
/// stops listening then too, as a backend that crashed under the request.
async fn closing_backend(dies: bool) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let recorded = seen.clone();
    let connections = Arc::new(AtomicUsize::new(0));
    let closed_one = Arc::new(AtomicBool::new(false));
    // A connection that dies asks the listener's task to close the listener first, and waits
    // for it: a crash closes the port before the gateway's next connection tries it.
    let (die, mut dying) = tokio::sync::mpsc::unbounded_channel::<oneshot::Sender<()>>();
    tokio::spawn(async move {
        let listener_closed = loop {
            let (mut stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => return,
                },
                told = dying.recv() => break told,
            };
            let number = connections.fetch_add(1, Ordering::SeqCst);
            let (recorded, closed_one, die) = (recorded.clone(), closed_one.clone(), die.clone());
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut on_this = 0;
                while let Some(head) = common::read_head(&mut stream, &mut pending).await {
                    let line = head.lines().next().unwrap_or_default().to_owned();
                    recorded.lock().unwrap().push((number, line));
                    on_this += 1;
                    if on_this == 2 && !closed_one.swap(true, Ordering::SeqCst) {
                        if dies {
                            let (closed, listener_closed) = oneshot::channel();
                            if die.send(closed).is_ok() {
                                let _ = listener_closed.await;
                            }
                        }
                        return;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        };
        // New connections are refused from here.
        drop(listener);
        if let Some(listener_closed) = listener_closed {
            let _ = listener_closed.send(());
        }
    });
    (addr, seen)
}

/// `method /path` through the gateway on a new client connection: the whole reply.
async fn ask(gateway: SocketAddr, method: &str, path: &str) -> String {
    common::exchange(
        gateway,
        &format!(
            "{method} {path} HTTP/1.1\r\nhost: app\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ),
    )
    .await
}

/// A gateway with `settings` to a backend that closes idle connections ([`closing_backend`]),
/// its connection to the backend kept after a first `GET /first` and idle as long as an idle
/// close needs.
async fn kept_and_idle(settings: &str) -> (common::InProcessGateway, Seen) {
    let (backend, seen) = closing_backend(false).await;
    let gateway = common::gateway_to_app(&format!("http://{backend}/"), settings).await;
    assert!(
        ask(gateway.addr, "GET", "/first")
            .await
            .starts_with("HTTP/1.1 200 ")
    );
    // The scenario itself: the backend's idle close comes after this long.
    tokio::time::sleep(IDLE).await;
    (gateway, seen)
}

/// The request that found its kept connection closed goes again on a new one: the client
/// gets the backend's answer, and the backend is not taken for gone (no fallback, still up).
/// Before, the client got the 503 of a backend marked gone, and `on_down` ran for a backend
/// that was up. The same with a `limit`, whose requests take the pool's other path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_on_a_kept_connection_closed_under_it_goes_again_on_a_new_one() {
    for settings in ["{}", r#"{ "limit": { "max_in_flight": 4 } }"#] {
        let (gateway, seen) = kept_and_idle(settings).await;
        let reply = ask(gateway.addr, "GET", "/second").await;
        assert!(reply.starts_with("HTTP/1.1 200 "), "{settings}: {reply}");
        assert!(reply.ends_with("ok"), "{reply}");

        let seen = seen.lock().unwrap().clone();
        let lines: Vec<&str> = seen.iter().map(|(_, line)| line.as_str()).collect();
        assert_eq!(
            lines,
            [
                "GET /first HTTP/1.1",
                "GET /second HTTP/1.1",
                "GET /second HTTP/1.1"
            ],
            "{settings}"
        );
        assert_eq!(
            seen[0].0, seen[1].0,
            "the second request went on the kept connection"
        );
        assert_ne!(seen[1].0, seen[2].0, "and again on a new one");
        let service = &gateway.monitor.snapshot()[0];
        assert_eq!(service.counters.fallbacks, 0, "{settings}");
        assert_eq!(service.state, tower_monitor::ServiceState::Up, "{settings}");
    }
}

/// A `POST` is not sent twice: the backend may have acted on it before it closed. It is
/// answered 502, as nginx answers it, but the backend, which takes a new connection, is not
/// taken for gone: before, it was marked down, its `on_down` run and the client answered the
/// fallback's 503, for a backend that was up and had only closed an idle connection. The same
/// with a `limit`, whose requests take the pool's other path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_a_kept_connection_closed_under_it_is_not_sent_again() {
    for settings in ["{}", r#"{ "limit": { "max_in_flight": 4 } }"#] {
        let (gateway, seen) = kept_and_idle(settings).await;
        let reply = ask(gateway.addr, "POST", "/order").await;
        assert!(reply.starts_with("HTTP/1.1 502 "), "{settings}: {reply}");
        let service = &gateway.monitor.snapshot()[0];
        assert_eq!(service.counters.fallbacks, 0, "{settings}");
        assert_eq!(service.state, tower_monitor::ServiceState::Up, "{settings}");
        // And it answers the next request.
        let reply = ask(gateway.addr, "GET", "/next").await;
        assert!(reply.starts_with("HTTP/1.1 200 "), "{settings}: {reply}");

        let posts = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| line.starts_with("POST"))
            .count();
        assert_eq!(posts, 1, "{settings}");
    }
}

/// A backend that dies under a request on a kept connection, and refuses the next one, is
/// gone: the client gets the fallback, and the backend is marked down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_dies_under_a_request_on_a_kept_connection_is_gone() {
    let (backend, _) = closing_backend(true).await;
    let gateway = common::gateway_to_app(&format!("http://{backend}/"), "{}").await;

    assert!(
        ask(gateway.addr, "GET", "/first")
            .await
            .starts_with("HTTP/1.1 200 ")
    );
    let reply = ask(gateway.addr, "POST", "/order").await;
    assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    let service = &gateway.monitor.snapshot()[0];
    assert_eq!(service.counters.fallbacks, 1);
    assert_ne!(service.state, tower_monitor::ServiceState::Up);
}
