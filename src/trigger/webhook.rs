use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use url::Url;

use super::Trigger;
use super::webhook_connect::{Connector, TlsFailure};
use crate::BoxError;

/// How long a webhook request may take unless set otherwise.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an answer's body a [`Webhook`] reads (and discards) at most: 64 KiB.
///
/// Only the status counts. A body up to this size is read so the connection can be reused; a
/// longer one is not read further: the connection is closed instead, so a huge answer costs
/// neither memory nor time.
pub const MAX_WEBHOOK_ANSWER_BYTES: usize = 64 * 1024;

/// Sends an HTTP request (method, URL, headers, body); a non-2xx answer is a failure.
///
/// `http://` URLs, and `https://` ones with the default `rustls` feature: the TLS is the HTTP
/// probe's, trusting the Mozilla roots and any [`root_certificate_pem`](Self::root_certificate_pem),
/// with the URL's host as the name the certificate must carry. Credentials in the URL
/// (`https://user:password@host/`) are never shown: errors (which get logged) and `Debug` print
/// the URL as `https://***@host/`. They are not sent either; put them in a header (e.g.
/// `authorization`). At most [`MAX_WEBHOOK_ANSWER_BYTES`] of the answer are read.
///
/// ```
/// use http::Method;
/// use tower_monitor::Url;
/// use tower_monitor::trigger::Webhook;
///
/// let wake = Webhook::new(Method::POST, Url::parse("http://127.0.0.1:9000/vms/app/start").unwrap())
///     .unwrap()
///     .header("authorization", "Bearer not-a-real-token")
///     .unwrap()
///     .body(r#"{"reason":"request"}"#);
/// # let _ = wake;
/// ```
#[derive(Clone)]
pub struct Webhook {
    method: Method,
    /// The URL without its credentials, which nothing here sends or shows.
    uri: Uri,
    /// The URL as errors and `Debug` show it: credentials replaced by `***`.
    shown: String,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
    #[cfg(feature = "rustls")]
    tls: crate::probe::tls::TlsRoots,
    client: Client<Connector, Full<Bytes>>,
}

/// Why a [`Webhook`] could not be built or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL is not one this trigger can call.
    #[error("webhook URL {url:?} is not usable: {reason}")]
    InvalidUrl {
        /// The URL, credentials replaced by `***`.
        url: String,
        /// Why.
        reason: String,
    },
    /// A header name or value is not valid HTTP.
    #[error("webhook header {name:?} is not valid HTTP")]
    InvalidHeader {
        /// The header's name.
        name: String,
    },
    /// The request could not be sent or answered.
    #[error("webhook request to {url} failed: {source}")]
    Request {
        /// The URL, credentials replaced by `***`.
        url: String,
        /// Why.
        source: BoxError,
    },
    /// The answer was not a success.
    #[error("webhook {url} answered {status}")]
    Status {
        /// The URL, credentials replaced by `***`.
        url: String,
        /// The status it answered.
        status: StatusCode,
    },
    /// The TLS handshake of an `https` URL failed: most often a certificate that is not trusted
    /// (see [`Webhook::root_certificate_pem`]) or does not carry the URL's host.
    #[error("webhook {url}: TLS handshake failed (certificate or TLS error): {reason}")]
    Tls {
        /// The URL, credentials replaced by `***`.
        url: String,
        /// Why, as rustls tells it.
        reason: String,
    },
    /// The PEM given to [`Webhook::root_certificate_pem`] holds no usable certificate.
    #[error("{reason}")]
    InvalidRootCertificate {
        /// Why.
        reason: String,
    },
    /// No answer within the timeout (the TLS handshake included).
    #[error("webhook {url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL, credentials replaced by `***`.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
}

impl Webhook {
    /// A webhook sending `method` to `url`, with no headers, an empty body and a 10 s timeout.
    ///
    /// ```
    /// use http::Method;
    /// use tower_monitor::{Url, trigger::Webhook};
    ///
    /// let tls = Webhook::new(Method::POST, Url::parse("https://example.test/hook").unwrap());
    /// // Without the `rustls` feature, https is refused with an error naming the feature.
    /// assert_eq!(tls.is_ok(), cfg!(feature = "rustls"));
    /// let ftp = Webhook::new(Method::POST, Url::parse("ftp://example.test/hook").unwrap());
    /// assert!(ftp.is_err());
    /// ```
    pub fn new(method: Method, url: Url) -> Result<Self, WebhookError> {
        let shown = crate::redact::url(&url);
        let invalid = |reason: &str| WebhookError::InvalidUrl {
            url: shown.clone(),
            reason: reason.to_string(),
        };
        match url.scheme() {
            "http" => {}
            "https" if cfg!(feature = "rustls") => {}
            "https" => return Err(invalid("https needs the `rustls` feature of tower-monitor")),
            _ => return Err(invalid("only http:// and https:// URLs are supported")),
        }
        let mut bare = url.clone();
        // Cannot fail for an http(s) URL, which always has a host.
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        // The parse error's text is the `http` crate's own, which does not quote the URL.
        let uri = bare
            .as_str()
            .parse::<Uri>()
            .map_err(|e| invalid(&e.to_string()))?;
        #[cfg(feature = "rustls")]
        let tls = crate::probe::tls::TlsRoots::default();
        Ok(Self {
            method,
            uri,
            shown,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
            #[cfg(feature = "rustls")]
            client: client(Connector::new(tls.clone())),
            #[cfg(feature = "rustls")]
            tls,
            #[cfg(not(feature = "rustls"))]
            client: client(Connector::new()),
        })
    }

