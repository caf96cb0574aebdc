//! [`Pool`]: the proxy's kept-alive HTTP/1.1 connections to its one backend.
//!
//! hyper's general client keys its pool by authority, races a checkout against a connect,
//! and spawns a task per request to put the connection back once the response is read. A
//! proxy has one backend, so this pool is a stack of idle connections: a request takes the
//! most recently used one (or dials), and the response body gives it back when read to its
//! end. Each connection is driven by a task of its own, which notices a backend closing it
//! while idle; one timer task per pool closes connections idle for longer than the timeout.
//!
//! The busy path is [`Pool::kept`]: on an idle connection the request is sent at once, and
//! the [`Exchange`] awaits its response head against a deadline, on a timer each connection
//! keeps for all its requests.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, Uri, header};
use http_body::Body;
use hyper::client::conn::http1::Builder;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower_service::Service;

use conn::{Conn, lend};
pub(crate) use conn::{Exchange, Kept, Outcome};
use idle_timer::{IdleTimer, close_idle};
use replay::Replay;
use socket::{Socket, Watch};

use super::failure::Failure;
use super::upstream::{Failed, UpstreamBody, UpstreamError};
use crate::BoxError;

/// A connection lent to a response, given back to its pool by [`release`](Lease::release).
pub(crate) trait Lease: Send + Sync {
    /// The response is done with the connection; `read` if its body was read to its end.
    fn release(self: Box<Self>, read: bool);

    /// The connection's timer, for the response body to bound its waits with (none: the
    /// body keeps one of its own).
    fn timer(&mut self) -> Option<&mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>> {
        None
    }
}

/// Idle HTTP/1.1 connections to one backend; cheap to clone (one shared stack).
pub(crate) struct Pool<B> {
    shared: Arc<Shared<B>>,
}

struct Shared<B> {
    connector: HttpConnector,
    backend: Uri,
    /// The `Host` of a request that came without one (HTTP/1.0).
    host: HeaderValue,
    idle_timeout: Duration,
    /// hyper's limit of header lines in an answer, when not its default (100): above it,
    /// each answer's parse allocates.
    max_headers: Option<usize>,
    service: Arc<str>,
    idle: Mutex<Idle<B>>,
    /// Told each time a connection's task ends (for the tests: the event they wait for).
    ended: Arc<Notify>,
}

struct Idle<B> {
    /// Oldest first: requests take from the back, the timer closes from the front.
    connections: VecDeque<Box<Conn<B>>>,
    /// Whether the timer task runs (it ends when no connection is idle).
    timer: bool,
}

