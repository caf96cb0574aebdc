//! The answers given instead of the inner service's: 503 while the backend is not ready (or
//! its status cannot be known for want of this process's own resources), 500 when its status
//! or a trigger failed (to an `EventSource`, a 200 that tells it when to connect again).
//!
//! They never carry the backend's address or an error's text (those go to `tracing`), and they
//! are never cached by clients or proxies (`Cache-Control: no-store`). A custom fallback that
//! panics is contained: the request gets the built-in 500 and the panic is logged at error.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Method, Response, StatusCode, request::Parts};
use http_body::Body as _;

use super::FallbackBody;
use super::negotiate::{event_stream_body, is_grpc, prefers_event_stream, prefers_json};
use super::waiting_page::{Case, DEFAULT_WAITING_PAGE, render};
use crate::lifecycle::ServiceState;
use crate::registered::Registered;

/// Why a request was answered by the fallback instead of the inner service; every fallback
/// response carries it in its extensions, for a layer or a log outside to tell it from the
/// inner service's (`response.extensions().get::<FallbackReason>()`).
///
/// ```
/// use http::StatusCode;
/// use tower_monitor::layer::FallbackReason;
///
/// assert_eq!(FallbackReason::NotReady.status_code(), StatusCode::SERVICE_UNAVAILABLE);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FallbackReason {
    /// The backend is down (and `on_down` ran): 503 Service Unavailable.
    NotReady,
    /// The status could not be determined, or `always` or `on_up` failed: 500 Internal Server
    /// Error.
    Error,
    /// A held request waited its longest and the backend is still not up: 504 Gateway Timeout.
    Timeout,
    /// `on_down` failed (or timed out, or panicked): 500 Internal Server Error, with a waiting
    /// page that says so and reloads (trying again) after `Retry-After`.
    StartFailed,
    /// The status could not be determined for want of this process's own resources (file
    /// descriptors, local ports, memory: a probe that could not be made) and the backend was
    /// not last known up: 503 Service Unavailable with `Retry-After: 1`, as the proxy answers
    /// for the same cause, since the shortage passes as soon as connections close; nothing is
    /// started.
    LocalResources,
}

impl FallbackReason {
    /// The HTTP status this reason is answered with by default.
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_monitor::layer::FallbackReason;
    ///
    /// assert_eq!(FallbackReason::Error.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    /// ```
    pub fn status_code(self) -> StatusCode {
        match self {
            Self::NotReady | Self::LocalResources => StatusCode::SERVICE_UNAVAILABLE,
            Self::Error | Self::StartFailed => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The reason's label in metrics and JSON: `not_ready`, `error`, `timeout`, `start_failed`,
    /// `local_resources`.
    ///
    /// ```
    /// use tower_monitor::layer::FallbackReason;
    ///
    /// assert_eq!(FallbackReason::StartFailed.as_str(), "start_failed");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotReady => "not_ready",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::StartFailed => "start_failed",
            Self::LocalResources => "local_resources",
        }
    }

    /// The gRPC status code this reason is answered with for gRPC requests.
    fn grpc_code(self) -> u16 {
        match self {
            // UNAVAILABLE: the client may retry. A held request that timed out is still that.
            Self::NotReady | Self::Timeout | Self::LocalResources => 14,
            Self::Error | Self::StartFailed => 13, // INTERNAL
        }
    }
}

type CustomFallback = dyn Fn(&Parts, FallbackReason) -> Response<FallbackBody> + Send + Sync;

/// How the layer answers a request it does not forward.
#[derive(Clone)]
pub(crate) struct Fallback {
    pub(crate) retry_after: Duration,
    pub(crate) custom: Option<Arc<CustomFallback>>,
    /// The waiting page's template, if the user gave one.
    pub(crate) page: Option<Arc<str>>,
}

impl Default for Fallback {
    fn default() -> Self {
        Self {
            retry_after: DEFAULT_RETRY_AFTER,
            custom: None,
            page: None,
        }
    }
}

impl fmt::Debug for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("retry_after", &self.retry_after)
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

/// The `Retry-After` of a 503 unless set with [`MonitorLayer::retry_after`](super::MonitorLayer::retry_after).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the layer knows of the service when it answers, so the waiting page says what is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Situation {
    /// The service has an `on_down`: it can be started on demand.
    pub(crate) can_start: bool,
    pub(crate) phase: Phase,
    /// What is left of the pause after a series of failed starts: no start is made before,
    /// so a client told to retry sooner would only be told "failed" again.
    pub(crate) paused: Option<Duration>,
}

