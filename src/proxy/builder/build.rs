//! [`ProxyBuilder::build`]: the options checked, the way to the backend made.

use std::sync::Arc;

use http_body::Body;
use hyper_util::client::legacy::connect::HttpConnector;

use super::super::multiplexed::Multiplexed;
use super::super::pool::Pool;
use super::super::resend::GoneHold;
use super::super::upstream::Upstream;
use super::super::{InvalidTarget, Proxy, Shared, Target};
use super::{
    DEFAULT_MAX_RESPONSE_HEADERS, HTTP2_MAX_HEADER_LIST_SIZE_BOUND, KEEPALIVE_IDLE,
    KEEPALIVE_INTERVAL, MAX_RESPONSE_HEADERS_BOUND, POOL_IDLE_TIMEOUT, ProxyBuilder,
};
use crate::{BoxError, MinMonitor, Url};

impl ProxyBuilder {
    /// The proxy, for request bodies of type `B`: the request body of the server it is mounted
    /// in (`hyper::body::Incoming` under hyper, `axum::body::Body` in axum, tonic's
    /// `tonic::body::Body` in a tonic server). Fails if the target URL cannot be proxied to,
    /// or if [`keep_awake`](Self::keep_awake) or [`hold_when_gone`](Self::hold_when_gone)
    /// names a service the monitor does not have (here, never per request), or if
    /// [`hold_when_gone_for_service`](Self::hold_when_gone_for_service) has no service to hold
    /// for.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use tower_monitor::{MinMonitor, Url, proxy::Proxy};
    /// let monitor = Arc::new(MinMonitor::new());
    /// let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    /// let err = Proxy::builder(url).keep_awake(monitor, "typo").build::<hyper::body::Incoming>().unwrap_err();
    /// assert!(err.to_string().contains("\"typo\""));
    /// ```
    pub fn build<B>(self) -> Result<Proxy<B>, InvalidTarget>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let target = Target::new(&self.target)?;
        if let Some(max) = self.max_response_headers {
            if !(1..=MAX_RESPONSE_HEADERS_BOUND).contains(&max) {
                let reason = format!(
                    "`max_response_headers` must be from 1 to {MAX_RESPONSE_HEADERS_BOUND}, not {max}"
                );
                return Err(InvalidTarget::new(&self.target, reason.into()));
            }
        }
        let list = self.http2_max_header_list_size;
        if !(1..=HTTP2_MAX_HEADER_LIST_SIZE_BOUND).contains(&list) {
            let reason = format!(
                "`http2_max_header_list_size` must be from 1 to {HTTP2_MAX_HEADER_LIST_SIZE_BOUND} \
                 bytes, not {list}"
            );
            return Err(InvalidTarget::new(&self.target, reason.into()));
        }
        let keep_awake = self
            .keep_awake
            .as_ref()
            .map(|(monitor, name)| self::registered(&self.target, monitor, name, "keep_awake"))
            .transpose()?;
        let gone_hold = self
            .gone_hold
            .map(|(service, hold)| {
                let Some((monitor, name)) = service.resolve(self.keep_awake.as_ref()) else {
                    let reason = "`hold_when_gone_for_service` needs the service the builder is \
                                  for: make it with `Proxy::for_service`, or name the service \
                                  with `hold_when_gone`";
                    return Err(InvalidTarget::new(&self.target, reason.into()));
                };
                let registered = self::registered(&self.target, &monitor, &name, "hold_when_gone")?;
                Ok(GoneHold::new(registered, hold))
            })
            .transpose()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // A backend that vanished without closing (a VM suspended) would hold a relayed
        // WebSocket, and what it holds, for ever.
        connector.set_keepalive(Some(KEEPALIVE_IDLE));
        connector.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
        connector.set_connect_timeout(Some(self.connect_timeout));
        let client = if self.http2 {
            Upstream::Http2(Multiplexed::new(
                connector,
                target.backend_uri(),
                POOL_IDLE_TIMEOUT,
            ))
        } else {
            Upstream::Http1(Pool::new(
                connector,
                target.backend_uri(),
                POOL_IDLE_TIMEOUT,
                self.max_response_headers,
                self.service.clone().unwrap_or_else(|| Arc::from("-")),
            ))
        };
        Ok(Proxy {
            shared: Arc::new(Shared {
                upstream: client,
                target,
                http2: self.http2,
                rewrite_host: self.rewrite_host,
                allow_trace: self.allow_trace,
                forwarded: self.forwarded,
                trust_forwarded: self.trust_forwarded,
                cleartext: self.cleartext,
                response_timeout: self.response_timeout,
                // A stalled stream of an HTTP/2 backend holds no connection of its own, and a
                // gRPC client stream may rightly pause for long.
                body_read_timeout: self.body_read_timeout.filter(|_| !self.http2),
                response_body_timeout: self.response_body_timeout,
                max_response_headers: self
                    .max_response_headers
                    .unwrap_or(DEFAULT_MAX_RESPONSE_HEADERS),
                http2_max_header_list_size: list,
                service: self.service,
                keep_awake,
                limit: self.limit,
                gone_hold,
                local_said: self.local_said.unwrap_or_default(),
            }),
            peer: super::super::forwarded::Peer::default(),
        })
    }
}

/// The service `name` of `monitor`, which `option` names.
fn registered(
    target: &Url,
    monitor: &MinMonitor,
    name: &str,
    option: &str,
) -> Result<Arc<crate::registered::Registered>, InvalidTarget> {
    monitor.lookup(name).map_err(|_| {
        let reason =
            format!("`{option}` names the service {name:?}, which the monitor does not have");
        InvalidTarget::new(target, reason.into())
    })
}
