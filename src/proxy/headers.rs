//! The header rules of a forwarding proxy (RFC 9110 section 7.6, RFC 7239).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::header::{
    CONNECTION, FORWARDED, HOST, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use serde::Deserialize;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Which headers tell the backend who asked ([`ProxyBuilder::forwarded`](super::ProxyBuilder::forwarded)).
///
/// In a configuration file: `"x-forwarded"`, `"forwarded"`, `"both"` or `"none"`.
///
/// ```
/// use tower_monitor::proxy::ForwardedHeaders;
///
/// assert_eq!(ForwardedHeaders::default(), ForwardedHeaders::XForwarded);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ForwardedHeaders {
    /// `X-Forwarded-For` (the client's address appended), `X-Forwarded-Host`, `X-Forwarded-Proto`.
    #[default]
    XForwarded,
    /// One `Forwarded: for=..;host=..;proto=..` element appended (RFC 7239).
    Forwarded,
    /// Both of the above.
    Both,
    /// Neither: the backend sees the request as the client sent it.
    None,
}

/// The address of the client that sent a request, put in its extensions by the server that
/// accepted the connection; [`Proxy`](super::Proxy) reports it in the forwarded headers.
///
/// ```
/// use tower_monitor::proxy::ClientAddr;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(ClientAddr("127.0.0.1:50000".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The headers that concern one connection only, never forwarded as they are.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Whether the request asks to switch protocols (`Connection: upgrade` with an `Upgrade`).
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .any(|value| has_token(value.as_bytes(), b"upgrade"))
}

fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// Removes the hop-by-hop headers and those the `Connection` header names. With `upgrade`, the
/// `Upgrade` header stays and `Connection` says `upgrade` only, so the switch reaches the other
/// side. `TE: trailers` stays: gRPC needs it and it is the one value HTTP/2 allows.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Names listed in `Connection` are rare: parse them only when the header is there.
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
            .filter(|name| !(upgrade && *name == UPGRADE))
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let te_trailers = headers
        .get(TE)
        .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in &HOP_BY_HOP {
        if upgrade && (*name == UPGRADE || *name == CONNECTION) {
            continue;
        }
        if *name == TE && te_trailers {
            continue;
        }
        headers.remove(name);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// What the forwarded headers say about one request.
pub(crate) struct Origin<'a> {
    pub(crate) client: Option<IpAddr>,
    pub(crate) host: Option<HeaderValue>,
    pub(crate) proto: &'a str,
}

/// Adds the forwarded headers `which` asks for.
pub(crate) fn add_forwarded(headers: &mut HeaderMap, which: ForwardedHeaders, origin: Origin<'_>) {
    if matches!(which, ForwardedHeaders::XForwarded | ForwardedHeaders::Both) {
        if let Some(ip) = origin.client {
            append_list(headers, X_FORWARDED_FOR, &ip.to_string());
        }
        if let Some(host) = &origin.host {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if origin.proto == "https" {
                "https"
            } else {
                "http"
            }),
        );
    }
    if matches!(which, ForwardedHeaders::Forwarded | ForwardedHeaders::Both) {
        let mut element = String::with_capacity(64);
        match origin.client {
            Some(IpAddr::V4(ip)) => {
                let _ = write!(element, "for={ip}");
            }
            Some(IpAddr::V6(ip)) => {
                let _ = write!(element, "for=\"[{ip}]\"");
            }
            None => element.push_str("for=unknown"),
        }
        // A quoted-string may not hold `"` or `\` unescaped: a host with those is not a host.
        if let Some(host) = origin
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.contains(['"', '\\']))
        {
            let _ = write!(element, ";host=\"{host}\"");
        }
        let _ = write!(element, ";proto={}", origin.proto);
        append_list(headers, FORWARDED, &element);
    }
}

/// Appends `item` to the comma-separated list in `name` (all its lines joined into one).
fn append_list(headers: &mut HeaderMap, name: HeaderName, item: &str) {
    let mut joined = String::new();
    for value in headers.get_all(&name) {
        if let Ok(value) = value.to_str() {
            joined.push_str(value);
            joined.push_str(", ");
        }
    }
    joined.push_str(item);
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(name, value);
    }
}

/// The `Host` the client asked for: its `Host` header, or the URI's authority (HTTP/2's
/// `:authority`).
pub(crate) fn original_host(headers: &HeaderMap, uri: &http::Uri) -> Option<HeaderValue> {
    headers.get(HOST).cloned().or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut headers, false);
        let names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_te_trailers_stays() {
        let mut headers = map(&[
            ("connection", "Upgrade, x-secret"),
            ("upgrade", "websocket"),
            ("x-secret", "1"),
            ("te", "trailers"),
        ]);
        assert!(wants_upgrade(&headers));
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["te"], "trailers");
        assert!(!headers.contains_key("x-secret"));
    }

    #[test]
    fn forwarded_headers_append_to_what_came_before() {
        let mut headers = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
        ]);
        let origin = Origin {
            client: Some("::1".parse().unwrap()),
            host: Some(HeaderValue::from_static("app.example")),
            proto: "http",
        };
        add_forwarded(&mut headers, ForwardedHeaders::Both, origin);
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, ::1");
        assert_eq!(headers["x-forwarded-host"], "app.example");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(
            headers["forwarded"],
            "for=10.0.0.1, for=\"[::1]\";host=\"app.example\";proto=http"
        );
    }

    #[test]
    fn none_adds_nothing() {
        let mut headers = HeaderMap::new();
        let origin = Origin {
            client: Some("127.0.0.1".parse().unwrap()),
            host: None,
            proto: "http",
        };
        add_forwarded(&mut headers, ForwardedHeaders::None, origin);
        assert!(headers.is_empty());
    }
}
