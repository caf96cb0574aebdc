//! A service's proxy settings in `gateway.services.<name>`: protocol, timeouts, headers,
//! limits of the backend's answers.

use std::sync::Arc;

use crate::MinMonitor;
use crate::config::ConfigError;
use crate::proxy::{MAX_RESPONSE_HEADERS_BOUND, Proxy, ProxyBuilder};

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
    if let Some(timeout) = settings.connect_timeout {
        proxy = proxy.connect_timeout(timeout.positive(format!("{at}.connect_timeout"))?);
    }
    if let Some(timeout) = settings.response_timeout {
        proxy = proxy.response_timeout(timeout.positive(format!("{at}.response_timeout"))?);
    }
    if let Some(timeout) = settings.body_read_timeout {
        proxy = proxy.body_read_timeout(timeout.positive(format!("{at}.body_read_timeout"))?);
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
