//! [`Socket`]: a backend connection's socket, on which a write that fails because the backend
//! closed the connection ends the writing, not the exchange.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
/// The dropping is bounded ([`DROPPED_AT_MOST`]): hyper stops writing once it reads the
/// connection's end, just after the answer, but not while it does not read (an answer's body
/// dropped unread, bytes past its end): the client's upload would be read to its end, however
/// long, and thrown away. Past the bound, writes fail as the first did.
///
/// Not once the connection has switched protocols ([`Switched`]): a relay's writes then fail
/// as the socket's do, which ends the relay.
pub(super) struct Socket<T> {
    io: T,
    /// Set once a write failed for the connection's end: nothing more goes out, and what is
    /// written is dropped, up to the bound.
    unwritable: Option<Dropping>,
    switched: Switched,
    /// The service its log names.
    service: Arc<str>,
    /// Told when the socket is closed, if something looks at it from outside.
    watch: Option<Watch>,
}

/// Bytes written to a [`Socket`] that are dropped at most, once its backend closed: many
/// times what hyper writes before it reads again (its buffer, about 400 KiB), so that the
/// answer is read first.
const DROPPED_AT_MOST: usize = 8 << 20;

/// What a socket whose backend closed does with what is written to it.
struct Dropping {
    /// The failure that began it, given again once no more is dropped.
    kind: io::ErrorKind,
    left: usize,
}

impl<T> Socket<T> {
    /// The socket, and the flag that tells it its connection switched protocols.
    pub(super) fn new(io: T, service: Arc<str>) -> (Self, Switched) {
        let switched = Switched::default();
        let socket = Self {
            io,
            unwritable: None,
            switched: switched.clone(),
            service,
            watch: None,
        };
        (socket, switched)
    }

