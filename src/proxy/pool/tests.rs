//! The pool against a raw HTTP/1.1 backend on 127.0.0.1 that counts its connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;

/// How each connection of the [`backend`] behaves.
#[derive(Clone, Copy)]
enum Mode {
    /// `hello` to every request, keeping the connection.
    KeepAlive,
    /// `hello` to the first request, then closes the connection without saying so.
    CloseAfterOne,
}

struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// The `GET /drop` requests read (each closes its connection unanswered).
    dropped: Arc<AtomicUsize>,
    /// One message per connection the proxy closed.
    closed_by_proxy: mpsc::UnboundedReceiver<()>,
    /// One message per connection the backend closed (after its socket is closed).
    closed_by_backend: mpsc::UnboundedReceiver<()>,
}

/// Answers `GET /partial` with 5 of the 10 bytes it announces (and then nothing), `GET /hang`
/// never, `GET /drop` by closing its connection, any other request with `hello`.
async fn backend(mode: Mode) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (proxy_closed, closed_by_proxy) = mpsc::unbounded_channel();
    let (backend_closed, closed_by_backend) = mpsc::unbounded_channel();
    let (count, drops) = (accepted.clone(), dropped.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (proxy_closed, backend_closed) = (proxy_closed.clone(), backend_closed.clone());
            let drops = drops.clone();
            tokio::spawn(async move {
                if serve(stream, mode, proxy_closed, &drops).await {
                    let _ = backend_closed.send(());
                }
            });
        }
    });
    Backend {
        addr,
        accepted,
        dropped,
        closed_by_proxy,
        closed_by_backend,
    }
}

/// Serves one connection; true if the backend closed it, once it is closed.
async fn serve(
    mut stream: TcpStream,
    mode: Mode,
    proxy_closed: mpsc::UnboundedSender<()>,
    dropped: &AtomicUsize,
) -> bool {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return false;
        };
        if n == 0 {
            let _ = proxy_closed.send(());
            return false;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = pending.drain(..end + 4).collect();
            if head.starts_with(b"GET /hang ") {
                continue;
            }
            if head.starts_with(b"GET /drop ") {
                dropped.fetch_add(1, Ordering::SeqCst);
                return true;
            }
            let answer: &[u8] = if head.starts_with(b"GET /partial ") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
            };
            if stream.write_all(answer).await.is_err() {
                return false;
            }
            if let Mode::CloseAfterOne = mode {
                drop(stream);
                return true;
            }
        }
    }
}

fn pool(backend: &Backend, idle_timeout: Duration) -> Pool<Full<Bytes>> {
    let uri = format!("http://{}/", backend.addr).parse().unwrap();
    Pool::new(
        HttpConnector::new(),
        uri,
        idle_timeout,
        None,
        Arc::from("app"),
    )
}

/// A pool to the backend at `addr` through `connector`, with one connection kept: the answer
/// to a first `GET /first`, read to its end.
async fn pool_with_one_kept(connector: HttpConnector, addr: SocketAddr) -> Pool<Full<Bytes>> {
    let uri = format!("http://{addr}/").parse().unwrap();
    let pool = Pool::new(
        connector,
        uri,
        Duration::from_secs(15),
        None,
        Arc::from("app"),
    );
    let get = Request::get(format!("http://{addr}/first"))
        .body(Full::default())
        .unwrap();
    let response = pool.request(get).await.unwrap();
    response.into_body().collect().await.unwrap();
    pool
}

fn get(backend: &Backend, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{}{path}", backend.addr))
        .body(Full::default())
        .unwrap()
}

/// Sends a GET and reads the answer to its end.
async fn hello(pool: &Pool<Full<Bytes>>, backend: &Backend) -> Bytes {
    let response = pool.request(get(backend, "/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap().to_bytes()
}

const BOUND: Duration = Duration::from_secs(10);

// The tests that count reuses run on one thread, as the gateway's workers do: there a
// connection's task has made it ready for the next request before the response body's last
// bytes reach the request's task. On several threads a request may come first and dial.

#[tokio::test(flavor = "current_thread")]
async fn a_connection_is_reused_once_its_answer_was_read() {
    let backend = backend(Mode::KeepAlive).await;
    let pool = pool(&backend, Duration::from_secs(15));
    for _ in 0..3 {
        assert_eq!(hello(&pool, &backend).await, "hello");
    }
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
}

/// On several threads the connection's task may make it ready only after the next request
/// came (that request then dials); once it is back on the stack, it is reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_several_threads_a_connection_back_on_the_stack_is_reused() {
    let backend = backend(Mode::KeepAlive).await;
    let pool = pool(&backend, Duration::from_secs(15));
    for _ in 0..3 {
        assert_eq!(hello(&pool, &backend).await, "hello");
        // Nothing announces the push: looked at until it is there (bounded).
        let give_up = Instant::now() + BOUND;
        while pool.shared.lock().connections.len() != 1 {
            assert!(Instant::now() < give_up, "the connection never came back");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_for_the_timeout_is_closed_and_not_before() {
    let mut backend = backend(Mode::KeepAlive).await;
    let timeout = Duration::from_millis(300);
    let pool = pool(&backend, timeout);
    assert_eq!(hello(&pool, &backend).await, "hello");
    let idle_since = tokio::time::Instant::now();
    tokio::time::timeout(BOUND, backend.closed_by_proxy.recv())
        .await
        .expect("the idle connection was not closed");
    assert!(idle_since.elapsed() >= timeout - Duration::from_millis(50));
    // The pool still works afterwards, on a new connection.
    assert_eq!(hello(&pool, &backend).await, "hello");
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 2);
}

/// A connection the backend closed while idle is not used again. (A close racing with a
/// request being written on the connection fails that request, as with hyper's own client: the
/// connection's task has not seen the close yet.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_backend_closed_while_idle_fails_no_request() {
    let mut backend = backend(Mode::CloseAfterOne).await;
    let pool = pool(&backend, Duration::from_secs(15));
    for _ in 0..3 {
        assert_eq!(hello(&pool, &backend).await, "hello");
        tokio::time::timeout(BOUND, backend.closed_by_backend.recv())
            .await
            .expect("the backend did not close its connection");
        tokio::time::timeout(BOUND, pool.shared.ended.notified())
            .await
            .expect("the pool did not see the close");
    }
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_dropped_before_its_end_gives_its_connection_back_to_no_one() {
    let backend = backend(Mode::KeepAlive).await;
    let pool = pool(&backend, Duration::from_secs(15));
    let response = pool.request(get(&backend, "/partial")).await.unwrap();
    let mut body = response.into_body();
    let first = tokio::time::timeout(BOUND, body.frame()).await.unwrap();
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "hello");
    drop(body);
    assert_eq!(hello(&pool, &backend).await, "hello");
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_requests_each_get_a_connection_and_all_are_kept() {
    let backend = backend(Mode::KeepAlive).await;
    let pool = Arc::new(pool(&backend, Duration::from_secs(15)));
    // Four at once: each answer is held unread, so no connection can serve two of them.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.request(get(&backend, "/")).await.unwrap());
    }
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 4);
    for response in held {
        response.into_body().collect().await.unwrap();
    }
    for _ in 0..4 {
        assert_eq!(hello(&pool, &backend).await, "hello");
    }
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "current_thread")]
async fn a_short_answer_dropped_unread_leaves_its_connection_reusable() {
    let backend = backend(Mode::KeepAlive).await;
    let pool = pool(&backend, Duration::from_secs(15));
    // As when the client went away before its answer was sent: the body is never polled.
    drop(pool.request(get(&backend, "/")).await.unwrap());
    assert_eq!(hello(&pool, &backend).await, "hello");
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
}