impl<B> Pool<B>
where
    B: Body + Default + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A pool dialling `backend` with `connector`, closing connections idle for `idle_timeout`,
    /// whose connections read answers of at most `max_headers` header lines (`None`: hyper's
    /// default, 100), for the service its logs name.
    pub(crate) fn new(
        connector: HttpConnector,
        backend: Uri,
        idle_timeout: Duration,
        max_headers: Option<usize>,
        service: Arc<str>,
    ) -> Self {
        let host = backend
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("localhost"));
        Self {
            shared: Arc::new(Shared {
                connector,
                backend,
                host,
                idle_timeout,
                max_headers,
                service,
                idle: Mutex::new(Idle {
                    connections: VecDeque::new(),
                    timer: false,
                }),
                ended: Arc::new(Notify::new()),
            }),
        }
    }

    /// Sends `request` on an idle connection or a new one, and waits for the response head.
    ///
    /// A kept connection the backend closed meanwhile fails the request before sending it;
    /// it is then sent again on another connection, as hyper's client does. A request that may
    /// go again ([`Replay`]), on a kept connection closed before its answer, goes again once,
    /// on a new connection.
    pub(crate) async fn request(
        &self,
        mut request: Request<B>,
    ) -> Result<Response<UpstreamBody>, Failed<B>> {
        self.prepare(&mut request);
        loop {
            // A request sent again goes on a new connection ([`Replay`]).
            let idle = if Replay::is_replay(&request) {
                None
            } else {
                // One clock read for the look and the staleness both.
                let now = Instant::now();
                self.shared
                    .take_idle(now)
                    .map(|connection| (connection, now))
            };
            let (mut connection, replay) = match idle {
                Some((connection, now)) => {
                    let stale = connection.stale(now);
                    (
                        connection,
                        Some(stale.then(|| Replay::of(&request)).flatten()),
                    )
                }
                None => match self.shared.connect().await {
                    Ok(connection) => (connection, None),
                    Err(error) => {
                        return Err(Failed {
                            error,
                            unsent: Some(request),
                        });
                    }
                },
            };
            connection.pool = Some(Arc::clone(&self.shared));
            connection.replay = None;
            match connection.send.try_send_request(request).await {
                Ok(response) => return Ok(lend(connection, response)),
                Err(mut error) => match (error.take_message(), replay) {
                    // Reused: the backend had closed it while it was idle.
                    (Some(unsent), Some(_)) => request = unsent,
                    (None, Some(replay)) => {
                        let error = UpstreamError::Request(error.into_error());
                        if Failure::of(&error) != Failure::Gone {
                            return Err(Failed {
                                error,
                                unsent: None,
                            });
                        }
                        match replay {
                            Some(replay) => {
                                request = replay.again(&self.shared.service, &error);
                            }
                            None => {
                                return Err(Failed {
                                    error: self.kept_closed(error).await,
                                    unsent: None,
                                });
                            }
                        }
                    }
                    (unsent, _) => {
                        return Err(Failed {
                            error: UpstreamError::Request(error.into_error()),
                            unsent,
                        });
                    }
                },
            }
        }
    }

    /// What `error`, a kept connection closed or reset under a request that may not go again,
    /// says of the backend. A backend that closes idle connections (Node's after 5 s, Python's
    /// on its socket timeout) closes one under a request that crosses the close, and is there:
    /// it takes a new connection, kept for the next request, and the error is
    /// [`KeptClosed`](UpstreamError::KeptClosed). One that refuses the new connection is gone,
    /// and the error stays what it was. One that does not take it within the connect timeout
    /// (its queue full) is not known gone: the error is that timeout, a 504, as a request on
    /// a new connection would get; nor is one this process could not connect to for want of
    /// its own resources (`EMFILE`): the error is that one, a 503.
    pub(crate) async fn kept_closed(&self, error: UpstreamError) -> UpstreamError {
        let UpstreamError::Request(error) = error else {
            return error;
        };
        match self.shared.connect().await {
            Ok(connection) => {
                // Kept once its task is ready for a request.
                Arc::clone(&self.shared).put(connection);
                UpstreamError::KeptClosed(error)
            }
            Err(connect) if matches!(Failure::of(&connect), Failure::Timeout | Failure::Local) => {
                connect
            }
            Err(_) => UpstreamError::Request(error),
        }
    }

    /// The busy path: an idle connection to send a request on at once (it is `now`), if there
    /// is one.
    pub(crate) fn kept(&self, now: Instant) -> Option<Kept<'_, B>> {
        let connection = self.shared.take_idle(now)?;
        Some(Kept {
            pool: self,
            connection,
        })
    }

    /// The request as an HTTP/1.1 backend wants it: the URI in origin form, a `Host`, and
    /// its body's framing named when hyper would drop the body.
    fn prepare(&self, request: &mut Request<B>) {
        let method = request.method().clone();
        origin_form(&method, request.uri_mut());
        let chunked = body_unframed(&method, request);
        let headers = request.headers_mut();
        headers
            .entry(header::HOST)
            .or_insert_with(|| self.shared.host.clone());
        if chunked {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
    }
}

