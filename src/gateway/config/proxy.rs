//! A service's proxy settings in `gateway.services.<name>`: protocol, timeouts, headers,
//! limits of the backend's answers.

use std::sync::Arc;

use crate::MinMonitor;
use crate::config::ConfigError;
use crate::proxy::{
    HTTP2_MAX_HEADER_LIST_SIZE_BOUND, MAX_RESPONSE_HEADERS_BOUND, Proxy, ProxyBuilder,
};

use super::{Protocol, ServiceSettings};

/// The proxy to the service `name` as its `settings` (at `at`) say, each checked here with
/// an error naming its field; the hold and the limit, which the routers of several workers
/// share, are the caller's.
pub(super) fn builder(
    monitor: &Arc<MinMonitor>,
    name: &str,
    settings: &ServiceSettings,
    at: &str,
) -> Result<ProxyBuilder, ConfigError> {
    let url = monitor
        .url(name)
        .map_err(|e| ConfigError::new(at, e.to_string()))?;
    let http2 = settings.protocol == Some(Protocol::Http2);
    let mut proxy = Proxy::builder(url)
        .http2(http2)
        .rewrite_host(settings.rewrite_host)
        .forwarded(settings.forwarded.unwrap_or_default())
        .trust_forwarded(settings.trust_forwarded)
        .cleartext_clients()
        .keep_awake(Arc::clone(monitor), name);
    if let Some(bytes) = settings.http2_max_header_list_size {
        let field = format!("{at}.http2_max_header_list_size");
        if !http2 {
            // Silently ignored, it would read as a bound on the head an HTTP/1.1 backend gets.
            return Err(ConfigError::new(
                field,
                "applies to HTTP/2 backends only (an HTTP/1.1 request's head is bounded by the \
                 gateway's 64 KiB); set \"protocol\": \"http2\" or leave it out",
            ));
        }
        if bytes == 0 {
            return Err(ConfigError::new(
                field,
                "must be more than 0 bytes (default 16384, the limit of hyper's, h2's and \
                 tonic's servers)",
            ));
        }
        if bytes > HTTP2_MAX_HEADER_LIST_SIZE_BOUND {
            return Err(ConfigError::new(
                field,
                format!("must be at most {HTTP2_MAX_HEADER_LIST_SIZE_BOUND} bytes, not {bytes}"),
            ));
        }
        proxy = proxy.http2_max_header_list_size(bytes);
    }
    if let Some(timeout) = settings.connect_timeout {
        proxy = proxy.connect_timeout(timeout.positive(format!("{at}.connect_timeout"))?);
    }
    if let Some(timeout) = settings.response_timeout {
        proxy = proxy.response_timeout(timeout.positive(format!("{at}.response_timeout"))?);
    }
    if let Some(timeout) = settings.body_read_timeout {
        let field = format!("{at}.body_read_timeout");
        if http2 {
            // Silently ignored, it would read as a bound on stalled uploads.
            return Err(ConfigError::new(
                field,
                "applies to HTTP/1.1 backends only (an upload to an HTTP/2 backend may pause, \
                 as a gRPC client stream does); leave it out with \"protocol\": \"http2\"",
            ));
        }
        proxy = proxy.body_read_timeout(timeout.positive(field)?);
    }
    if let Some(timeout) = settings.response_body_timeout {
        let field = format!("{at}.response_body_timeout");
        proxy = proxy.response_body_timeout(timeout.positive(field)?);
    }
    if let Some(max) = settings.max_response_headers {
        let field = format!("{at}.max_response_headers");
        if http2 {
            // Silently ignored, it would read as raised.
            return Err(ConfigError::new(
                field,
                "applies to HTTP/1.1 backends only (an HTTP/2 backend's answer is bounded by its \
                 size); leave it out with \"protocol\": \"http2\"",
            ));
        }
        if !(1..=MAX_RESPONSE_HEADERS_BOUND).contains(&max) {
            return Err(ConfigError::new(
                field,
                format!(
                    "must be from 1 to {MAX_RESPONSE_HEADERS_BOUND} header lines (default 100), \
                     not {max}"
                ),
            ));
        }
        proxy = proxy.max_response_headers(max);
    }
    Ok(proxy)
}
