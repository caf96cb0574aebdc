//! The defaults and bounds of a [`ProxyBuilder`](super::ProxyBuilder)'s options.

use std::time::Duration;

#[cfg(doc)]
use super::ProxyBuilder;

/// How long connecting to the backend may take before the request is answered 504: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the backend may take to send its response head (status and headers) before the
/// request is answered 504: 60 s. The body's pauses are bounded by
/// [`DEFAULT_RESPONSE_BODY_TIMEOUT`].
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a client's request body may keep an HTTP/1.1 backend waiting for its next bytes
/// before the request is answered 408: 60 s, as nginx's `client_body_timeout`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a backend's answer body may keep the client waiting for its next bytes before
/// the answer is cut short: 60 s, as nginx's `proxy_read_timeout`.
pub const DEFAULT_RESPONSE_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many header lines an HTTP/1.1 backend's answer may have unless
/// [`ProxyBuilder::max_response_headers`] says: 100, hyper's default.
pub const DEFAULT_MAX_RESPONSE_HEADERS: usize = 100;

/// The most [`ProxyBuilder::max_response_headers`] may be: hyper parses each answer into an
/// array of that many entries (64 bytes each), allocated per answer above the default.
pub const MAX_RESPONSE_HEADERS_BOUND: usize = 1000;

/// The header list a request to an HTTP/2 backend may reach unless
/// [`ProxyBuilder::http2_max_header_list_size`] says: 16 KiB, the `SETTINGS_MAX_HEADER_LIST_SIZE`
/// of hyper's, h2's and tonic's servers.
pub const DEFAULT_HTTP2_MAX_HEADER_LIST_SIZE: usize = 16 * 1024;

/// The most [`ProxyBuilder::http2_max_header_list_size`] may be: 16 MiB, grpc-go's servers'
/// default, the largest of the common ones.
pub const HTTP2_MAX_HEADER_LIST_SIZE_BOUND: usize = 16 * 1024 * 1024;
