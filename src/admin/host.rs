//! The host names the admin service answers to: a defence against DNS rebinding.
//!
//! The reads need no token, which is safe on a loopback address only as long as no web page
//! can read them. A page on `attacker.example` that re-points its own name at 127.0.0.1 can:
//! to the browser the admin is then the page's own origin. Its requests still name
//! `attacker.example` in `Host`, so answering only to addresses, `localhost` and the names an
//! operator lists shuts that door.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use http::header::HOST;

/// The names an admin service answers to besides IP addresses and `localhost`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hosts {
    /// Lowercase, without a trailing dot.
    names: Arc<[String]>,
    any: bool,
}

impl Hosts {
    /// Also `names` (any case; a port given with one is ignored; `*` for any host at all).
    pub(crate) fn with(names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut any = false;
        let names: Vec<String> = names
            .into_iter()
            .map(Into::into)
            .filter(|name| {
                any |= name == "*";
                name != "*"
            })
            .map(|name| {
                without_port(&name)
                    .trim_end_matches('.')
                    .to_ascii_lowercase()
            })
            .collect();
        Self {
            names: names.into(),
            any,
        }
    }

    /// Whether a request with these headers and this URI authority's host may be answered; one
    /// naming no host at all (HTTP/1.0) is not a browser's.
    pub(crate) fn admit(&self, headers: &HeaderMap, uri_host: Option<&str>) -> Result<(), String> {
        if self.any {
            return Ok(());
        }
        let host = match headers.get(HOST) {
            Some(value) => match value.to_str() {
                Ok(text) => without_port(text),
                Err(_) => return Err(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            },
            None => match uri_host {
                Some(host) => host,
                None => return Ok(()),
            },
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = host.trim_end_matches('.');
        if bare.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || name.to_ascii_lowercase().ends_with(".localhost")
            || self
                .names
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name))
        {
            Ok(())
        } else {
            Err(host.to_owned())
        }
    }
}

/// `host[:port]` or `[v6]:port` without its port (the brackets of an IPv6 literal kept).
pub(crate) fn without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn addresses_and_localhost_are_answered_other_names_only_when_listed() {
        let hosts = Hosts::default();
        for ok in [
            "127.0.0.1:9901",
            "127.0.0.1",
            "[::1]:9901",
            "[::1]",
            "10.1.2.3:80",
            "localhost:9901",
            "LOCALHOST",
            "localhost.",
            "admin.localhost:9901",
        ] {
            assert_eq!(hosts.admit(&host(ok), None), Ok(()), "{ok}");
        }
        for refused in [
            "attacker.example:9901",
            "attacker.example",
            "localhost.attacker.example",
        ] {
            assert!(hosts.admit(&host(refused), None).is_err(), "{refused}");
        }
        assert_eq!(
            hosts.admit(&host("attacker.example:9901"), None),
            Err("attacker.example".into())
        );
        let listed = Hosts::with(["Gateway-1", "admin.example.com.", "scraper:9901"]);
        assert_eq!(listed.admit(&host("scraper:80"), None), Ok(()));
        assert_eq!(listed.admit(&host("gateway-1:9901"), None), Ok(()));
        assert_eq!(listed.admit(&host("admin.example.com"), None), Ok(()));
        assert!(listed.admit(&host("attacker.example"), None).is_err());
        let any = Hosts::with(["*"]);
        assert_eq!(any.admit(&host("attacker.example"), None), Ok(()));
    }

    #[test]
    fn ports_are_stripped_from_hosts_and_ipv6_literals_survive() {
        assert_eq!(without_port("a.localhost:8080"), "a.localhost");
        assert_eq!(without_port("a.localhost"), "a.localhost");
        assert_eq!(without_port("[::1]:8080"), "[::1]");
    }

    #[test]
    fn without_a_host_header_the_uri_names_it() {
        let hosts = Hosts::default();
        assert_eq!(hosts.admit(&HeaderMap::new(), None), Ok(()));
        assert_eq!(hosts.admit(&HeaderMap::new(), Some("127.0.0.1")), Ok(()));
        assert!(
            hosts
                .admit(&HeaderMap::new(), Some("attacker.example"))
                .is_err()
        );
    }
}
