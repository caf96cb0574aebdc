//! The TLS handshake of a connection on an HTTPS listener, and the answer to a client that
//! speaks plain HTTP to it.
//!
//! A failed handshake is logged at debug, not warn: scanners and bots fail handshakes all
//! day, and a log line for each would drown what matters.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::send_timeout::SendTimeout;

/// A client connection over TLS; its writes bounded by the send timeout, as a cleartext
/// one's are (the TLS records are what waits for the client).
pub(super) type TlsIo = TlsStream<SendTimeout<TcpStream>>;

/// The answer to a plain HTTP request on the HTTPS listener, as nginx gives one (400), with
/// what to do about it; the connection is closed after it.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 56\r\n\
connection: close\r\n\
\r\n\
This port speaks HTTPS: use https:// instead of http://\n";

/// How long what a plain HTTP client sent is read and dropped after the answer, at most.
const LINGER: Duration = Duration::from_secs(1);

/// Why a connection got no TLS session.
enum Failed {
    /// Closed by the client before its first byte (a TCP health check, a port scan).
    Closed,
    /// It spoke plain HTTP: answered 400.
    PlainHttp,
    /// The handshake failed (rustls's reason).
    Handshake(io::Error),
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("closed before a TLS handshake"),
            Self::PlainHttp => {
                f.write_str("a plain HTTP request on the HTTPS listener; answered 400 and closed")
            }
            Self::Handshake(error) => write!(f, "TLS handshake failed: {error}"),
        }
    }
}

/// The TLS session of `stream` (from `addr`) with `acceptor`, its writes bounded by `send`,
/// once its handshake is done; `None` if the client does not complete one within `bound`
/// (the header read timeout), closes, fails it, or speaks plain HTTP (answered 400).
pub(super) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
    bound: Duration,
    send: Duration,
) -> Option<TlsIo> {
    let handshake = async {
        // A TLS client begins with a handshake record (22); an HTTP one with a method's first
        // letter. Looked at, not taken: the handshake reads it.
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) => return Err(Failed::Closed),
            Ok(_) => {}
            Err(error) => return Err(Failed::Handshake(error)),
        }
        if first[0].is_ascii_uppercase() {
            answer_plain_http(stream).await;
            return Err(Failed::PlainHttp);
        }
        (acceptor.accept(SendTimeout::new(stream, send)).await).map_err(Failed::Handshake)
    };
    match tokio::time::timeout(bound, handshake).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(failed)) => {
            tracing::debug!(%addr, "{failed}");
            None
        }
        Err(_) => {
            tracing::debug!(
                %addr,
                "no TLS handshake within the header read timeout; closed"
            );
            None
        }
    }
}

/// Answers a plain HTTP client with [`PLAIN_HTTP_ANSWER`], then closes its connection.
async fn answer_plain_http(mut stream: TcpStream) {
    if stream.write_all(PLAIN_HTTP_ANSWER).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    // Closed with bytes of the request still unread, the socket would be reset, and the
    // client might lose the answer before it reads it: they are read to the client's close
    // (its answer read), briefly.
    let drain = async {
        let mut sink = [0u8; 4096];
        while let Ok(1..) = stream.read(&mut sink).await {}
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::PLAIN_HTTP_ANSWER;

    #[test]
    fn the_plain_http_answer_says_its_length() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
    }
}
