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
pub use future::ResponseFuture;
#[cfg(feature = "proxy")]
pub(crate) use future::mark_cold_start;
pub use gone::BackendGone;
pub use hold::DEFAULT_MAX_HELD;
#[cfg(feature = "proxy")]
pub(crate) use hold::Hold;
pub use layer::MonitorLayer;
#[cfg(feature = "proxy")]
pub(crate) use negotiate::{grpc_status, is_grpc};
pub use service::MonitorService;
pub use waiting_page::DEFAULT_WAITING_PAGE;
#[cfg(feature = "admin")]
pub(crate) use waiting_page::escape_into;