/// Where the service's start stands, as far as the layer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not known (or stopping, to start again once down): a 503 when the service has an
    /// `on_down` is taken to mean "starting".
    Unknown,
    /// A start is under way and has lasted this long.
    Starting(Duration),
    /// No start is under way.
    Idle,
}

impl Situation {
    /// What the service's lifecycle says now.
    fn of(registered: &Registered) -> Self {
        let phase = match registered.lifecycle.snapshot() {
            (ServiceState::Starting, lasted) => Phase::Starting(lasted),
            (ServiceState::Stopping, _) => Phase::Unknown,
            _ => Phase::Idle,
        };
        Self {
            can_start: registered.service.on_down.is_some(),
            phase,
            paused: None,
        }
    }

    /// Nothing known beyond the reason.
    pub(crate) const UNKNOWN: Self = Self {
        can_start: true,
        phase: Phase::Unknown,
        paused: None,
    };

    fn case(self, reason: FallbackReason) -> Option<Case> {
        let starting_for = match self.phase {
            Phase::Starting(lasted) => Some(lasted),
            Phase::Unknown | Phase::Idle => None,
        };
        Some(match reason {
            FallbackReason::Error | FallbackReason::LocalResources => return None,
            FallbackReason::StartFailed => Case::StartFailed,
            FallbackReason::Timeout => Case::TimedOut(starting_for),
            FallbackReason::NotReady => match self.phase {
                Phase::Starting(lasted) => Case::Starting(Some(lasted)),
                Phase::Unknown if self.can_start => Case::Starting(None),
                Phase::Unknown | Phase::Idle => Case::NotStarted {
                    can_start: self.can_start,
                },
            },
        })
    }
}

impl Fallback {
    /// The answer for `reason`, in words true for where `registered` stands; counted.
    pub(crate) fn respond(
        &self,
        parts: &Parts,
        reason: FallbackReason,
        registered: &Registered,
    ) -> Response<FallbackBody> {
        let service = &*registered.name;
        registered.stats.fallback(service, reason.as_str());
        let mut situation = Situation::of(registered);
        if reason == FallbackReason::StartFailed {
            // A lock: looked at only when it matters, not for each 503 of a herd.
            situation.paused = registered.start_pause_left();
        }
        self.respond_in(parts, reason, service, situation)
    }

