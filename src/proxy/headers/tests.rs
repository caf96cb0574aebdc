use super::*;

#[test]
fn every_hop_by_hop_name_has_its_own_place() {
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        assert_eq!(hop_index(name), Some(i), "{name}");
    }
    assert_eq!(HOP_BY_HOP[TRANSFER_ENCODING_AT], TRANSFER_ENCODING);
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
    assert_eq!(remove_hop_by_hop(&mut headers, false), Coding::Plain);
    let names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["accept"]);
}

#[test]
fn the_trailer_announcement_stays_unless_connection_names_it() {
    let mut headers = map(&[("trailer", "x-sum"), ("connection", "keep-alive")]);
    assert_eq!(remove_hop_by_hop(&mut headers, false), Coding::Plain);
    assert_eq!(headers["trailer"], "x-sum");

    let mut headers = map(&[("trailer", "x-sum"), ("connection", "trailer")]);
    assert_eq!(remove_hop_by_hop(&mut headers, false), Coding::Plain);
    assert!(headers.is_empty(), "{headers:?}");
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
    assert_eq!(remove_hop_by_hop(&mut headers, true), Coding::Plain);
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
    assert_eq!(remove_hop_by_hop(&mut headers, false), Coding::Plain);
    let names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["accept"]);
    let mut headers = map(&[("accept", "*/*"), ("host", "app")]);
    assert_eq!(remove_hop_by_hop(&mut headers, false), Coding::Plain);
    assert_eq!(headers.len(), 2);
}

#[test]
fn a_length_beside_chunks_goes_and_a_coding_besides_chunked_is_told() {
    for (codings, coding) in [
        (&["chunked"][..], Coding::LengthBesideChunks),
        (&["Chunked "], Coding::LengthBesideChunks),
        (&[", chunked"], Coding::LengthBesideChunks),
        (&["gzip, chunked"], Coding::Other),
        (&["gzip", "chunked"], Coding::Other),
        (&["chunked, chunked"], Coding::Other),
        (&["chunked;x=1"], Coding::Other),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from_static("3"));
        for value in codings {
            headers.append(TRANSFER_ENCODING, HeaderValue::from_static(value));
        }
        assert_eq!(
            remove_hop_by_hop(&mut headers, false),
            coding,
            "{codings:?}"
        );
        assert!(headers.is_empty(), "{codings:?}: {headers:?}");
    }
    let mut headers = map(&[("content-length", "3")]);
    assert_eq!(remove_hop_by_hop(&mut headers, false), Coding::Plain);
    assert_eq!(headers["content-length"], "3");
    let mut headers = map(&[("transfer-encoding", "chunked")]);
    assert_eq!(remove_hop_by_hop(&mut headers, false), Coding::Plain);
}

#[test]
fn a_host_is_one_host_and_port_or_none_at_all() {
    let origin = http::Uri::from_static("/x");
    let host = |hosts: &[&'static str], uri: &http::Uri| {
        let headers = map(&hosts.iter().map(|h| ("host", *h)).collect::<Vec<_>>());
        original_host(&headers, uri)
    };
    for good in [
        "app",
        "app:8080",
        "app:",
        "127.0.0.1",
        "[::1]:80",
        "[::1]",
        "xn--bcher-kva.example",
        "",
    ] {
        let found = host(&[good], &origin);
        assert_eq!(found, Ok(Some(HeaderValue::from_static(good))), "{good}");
    }
    for bad in [
        "app@evil", "app/x", "a b", "app\\x", "app?x", "app#x", ":80", ":", "app:abc", "app:1:2",
        "app:80:", "[::1]x", "[::1]:8x", "[::1", "::1", "a]b", "a[b]", "[::1]]",
    ] {
        assert!(host(&[bad], &origin).is_err(), "{bad}");
    }
    assert!(host(&["app", "evil"], &origin).is_err());
    assert_eq!(host(&[], &origin), Ok(None));
    // An absolute-form target names the host; its userinfo would reach the backend.
    let absolute = http::Uri::from_static("http://app:81/x");
    let found = host(&[], &absolute);
    assert_eq!(found, Ok(Some(HeaderValue::from_static("app:81"))));
    let userinfo = http::Uri::from_static("http://user:pw@app/x");
    assert!(host(&["app"], &userinfo).is_err());
}

/// Hosts spelled in the other ways RFC 3986 allows pass as they are (the routes take each in
/// its own way: without a final dot, in any case): an IPv6 literal with a zone, a final dot,
/// upper case, a port with leading zeros; and a URI's authority (HTTP/2's `:authority`) is held
/// to the same rule as the `Host` header, the port of digits included.
#[test]
fn a_host_in_any_spelling_rfc_3986_allows_passes_and_an_authority_is_held_to_the_same_rule() {
    let origin = http::Uri::from_static("/x");
    for good in [
        "[fe80::1%25eth0]:80",
        "[fe80::1%25eth0]",
        "app.example.",
        "app.example.:8080",
        "APP.Example",
        "app:0080",
    ] {
        let headers = map(&[("host", good)]);
        let found = original_host(&headers, &origin);
        assert_eq!(found, Ok(Some(HeaderValue::from_static(good))), "{good}");
    }
    let absolute = http::Uri::from_static("http://[fe80::1%25eth0]:80/x");
    assert!(original_host(&HeaderMap::new(), &absolute).is_ok());
    for bad in ["http://app:abc/x", "http://app:8x/x"] {
        let uri = http::Uri::from_static(bad);
        assert!(original_host(&HeaderMap::new(), &uri).is_err(), "{bad}");
    }
}
