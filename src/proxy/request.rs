//! The request as it goes on to the backend: its URI, version and headers.

use http::uri::Authority;
use http::{HeaderValue, Request, Uri, Version, header};
use http_body::Body;

use super::forwarded::{self, Origin, Peer};
use super::headers::{self, Coding};
use super::{ClientAddr, Shared};
use crate::BoxError;

impl<B> Shared<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Rewrites the request for the backend (URI, version and headers) with `host`, the one it
    /// asked for; tells the transfer coding its body had.
    pub(super) fn prepare(
        &self,
        request: &mut Request<B>,
        upgrade: bool,
        peer: Peer,
        host: Option<HeaderValue>,
    ) -> Coding {
        // The scheme a request names is the client's word: an absolute-form target's is a
        // forward proxy's business, and HTTP/2's `:scheme` is believed only from a server that
        // may be speaking TLS and does not say (the gateway says, for each connection).
        let https = peer.tls
            || (!self.cleartext
                && request.version() == Version::HTTP_2
                && request.uri().scheme() == Some(&http::uri::Scheme::HTTPS));
        let proto = if https { "https" } else { "http" };
        let client = request
            .extensions()
            .get::<ClientAddr>()
            .map(|addr| addr.0.ip())
            .or(peer.ip);
        // Over HTTP/2 the URI's authority is sent as `:authority`: the client's, unless
        // rewritten (the connection goes to the backend either way).
        let authority = (self.http2 && !self.rewrite_host)
            .then(|| {
                host.as_ref()
                    .and_then(|h| Authority::try_from(h.as_bytes()).ok())
            })
            .flatten();
        // An HTTP/1.1 backend gets the path only (origin form), which its pool would make of
        // an absolute URI anyway.
        *request.uri_mut() = if self.http2 {
            self.target.uri_for(request.uri(), authority)
        } else {
            Uri::from(self.target.path_for(request.uri()))
        };
        *request.version_mut() = if self.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let headers = request.headers_mut();
        let coding = headers::remove_hop_by_hop(headers, upgrade);
        forwarded::add_forwarded(
            headers,
            self.forwarded,
            Origin {
                client,
                host: host.clone(),
                proto,
            },
            self.trust_forwarded,
        );
        if self.http2 {
            // HTTP/2 carries the authority in `:authority`, taken from the URI.
            headers.remove(header::HOST);
        } else if self.rewrite_host {
            if let Ok(value) = HeaderValue::from_str(self.target.authority.as_str()) {
                headers.insert(header::HOST, value);
            }
        } else if let Some(host) = host {
            headers.insert(header::HOST, host);
        }
        coding
    }
}