    /// The answer for `reason`, with the waiting page's words chosen from `situation`.
    fn respond_in(
        &self,
        parts: &Parts,
        reason: FallbackReason,
        service: &str,
        situation: Situation,
    ) -> Response<FallbackBody> {
        let page = self.page.as_deref().unwrap_or(DEFAULT_WAITING_PAGE);
        let retry_after = match situation.paused {
            Some(left) if reason == FallbackReason::StartFailed => self.retry_after.max(left),
            _ => self.retry_after,
        };
        // A user's fallback is a callback like any trigger: its panic must not take the request
        // task (and, in some servers, the connection) down with it.
        let built = catch_unwind(AssertUnwindSafe(|| match &self.custom {
            Some(custom) => custom(parts, reason),
            None => answer(parts, reason, retry_after, service, page, situation),
        }));
        let (mut response, reason) = built.map(|built| (built, reason)).unwrap_or_else(|_| {
            tracing::error!(service = %service, reason = reason.as_str(), "the fallback panicked; answering 500");
            let error = FallbackReason::Error;
            let page = DEFAULT_WAITING_PAGE;
            let built = answer(parts, error, self.retry_after, service, page, situation);
            (built, error)
        });
        // Why it was answered, for a log or layer outside (the gateway's access log).
        response.extensions_mut().insert(reason);
        // A cached "not ready" would outlive the backend's start: never let anyone store it.
        response
            .headers_mut()
            .entry(CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
        if parts.method == Method::HEAD {
            without_body(&mut response);
        }
        response
    }
}

/// The built-in fallback: a small HTML page, JSON when the client's `Accept` prefers
/// `application/json`, a trailers-only gRPC status (`UNAVAILABLE` or `INTERNAL`) for gRPC
/// requests, or for an `EventSource` (a `GET` with `Accept: text/event-stream`) a 200 event
/// stream of one `retry:`, after which it connects again (on any other status it gives up for
/// good; any other method gets the 503 or 500). A 503
/// carries `Retry-After` and, for a browser, refreshes itself after that long.
///
/// A custom fallback can call it for the cases it does not handle itself. It knows neither the
/// service nor the layer's settings: its page names "The service", in the words of the default
/// [waiting page](DEFAULT_WAITING_PAGE), and says nothing of how long a start has lasted.
///
/// ```
/// use std::time::Duration;
/// use http::{Request, StatusCode};
/// use tower_monitor::layer::{FallbackReason, default_response};
///
/// let (parts, ()) = Request::get("/").header("accept", "application/json").body(()).unwrap().into_parts();
/// let response = default_response(&parts, FallbackReason::NotReady, Duration::from_secs(3));
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
/// assert_eq!(response.headers()["retry-after"], "3");
/// assert_eq!(response.headers()["content-type"], "application/json");
/// ```
pub fn default_response(
    parts: &Parts,
    reason: FallbackReason,
    retry_after: Duration,
) -> Response<FallbackBody> {
    answer(
        parts,
        reason,
        retry_after,
        "The service",
        DEFAULT_WAITING_PAGE,
        Situation::UNKNOWN,
    )
}

/// The answer to a `HEAD`: the head, saying how long the body would be, and no body. Servers
/// send the body they are given; over HTTP/2 a body after `HEAD` is a protocol error.
fn without_body(response: &mut Response<FallbackBody>) {
    if let Some(length) = response.body().size_hint().exact() {
        response
            .headers_mut()
            .entry(CONTENT_LENGTH)
            .or_insert(length.into());
    }
    *response.body_mut() = FallbackBody::empty();
}

fn answer(
    parts: &Parts,
    reason: FallbackReason,
    retry_after: Duration,
    service: &str,
    page: &str,
    situation: Situation,
) -> Response<FallbackBody> {
    // The process's own shortage passes as soon as connections close: retried at once, as the
    // proxy's own answer for it says, whatever the layer's `retry_after` (meant for a start).
    let retry_after = match reason {
        FallbackReason::LocalResources => LOCAL_RETRY_AFTER,
        _ => retry_after,
    };
    let retry_secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let grpc = is_grpc(&parts.headers);
    let events = !grpc && prefers_event_stream(&parts.method, &parts.headers);
    let mut response = if grpc {
        grpc_response(reason)
    } else if events {
        let body = event_stream_body(reason.as_str(), retry_secs);
        with_content_type(body, "text/event-stream")
    } else if prefers_json(&parts.headers) {
        with_content_type(json_body(reason, retry_secs), "application/json")
    } else {
        let body = match situation.case(reason) {
            Some(case) => render(page, service, case, retry_secs),
            None if reason == FallbackReason::LocalResources => UNAVAILABLE_PAGE.to_string(),
            None => ERROR_PAGE.to_string(),
        };
        with_content_type(body, "text/html; charset=utf-8")
    };
    if !grpc && !events {
        *response.status_mut() = reason.status_code();
    }
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if reason != FallbackReason::Error {
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_secs));
    }
    response
}

fn with_content_type(body: String, content_type: &'static str) -> Response<FallbackBody> {
    let mut response = Response::new(FallbackBody::from(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// gRPC answers errors with HTTP 200 and the status in the headers ("trailers-only").
fn grpc_response(reason: FallbackReason) -> Response<FallbackBody> {
    let message = match reason {
        FallbackReason::NotReady => "service not ready",
        FallbackReason::Timeout => "service still starting",
        FallbackReason::Error => "internal error",
        FallbackReason::StartFailed => "service failed to start",
        FallbackReason::LocalResources => "service unavailable; try again",
    };
    super::negotiate::grpc_status(FallbackBody::empty(), reason.grpc_code(), message)
}

fn json_body(reason: FallbackReason, retry_secs: u64) -> String {
    match reason {
        FallbackReason::NotReady => {
            format!(r#"{{"error":"service_not_ready","status":503,"retry_after":{retry_secs}}}"#)
        }
        FallbackReason::Timeout => format!(
            r#"{{"error":"service_start_timeout","status":504,"retry_after":{retry_secs}}}"#
        ),
        FallbackReason::StartFailed => {
            format!(r#"{{"error":"service_start_failed","status":500,"retry_after":{retry_secs}}}"#)
        }
        FallbackReason::Error => r#"{"error":"internal_error","status":500}"#.to_string(),
        FallbackReason::LocalResources => {
            format!(r#"{{"error":"service_unavailable","status":503,"retry_after":{retry_secs}}}"#)
        }
    }
}

/// The `Retry-After` of a [`FallbackReason::LocalResources`] answer: the proxy's for the same
/// cause.
const LOCAL_RETRY_AFTER: Duration = Duration::from_secs(1);

const UNAVAILABLE_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Service Unavailable</title></head>\
<body><main><h1>Service Unavailable</h1><p>The service cannot be reached just now. Try again in a moment.</p></main></body></html>\n";

const ERROR_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Internal Server Error</title></head>\
<body><main><h1>Internal Server Error</h1><p>Something went wrong while reaching the service.</p></main></body></html>\n";

#[cfg(test)]
mod tests;