    /// This socket, told to `watch` when it is closed.
    pub(super) fn watched(mut self, watch: Watch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// `result` of a write of `len` bytes, or, if it failed for the connection's end (the
    /// backend gone or done reading), the bytes dropped as though written.
    fn written(&mut self, result: io::Result<usize>, len: usize) -> io::Result<usize> {
        match result {
            // Looked at only on a failure: it costs nothing on the way of every write.
            Err(error) if closed(&error) && !self.switched.0.load(Ordering::Acquire) => {
                tracing::debug!(
                    service = %self.service,
                    %error,
                    "backend stopped reading the request; its rest is dropped"
                );
                let mut dropping = Dropping {
                    kind: error.kind(),
                    left: DROPPED_AT_MOST,
                };
                let dropped = dropping.discard(len, &self.switched);
                self.unwritable = Some(dropping);
                dropped
            }
            result => result,
        }
    }
}

impl Dropping {
    /// `len` bytes dropped as though written, or the first failure again: past the bound, or
    /// once the connection switched protocols (an upgrade answered after the request's body
    /// failed to go: its relay must end, not lose what it writes).
    fn discard(&mut self, len: usize, switched: &Switched) -> io::Result<usize> {
        match self.left.checked_sub(len) {
            Some(left) if !switched.0.load(Ordering::Acquire) => {
                self.left = left;
                Ok(len)
            }
            _ => Err(self.kind.into()),
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

impl<T> Drop for Socket<T> {
    fn drop(&mut self) {
        if let Some(watch) = &self.watch {
            watch.close();
        }
    }
}

/// A look at a kept connection's socket from outside the connection's task, which owns it:
/// whether the backend has closed it, or sent what no request asked for
/// ([`closed`](Self::closed)).
///
/// The task reads a backend's close only once its runtime's reactor has passed the news on,
/// which on a busy runtime may be a while after the kernel has it. A request handed to the
/// connection meanwhile goes out into a closed connection and fails, though the backend never
/// read it. A look at the socket itself before the request is handed over tells: a close the
/// kernel has is one that came before any of the request, which can then go on another
/// connection whatever its method.
#[derive(Clone)]
pub(super) struct Watch(Arc<Watched>);

struct Watched {
    #[cfg(unix)]
    fd: std::os::fd::RawFd,
    /// False once the socket is closed (its descriptor may then be another socket's): looks
    /// and the close exclude each other.
    open: Mutex<bool>,
}

impl Watch {
    /// A watch on `stream`, to be given to its [`Socket`].
    pub(super) fn of(stream: &tokio::net::TcpStream) -> Self {
        #[cfg(not(unix))]
        let _ = stream;
        Self(Arc::new(Watched {
            #[cfg(unix)]
            fd: std::os::fd::AsRawFd::as_raw_fd(stream),
            open: Mutex::new(true),
        }))
    }

    fn close(&self) {
        *self.0.open.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }

    /// Whether the connection can take no request: the backend has closed or reset it, or
    /// sent bytes no request asked for (a `408` some servers send before they close an idle
    /// connection), which hyper would read as the next request's answer; or it is closed.
    /// nginx takes a kept connection so too. The bytes are left where they are: the
    /// connection is dropped, unused.
    pub(super) fn closed(&self) -> bool {
        let mut byte = [std::mem::MaybeUninit::uninit()];
        match self.peek(&mut byte) {
            None => true,
            // The socket does not block (tokio's): nothing to read is `WouldBlock`. Anything
            // else (the end, a byte, a reset) makes the connection unusable.
            Some(Err(error)) => !matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
            Some(Ok(_)) => true,
        }
    }

    /// What a read would give, left to read (none once the socket is closed; on other
    /// platforms than Unix, nothing to read).
    pub(super) fn peek(&self, buf: &mut [std::mem::MaybeUninit<u8>]) -> Option<io::Result<usize>> {
        let open = self.0.open.lock().unwrap_or_else(PoisonError::into_inner);
        if !*open {
            return None;
        }
        #[cfg(unix)]
        {
            // SAFETY: the descriptor is the socket's as long as `open` is true: its `Socket`,
            // which owns the stream, sets it false before the stream is dropped and closes the
            // descriptor, and cannot while this holds the lock. Nothing else closes it: the
            // stream cannot be moved out of a `Socket` (it implements `Drop`), which an upgrade
            // takes whole, and a shutdown leaves the descriptor open.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0.fd) };
            Some(socket2::SockRef::from(&fd).peek(buf))
        }
        #[cfg(not(unix))]
        {
            let _ = buf;
            Some(Err(io::ErrorKind::WouldBlock.into()))
        }
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
        if let Some(dropping) = this.unwritable.as_mut() {
            return Poll::Ready(dropping.discard(buf.len(), &this.switched));
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
        if let Some(dropping) = this.unwritable.as_mut() {
            return Poll::Ready(dropping.discard(len(), &this.switched));
        }
        let result = std::task::ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs));
        Poll::Ready(this.written(result, len()))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unwritable.is_some() {
            return Poll::Ready(Ok(()));
        }
        let result = std::task::ready!(Pin::new(&mut this.io).poll_flush(cx));
        Poll::Ready(this.written(result.map(|()| 0), 0).map(drop))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unwritable.is_some() {
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
        let (mut socket, _) =
            Socket::new(Scripted(VecDeque::from([Ok(3), Err(broken)])), "app".into());
        assert_eq!(write(&mut socket, b"abc").await.unwrap(), 3);
        assert_eq!(write(&mut socket, b"defg").await.unwrap(), 4);
        // Nothing more reaches the socket: its script has ended.
        assert_eq!(write(&mut socket, b"hi").await.unwrap(), 2);
        poll_fn(|cx| Pin::new(&mut socket).poll_flush(cx))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn past_its_bound_the_dropping_fails_as_the_first_write_did() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let (mut socket, _) = Socket::new(Scripted(VecDeque::from([Err(reset)])), "app".into());
        let chunk = vec![0; DROPPED_AT_MOST / 4];
        for _ in 0..4 {
            assert_eq!(write(&mut socket, &chunk).await.unwrap(), chunk.len());
        }
        let error = write(&mut socket, b"!").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
        let error = write(&mut socket, b"!").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn a_switch_after_a_dropped_write_ends_the_dropping() {
        let broken = io::Error::from(io::ErrorKind::BrokenPipe);
        let (mut socket, switched) =
            Socket::new(Scripted(VecDeque::from([Err(broken)])), "app".into());
        assert_eq!(write(&mut socket, b"body").await.unwrap(), 4);
        switched.set();
        let error = write(&mut socket, b"relayed").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn once_switched_a_write_the_backend_closed_fails() {
        let broken = io::Error::from(io::ErrorKind::BrokenPipe);
        let (mut socket, switched) =
            Socket::new(Scripted(VecDeque::from([Ok(3), Err(broken)])), "app".into());
        switched.set();
        assert_eq!(write(&mut socket, b"abc").await.unwrap(), 3);
        let error = write(&mut socket, b"defg").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn another_write_failure_stays_a_failure() {
        let other = io::Error::other("not the connection's end");
        let (mut socket, _) =
            Socket::new(Scripted(VecDeque::from([Err(other), Ok(2)])), "app".into());
        assert!(write(&mut socket, b"abc").await.is_err());
        assert_eq!(write(&mut socket, b"hi").await.unwrap(), 2);
    }
}