impl<B> Shared<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn lock(&self) -> MutexGuard<'_, Idle<B>> {
        // The lock guards a list only: a panic elsewhere leaves it consistent.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used connection that can take a request (at `now`), if any: not one
    /// the backend has closed, even if its task has not seen the close yet ([`Watch`]; looked
    /// at once the connection has been idle [`Conn::LOOK_AFTER_IDLE`]).
    fn take_idle(&self, now: Instant) -> Option<Box<Conn<B>>> {
        loop {
            let connection = {
                let mut idle = self.lock();
                loop {
                    let connection = idle.connections.pop_back()?;
                    // Only ready connections are put back: one that is not any more was closed.
                    if connection.send.is_ready() {
                        break connection;
                    }
                }
            };
            // Looked at with the lock released: it is a system call.
            if !connection.closed(now) {
                return Some(connection);
            }
            tracing::debug!(service = %self.service, "the backend had closed a kept connection; not sending on it");
        }
    }

    async fn connect(&self) -> Result<Box<Conn<B>>, UpstreamError> {
        let io = self
            .connector
            .clone()
            .call(self.backend.clone())
            .await
            .map_err(|error| UpstreamError::Connect(error.into()))?;
        let mut builder = Builder::new();
        if let Some(max) = self.max_headers {
            builder.max_headers(max);
        }
        let watch = Watch::of(io.inner());
        let (socket, switched) = Socket::new(io, Arc::clone(&self.service));
        let socket = socket.watched(watch.clone());
        let (connection, driver) = builder
            .handshake(socket)
            .await
            .map_err(|error| UpstreamError::Connect(error.into()))?;
        let ended = Arc::clone(&self.ended);
        tokio::spawn(async move {
            // Its end (closed by either side, or upgraded) is the end of the connection.
            if let Err(error) = driver.with_upgrades().await {
                tracing::debug!(%error, "backend connection ended");
            }
            ended.notify_one();
        });
        Ok(Conn::new(connection, switched, Some(watch)))
    }

    /// Puts a connection whose response was read back (or a new one) on the stack, once it
    /// can take the next request (at once, unless the request body is still being sent).
    fn put(self: Arc<Self>, mut connection: Box<Conn<B>>) {
        if connection.send.is_ready() {
            self.push(connection);
        } else if !connection.send.is_closed() {
            // Rare: the backend answered before reading the whole request body.
            spawn(async move {
                if poll_fn(|cx| connection.send.poll_ready(cx)).await.is_ok() {
                    self.push(connection);
                }
            });
        }
    }

    fn push(self: Arc<Self>, mut connection: Box<Conn<B>>) {
        connection.idle_since = Instant::now();
        // Its last request is answered: no copy of it is kept while it is idle.
        connection.replay = None;
        let mut idle = self.lock();
        let timer = if idle.timer {
            None
        } else {
            // Without a runtime to run the timer (dropped at shutdown, or read to its end by
            // another executor) the connection is not kept.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            idle.timer = true;
            Some(runtime)
        };
        idle.connections.push_back(connection);
        drop(idle);
        // Spawned with the lock released: a runtime that is shutting down drops the task at
        // once, and the task's drop takes the lock to clear the flag.
        if let Some(runtime) = timer {
            runtime.spawn(close_idle(IdleTimer::new(&self)));
        }
    }
}

/// hyper's HTTP/1.1 connection writes the URI as given: the backend wants the path only.
/// (`CONNECT`: the authority only).
fn origin_form(method: &Method, uri: &mut Uri) {
    if uri.authority().is_none() {
        return;
    }
    *uri = if method == Method::CONNECT {
        uri.authority().cloned().map(Uri::from).unwrap_or_default()
    } else {
        Uri::from(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        )
    };
}

/// Whether `request` is a `GET` or `HEAD` with a body of unknown length (chunked, or
/// HTTP/2's without `content-length`): hyper's client guesses such a request has no body
/// and sends it with none, losing the body (Elasticsearch's searches are GETs with one),
/// unless its coding is named. nginx passes it on. An upgrade's bytes follow the switch, not
/// as a body.
fn body_unframed<B: Body>(method: &Method, request: &Request<B>) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && !request.body().is_end_stream()
        && request.body().size_hint().exact().is_none()
        && !request.headers().contains_key(header::CONTENT_LENGTH)
        && !request.headers().contains_key(header::UPGRADE)
}

/// Spawns `task` on the current runtime; false if there is none.
fn spawn(task: impl Future<Output = ()> + Send + 'static) -> bool {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(task);
            true
        }
        Err(_) => false,
    }
}

mod conn;
mod idle_timer;
mod replay;
mod socket;
#[cfg(test)]
mod tests;