/// Sends `path` on a kept connection (the busy path), its answer due in `timeout`; how it
/// ended and how long it took.
async fn exchange(
    pool: &Pool<Full<Bytes>>,
    backend: &Backend,
    path: &str,
    timeout: Duration,
) -> (Outcome<Full<Bytes>>, Duration) {
    let started = Instant::now();
    let kept = pool.kept(started).expect("no kept connection");
    let mut exchange = kept.send(get(backend, path), started, started + timeout);
    let outcome = tokio::time::timeout(BOUND, poll_fn(|cx| exchange.poll_outcome(cx)))
        .await
        .expect("no outcome within the bound");
    (outcome, started.elapsed())
}

/// Each connection keeps one response timer for all its requests: reset for each, to a later
/// deadline (moved without a new registration) or an earlier one, it fires at that deadline
/// and not at the one before.
#[tokio::test(flavor = "current_thread")]
async fn a_kept_connections_timer_fires_at_each_requests_own_deadline() {
    let backend = backend(Mode::KeepAlive).await;
    let pool = pool(&backend, Duration::from_secs(15));
    assert!(
        pool.kept(Instant::now()).is_none(),
        "no connection is kept yet"
    );
    assert_eq!(hello(&pool, &backend).await, "hello");

    for (first, late) in [(200, 600), (BOUND.as_millis() as u64, 300)] {
        let (outcome, _) = exchange(&pool, &backend, "/", Duration::from_millis(first)).await;
        let Outcome::Answered(response) = outcome else {
            panic!("no answer on the kept connection");
        };
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello");

        let late = Duration::from_millis(late);
        let (outcome, took) = exchange(&pool, &backend, "/hang", late).await;
        assert!(
            matches!(outcome, Outcome::TimedOut),
            "the late answer timed out"
        );
        assert!(
            took >= late,
            "timed out after {took:?}, before its deadline {late:?}"
        );
        // The timed-out connection is closed; the next request dials.
        assert_eq!(hello(&pool, &backend).await, "hello");
    }
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 3);
}

/// A request that its kept connection's close crossed goes again once, on a new connection:
/// not on each of the other idle connections, which went idle with it and are as likely to be
/// closing (nor as often as there are, should the request itself be what makes the backend
/// drop its connection).
#[tokio::test(flavor = "current_thread")]
async fn a_request_dropped_on_a_stale_connection_goes_again_once_on_a_new_one() {
    let backend = backend(Mode::KeepAlive).await;
    let pool = pool(&backend, Duration::from_secs(15));
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.request(get(&backend, "/")).await.unwrap());
    }
    for response in held {
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(pool.shared.lock().connections.len(), 3);
    tokio::time::sleep(Replay::AFTER_IDLE).await;

    let (outcome, _) = exchange(&pool, &backend, "/drop", BOUND).await;
    let Outcome::Unsent(again) = outcome else {
        panic!("the dropped GET is not given back to go again");
    };
    let failed = tokio::time::timeout(BOUND, pool.request(again))
        .await
        .expect("no outcome within the bound");
    assert!(failed.is_err(), "the backend drops every /drop");
    assert_eq!(backend.dropped.load(Ordering::SeqCst), 2, "sent twice only");
    assert_eq!(
        backend.accepted.load(Ordering::SeqCst),
        4,
        "again on a new one"
    );
    assert_eq!(pool.shared.lock().connections.len(), 2, "the others kept");
}

// The look at a kept connection's socket is Unix's.
#[cfg(unix)]
mod closed;
// A full accept queue drops connection attempts on Linux.
#[cfg(target_os = "linux")]
mod kept_closed;
mod runtimes;
