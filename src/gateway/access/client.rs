//! The client the access log names for a service that trusts the forwarded headers: the one the
//! trusted proxy in front (a load balancer) named last, as nginx's `realip` takes it.
//!
//! The last, not the first: every client goes through that proxy, which appends the address
//! it saw to what its own client sent; whatever comes before is that client's claim, which it
//! may forge. A chain of several proxies is named by its last (nginx needs
//! `real_ip_recursive` and a list of them to go further back); the backend gets the whole list.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::header::{FORWARDED, HeaderMap, HeaderName, HeaderValue};

use crate::proxy::ForwardedHeaders;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The most characters the log writes of a forwarded client that is not an address (RFC 7239's
/// `unknown` or `_hidden`, or anything a proxy passed on): the header is unbounded.
const MAX_NAME: usize = 64;

/// The header line in which a request's trusted proxy named its client, kept from the request's
/// arrival (its headers go on to the backend) until its line is written, and only read then.
pub(super) struct Forwarded {
    /// From `Forwarded`, or else `X-Forwarded-For`.
    rfc7239: bool,
    /// The last line of that header, if the request has one.
    line: Option<HeaderValue>,
}

impl Forwarded {
    /// Where `headers` name the client, for a proxy that keeps `which`: `X-Forwarded-For`, or
    /// `Forwarded`; with both, `X-Forwarded-For` if the request has one, the common one.
    pub(super) fn of(headers: &HeaderMap, which: ForwardedHeaders) -> Self {
        let last = |name| headers.get_all(name).iter().next_back().cloned();
        let rfc7239 = |line| Self {
            rfc7239: true,
            line,
        };
        let x_forwarded = |line| Self {
            rfc7239: false,
            line,
        };
        match which {
            ForwardedHeaders::Forwarded => rfc7239(last(FORWARDED)),
            ForwardedHeaders::Both => match last(X_FORWARDED_FOR) {
                Some(line) => x_forwarded(Some(line)),
                None => rfc7239(last(FORWARDED)),
            },
            _ => x_forwarded(last(X_FORWARDED_FOR)),
        }
    }

    /// The client named, if any (without a header, the connection's client is the client, as
    /// for nginx).
    pub(super) fn client(&self) -> Option<Named> {
        let line = self.line.as_ref()?.as_bytes();
        let node = if self.rfc7239 {
            for_node(last_element(line))?
        } else {
            let mut nodes = line.rsplit(|&b| b == b',').map(<[u8]>::trim_ascii);
            nodes.find(|node| !node.is_empty())?.to_vec()
        };
        Named::new(&node)
    }
}

/// A forwarded client as the access log writes it.
pub(super) enum Named {
    /// An address (its port, if it came with one, left out), written as a connection's is.
    Address(IpAddr),
    /// Anything else, quoted and escaped as the client's other words are (Debug), bytes that are
    /// not UTF-8 replaced, cut at [`MAX_NAME`] characters (then ending in `…`).
    Other(String),
}

impl Named {
    fn new(node: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(node);
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let address = text
            .parse::<IpAddr>()
            .ok()
            .or_else(|| text.parse::<SocketAddr>().ok().map(|a| a.ip()))
            .or_else(|| {
                let bracketed = text.strip_prefix('[')?.strip_suffix(']')?;
                bracketed.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
            });
        Some(match address {
            Some(ip) => Self::Address(ip),
            None if text.chars().nth(MAX_NAME).is_some() => {
                let mut cut: String = text.chars().take(MAX_NAME).collect();
                cut.push('…');
                Self::Other(cut)
            }
            None => Self::Other(text.to_owned()),
        })
    }
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(ip) => ip.fmt(f),
            Self::Other(text) => write!(f, "{text:?}"),
        }
    }
}

/// The last element of a `Forwarded` line: after its last comma outside a quoted string,
/// sought from the end, where the trusted proxy wrote, so that a quote its client left open
/// cannot swallow it.
fn last_element(line: &[u8]) -> &[u8] {
    let mut quoted = false;
    for i in (0..line.len()).rev() {
        match line[i] {
            b'"' if !escaped(line, i) => quoted = !quoted,
            b',' if !quoted => return &line[i + 1..],
            _ => {}
        }
    }
    line
}

