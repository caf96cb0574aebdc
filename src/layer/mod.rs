//! The Tower middleware: [`MonitorLayer`] and [`MonitorService`].
//!
//! For every request, in this order:
//!
//! 1. The backend's status is determined (cached, or a probe shared with concurrent requests).
//! 2. If that fails: 500, no trigger runs, the inner service is not called.
//! 3. `always` runs; if it fails: 500, neither `on_up` nor `on_down` runs.
//! 4. Up: `on_up` runs, then the request is forwarded and the inner response returned unchanged.
//! 5. Down: `on_down` runs (coalesced with any run in flight), then the fallback answers 503.
//!
//! A failing or panicking trigger is answered with 500. The response body is [`MonitorBody`], so
//! the layer composes with tower-http layers, axum routers and tonic servers.
//!
//! # Where it goes
//!
//! **axum.** `Router::layer` guards every request (unknown paths too), `route_layer` only the
//! routes that match; both take the layer as it is. Wrapped around a whole `Router` from the
//! outside instead (to guard it before routing, say), its answers have a [`MonitorBody`], and
//! `axum::serve` takes axum's own `Response` only: map them back.
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use axum::{Router, extract::Request, response::IntoResponse, routing::get};
//! use tower::ServiceBuilder;
//! use tower_monitor::{MinMonitor, MonitoredService, Url};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let monitor = Arc::new(MinMonitor::new());
//! monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/")?, Duration::from_secs(30)))?;
//! let router = Router::new().route("/", get(|| async { "hi" }));
//! let app = ServiceBuilder::new()
//!     .map_response(IntoResponse::into_response)
//!     .layer(monitor.layer("app")?)
//!     .service(router);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, axum::ServiceExt::<Request>::into_make_service(app)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! **hyper.** The layer wraps a Tower service, and hyper's own `service_fn` makes a hyper one:
//! write the handler with `tower::service_fn`, and hand the guarded service to hyper through
//! hyper-util's `TowerToHyperService` (`examples/hyper.rs` serves HTTP/1.1 and HTTP/2 so).
//!
//! ```no_run
//! use std::{convert::Infallible, sync::Arc, time::Duration};
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper::{Request, Response, body::Incoming, server::conn::http1};
//! use hyper_util::{rt::TokioIo, service::TowerToHyperService};
//! use tower::Layer;
//! use tower_monitor::{MinMonitor, MonitoredService, Url};
//!
//! async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     Ok(Response::new(Full::from("hi")))
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let monitor = Arc::new(MinMonitor::new());
//! monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/")?, Duration::from_secs(30)))?;
//! let service = TowerToHyperService::new(monitor.layer("app")?.layer(tower::service_fn(hello)));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service.clone());
//!     tokio::spawn(connection);
//! }
//! # }
//! ```
//!
//! **tonic.** `Server::builder().layer(..)` guards every gRPC service of the server. To guard
//! one, wrap it with tonic's `LayerExt::named_layer`: `add_service` routes by the service's
//! name, which the layer alone does not carry.
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use tonic::service::LayerExt as _;
//! use tower_monitor::{MinMonitor, MonitoredService, Url};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let monitor = Arc::new(MinMonitor::new());
//! monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/")?, Duration::from_secs(30)))?;
//! // Any generated `...Server` in its place; the health service keeps this example short.
//! let (_reporter, guarded) = tonic_health::server::health_reporter();
//! tonic::transport::Server::builder()
//!     .add_service(monitor.layer("app")?.named_layer(guarded))
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! **With tower middleware.** The layer adds no error of its own (its `Error` is the inner
//! service's; its fallbacks are responses), so it needs no `HandleErrorLayer`; tower's
//! `Buffer`, `ConcurrencyLimit` and `Timeout` around it need one in axum as they always do.
//! What the order changes:
//!
//! - A `Timeout` outside the layer bounds a held request's wait too (it gets the timeout's
//!   error, not the 504 at `max_wait`); inside, only the inner service's answer.
//! - A layer inside it that reserves capacity in `poll_ready` (`ConcurrencyLimit`,
//!   `RateLimit`) has it reserved by each request while the layer decides and while it is
//!   held: the request polled ready is the one called (tower's contract). With
//!   `concurrency_limit(8)` there, 8 held requests make the others wait in `poll_ready`, not
//!   counted as held. To limit only what reaches the backend, put a `Buffer` between the two,
//!   as below: held requests then take places in the buffer, and the limit's turns go to
//!   requests that are forwarded.
//! - tower-http's `TraceLayer` outside it logs the fallback's 503s and 500s at error (its
//!   classifier counts any 5xx as a failure); inside, it sees forwarded requests only.
//!
//! A limit for all requests goes around the whole router, as here. Given to `Router::layer`
//! of a router without state, axum 0.8 builds a handler's layers anew for each request
//! (unless `.with_state(())` is called first), so a `ConcurrencyLimit` there limits nothing;
//! this layer shares its state between all the instances it makes, and works either way.
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use axum::{BoxError, Router, error_handling::HandleErrorLayer, extract::Request};
//! use axum::{http::StatusCode, response::IntoResponse, routing::get};
//! use tower::ServiceBuilder;
//! use tower_http::trace::TraceLayer;
//! use tower_monitor::{MinMonitor, MonitoredService, Url};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let monitor = Arc::new(MinMonitor::new());
//! monitor.add("app", MonitoredService::new(Url::parse("http://127.0.0.1:8081/")?, Duration::from_secs(30)))?;
//! let router = Router::new().route("/", get(|| async { "hi" }));
//! let app = ServiceBuilder::new()
//!     .map_response(IntoResponse::into_response)
//!     .layer(TraceLayer::new_for_http())
//!     .layer(HandleErrorLayer::new(|error: BoxError| async move {
//!         (StatusCode::SERVICE_UNAVAILABLE, format!("{error}"))
//!     }))
//!     .timeout(Duration::from_secs(60))
//!     .layer(monitor.layer("app")?.hold(Duration::from_secs(30)))
//!     .buffer(1024)
//!     .concurrency_limit(8)
//!     .service(router);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, axum::ServiceExt::<Request>::into_make_service(app)).await?;
//! # Ok(())
//! # }
//! ```

mod body;
mod decision;
mod fallback;
mod future;
mod gone;
mod hold;
#[allow(clippy::module_inception)]
mod layer;
mod negotiate;
mod service;
mod waiting_page;

pub use body::{FallbackBody, MonitorBody};
pub use fallback::{DEFAULT_RETRY_AFTER, FallbackReason, default_response};
#[cfg(feature = "gateway")]
pub(crate) use future::AtBackend;
pub use future::ResponseFuture;
#[cfg(feature = "proxy")]
pub(crate) use future::mark_cold_start;
pub use gone::BackendGone;
pub use hold::DEFAULT_MAX_HELD;
#[cfg(feature = "gateway")]
pub(crate) use hold::HeldCount;
#[cfg(feature = "proxy")]
pub(crate) use hold::Hold;
pub use layer::MonitorLayer;
#[cfg(feature = "proxy")]
pub(crate) use negotiate::{event_stream_body, grpc_status, is_grpc, prefers_event_stream};
pub use service::MonitorService;
pub use waiting_page::DEFAULT_WAITING_PAGE;
#[cfg(feature = "admin")]
pub(crate) use waiting_page::escape_into;
