//! The headers that tell the backend who asked (`X-Forwarded-*`, RFC 7239's `Forwarded`), and
//! what a proxy does with those a client sent.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::header::{Entry, FORWARDED, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Which headers tell the backend who asked ([`ProxyBuilder::forwarded`](super::ProxyBuilder::forwarded)).
///
/// In a configuration file: `"x-forwarded"`, `"forwarded"`, `"both"` or `"none"`.
///
/// Those the client sent (`X-Forwarded-*` and `Forwarded` alike, except with `None`) are dropped
/// first, so the backend reads the proxy's alone, unless the client is a proxy that is
/// trusted ([`ProxyBuilder::trust_forwarded`](super::ProxyBuilder::trust_forwarded)): then
/// the client's address is appended to its list, and its element to `Forwarded`'s (the last
/// entry of each is this proxy's), and its `X-Forwarded-Host` and `-Proto` are kept.
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
    /// `X-Forwarded-For` (the client's address), `X-Forwarded-Host`, `X-Forwarded-Proto`.
    #[default]
    XForwarded,
    /// One `Forwarded: for=..;host=..;proto=..` element (RFC 7239).
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

/// What a server knows of the connection a request came on, told once per connection
/// (`Proxy::for_client`) rather than put in each request: the client's address, and whether
/// the connection is TLS, which the forwarded headers report as the protocol `https`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Peer {
    pub(crate) ip: Option<IpAddr>,
    pub(crate) tls: bool,
}

#[cfg(feature = "gateway")]
impl<B> super::Proxy<B> {
    /// Which forwarded headers this proxy keeps from its clients, trusted: `None` unless it
    /// [trusts](super::ProxyBuilder::trust_forwarded) them and adds some of its own (with
    /// [`ForwardedHeaders::None`] it reads none).
    pub(crate) fn trusted_forwarded(&self) -> Option<ForwardedHeaders> {
        let shared = &self.shared;
        (shared.trust_forwarded && shared.forwarded != ForwardedHeaders::None)
            .then_some(shared.forwarded)
    }
}

/// Removes the forwarded headers from `fields`: a client's trailer fields, which a backend
/// could read as the claims [`add_forwarded`] removed from its header fields.
pub(crate) fn remove_claims(fields: &mut HeaderMap) {
    for name in [
        FORWARDED,
        X_FORWARDED_FOR,
        X_FORWARDED_HOST,
        X_FORWARDED_PROTO,
    ] {
        fields.remove(name);
    }
}

/// What the forwarded headers say about one request.
pub(crate) struct Origin<'a> {
    pub(crate) client: Option<IpAddr>,
    pub(crate) host: Option<HeaderValue>,
    pub(crate) proto: &'a str,
}

