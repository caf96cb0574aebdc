use std::fmt;
use std::ops::RangeInclusive;

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use regex::Regex;
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

use super::Probe;
use super::tcp::{connect, means_unreachable, target};
use crate::BoxError;

/// How much of a response body is read for the body checks, unless set otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Up when an HTTP request to the service is answered with an accepted status (default 2xx) and,
/// optionally, a body that matches (or does not match) a regular expression.
///
/// Each probe opens a fresh HTTP/1.1 connection (a pooled one could hide a backend that stopped
/// accepting; a backend that speaks only HTTP/2, such as a gRPC server, is probed with
/// [`Tcp`](super::Tcp) instead: its answer is a probe error), sends the request to the service URL's path (or [`path`](Self::path)), and reads
/// at most [`max_body_bytes`](Self::max_body_bytes) of the body. `https` URLs work with the
/// default `rustls` feature, trusting the Mozilla roots and any [`root_certificate_pem`](Self::root_certificate_pem).
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::{MonitoredService, Url, probe::Http};
///
/// let ready = Http::new().path("/healthz").body_matches(r#""status":\s*"ok""#).unwrap();
/// let url = Url::parse("http://127.0.0.1:8081/").unwrap();
/// let service = MonitoredService::new(url, Duration::from_secs(10)).probe(ready);
/// # let _ = service;
/// ```
#[derive(Clone)]
pub struct Http {
    method: Method,
    path: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    accept: Vec<RangeInclusive<u16>>,
    body_matches: Option<Regex>,
    body_excludes: Option<Regex>,
    max_body_bytes: usize,
    #[cfg(feature = "rustls")]
    tls: super::tls::TlsRoots,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// A `GET` of the service URL's path, up on any 2xx.
    ///
    /// ```
    /// let probe = tower_monitor::probe::Http::new();
    /// # let _ = probe;
    /// ```
    pub fn new() -> Self {
        Self {
            method: Method::GET,
            path: None,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            accept: vec![200..=299],
            body_matches: None,
            body_excludes: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            #[cfg(feature = "rustls")]
            tls: super::tls::TlsRoots::default(),
        }
    }

    /// The request's method (default `GET`).
    ///
    /// ```
    /// let probe = tower_monitor::probe::Http::new().method(http::Method::HEAD);
    /// # let _ = probe;
    /// ```
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The path (and query) to request instead of the service URL's.
    ///
    /// ```
    /// let probe = tower_monitor::probe::Http::new().path("/healthz?deep=1");
    /// # let _ = probe;
    /// ```
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Adds a request header; fails if the name or value is not valid HTTP.
    ///
    /// ```
    /// let probe = tower_monitor::probe::Http::new().header("authorization", "Bearer t").unwrap();
    /// assert!(tower_monitor::probe::Http::new().header("bad name", "x").is_err());
    /// # let _ = probe;
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, BoxError> {
        let header =
            HeaderName::try_from(name).map_err(|e| format!("header name {name:?}: {e}"))?;
        let value =
            HeaderValue::try_from(value).map_err(|e| format!("header {name:?} value: {e}"))?;
        self.headers.append(header, value);
        Ok(self)
    }

    /// The request's body (default empty).
    ///
    /// ```
    /// let probe = tower_monitor::probe::Http::new().method(http::Method::POST).body("{}");
    /// # let _ = probe;
    /// ```
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The statuses that mean up, replacing the default 200–299 (none: never up).
    ///
    /// ```
    /// let probe = tower_monitor::probe::Http::new().accept([200..=299, 401..=401]);
    /// # let _ = probe;
    /// ```
    pub fn accept(mut self, statuses: impl IntoIterator<Item = RangeInclusive<u16>>) -> Self {
        self.accept = statuses.into_iter().collect();
        self
    }

    /// Up only if the body (its first bytes, see [`max_body_bytes`](Self::max_body_bytes))
    /// matches `pattern`.
    ///
    /// ```
    /// assert!(tower_monitor::probe::Http::new().body_matches("(unclosed").is_err());
    /// ```
    pub fn body_matches(mut self, pattern: &str) -> Result<Self, regex::Error> {
        self.body_matches = Some(Regex::new(pattern)?);
        Ok(self)
    }

    /// Up only if the body does not match `pattern`.
    ///
    /// ```
    /// let probe = tower_monitor::probe::Http::new().body_excludes("maintenance").unwrap();
    /// # let _ = probe;
    /// ```
    pub fn body_excludes(mut self, pattern: &str) -> Result<Self, regex::Error> {
        self.body_excludes = Some(Regex::new(pattern)?);
        Ok(self)
    }

