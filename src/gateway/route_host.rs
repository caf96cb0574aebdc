//! The host a route names, as requests' hosts are compared with it: in ASCII, without a port
//! or a final dot, in lower case. A value that no request could ever match is an error, not a
//! route that silently serves nothing.

use std::net::Ipv6Addr;

/// `text` (a route's `host`) as requests' hosts are compared with it. A name in Unicode is
/// taken in its ASCII form (`bücher.example` is `xn--bcher-kva.example`), the form clients
/// send; a port is allowed and ignored, as the gateway has one listener. A wildcard, an IPv6
/// address without its brackets, or anything else that is not a host is an error saying why.
pub(super) fn route_host(text: &str) -> Result<String, String> {
    if text.contains('*') {
        return Err(format!(
            "{text:?}: wildcards are not supported; give each host a route of its own"
        ));
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return Err(format!(
            "{text:?}: an IPv6 address is written in brackets, as in the Host header: \"[{text}]\""
        ));
    }
    let host = match text.strip_prefix('[') {
        Some(_) => text.split_inclusive(']').next().unwrap_or(text),
        None => text.split(':').next().unwrap_or(text),
    };
    let port = &text[host.len()..];
    if !port.is_empty()
        && port
            .strip_prefix(':')
            .and_then(|p| p.parse::<u16>().ok())
            .is_none()
    {
        return Err(format!(
            "{text:?} is not a host name, with an optional port"
        ));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    match url::Host::parse(name) {
        Ok(url::Host::Domain(ascii)) => Ok(ascii),
        // As written (in lower case): requests name it so.
        Ok(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => Ok(name.to_ascii_lowercase()),
        Err(error) => Err(format!("{text:?} is not a host name ({error})")),
    }
}

#[cfg(test)]
mod tests {
    use super::route_host;

    #[test]
    fn names_are_compared_in_ascii_lower_case_without_port_or_final_dot() {
        assert_eq!(route_host("App.Localhost").unwrap(), "app.localhost");
        assert_eq!(route_host("a.localhost:8080").unwrap(), "a.localhost");
        assert_eq!(route_host("a.localhost.").unwrap(), "a.localhost");
        assert_eq!(
            route_host("Bücher.localhost").unwrap(),
            "xn--bcher-kva.localhost"
        );
        assert_eq!(route_host("[::1]:8080").unwrap(), "[::1]");
        assert_eq!(route_host("127.0.0.1").unwrap(), "127.0.0.1");
    }

    #[test]
    fn what_no_request_could_match_is_an_error_saying_why() {
        for (text, says) in [
            ("*.localhost", "wildcards are not supported"),
            ("::1", "\"[::1]\""),
            ("a.localhost:http", "with an optional port"),
            ("a.localhost:99999", "with an optional port"),
            ("a b", "is not a host name"),
            ("", "is not a host name"),
            (".", "is not a host name"),
            ("a/b", "is not a host name"),
        ] {
            let error = route_host(text).expect_err(text);
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }
}
