//! The hop-by-hop rules of a forwarding proxy (RFC 9110 section 7.6): the headers that concern
//! one connection only, never forwarded as they are. The headers that say who asked are in
//! `forwarded.rs`.

use http::header::{
    CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION,
    TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

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
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
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

/// Removes the hop-by-hop headers and those the `Connection` header names. With `upgrade`, the
/// `Upgrade` header stays and `Connection` says `upgrade` only, so the switch reaches the other
/// side. `TE: trailers` stays: gRPC needs it and it is the one value HTTP/2 allows.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Once per message each way: one look at the names there are (most messages carry none
    // of these, or `Connection` alone) costs less than a hashed removal per hop-by-hop name.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = hop_index(name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    let has = |wanted: &HeaderName| {
        HOP_BY_HOP
            .iter()
            .zip(present)
            .any(|(name, there)| there && name == wanted)
    };
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
    let te_trailers = has(&TE)
        && headers
            .get(TE)
            .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, there)| *there) {
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

/// Whether `token` (from a `Connection` header) names a hop-by-hop header.
fn is_hop_by_hop(token: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|hop| token.eq_ignore_ascii_case(hop.as_str().as_bytes()))
}

/// The host the client asked for: the URI's authority (HTTP/2's `:authority`, or an
/// absolute-form target, which RFC 9112 and 9113 put before a `Host` header, as the gateway's
/// routes do), or else its `Host` header.
pub(crate) fn original_host(headers: &HeaderMap, uri: &http::Uri) -> Option<HeaderValue> {
    uri.authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| headers.get(HOST).cloned())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn every_hop_by_hop_name_has_its_own_place() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_index(name), Some(i), "{name}");
        }
        assert_eq!(hop_index(&http::header::CONTENT_LENGTH), None);
    }

    pub(in crate::proxy) fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
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
    fn an_upgrade_to_h2c_is_no_upgrade() {
        for upgrade in ["h2c", "H2C", "websocket, h2c", "h2c/1"] {
            let headers = map(&[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", upgrade),
            ]);
            assert!(!wants_upgrade(&headers), "{upgrade}");
        }
        let headers = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&headers));
    }

    #[test]
    fn only_the_connection_header_goes_and_close_is_no_name() {
        let mut headers = map(&[("connection", "close"), ("accept", "*/*")]);
        remove_hop_by_hop(&mut headers, false);
        let names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["accept"]);
        let mut headers = map(&[("accept", "*/*"), ("host", "app")]);
        remove_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 2);
    }
}
