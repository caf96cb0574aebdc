//! [`SendTimeout`]: a client connection that fails once the client has taken none of the bytes
//! waiting for it for a while (nginx's `send_timeout`). Without it, a client that asks for a
//! large answer and stops reading holds its request, the backend connection behind it and the
//! backend's wakefulness for ever, and a few thousand such clients hold as many of each.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `S`, whose writes fail with [`io::ErrorKind::TimedOut`] once one has waited for the client
/// for `timeout` without a byte taken. A write that goes through costs one branch more.
pub(super) struct SendTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Armed when a write first finds the client's window (and the socket's buffer) full;
    /// dropped when one goes through.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> SendTimeout<S> {
    pub(super) fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// What a write that did not go through answers: still waiting, or past the timeout.
    fn waited<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing for the send timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// `written`, with the wait started, checked or ended.
    fn went_through<T>(
        &mut self,
        written: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match written {
            Poll::Pending => self.waited(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.went_through(written, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.went_through(written, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    // A socket's flush sends nothing and so says nothing of the client: the wait is left as
    // it is.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_timeout_fails() {
        // A pipe with room for 8 bytes, whose reader takes nothing.
        let (_reader, writer) = tokio::io::duplex(8);
        let mut io = SendTimeout::new(writer, Duration::from_secs(60));
        io.write_all(b"12345678").await.unwrap();
        let start = Instant::now();
        let error = io.write_all(b"9").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_taken_starts_the_wait_again() {
        let (mut reader, writer) = tokio::io::duplex(8);
        let mut io = SendTimeout::new(writer, Duration::from_secs(60));
        io.write_all(b"12345678").await.unwrap();
        let start = Instant::now();
        let slow = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(59)).await;
            let mut taken = [0u8; 8];
            reader.read_exact(&mut taken).await.unwrap();
            reader
        });
        // Waits 59 s, goes through, then fills the pipe and waits 60 s more.
        let error = io.write_all(&[0u8; 17]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(119));
        drop(slow.await.unwrap());
    }
}
