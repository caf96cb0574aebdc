//! The hop-by-hop rules of a forwarding proxy (RFC 9110 section 7.6): the headers that concern
//! one connection only, never forwarded as they are. The headers that say who asked are in
//! `forwarded.rs`.

use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRANSFER_ENCODING, UPGRADE,
};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The headers that concern one connection only, never forwarded as they are. Not `Trailer`
/// (RFC 2616 had it, RFC 9110 does not): it announces the trailer fields to the message's
/// recipient, and hyper sends an HTTP/1.1 message's trailers only for the names it lists.
static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// The place of `Transfer-Encoding` in [`HOP_BY_HOP`].
const TRANSFER_ENCODING_AT: usize = 6;

/// The place of `name` in [`HOP_BY_HOP`], if it is there: a match on the name's text, where
/// most names differ by their length alone (comparing `HeaderName`s one by one costs several
/// times more, for every header of every message).
fn hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "transfer-encoding" => 6,
        "upgrade" => 7,
        _ => return None,
    })
}

/// Whether the request asks to switch protocols (`Connection: upgrade` with an `Upgrade`) to
/// a protocol the proxy relays. Never to `h2c`: once switched, the client would speak HTTP/2
/// to the backend itself, each of its requests past the base path, the routes and the wake
/// policy (h2c smuggling). Such a request goes on as an ordinary one, without its `Upgrade`.
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .any(|value| has_token(value.as_bytes(), b"upgrade"))
        && !headers.get_all(UPGRADE).iter().any(|value| {
            value.as_bytes().split(|&b| b == b',').any(|protocol| {
                // `name/version`: the name alone says which protocol.
                let name = protocol.split(|&b| b == b'/').next().unwrap_or_default();
                name.trim_ascii().eq_ignore_ascii_case(b"h2c")
            })
        })
}

fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// What a message's `Transfer-Encoding` said, now that it is removed (hop-by-hop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// None, or `chunked` once: the body as hyper decoded it is the content, whole.
    Plain,
    /// `chunked` once, beside a `Content-Length` (removed): plain too, but its sender framed
    /// the body two ways, and may have meant the length (RFC 9112 section 6.3: a sign of
    /// smuggling or response splitting). The bytes after the chunks on its connection may
    /// be the rest of it, not the next message: the connection takes no other.
    LengthBesideChunks,
    /// Another coding (`gzip, chunked`): hyper undid the chunks only, and the rest of the
    /// coding would reach the other side unannounced, read as the content itself. Such a
    /// message is not forwarded (RFC 9112 section 6.1: a 501 for a request; nginx's 502 for
    /// an answer).
    Other,
}

/// Removes the hop-by-hop headers and those the `Connection` header names. With `upgrade`, the
/// `Upgrade` header stays and `Connection` says `upgrade` only, so the switch reaches the other
/// side. `TE: trailers` stays: gRPC needs it and it is the one value HTTP/2 allows.
///
/// A `Content-Length` beside a `Transfer-Encoding` goes too (RFC 9112 section 6.3: an
/// intermediary must remove it): the body's length is the one its chunks said, and a length
/// the backend also sent would frame it differently for the client (cut short, or hanging).
/// That it was there is told ([`Coding::LengthBesideChunks`]).
#[must_use = "a message with a transfer coding besides `chunked` must not be forwarded"]
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) -> Coding {
    // Once per message each way: one look at the names there are (most messages carry none
    // of these, or `Connection` alone) costs less than a hashed removal per hop-by-hop name.
    // Bit i: `HOP_BY_HOP[i]` is there.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return Coding::Plain;
    }
    let there = |i: usize| present & (1 << i) != 0;
    let has =
        |wanted: &HeaderName| (0..HOP_BY_HOP.len()).any(|i| there(i) && HOP_BY_HOP[i] == *wanted);
    if has(&CONNECTION) {
        // The names `Connection` lists, but for those removed anyway below (`keep-alive`)
        // and `close`, a token that names no header. Most messages list only these.
        let mut named: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(CONNECTION) {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.is_empty() || token.eq_ignore_ascii_case(b"close") || is_hop_by_hop(token)
                {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token) {
                    named.push(name);
                }
            }
        }
        for name in named {
            headers.remove(name);
        }
    }
    // By its place: `has` compares names, a cost on every answer that carries `Connection`.
    let coding = if there(TRANSFER_ENCODING_AT) {
        let length = headers.remove(CONTENT_LENGTH).is_some();
        match transfer_coding(headers) {
            Coding::Plain if length => Coding::LengthBesideChunks,
            coding => coding,
        }
    } else {
        Coding::Plain
    };
    let te_trailers = has(&TE)
        && headers
            .get(TE)
            .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in (0..HOP_BY_HOP.len())
        .filter(|&i| there(i))
        .map(|i| &HOP_BY_HOP[i])
    {
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
    coding
}

