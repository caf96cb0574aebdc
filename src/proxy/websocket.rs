//! WebSockets between HTTP/2 (RFC 8441) and HTTP/1.1 (RFC 6455), either way round.
//!
//! An HTTP/2 client opens a WebSocket with an extended `CONNECT` (`:protocol: websocket`) and
//! gets a `200`; an HTTP/1.1 one sends a `GET` with `Upgrade: websocket` and a key, and gets
//! `101` with the key's proof. When the client and the backend speak different versions, the
//! proxy speaks each side's form and relays the bytes: the frames are the same in both.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use http::header::{CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY};
use http::header::{SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{Method, Request, StatusCode, Version, response};
use hyper::ext::Protocol;

/// Appended to the key before hashing it for `Sec-WebSocket-Accept` (RFC 6455 section 1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether `request` opens a WebSocket the HTTP/2 way (RFC 8441 section 4).
pub(super) fn is_extended_connect<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_2
        && request.method() == Method::CONNECT
        && request
            .extensions()
            .get::<Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"))
}

/// Whether `request` opens a WebSocket the HTTP/1.1 way, with its key.
pub(super) fn is_http1_websocket<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_11
        && request.method() == Method::GET
        && request
            .headers()
            .get(UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && request.headers().contains_key(SEC_WEBSOCKET_KEY)
}

/// The key the proxy sent the backend, to check its answer with.
pub(super) struct Handshake {
    key: HeaderValue,
}

impl Handshake {
    /// Turns an extended `CONNECT` into the HTTP/1.1 opening handshake. The client's
    /// `Sec-WebSocket-Protocol` and `-Extensions` stay: the two ends agree on them, the proxy
    /// only relays.
    pub(super) fn begin<B>(request: &mut Request<B>) -> Self {
        *request.method_mut() = Method::GET;
        request.extensions_mut().remove::<Protocol>();
        let key = HeaderValue::from_str(&base64(&nonce())).expect("base64 is a valid header");
        let headers = request.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(SEC_WEBSOCKET_KEY, key.clone());
        headers
            .entry(SEC_WEBSOCKET_VERSION)
            .or_insert(HeaderValue::from_static("13"));
        Self { key }
    }

    /// Whether the backend's `101` switched to WebSocket for this key: anything else must not
    /// be relayed as one (RFC 6455 section 4.1).
    pub(super) fn accepted(&self, headers: &HeaderMap) -> bool {
        let websocket = headers
            .get(UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        websocket
            && headers
                .get(SEC_WEBSOCKET_ACCEPT)
                .is_some_and(|v| v.as_bytes() == proof(&self.key).as_bytes())
    }

    /// Turns the backend's `101` into the HTTP/2 client's `200` (RFC 8441 section 5).
    pub(super) fn answer(parts: &mut response::Parts) {
        parts.status = StatusCode::OK;
        parts.version = Version::HTTP_2;
        for name in [UPGRADE, CONNECTION, SEC_WEBSOCKET_ACCEPT] {
            parts.headers.remove(name);
        }
    }
}

/// An HTTP/1.1 client's WebSocket handshake on its way to an HTTP/2 backend: its key, to
/// prove in the `101` the proxy answers.
pub(super) struct ClientHandshake {
    key: HeaderValue,
}

impl ClientHandshake {
    /// Turns an HTTP/1.1 opening handshake ([`is_http1_websocket`]) into an extended `CONNECT`.
    pub(super) fn begin<B>(request: &mut Request<B>) -> Self {
        *request.method_mut() = Method::CONNECT;
        request
            .extensions_mut()
            .insert(Protocol::from_static("websocket"));
        let headers = request.headers_mut();
        let key = headers
            .remove(SEC_WEBSOCKET_KEY)
            .unwrap_or(HeaderValue::from_static(""));
        headers.remove(UPGRADE);
        Self { key }
    }

    /// Turns the backend's `2xx` into the HTTP/1.1 client's `101`, with the proof of its key.
    pub(super) fn answer(&self, parts: &mut response::Parts) {
        parts.status = StatusCode::SWITCHING_PROTOCOLS;
        parts.version = Version::HTTP_11;
        let proof = HeaderValue::from_str(&proof(&self.key)).expect("base64 is a valid header");
        parts
            .headers
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(SEC_WEBSOCKET_ACCEPT, proof);
    }
}

/// What `Sec-WebSocket-Accept` must say for `key` (RFC 6455 section 4.2.2).
fn proof(key: &HeaderValue) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(ACCEPT_GUID);
    base64(&sha1.digest().bytes())
}

/// 16 bytes no other handshake of this process uses (RFC 6455 asks for a random nonce; it is
/// not a secret, it proves the backend read this handshake).
fn nonce() -> [u8; 16] {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0; 16];
    for (half, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(count);
        hasher.write_usize(half);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    bytes
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output, "{input:?}");
        }
    }

    #[test]
    fn the_accept_proof_is_rfc_6455s_example() {
        let handshake = Handshake {
            key: HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        };
        let mut headers = HeaderMap::new();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        );
        assert!(handshake.accepted(&headers));
        headers.insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_static("wrong"));
        assert!(!handshake.accepted(&headers));
    }

    #[test]
    fn an_extended_connect_becomes_an_http1_upgrade_with_a_fresh_key() {
        let connect = || {
            let mut request = Request::builder()
                .method(Method::CONNECT)
                .version(Version::HTTP_2)
                .uri("http://example.test/chat")
                .body(())
                .unwrap();
            request
                .extensions_mut()
                .insert(Protocol::from_static("websocket"));
            request
        };
        let mut request = connect();
        assert!(is_extended_connect(&request));
        let first = Handshake::begin(&mut request);
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.headers()[UPGRADE], "websocket");
        assert_eq!(request.headers()[SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(request.headers()[SEC_WEBSOCKET_KEY], first.key);
        assert!(request.extensions().get::<Protocol>().is_none());
        let second = Handshake::begin(&mut connect());
        assert_ne!(first.key, second.key, "a nonce per handshake");

        let mut plain = connect();
        plain.extensions_mut().remove::<Protocol>();
        assert!(
            !is_extended_connect(&plain),
            "a CONNECT tunnel is not a WebSocket"
        );
    }

    #[test]
    fn an_http1_opening_becomes_an_extended_connect_and_its_answer_a_101_with_the_proof() {
        let mut request = Request::builder()
            .uri("/chat")
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "Upgrade")
            .header(SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .header(SEC_WEBSOCKET_VERSION, "13")
            .body(())
            .unwrap();
        assert!(is_http1_websocket(&request));
        let handshake = ClientHandshake::begin(&mut request);
        assert_eq!(request.method(), Method::CONNECT);
        assert_eq!(
            request.extensions().get::<Protocol>().map(Protocol::as_str),
            Some("websocket")
        );
        assert!(request.headers().get(SEC_WEBSOCKET_KEY).is_none());
        assert_eq!(request.headers()[SEC_WEBSOCKET_VERSION], "13");

        let (mut parts, ()) = http::Response::new(()).into_parts();
        handshake.answer(&mut parts);
        assert_eq!(parts.status, StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            parts.headers[SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(parts.headers[UPGRADE], "websocket");
    }
}