/// Whether the byte at `i` follows an odd run of backslashes.
fn escaped(line: &[u8], i: usize) -> bool {
    line[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// The value of the `for` pair of one `Forwarded` element, unquoted.
fn for_node(element: &[u8]) -> Option<Vec<u8>> {
    let mut quoted = false;
    let mut start = 0;
    for i in 0..=element.len() {
        match element.get(i) {
            Some(b'"') if !escaped(element, i) => quoted = !quoted,
            Some(b';') | None if !quoted || i == element.len() => {
                let pair = element[start..i].trim_ascii();
                start = i + 1;
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                if pair[..eq].trim_ascii().eq_ignore_ascii_case(b"for") {
                    return Some(unquoted(pair[eq + 1..].trim_ascii()));
                }
            }
            _ => {}
        }
    }
    None
}

/// A token as it is, or a quoted string's text, its `\` escapes undone.
fn unquoted(value: &[u8]) -> Vec<u8> {
    let Some(inner) = value.strip_prefix(b"\"") else {
        return value.to_vec();
    };
    let inner = inner.strip_suffix(b"\"").unwrap_or(inner);
    let mut text = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => text.extend(bytes.next()),
            _ => text.push(b),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(which: ForwardedHeaders, lines: &[(&'static str, &'static str)]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(*name, HeaderValue::from_static(value));
        }
        Forwarded::of(&headers, which)
            .client()
            .map(|named| named.to_string())
    }

    #[test]
    fn the_last_address_of_x_forwarded_for_is_the_client() {
        let xff = ForwardedHeaders::XForwarded;
        let forged = [("x-forwarded-for", "6.6.6.6, 203.0.113.7")];
        assert_eq!(named(xff, &forged).as_deref(), Some("203.0.113.7"));
        // The proxy's own line, after its client's.
        let lines = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "2001:db8::7"),
        ];
        assert_eq!(named(xff, &lines).as_deref(), Some("2001:db8::7"));
        for (value, client) in [
            ("203.0.113.7:4711, ", "203.0.113.7"),
            ("[2001:db8::7]:4711", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("unknown", "\"unknown\""),
            ("x\" status=200\t", "\"x\\\" status=200\""),
        ] {
            let lines = [("x-forwarded-for", value)];
            assert_eq!(named(xff, &lines).as_deref(), Some(client), "{value}");
        }
        assert_eq!(named(xff, &[("x-forwarded-for", " , ")]), None);
        assert_eq!(named(xff, &[("forwarded", "for=1.2.3.4")]), None);
        let long = Forwarded {
            rfc7239: false,
            line: Some(HeaderValue::from_str(&"a".repeat(1000)).unwrap()),
        };
        let long = long.client().unwrap().to_string();
        assert_eq!(long, format!("\"{}…\"", "a".repeat(MAX_NAME)));
    }

    #[test]
    fn the_for_of_the_last_forwarded_element_is_the_client() {
        let rfc = ForwardedHeaders::Forwarded;
        for (value, client) in [
            ("for=6.6.6.6, for=203.0.113.7;proto=https", "203.0.113.7"),
            ("for=\"[2001:db8::7]:4711\"", "2001:db8::7"),
            ("proto=http;For=203.0.113.7", "203.0.113.7"),
            ("for=_hidden;by=x", "\"_hidden\""),
            // A comma in the proxy's quoted host is not the end of its element.
            (
                "for=6.6.6.6, for=203.0.113.7;host=\"a,for=6.6.6.6;x=\"",
                "203.0.113.7",
            ),
            // A quote its client left open does not swallow the proxy's element.
            ("for=\"6.6.6.6, for=203.0.113.7", "203.0.113.7"),
        ] {
            let lines = [("forwarded", value)];
            assert_eq!(named(rfc, &lines).as_deref(), Some(client), "{value}");
        }
        assert_eq!(named(rfc, &[("forwarded", "proto=https")]), None);
        // Both: `X-Forwarded-For` first, `Forwarded` without it.
        let both = ForwardedHeaders::Both;
        let lines = [
            ("forwarded", "for=192.0.2.1"),
            ("x-forwarded-for", "192.0.2.2"),
        ];
        assert_eq!(named(both, &lines).as_deref(), Some("192.0.2.2"));
        assert_eq!(named(both, &lines[..1]).as_deref(), Some("192.0.2.1"));
    }
}
