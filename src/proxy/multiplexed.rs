//! [`Multiplexed`]: the proxy's one HTTP/2 connection to its backend.
//!
//! hyper's general client keys its connections by the authority of each request's URI, which
//! the proxy fills with the client's (HTTP/2 sends it as `:authority`): each `Host` a client
//! made up would open a connection to the backend of its own, thousands of them from one
//! client. A proxy has one backend, so it keeps one connection, every request a stream of it:
//! made on the first request, made again once the backend has closed it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Request, Response, Uri};
use http_body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tower_service::Service;

use super::upstream::UpstreamError;
use crate::BoxError;

/// One HTTP/2 connection to one backend, shared by every request of a proxy.
pub(crate) struct Multiplexed<B> {
    connector: HttpConnector,
    backend: Uri,
    idle_timeout: Duration,
    /// Locked while a connection is made, so that concurrent requests share it.
    slot: Arc<Mutex<Slot<B>>>,
}

struct Slot<B> {
    sender: Option<SendRequest<B>>,
    /// Which connection `sender` is (each made gets the next number).
    generation: u64,
    /// When the last request was sent.
    used: Instant,
}

impl<B> Multiplexed<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A connection to `backend`, dialled with `connector` when first needed and let go once
    /// no request has been sent on it for `idle_timeout` (it closes when its last answer ends).
    pub(crate) fn new(connector: HttpConnector, backend: Uri, idle_timeout: Duration) -> Self {
        Self {
            connector,
            backend,
            idle_timeout,
            slot: Arc::new(Mutex::new(Slot {
                sender: None,
                generation: 0,
                used: Instant::now(),
            })),
        }
    }

    /// Sends `request` as a stream of the connection and waits for the response head. A
    /// request the connection closed before taking (the backend went away while it was idle)
    /// is sent once more, on a new connection, as hyper's client does.
    pub(crate) async fn request(
        &self,
        mut request: Request<B>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut fresh = false;
        loop {
            let mut sender = self.sender(fresh).await?;
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if !fresh => {
                        request = unsent;
                        fresh = true;
                    }
                    _ => return Err(UpstreamError::Request(error.into_error())),
                },
            }
        }
    }

    /// The connection to send on: the one there is, unless it has closed or a `fresh` one is
    /// asked for; otherwise a new one.
    async fn sender(&self, fresh: bool) -> Result<SendRequest<B>, UpstreamError> {
        let mut slot = self.slot.lock().await;
        slot.used = Instant::now();
        if let Some(sender) = slot
            .sender
            .as_ref()
            .filter(|sender| !fresh && !sender.is_closed())
        {
            return Ok(sender.clone());
        }
        let stream = self
            .connector
            .clone()
            .call(self.backend.clone())
            .await
            .map_err(|error| UpstreamError::Connect(error.into()))?;
        let (sender, connection) = Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(stream)
            .await
            .map_err(|error| UpstreamError::Connect(error.into()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "the backend's HTTP/2 connection ended");
            }
        });
        slot.sender = Some(sender.clone());
        slot.generation += 1;
        let_go_when_idle(
            Arc::downgrade(&self.slot),
            slot.generation,
            self.idle_timeout,
        );
        Ok(sender)
    }
}

/// Drops connection `generation` from `slot` once no request has been sent on it for
/// `idle_timeout`, so that a proxy without traffic holds no socket (and a backend stopped when
/// idle has no connection to drain). Ends early if the proxy or the connection is gone.
fn let_go_when_idle<B: Send + 'static>(
    slot: Weak<Mutex<Slot<B>>>,
    generation: u64,
    idle_timeout: Duration,
) {
    tokio::spawn(async move {
        loop {
            let Some(slot) = slot.upgrade() else { return };
            let mut current = slot.lock().await;
            if current.generation != generation || current.sender.is_none() {
                return;
            }
            let idle_until = current.used + idle_timeout;
            if Instant::now() >= idle_until {
                current.sender = None;
                return;
            }
            drop(current);
            drop(slot);
            tokio::time::sleep_until(idle_until).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Empty, Full};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// An HTTP/2 backend that tells, for each connection, when it has ended.
    async fn backend() -> (Uri, mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/", listener.local_addr().unwrap());
        let (ended, ends) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let ended = ended.clone();
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"ok",
                    ))))
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    let _ = ended.send(());
                });
            }
        });
        (uri.parse().unwrap(), ends)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_connection_is_let_go_when_idle_and_made_again_when_needed() {
        let (uri, mut ends) = backend().await;
        let connection = Multiplexed::<Empty<Bytes>>::new(
            HttpConnector::new(),
            uri.clone(),
            Duration::from_millis(200),
        );
        for _ in 0..2 {
            for _ in 0..3 {
                let request = Request::get(uri.clone()).body(Empty::new()).unwrap();
                let response = connection.request(request).await.unwrap();
                assert_eq!(response.status(), 200);
            }
            // Three requests, one connection; closed once idle.
            tokio::time::timeout(Duration::from_secs(10), ends.recv())
                .await
                .expect("the idle connection was never closed");
            assert!(
                ends.try_recv().is_err(),
                "one connection for three requests"
            );
        }
    }
}
