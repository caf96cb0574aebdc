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

use super::upstream::{Failed, UpstreamError};
use crate::{BoxError, SharedError};

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
    /// When the last try to connect failed, and its error: the answer of the requests that
    /// waited for it, the same error (a timeout, a refusal, or this process out of file
    /// descriptors, which must not read as a refusal).
    failed: Option<(Instant, SharedError)>,
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
                failed: None,
            })),
        }
    }

    /// Sends `request` as a stream of the connection and waits for the response head. A
    /// request the connection closed before taking (the backend went away while it was idle)
    /// is sent once more, on a new connection, as hyper's client does.
    pub(crate) async fn request(
        &self,
        mut request: Request<B>,
    ) -> Result<Response<Incoming>, Failed<B>> {
        let mut fresh = false;
        loop {
            let mut sender = match self.sender(fresh).await {
                Ok(sender) => sender,
                Err(error) => {
                    return Err(Failed {
                        error,
                        unsent: Some(request),
                    });
                }
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if !fresh => {
                        request = unsent;
                        fresh = true;
                    }
                    unsent => {
                        return Err(Failed {
                            error: UpstreamError::Request(error.into_error()),
                            unsent,
                        });
                    }
                },
            }
        }
    }

    /// The connection to send on: the one there is, unless it has closed or a `fresh` one is
    /// asked for; otherwise a new one.
    async fn sender(&self, fresh: bool) -> Result<SendRequest<B>, UpstreamError> {
        let asked = Instant::now();
        let mut slot = self.slot.lock().await;
        slot.used = Instant::now();
        if let Some(sender) = slot
            .sender
            .as_ref()
            .filter(|sender| !fresh && !sender.is_closed())
        {
            return Ok(sender.clone());
        }
        // A connection tried while this request waited for it failed: that is its answer too,
        // not one more try after it (one after another, each up to the connect timeout).
        if let Some((_, error)) = slot.failed.as_ref().filter(|(failed, _)| *failed >= asked) {
            return Err(UpstreamError::Connect(Box::new(Arc::clone(error))));
        }
        let connected = async {
            let stream = self.connector.clone().call(self.backend.clone()).await?;
            Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(stream)
                .await
                .map_err(BoxError::from)
        };
        let (sender, connection) = match connected.await {
            Ok(connected) => connected,
            Err(error) => {
                let error = SharedError::from(error);
                slot.failed = Some((Instant::now(), Arc::clone(&error)));
                return Err(UpstreamError::Connect(Box::new(error)));
            }
        };
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
    use super::super::failure::Failure;
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

    #[tokio::test(start_paused = true)]
    async fn requests_waiting_for_a_connection_that_fails_share_its_failure() {
        // A listener that never accepts, its queue full: a connect gets no answer.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..8 {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(Duration::from_millis(200), connect).await {
                Ok(Ok(stream)) => fillers.push(stream),
                _ => break,
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let uri: Uri = format!("http://{addr}/").parse().unwrap();
        let connection = Arc::new(Multiplexed::<Empty<Bytes>>::new(
            connector,
            uri.clone(),
            Duration::from_secs(15),
        ));
        let start = Instant::now();
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                let (connection, uri) = (Arc::clone(&connection), uri.clone());
                tokio::spawn(async move {
                    let request = Request::get(uri).body(Empty::new()).unwrap();
                    connection.request(request).await.map(|_| ())
                })
            })
            .collect();
        let mut chains = Vec::new();
        for request in waiting {
            let failed = request.await.unwrap().unwrap_err();
            assert!(failed.unsent.is_some(), "no connection: nothing of it left");
            let error = failed.error;
            assert_eq!(Failure::of(&error), Failure::Timeout, "{}", chain(&error));
            chains.push(chain(&error));
        }
        // One connect timeout, not five one after another.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Each gets the connect's own error, not a stand-in that tells less of it.
        assert!(chains.windows(2).all(|two| two[0] == two[1]), "{chains:#?}");
        drop((listener, fillers));
    }

    /// A connect that failed for want of this process's own file descriptors was given to the
    /// requests that waited for it as an error of its kind alone, which has no number for
    /// `EMFILE`: they read it as a refusal, a gone backend (502, marked down, `on_down` run)
    /// where the first request got its 503.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_shared_connect_failure_for_want_of_file_descriptors_is_the_process_own() {
        const EMFILE: i32 = 24;
        let error: BoxError = Box::new(std::io::Error::from_raw_os_error(EMFILE));
        let shared = UpstreamError::Connect(Box::new(SharedError::from(error)));
        assert_eq!(Failure::of(&shared), Failure::Local, "{}", chain(&shared));
    }

    /// `error` and its causes, as the proxy's log line gives them.
    fn chain(error: &(dyn std::error::Error + 'static)) -> String {
        let mut text = error.to_string();
        let mut next = error.source();
        while let Some(cause) = next {
            text = format!("{text}: {cause}");
            next = cause.source();
        }
        text
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
