use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use url::Url;

use super::Trigger;
use crate::BoxError;

/// How long a webhook request may take unless set otherwise.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends an HTTP request (method, URL, headers, body); a non-2xx answer is a failure.
///
/// Plain `http://` URLs only for now (no TLS client is built in).
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
    uri: Uri,
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
        /// The URL.
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
        /// The URL.
        url: String,
        /// Why.
        source: BoxError,
    },
    /// The answer was not a success.
    #[error("webhook {url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status it answered.
        status: StatusCode,
    },
    /// No answer within the timeout.
    #[error("webhook {url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL.
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
        let invalid = |reason: &str| WebhookError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if url.scheme() != "http" {
            return Err(invalid("only http:// URLs are supported"));
        }
        let uri = url
            .as_str()
            .parse::<Uri>()
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(Self {
            method,
            uri,
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

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Trigger for Webhook {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        let (client, request, timeout) = (self.client.clone(), self.request(), self.timeout);
        let url = self.uri.to_string();
        async move {
            let exchange = async {
                let response = client.request(request).await?;
                let status = response.status();
                // Read the answer so the connection can be reused.
                response.into_body().collect().await?;
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
