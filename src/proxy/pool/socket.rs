//! [`Socket`]: a backend connection's socket, on which a write that fails because the backend
//! closed the connection ends the writing, not the exchange.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};

/// A backend connection's socket. Once a write fails because the backend closed or reset the
/// connection, what is written after is dropped as though sent, and reads go on.
///
/// A backend may answer before it has read the whole request body (a `413` to a large upload, a
/// `401`) and close the connection at once, the body unread, which its kernel answers with a
/// reset. The rest of the body then fails to go (a broken pipe, a reset), and hyper's client
/// failed the exchange with that error, the answer already on the socket unread: the client got
/// a 502 for its `413`, and the backend was taken for gone (marked down, woken). hyper now
/// reads on, and gets the answer, or else the end of the connection, a failure as before.
///
/// Not once the connection has switched protocols ([`Switched`]): a relay's writes then fail
/// as the socket's do, which ends the relay.
pub(super) struct Socket<T> {
    io: T,
    /// Set once a write failed for the connection's end: nothing more goes out.
    unwritable: bool,
    switched: Switched,
}

impl<T> Socket<T> {
    /// The socket, and the flag that tells it its connection switched protocols.
    pub(super) fn new(io: T) -> (Self, Switched) {
        let switched = Switched::default();
        let socket = Self {
            io,
            unwritable: false,
            switched: switched.clone(),
        };
        (socket, switched)
    }

    /// `result` of a write of `len` bytes, or, if it failed for the connection's end (the
    /// backend gone or done reading), the bytes dropped as though written.
    fn written(&mut self, result: io::Result<usize>, len: usize) -> io::Result<usize> {
        match result {
            // Looked at only on a failure: it costs nothing on the way of every write.
            Err(error) if closed(&error) && !self.switched.0.load(Ordering::Acquire) => {
                tracing::debug!(%error, "backend stopped reading the request; its rest is dropped");
                self.unwritable = true;
                Ok(len)
            }
            result => result,
        }
    }
}

/// Set once a connection has switched protocols (a `101`): its bytes are then an upgrade's,
/// relayed until either side closes, and a failed write is the end of the relay.
#[derive(Clone, Default)]
pub(super) struct Switched(Arc<AtomicBool>);

impl Switched {
    pub(super) fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Whether a write failed because the backend closed or reset the connection.
fn closed(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

impl<T: Read + Unpin> Read for Socket<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Socket<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.unwritable {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = std::task::ready!(Pin::new(&mut this.io).poll_write(cx, buf));
        Poll::Ready(this.written(result, buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = || bufs.iter().map(|buf| buf.len()).sum();
        if this.unwritable {
            return Poll::Ready(Ok(len()));
        }
        let result = std::task::ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs));
        Poll::Ready(this.written(result, len()))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unwritable {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(Pin::new(&mut this.io).poll_flush(cx));
        Poll::Ready(this.written(result.map(|()| 0), 0).map(drop))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unwritable {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::future::poll_fn;

    use super::*;

    /// A socket whose writes give these results, in order (and fail the test past them).
    struct Scripted(VecDeque<io::Result<usize>>);

    impl Write for Scripted {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(self.get_mut().0.pop_front().expect("no more writes"))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn write(socket: &mut Socket<Scripted>, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| Pin::new(&mut *socket).poll_write(cx, buf)).await
    }

    #[tokio::test]
    async fn a_write_the_backend_closed_ends_the_writing_quietly() {
        let broken = io::Error::from(io::ErrorKind::BrokenPipe);
        let (mut socket, _) = Socket::new(Scripted(VecDeque::from([Ok(3), Err(broken)])));
        assert_eq!(write(&mut socket, b"abc").await.unwrap(), 3);
        assert_eq!(write(&mut socket, b"defg").await.unwrap(), 4);
        // Nothing more reaches the socket: its script has ended.
        assert_eq!(write(&mut socket, b"hi").await.unwrap(), 2);
        poll_fn(|cx| Pin::new(&mut socket).poll_flush(cx))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn another_write_failure_stays_a_failure() {
        let other = io::Error::other("not the connection's end");
        let (mut socket, _) = Socket::new(Scripted(VecDeque::from([Err(other), Ok(2)])));
        assert!(write(&mut socket, b"abc").await.is_err());
        assert_eq!(write(&mut socket, b"hi").await.unwrap(), 2);
    }
}
