use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use url::Url;

use super::Trigger;
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
/// Plain `http://` URLs only for now (no TLS client is built in). Credentials in the URL
/// (`http://user:password@host/`) are never shown: errors (which get logged) and `Debug` print
/// the URL as `http://***@host/`. They are not sent either; put them in a header (e.g.
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
    client: Client<HttpConnector, Full<Bytes>>,
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
    /// No answer within the timeout.
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
    /// assert!(tls.is_err(), "https is not supported yet");
    /// ```
    pub fn new(method: Method, url: Url) -> Result<Self, WebhookError> {
        let shown = crate::redact::url(&url);
        let invalid = |reason: &str| WebhookError::InvalidUrl {
            url: shown.clone(),
            reason: reason.to_string(),
        };
        if url.scheme() != "http" {
            return Err(invalid("only http:// URLs are supported"));
        }
        let mut bare = url.clone();
        // Cannot fail for an http URL, which always has a host.
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        // The parse error's text is the `http` crate's own, which does not quote the URL.
        let uri = bare
            .as_str()
            .parse::<Uri>()
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(Self {
            method,
            uri,
            shown,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            timeout: DEFAULT_WEBHOOK_TIMEOUT,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
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
                Ok(Err(source)) => return Err(WebhookError::Request { url, source }.into()),
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