/// The codings the `Transfer-Encoding` lines list: `chunked` once and nothing else is plain.
fn transfer_coding(headers: &HeaderMap) -> Coding {
    let mut chunked = false;
    for value in headers.get_all(TRANSFER_ENCODING) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty() {
                continue;
            }
            // Chunked twice is chunks within chunks: hyper undid the outer ones only.
            if chunked || !token.eq_ignore_ascii_case(b"chunked") {
                return Coding::Other;
            }
            chunked = true;
        }
    }
    Coding::Plain
}

/// Whether `token` (from a `Connection` header) names a hop-by-hop header.
fn is_hop_by_hop(token: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|hop| token.eq_ignore_ascii_case(hop.as_str().as_bytes()))
}

/// The host the client asked for: the URI's authority (HTTP/2's `:authority`, or an
/// absolute-form target, which RFC 9112 and 9113 put before a `Host` header, as the gateway's
/// routes do), or else its `Host` header.
///
/// Refused, as RFC 9112 section 3.2 and nginx refuse them (400), so that the backend never
/// reads a host other than the one the request was routed by: more than one `Host` (the
/// gateway routes by the first, a backend may read the last), and one that is not
/// `host[:port]` (`user:pw@app`, whose `app` the routes saw; `app/x`; `:80`; spaces). (An
/// HTTP/1.1 request without one is the gateway's router's to refuse: a library user's request
/// made in code may have none, and gets the backend's.)
pub(crate) fn original_host(
    headers: &HeaderMap,
    uri: &http::Uri,
) -> Result<Option<HeaderValue>, &'static str> {
    let mut named = headers.get_all(HOST).iter();
    let header = named.next();
    if named.next().is_some() {
        return Err("more than one Host header");
    }
    let host = match uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => header.cloned(),
    };
    match host {
        Some(host) if !is_host(host.as_bytes()) => Err("a host that is not host[:port]"),
        host => Ok(host),
    }
}

/// Whether `host` is made of the bytes of RFC 3986's `host [":" port]` alone (a name, an IPv4
/// address or a bracketed IPv6 one): no userinfo, path, query or whitespace. Empty is
/// allowed, as RFC 9112 allows an empty `Host` for a target without an authority; a port
/// without a host (`:80`) is not: it names an authority, whose host RFC 9110 section 4.2.1
/// forbids empty (nginx: 400), and the backend would read `:80` for the host.
fn is_host(host: &[u8]) -> bool {
    // Without a branch per byte: the host of every request is checked, and all but a few
    // pass.
    host.first() != Some(&b':')
        && host
            .iter()
            .fold(true, |valid, &byte| valid & HOST_BYTES[usize::from(byte)])
        && has_one_port_of_digits(host)
}

/// Whether `host` (of [`is_host`]'s bytes) is one name, or one bracketed literal, then at most
/// `:` and a port of digits (RFC 3986's `port = *DIGIT`). The routes take the host as all
/// before the last `:`, and many backends as all before the first: with `app:1:2` they would
/// differ (nginx lets it through, and `app:abc`), so that the backend read a host that the
/// request was not routed by.
fn has_one_port_of_digits(host: &[u8]) -> bool {
    let name_end = match host.first() {
        Some(b'[') => match host.iter().position(|&byte| byte == b']') {
            Some(end) => end + 1,
            None => return false,
        },
        _ => host
            .iter()
            .position(|&byte| matches!(byte, b':' | b'[' | b']'))
            .unwrap_or(host.len()),
    };
    match &host[name_end..] {
        [] => true,
        [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// The bytes [`is_host`] allows, one load each: unreserved, sub-delims, `%`, `:`, brackets.
static HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric();
        byte += 1;
    }
    let others = b"-._~!$&'()*+,;=%:[]";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

#[cfg(test)]
pub(super) mod tests;
