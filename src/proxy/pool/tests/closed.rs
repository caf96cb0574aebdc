//! A kept connection the backend closed before a request was handed to it, while the
//! connection's task has not read the close yet (its runtime busy elsewhere): the request goes
//! on a new connection whatever its method, since none of it reached the backend.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener as StdListener;
use std::sync::Mutex;
use std::sync::mpsc as std_mpsc;

use super::*;

/// The request lines a backend read, each with the number of its connection.
type Seen = Arc<Mutex<Vec<(usize, String)>>>;

/// A backend on a thread of its own, so that it works while the test blocks its runtime. It
/// answers `hello` to every request; after the first answer on its first connection it waits
/// for a word on `close`, then writes `goodbye` and closes that connection, idle, as a
/// backend's idle timer does, and says so on `closed`.
fn backend(
    goodbye: &'static [u8],
) -> (
    SocketAddr,
    Seen,
    std_mpsc::Sender<()>,
    std_mpsc::Receiver<()>,
) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let recorded = seen.clone();
    let (close, close_rx) = std_mpsc::channel::<()>();
    let (closed_tx, closed) = std_mpsc::channel();
    std::thread::spawn(move || {
        for (number, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                recorded
                    .lock()
                    .unwrap()
                    .push((number, line.trim_end().to_owned()));
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                if reader.get_mut().write_all(answer).is_err() {
                    break;
                }
                if number == 0 {
                    // Bounded: the test ends within it.
                    let _ = close_rx.recv_timeout(BOUND);
                    let _ = reader.get_mut().write_all(goodbye);
                    drop(reader);
                    let _ = closed_tx.send(());
                    break;
                }
            }
        }
    });
    (addr, seen, close, closed)
}

/// A `POST` with a body on the pool's one kept connection, once the backend has written
/// `goodbye` on it and closed it, idle, while the runtime could not read any of that: the
/// backend's answer, and the request lines it read.
fn post_after_a_close(goodbye: &'static [u8]) -> (StatusCode, Vec<(usize, String)>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (addr, seen, close, closed) = backend(goodbye);
        let pool = pool_with_one_kept(HttpConnector::new(), addr).await;
        assert_eq!(
            pool.shared.lock().connections.len(),
            1,
            "the connection kept"
        );

        // From here to the request's hand-over the runtime's one thread is blocked (waits bounded),
        // so the connection's task cannot read the close: as on a busy runtime, where it reads it
        // only after the request went out.
        close.send(()).unwrap();
        closed
            .recv_timeout(BOUND)
            .expect("the backend did not close");
        let give_up = std::time::Instant::now() + BOUND;
        // Idle long enough to be looked at: the wait is the scenario, the runtime kept blocked.
        std::thread::sleep(Conn::<Full<Bytes>>::LOOK_AFTER_IDLE);
        let watch = pool.shared.lock().connections[0].watch.clone();
        let watch = watch.expect("a connection the pool made is watched");
        // Until the kernel has all the backend sent: its goodbye, or else its close.
        let mut pending = [std::mem::MaybeUninit::uninit(); 256];
        while watch.peek(&mut pending).and_then(Result::ok) != Some(goodbye.len()) {
            assert!(std::time::Instant::now() < give_up, "the close never came");
            std::thread::yield_now();
        }

        let post = Request::post(format!("http://{addr}/order"))
            .header("content-length", "5")
            .body(Full::new(Bytes::from_static(b"order")))
            .unwrap();
        let response = tokio::time::timeout(BOUND, pool.request(post))
            .await
            .expect("no outcome within the bound")
            .expect("the POST failed");
        let status = response.status();
        let seen = seen.lock().unwrap().clone();
        (status, seen)
    })
}

/// A `POST` with a body, which may not go again once any of it went out, on a kept connection
/// the backend closed before it was handed over: it goes on a new connection and is answered.
/// Before, it went out on the closed connection, and failed as a dropped connection (the
/// backend taken for gone, or at best a 502) though the backend never read it.
#[test]
fn a_post_is_not_handed_to_a_kept_connection_the_backend_closed() {
    let (status, seen) = post_after_a_close(b"");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seen,
        [
            (0, "GET /first HTTP/1.1".to_owned()),
            (1, "POST /order HTTP/1.1".to_owned())
        ]
    );
}

/// The same when the backend said something before its close, as servers that answer an idle
/// connection's timeout with a `408` do: bytes on an idle connection, which no request asked
/// for, make it unusable, as nginx takes them. Before, the look saw bytes, not the close, and
/// handed the `POST` over: hyper read the `408` as its answer, which the client got for a
/// request the backend never read.
#[test]
fn a_post_is_not_handed_to_a_kept_connection_the_backend_said_goodbye_on() {
    let goodbye = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (status, seen) = post_after_a_close(goodbye);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seen,
        [
            (0, "GET /first HTTP/1.1".to_owned()),
            (1, "POST /order HTTP/1.1".to_owned())
        ]
    );
}
