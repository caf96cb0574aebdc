//! What answer format a request asks for: gRPC by its content type, JSON or HTML by `Accept`.

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response};

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A trailers-only gRPC answer: HTTP 200 with the status in the headers, as gRPC answers an
/// error before any message. A gRPC client reads a text body as a malformed message ("protocol
/// error"), whatever the HTTP status.
pub(crate) fn grpc_status<B>(body: B, code: u16, message: &'static str) -> Response<B> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code));
    headers.insert("grpc-message", HeaderValue::from_static(message));
    response
}

/// Whether `Accept` ranks JSON strictly above HTML (ties go to HTML, the default).
pub(super) fn prefers_json(headers: &HeaderMap) -> bool {
    let mut json = Preference::default();
    let mut html = Preference::default();
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/json" => json.exact(q),
                "text/html" | "application/xhtml+xml" => html.exact(q),
                "application/*" => json.wildcard(q),
                "text/*" => html.wildcard(q),
                "*/*" => {
                    json.wildcard(q);
                    html.wildcard(q);
                }
                _ => {}
            }
        }
    }
    json.q() > html.q()
}

/// The quality a client gives a media type: its own entry if any, otherwise the best wildcard.
#[derive(Default)]
struct Preference {
    exact: Option<f32>,
    wildcard: Option<f32>,
}

impl Preference {
    fn exact(&mut self, q: f32) {
        self.exact = Some(self.exact.map_or(q, |e| e.max(q)));
    }
    fn wildcard(&mut self, q: f32) {
        self.wildcard = Some(self.wildcard.map_or(q, |w| w.max(q)));
    }
    fn q(&self) -> f32 {
        self.exact.or(self.wildcard).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn json_only_when_preferred_over_html() {
        assert!(prefers_json(&accept("application/json")));
        assert!(prefers_json(&accept("text/html;q=0.5, application/json")));
        assert!(!prefers_json(&accept("application/json;q=0.5, text/html")));
        assert!(!prefers_json(&accept("*/*")));
        assert!(!prefers_json(&HeaderMap::new()));
        // A browser's usual header.
        assert!(!prefers_json(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(prefers_json(&accept("application/*, text/html;q=0.1")));
    }

    #[test]
    fn grpc_is_recognised_with_any_suffix() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&headers));
    }
}
