//! Where a [`Proxy`](super::Proxy) sends requests: a backend's scheme, authority and base path.

use std::fmt;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};

use crate::Url;

/// Why a [`Proxy`](super::Proxy) cannot be built: a backend URL it cannot forward to (not
/// `http`, no host, a user or password in it, or a query or fragment), or a service name,
/// given to [`keep_awake`](super::ProxyBuilder::keep_awake) or
/// [`hold_when_gone`](super::ProxyBuilder::hold_when_gone), that the monitor does not have,
/// or a [`max_response_headers`](super::ProxyBuilder::max_response_headers) out of its range.
///
/// ```
/// use tower_monitor::{Url, proxy::Proxy};
///
/// let err = Proxy::builder(Url::parse("ftp://127.0.0.1/").unwrap()).build::<hyper::body::Incoming>().unwrap_err();
/// assert!(err.to_string().contains("ftp://127.0.0.1/"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTarget {
    url: String,
    reason: std::borrow::Cow<'static, str>,
}

impl fmt::Display for InvalidTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot proxy to {:?}: {}", self.url, self.reason)
    }
}

impl std::error::Error for InvalidTarget {}

impl InvalidTarget {
    pub(crate) fn new(url: &Url, reason: std::borrow::Cow<'static, str>) -> Self {
        // The error reaches logs and terminals: a password in the URL must not.
        Self {
            url: crate::redact::url(url),
            reason,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Target {
    scheme: Scheme,
    pub(crate) authority: Authority,
    /// The URL's path without its trailing `/`; empty for `/`.
    base: String,
}

impl Target {
    pub(crate) fn new(url: &Url) -> Result<Self, InvalidTarget> {
        let invalid = |reason: &'static str| InvalidTarget::new(url, reason.into());
        if url.scheme() != "http" {
            return Err(invalid(
                "only http:// backends are supported (h2c with the http2 option)",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("a user or password in the URL is not supported"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            // Each request has a query of its own; one in the URL would be silently dropped.
            return Err(invalid(
                "a query or fragment in the URL is not supported: only its path is a base path",
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("the URL has no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = Authority::try_from(format!("{host}:{port}").as_str())
            .map_err(|_| invalid("the URL's host is not a valid authority"))?;
        Ok(Self {
            scheme: Scheme::HTTP,
            authority,
            base: url.path().trim_end_matches('/').to_string(),
        })
    }

    /// The backend's address as a URI, for the connector.
    pub(crate) fn backend_uri(&self) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
        Uri::from_parts(parts).unwrap_or_default()
    }

    /// The URI for a request to `original`: the base path, then the request's path and query;
    /// the backend's authority unless `authority` is given.
    pub(crate) fn uri_for(&self, original: &Uri, authority: Option<Authority>) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(authority.unwrap_or_else(|| self.authority.clone()));
        parts.path_and_query = Some(self.path_for(original));
        // Scheme, authority and an absolute path always make a valid URI.
        Uri::from_parts(parts).unwrap_or_default()
    }

    /// The path and query for a request to `original`: the base path, then the request's.
    /// (An HTTP/1.1 backend's request URI, in origin form.)
    pub(crate) fn path_for(&self, original: &Uri) -> PathAndQuery {
        let path = original.path_and_query().map_or("/", PathAndQuery::as_str);
        // An absolute-form target with an empty path and a query (`http://app?x=1`, kept as
        // `?x=1`) asks for `/` (RFC 9110 section 4.2.3): without the slash the base path would
        // name another resource (`/base?x=1`).
        let slash = if path.starts_with('?') { "/" } else { "" };
        if self.base.is_empty() && slash.is_empty() {
            return original
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
        }
        let mut joined = String::with_capacity(self.base.len() + slash.len() + path.len());
        joined.push_str(&self.base);
        joined.push_str(slash);
        joined.push_str(path);
        PathAndQuery::try_from(joined).unwrap_or_else(|_| PathAndQuery::from_static("/"))
    }

    /// Whether the proxy forwards a request to `path` (a URI's path): not if it holds a
    /// dot-segment (`.` or `..`), which a backend resolves to climb out of the base path or a
    /// route's prefix, in any spelling a backend may read as one: percent-encoded, ended by
    /// `%2F`, `%5C` or `\` (which many decode to `/`), or followed by `;` parameters (which
    /// Tomcat drops: `/..;x/`). Nor a path that is not absolute (but `*` with no base path),
    /// which the base path could not go before. One pass over the bytes, no allocation.
    pub(crate) fn forwards(&self, path: &str) -> bool {
        let bytes = path.as_bytes();
        if !matches!(bytes.first(), Some(b'/')) {
            return path == "*" && self.base.is_empty();
        }
        // In the segment so far: its dots, whether it has anything else before a `;`, and
        // whether a `;` began its parameters.
        let (mut dots, mut other, mut params, mut i) = (0u8, false, false, 0);
        loop {
            let (len, byte) = match bytes.get(i) {
                Some(b'%') => match bytes.get(i + 1..i + 3) {
                    Some([b'2', b'e' | b'E']) => (3, b'.'),
                    Some([b'2', b'f' | b'F'] | [b'5', b'c' | b'C']) => (3, b'/'),
                    _ => (1, b'%'),
                },
                Some(b'\\') => (1, b'/'),
                Some(&byte) => (1, byte),
                None => return other || !(1..=2).contains(&dots),
            };
            match byte {
                b'/' if !other && (1..=2).contains(&dots) => return false,
                b'/' => (dots, other, params) = (0, false, false),
                _ if params => {}
                b';' => params = true,
                b'.' => dots = dots.saturating_add(1),
                _ => other = true,
            }
            i += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::new(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn the_base_path_goes_before_the_request_path() {
        let t = target("http://127.0.0.1:8092/base/");
        let uri = t.uri_for(&"/x?y=1".parse().unwrap(), None);
        assert_eq!(uri.to_string(), "http://127.0.0.1:8092/base/x?y=1");
        assert_eq!(t.path_for(&"/x?y=1".parse().unwrap()), "/base/x?y=1");
        assert_eq!(
            t.path_for(&"http://app.example/x".parse().unwrap()),
            "/base/x"
        );
        let t = target("http://127.0.0.1:8092/base");
        assert_eq!(
            t.uri_for(&"/".parse().unwrap(), None).to_string(),
            "http://127.0.0.1:8092/base/"
        );
    }

    #[test]
    fn an_empty_path_before_a_query_is_the_root() {
        let absolute: Uri = "http://app.example?x=1".parse().unwrap();
        assert_eq!(
            target("http://127.0.0.1:8092/base/").path_for(&absolute),
            "/base/?x=1"
        );
        assert_eq!(
            target("http://127.0.0.1:8092/").path_for(&absolute),
            "/?x=1"
        );
        assert_eq!(
            target("http://127.0.0.1:8092/")
                .uri_for(&absolute, None)
                .to_string(),
            "http://127.0.0.1:8092/?x=1"
        );
    }

    #[test]
    fn a_root_url_keeps_the_path_and_an_absolute_form_request_is_made_relative() {
        let t = target("http://localhost/");
        assert_eq!(
            t.uri_for(&"http://app.example/a/b".parse().unwrap(), None)
                .to_string(),
            "http://localhost:80/a/b"
        );
    }

    #[test]
    fn a_given_authority_replaces_the_backends() {
        let t = target("http://127.0.0.1:8092/");
        let authority = Authority::from_static("app.localhost:8080");
        assert_eq!(
            t.uri_for(&"/x".parse().unwrap(), Some(authority))
                .to_string(),
            "http://app.localhost:8080/x"
        );
        assert_eq!(t.backend_uri().to_string(), "http://127.0.0.1:8092/");
    }

    #[test]
    fn dot_segments_are_not_forwarded_in_any_spelling() {
        let (root, base) = (
            target("http://127.0.0.1/"),
            target("http://127.0.0.1/base/"),
        );
        for path in [
            "/..",
            "/../admin",
            "/base/../../etc",
            "/./x",
            "/.",
            "/%2e%2e/x",
            "/%2E./x",
            "/.%2e",
            "/..%2fadmin",
            "/..%2Fadmin",
            "/..%5cadmin",
            "/..\\admin",
            "/a/..",
            "/..;/admin",
            "/..;x=1/admin",
            "/.;",
            "/%2e%2e;/admin",
            "x",
            "",
            "?q",
        ] {
            assert!(!root.forwards(path) && !base.forwards(path), "{path}");
        }
        for path in [
            "/",
            "/x",
            "/a..b/",
            "/.well-known/x",
            "/v1.2/x",
            "/...",
            "/..x",
            "/x..",
            "/%2e%2ex",
            "/%2",
            "/a%2fb",
            "/a;b",
            "/;/x",
            "/...;/x",
            "/a..;/x",
        ] {
            assert!(root.forwards(path) && base.forwards(path), "{path}");
        }
        // `OPTIONS *` asks the server itself; under a base path it would name `/base*`.
        assert!(root.forwards("*") && !base.forwards("*"));
    }

    #[test]
    fn unsupported_urls_are_refused_with_a_reason() {
        for url in ["https://127.0.0.1/", "http://user:pw@127.0.0.1/"] {
            assert!(Target::new(&Url::parse(url).unwrap()).is_err(), "{url}");
        }
    }
}