    /// Also trusts the certificate(s) in `pem` for `https` (for an endpoint with a self-signed
    /// or private-CA certificate), as [`probe::Http::root_certificate_pem`](crate::probe::Http::root_certificate_pem) does.
    ///
    /// ```
    /// # use http::Method;
    /// # use tower_monitor::{Url, trigger::Webhook};
    /// let hook = Webhook::new(Method::POST, Url::parse("https://10.0.0.5/start").unwrap()).unwrap();
    /// assert!(hook.root_certificate_pem(b"not a certificate").is_err());
    /// ```
    #[cfg(feature = "rustls")]
    pub fn root_certificate_pem(mut self, pem: &[u8]) -> Result<Self, WebhookError> {
        self.tls = self
            .tls
            .with_pem(pem)
            .map_err(|e| WebhookError::InvalidRootCertificate {
                reason: e.to_string(),
            })?;
        self.client = client(Connector::new(self.tls.clone()));
        Ok(self)
    }

    /// Adds a header to the request.
    ///
    /// ```
    /// # use http::Method;
    /// # use tower_monitor::{Url, trigger::Webhook};
    /// # let hook = Webhook::new(Method::POST, Url::parse("http://127.0.0.1:9000/").unwrap()).unwrap();
    /// assert!(hook.header("bad header", "x").is_err());
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, WebhookError> {
        let invalid = || WebhookError::InvalidHeader {
            name: name.to_string(),
        };
        let header = HeaderName::try_from(name).map_err(|_| invalid())?;
        let value = HeaderValue::try_from(value).map_err(|_| invalid())?;
        self.headers.append(header, value);
        Ok(self)
    }

    /// Sets the request's body.
    ///
    /// ```
    /// # use http::Method;
    /// # use tower_monitor::{Url, trigger::Webhook};
    /// let hook = Webhook::new(Method::POST, Url::parse("http://127.0.0.1:9000/").unwrap())
    ///     .unwrap()
    ///     .body("start");
    /// # let _ = hook;
    /// ```
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// How long the whole exchange may take (default 10 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use http::Method;
    /// # use tower_monitor::{Url, trigger::Webhook};
    /// let hook = Webhook::new(Method::POST, Url::parse("http://127.0.0.1:9000/").unwrap())
    ///     .unwrap()
    ///     .timeout(Duration::from_secs(2));
    /// # let _ = hook;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

fn client(connector: Connector) -> Client<Connector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(connector)
}

/// The error of a request that got no answer: a failed TLS handshake, wherever the client
/// wrapped it, is told as such.
fn failed(url: String, source: BoxError) -> WebhookError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*source);
    while let Some(error) = cause {
        if let Some(TlsFailure(reason)) = error.downcast_ref() {
            let reason = reason.clone();
            return WebhookError::Tls { url, reason };
        }
        cause = error.source();
    }
    WebhookError::Request { url, source }
}

/// Reads a short answer to its end without keeping it, so the connection can be reused; stops
/// after [`MAX_WEBHOOK_ANSWER_BYTES`], dropping the body and with it the connection.
async fn discard_answer(mut body: Incoming) -> Result<(), hyper::Error> {
    let mut read = 0;
    while read <= MAX_WEBHOOK_ANSWER_BYTES {
        match body.frame().await {
            None => break,
            Some(frame) => {
                if let Some(data) = frame?.data_ref() {
                    read += data.len();
                }
            }
        }
    }
    Ok(())
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("method", &self.method)
            .field("url", &self.shown)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Trigger for Webhook {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        let (client, request, timeout) = (self.client.clone(), self.request(), self.timeout);
        let url = self.shown.clone();
        async move {
            let exchange = async {
                let response = client.request(request).await?;
                let status = response.status();
                discard_answer(response.into_body()).await?;
                Ok::<_, BoxError>(status)
            };
            let status = match tokio::time::timeout(timeout, exchange).await {
                Err(_) => return Err(WebhookError::Timeout { url, timeout }.into()),
                Ok(Err(source)) => return Err(failed(url, source).into()),
                Ok(Ok(status)) => status,
            };
            if status.is_success() {
                Ok(())
            } else {
                Err(WebhookError::Status { url, status }.into())
            }
        }
        .boxed()
    }
}