    /// How much of the body is read for the body checks (default 64 KiB).
    ///
    /// ```
    /// let probe = tower_monitor::probe::Http::new().max_body_bytes(4096);
    /// # let _ = probe;
    /// ```
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Also trusts the certificate(s) in `pem` for `https` (for a backend with a self-signed or
    /// private-CA certificate).
    ///
    /// ```
    /// assert!(tower_monitor::probe::Http::new().root_certificate_pem(b"not a certificate").is_err());
    /// ```
    #[cfg(feature = "rustls")]
    pub fn root_certificate_pem(mut self, pem: &[u8]) -> Result<Self, BoxError> {
        self.tls = self.tls.with_pem(pem)?;
        Ok(self)
    }

    fn request(&self, url: &Url) -> Result<Request<Full<Bytes>>, BoxError> {
        let path = match &self.path {
            Some(path) => path.clone(),
            None => match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_string(),
            },
        };
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(path)
            .body(Full::new(self.body.clone()))?;
        *request.headers_mut() = self.headers.clone();
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        request
            .headers_mut()
            .insert(header::HOST, HeaderValue::try_from(authority)?);
        request
            .headers_mut()
            .entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static("tower-monitor"));
        Ok(request)
    }

    fn judge(&self, status: u16, body: &[u8]) -> bool {
        if !self.accept.iter().any(|range| range.contains(&status)) {
            tracing::debug!(status, "probe: status not accepted");
            return false;
        }
        let text = String::from_utf8_lossy(body);
        let matches = self
            .body_matches
            .as_ref()
            .is_none_or(|re| re.is_match(&text));
        let excluded = self
            .body_excludes
            .as_ref()
            .is_some_and(|re| re.is_match(&text));
        matches && !excluded
    }
}

impl Probe for Http {
    fn probe(&self, url: &Url) -> BoxFuture<'static, Result<bool, BoxError>> {
        let probe = self.clone();
        let url = url.clone();
        async move {
            let (host, port) = target(&url)?;
            let request = probe.request(&url)?;
            let Some(stream) = connect(host, port).await? else {
                return Ok(false);
            };
            if url.scheme() == "https" {
                #[cfg(feature = "rustls")]
                {
                    let Some(stream) = probe.tls.connect(&url, stream).await? else {
                        return Ok(false);
                    };
                    return probe.exchange(stream, request).await;
                }
                #[cfg(not(feature = "rustls"))]
                return Err("https needs the `rustls` feature of tower-monitor".into());
            }
            probe.exchange(stream, request).await
        }
        .boxed()
    }

    fn validate_url(&self, url: &Url) -> Result<(), String> {
        match url.scheme() {
            "http" => {}
            "https" if cfg!(feature = "rustls") => {}
            "https" => return Err("https needs the `rustls` feature of tower-monitor".to_string()),
            other => {
                return Err(format!(
                    "the HTTP probe needs an http or https URL, not {other:?}"
                ));
            }
        }
        if let Some(path) = &self.path {
            check_path(path)?;
        }
        target(url).map(|_| ())
    }
}

impl Http {
    async fn exchange<S>(self, stream: S, request: Request<Full<Bytes>>) -> Result<bool, BoxError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut sender, connection) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(error) => return down_or_error(error),
            };
        let connection = tokio::spawn(connection);
        let result = async {
            let response = match sender.send_request(request).await {
                Ok(response) => response,
                Err(error) => return down_or_error(error),
            };
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut read = BytesMut::new();
            while read.len() < self.max_body_bytes {
                match body.frame().await {
                    None => break,
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let room = self.max_body_bytes - read.len();
                            read.extend_from_slice(&data[..data.len().min(room)]);
                        }
                    }
                    Some(Err(error)) => return down_or_error(error),
                }
            }
            Ok(self.judge(status, &read))
        }
        .await;
        connection.abort();
        result
    }
}

/// Whether `path` can be a probe's request target: one that cannot would make every probe an
/// error (and every request behind the layer a 500), so it is refused up front.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') && path.parse::<http::uri::PathAndQuery>().is_ok() {
        Ok(())
    } else {
        Err(format!(
            "the probe's path {path:?} is not a request target: write a path such as \"/healthz\", without spaces"
        ))
    }
}

/// A connection that breaks mid-exchange is a service not (yet) answering: down.
fn down_or_error(error: hyper::Error) -> Result<bool, BoxError> {
    let io = std::error::Error::source(&error).and_then(|e| e.downcast_ref::<std::io::Error>());
    if error.is_incomplete_message()
        || error.is_canceled()
        || error.is_closed()
        || io.is_some_and(means_unreachable)
    {
        tracing::debug!(%error, "probe: HTTP exchange broke off");
        Ok(false)
    } else if error.is_parse() {
        // Something answers, but not in HTTP/1.1: still an error (every request behind the
        // layer a 500, not a start), whose cause must be plain from the log line alone.
        Err(format!(
            "the answer is not HTTP/1.1 ({error}): an HTTP/2-only server (gRPC, say) or another \
             protocol on the port; probe it over TCP instead (`probe::Tcp`, \"type\": \"tcp\")"
        )
        .into())
    } else {
        Err(error.into())
    }
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("accept", &self.accept)
            .field(
                "body_matches",
                &self.body_matches.as_ref().map(Regex::as_str),
            )
            .field(
                "body_excludes",
                &self.body_excludes.as_ref().map(Regex::as_str),
            )
            .finish_non_exhaustive()
    }
}