/// Adds the forwarded headers `which` asks for. Unless the client is `trusted` (a proxy in
/// front), those it sent go first: they are its own claim of any address, host or scheme,
/// which a backend would take for the proxy's word.
pub(crate) fn add_forwarded(
    headers: &mut HeaderMap,
    which: ForwardedHeaders,
    origin: Origin<'_>,
    trusted: bool,
) {
    let x_forwarded = matches!(which, ForwardedHeaders::XForwarded | ForwardedHeaders::Both);
    if !trusted && which != ForwardedHeaders::None {
        // Those added below replace the client's in the same lookup.
        headers.remove(FORWARDED);
        if !x_forwarded || origin.client.is_none() {
            headers.remove(X_FORWARDED_FOR);
        }
        if !x_forwarded || origin.host.is_none() {
            headers.remove(X_FORWARDED_HOST);
        }
        if !x_forwarded {
            headers.remove(X_FORWARDED_PROTO);
        }
    }
    if x_forwarded {
        // Room for the three at once: the map of a request parsed by hyper has none to spare.
        headers.reserve(3);
        if let Some(ip) = origin.client {
            // One lookup, and for a first proxy (no list yet, or an untrusted client's
            // replaced) the address written straight into its value.
            match headers.entry(X_FORWARDED_FOR) {
                Entry::Occupied(mut entry) if !trusted => match ip_value(ip) {
                    Some(value) => {
                        entry.insert(value);
                    }
                    None => {
                        entry.remove();
                    }
                },
                Entry::Vacant(entry) => {
                    if let Some(value) = ip_value(ip) {
                        entry.insert(value);
                    }
                }
                Entry::Occupied(mut entry) => {
                    let mut joined = String::with_capacity(48);
                    for value in entry.iter() {
                        if let Ok(value) = value.to_str() {
                            joined.push_str(value);
                            joined.push_str(", ");
                        }
                    }
                    push_ip(&mut joined, ip);
                    if let Ok(value) = HeaderValue::from_str(&joined) {
                        entry.insert(value);
                    }
                }
            }
        }
        // A trusted proxy in front saw the client first: its host and scheme are the client's.
        if let Some(host) = &origin.host {
            if !(trusted && headers.contains_key(X_FORWARDED_HOST)) {
                headers.insert(X_FORWARDED_HOST, host.clone());
            }
        }
        if !(trusted && headers.contains_key(X_FORWARDED_PROTO)) {
            headers.insert(
                X_FORWARDED_PROTO,
                HeaderValue::from_static(if origin.proto == "https" {
                    "https"
                } else {
                    "http"
                }),
            );
        }
    }
    if matches!(which, ForwardedHeaders::Forwarded | ForwardedHeaders::Both) {
        let mut element = String::with_capacity(64);
        match origin.client {
            Some(ip @ IpAddr::V4(_)) => {
                element.push_str("for=");
                push_ip(&mut element, ip);
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
        append_list(headers, FORWARDED, |list| list.push_str(&element));
    }
}

/// Appends the item `push` writes to the comma-separated list in `name` (all its lines joined
/// into one).
fn append_list(headers: &mut HeaderMap, name: HeaderName, push: impl FnOnce(&mut String)) {
    let mut joined = String::with_capacity(48);
    for value in headers.get_all(&name) {
        if let Ok(value) = value.to_str() {
            joined.push_str(value);
            joined.push_str(", ");
        }
    }
    push(&mut joined);
    if let Ok(value) = HeaderValue::from_str(&joined) {
        headers.insert(name, value);
    }
}

/// `ip` as a header value.
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    let IpAddr::V4(ip) = ip else {
        return HeaderValue::from_str(&ip.to_string()).ok();
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        for (digit, shown) in [
            (octet / 100, octet >= 100),
            (octet / 10 % 10, octet >= 10),
            (octet % 10, true),
        ] {
            if shown {
                text[len] = b'0' + digit;
                len += 1;
            }
        }
    }
    HeaderValue::from_bytes(&text[..len]).ok()
}

/// Writes `ip` as text; an IPv4 address digit by digit, as this runs once per request and
/// the formatting machinery costs ten times more.
fn push_ip(out: &mut String, ip: IpAddr) {
    let IpAddr::V4(ip) = ip else {
        let _ = write!(out, "{ip}");
        return;
    };
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::headers::tests::map;

    #[test]
    fn forwarded_headers_append_to_what_a_trusted_client_sent() {
        let mut headers = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
        ]);
        let origin = Origin {
            client: Some("::1".parse().unwrap()),
            host: Some(HeaderValue::from_static("app.example")),
            proto: "http",
        };
        add_forwarded(&mut headers, ForwardedHeaders::Both, origin, true);
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, ::1");
        // Its load balancer's host and scheme are kept.
        let mut behind = map(&[
            ("x-forwarded-host", "public.example"),
            ("x-forwarded-proto", "https"),
        ]);
        let origin = Origin {
            client: Some("10.0.0.2".parse().unwrap()),
            host: Some(HeaderValue::from_static("app.example")),
            proto: "http",
        };
        add_forwarded(&mut behind, ForwardedHeaders::XForwarded, origin, true);
        assert_eq!(behind["x-forwarded-host"], "public.example");
        assert_eq!(behind["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "app.example");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(
            headers["forwarded"],
            "for=10.0.0.1, for=\"[::1]\";host=\"app.example\";proto=http"
        );
    }

    #[test]
    fn an_untrusted_clients_forwarded_headers_give_way_to_the_proxys() {
        let sent = [
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=10.0.0.1;host=evil.example;proto=https"),
        ];
        let origin = || Origin {
            client: Some("127.0.0.1".parse().unwrap()),
            host: Some(HeaderValue::from_static("app.example")),
            proto: "http",
        };
        let mut headers = map(&sent);
        add_forwarded(&mut headers, ForwardedHeaders::XForwarded, origin(), false);
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-host"], "app.example");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert!(!headers.contains_key("forwarded"));
        let mut headers = map(&sent);
        add_forwarded(&mut headers, ForwardedHeaders::Forwarded, origin(), false);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(
            headers["forwarded"],
            "for=127.0.0.1;host=\"app.example\";proto=http"
        );
        // No `Host` to report: the client's still goes.
        let mut headers = map(&sent);
        let hostless = Origin {
            host: None,
            ..origin()
        };
        add_forwarded(&mut headers, ForwardedHeaders::XForwarded, hostless, false);
        assert!(!headers.contains_key("x-forwarded-host"));
        let mut headers = map(&sent);
        add_forwarded(&mut headers, ForwardedHeaders::None, origin(), false);
        assert_eq!(headers, map(&sent), "none: as the client sent them");
    }

    #[test]
    fn addresses_are_written_as_the_standard_library_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "192.168.9.99",
            "::1",
            "fe80::2",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut text = String::new();
            push_ip(&mut text, ip);
            assert_eq!(text, ip.to_string());
            assert_eq!(ip_value(ip).unwrap(), ip.to_string().as_str());
        }
    }

    #[test]
    fn none_adds_nothing() {
        let mut headers = HeaderMap::new();
        let origin = Origin {
            client: Some("127.0.0.1".parse().unwrap()),
            host: None,
            proto: "http",
        };
        add_forwarded(&mut headers, ForwardedHeaders::None, origin, false);
        assert!(headers.is_empty());
    }
}
