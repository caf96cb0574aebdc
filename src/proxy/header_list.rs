//! The header list a request goes to an HTTP/2 backend with, measured before it is sent.
//!
//! h2's client neither learns nor checks the backend's `SETTINGS_MAX_HEADER_LIST_SIZE`, and
//! h2's server (hyper's, tonic's) ends the whole connection (`GOAWAY COMPRESSION_ERROR`) for a
//! block past its limit that comes in `HEADERS` and `CONTINUATION` frames: one client's large
//! headers would fail every request in flight on the connection the proxy shares among all.

use http::{Method, Request, header};
use http_body::Body;

use super::Shared;
use super::failure::Failure;
use super::future::Sent;

/// What RFC 9113 section 6.5.2 counts for each field besides its name and value.
const FIELD_OVERHEAD: usize = 32;

impl<B> Shared<B> {
    /// The proxy's 431 for `request` (as it goes to the HTTP/2 backend) when its header list
    /// reaches the bound, logged at warn: h2 refuses a list of its bound, not only one past it.
    pub(super) fn refuse_header_list<T: Body>(
        &self,
        request: &Request<T>,
        sent: &Sent,
    ) -> Option<http::Response<super::ProxyBody>> {
        let size = size(request);
        if size < self.http2_max_header_list_size {
            return None;
        }
        tracing::warn!(
            service = %self.service(),
            method = %sent.method,
            path = %sent.path.path(),
            size,
            bound = self.http2_max_header_list_size,
            "{} (raise `http2_max_header_list_size` if the backend accepts more)",
            Failure::HeaderListTooLarge.as_str()
        );
        Some(self.failure_response(Failure::HeaderListTooLarge, sent))
    }
}

/// The size of the header list hyper's HTTP/2 client sends for `request`, as RFC 9113 section
/// 6.5.2 counts it (each field's name, value and 32 octets) and h2's server adds it up: its
/// fields, the pseudo-header fields h2 makes of its method, URI and `:protocol`, and the
/// `Content-Length` hyper adds for a body of known length.
pub(super) fn size<T: Body>(request: &Request<T>) -> usize {
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| field(name.as_str().len(), value.len()))
        .sum();
    fields + pseudo(request) + added_length(request)
}

fn field(name: usize, value: usize) -> usize {
    name + value + FIELD_OVERHEAD
}

/// The pseudo-header fields, as h2's `Pseudo::request` makes them.
fn pseudo<T>(request: &Request<T>) -> usize {
    let method = request.method();
    let uri = request.uri();
    let protocol = request.extensions().get::<hyper::ext::Protocol>();
    let mut size = field(":method".len(), method.as_str().len());
    if let Some(protocol) = protocol {
        size += field(":protocol".len(), protocol.as_str().len());
    }
    if *method != Method::CONNECT || protocol.is_some() {
        let path = uri.path_and_query().map_or(0, |path| path.as_str().len());
        // An empty path goes as `/` (`*` for OPTIONS); a URI without a scheme as `http`.
        size += field(":path".len(), path.max(1));
        size += field(":scheme".len(), uri.scheme_str().unwrap_or("http").len());
    }
    if let Some(authority) = uri.authority() {
        size += field(":authority".len(), authority.as_str().len());
    }
    size
}

/// The `Content-Length` hyper's HTTP/2 client adds to a request without one whose body's
/// length is known, unless it is empty and the method gives a body no meaning.
fn added_length<T: Body>(request: &Request<T>) -> usize {
    if request.headers().contains_key(header::CONTENT_LENGTH) {
        return 0;
    }
    let Some(length) = request.body().size_hint().exact() else {
        return 0;
    };
    let no_meaning = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::DELETE | Method::CONNECT
    );
    if length == 0 && no_meaning {
        return 0;
    }
    field(
        header::CONTENT_LENGTH.as_str().len(),
        length.to_string().len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    #[test]
    fn fields_and_pseudo_fields_count_32_octets_each_beside_their_bytes() {
        let request = Request::get("http://app:8080/a?b")
            .header("x-a", "12345")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let expected = (7 + 3 + 32) // :method GET
            + (5 + 4 + 32) // :path /a?b
            + (7 + 4 + 32) // :scheme http
            + (10 + 8 + 32) // :authority app:8080
            + (3 + 5 + 32); // x-a
        assert_eq!(size(&request), expected);
    }

    #[test]
    fn the_length_hyper_adds_is_counted() {
        let post = Request::post("http://app/")
            .body(Full::new(Bytes::from_static(b"12345678901")))
            .unwrap();
        let without = (7 + 4 + 32) + (5 + 1 + 32) + (7 + 4 + 32) + (10 + 3 + 32);
        assert_eq!(size(&post), without + (14 + 2 + 32));
        let empty_post = Request::post("http://app/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(size(&empty_post), without + (14 + 1 + 32));
        let get = Request::get("http://app/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(size(&get), without - 1);
    }

    #[test]
    fn an_extended_connect_counts_its_protocol() {
        let mut request = Request::connect("http://app/chat")
            .body(Empty::<Bytes>::new())
            .unwrap();
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let expected = (7 + 7 + 32) // :method CONNECT
            + (9 + 9 + 32) // :protocol websocket
            + (5 + 5 + 32) // :path /chat
            + (7 + 4 + 32) // :scheme http
            + (10 + 3 + 32); // :authority app
        assert_eq!(size(&request), expected);
    }
}
