//! A request that may not go again, dropped on a kept connection: the new connection the pool
//! then makes tells whether the backend is gone, and only its refusal says so.

use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::sync::mpsc as std_mpsc;

use socket2::{Domain, Socket as RawSocket, Type};

use super::*;

/// Reads one request head from `reader`; false at the connection's end.
fn read_head(reader: &mut BufReader<std::net::TcpStream>) -> bool {
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == "\r\n" => return true,
            Ok(_) => {}
        }
    }
}

/// A backend, on a thread of its own, whose accept queue takes one connection waiting (Linux
/// drops the connection attempts past it, as when a busy backend's queue is full). It accepts
/// one connection only: it answers `hello` to its first request, then reads the head of the
/// second and closes the connection unanswered. Its listener stays open until `done`.
fn backend() -> (SocketAddr, std_mpsc::Sender<()>) {
    let socket = RawSocket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.listen(0).unwrap();
    let listener = StdListener::from(socket);
    let addr = listener.local_addr().unwrap();
    let (done, done_rx) = std_mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let mut reader = BufReader::new(stream);
            if read_head(&mut reader) {
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                if std::io::Write::write_all(reader.get_mut(), answer).is_ok() {
                    read_head(&mut reader);
                }
            }
        }
        // Bounded: the test ends within it.
        let _ = done_rx.recv_timeout(BOUND);
        drop(listener);
    });
    (addr, done)
}

/// A backend slow to take connections (its queue full) is there, busy: when the connection
/// that tells is not made within the connect timeout, the request's failure is that timeout
/// (a 504, as a request on a new connection would get), not a gone backend. Before, any
/// failure of that connection made the backend gone: marked down, its fallback and `on_down`.
#[tokio::test(flavor = "current_thread")]
async fn a_new_connection_that_times_out_does_not_make_the_backend_gone() {
    let (addr, done) = backend();
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(300)));
    let pool = pool_with_one_kept(connector, addr).await;

    // The queue filled: one connection waits in it, the next attempt is not answered.
    let mut waiting = Vec::new();
    let full = loop {
        assert!(waiting.len() < 8, "the accept queue never filled");
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => waiting.push(stream),
            Err(error) => break error,
        }
    };
    assert_eq!(full.kind(), std::io::ErrorKind::TimedOut, "{full}");

    let post = Request::post(format!("http://{addr}/order"))
        .header("content-length", "5")
        .body(Full::new(Bytes::from_static(b"order")))
        .unwrap();
    let failed = tokio::time::timeout(BOUND, pool.request(post))
        .await
        .expect("no outcome within the bound")
        .expect_err("the backend closed the connection unanswered");
    assert_eq!(
        Failure::of(&failed.error),
        Failure::Timeout,
        "{:?}",
        failed.error
    );
    let _ = done.send(());
}
