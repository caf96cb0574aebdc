//! What answer format a request asks for: gRPC by its content type, JSON, HTML or an event
//! stream by `Accept`.

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Response};

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

/// Whether the request is a `GET` whose `Accept` asks for an event stream above HTML and JSON,
/// as a browser's `EventSource` does (`Accept: text/event-stream`, and nothing else). Only a
/// `GET`: an `EventSource` sends nothing else, and a 200 to a `POST` (a fetch-based stream, an
/// MCP client's `application/json, text/event-stream`) would tell its client that the request
/// it sent was taken, a 200 to a `HEAD` that the service is up.
pub(crate) fn prefers_event_stream(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET {
        return false;
    }
    let (mut events, mut others) = (0.0f32, 0.0f32);
    for (media, q) in media_ranges(headers) {
        match media.as_str() {
            "text/event-stream" => events = events.max(q),
            "text/html"
            | "application/xhtml+xml"
            | "application/json"
            | "text/*"
            | "application/*"
            | "*/*" => others = others.max(q),
            other if other.starts_with("application/") && other.ends_with("+json") => {
                others = others.max(q);
            }
            _ => {}
        }
    }
    events > 0.0 && events >= others
}

/// Each media range of `Accept`, in lower case, with its quality.
fn media_ranges(headers: &HeaderMap) -> impl Iterator<Item = (String, f32)> + '_ {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|range| {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (media, q)
        })
}

/// The body of the answer to an event stream the backend cannot serve yet: a comment naming
/// `reason`, then the time, in milliseconds, after which the client is to connect again. A
/// browser's `EventSource` fails for good on any status but 200, and on any type but an event
/// stream; on this one, which ends at once, it waits that long and connects again.
pub(crate) fn event_stream_body(reason: &str, retry_secs: u64) -> String {
    format!(": {reason}\nretry: {}\n\n", retry_secs * 1000)
}

/// Whether `Accept` ranks JSON above HTML: by quality, then by how specific the range that
/// names it is, as a more specific range overrides a wildcard (RFC 9110, 12.5.1). So
/// `application/json, text/plain, */*` (axios and Angular send it) asks for JSON, though
/// `*/*` gives HTML the same quality; a tie in both goes to HTML, the default. A JSON media
/// type with a suffix (`application/problem+json`) counts as JSON.
pub(super) fn prefers_json(headers: &HeaderMap) -> bool {
    let mut json = Preference::default();
    let mut html = Preference::default();
    for (media, q) in media_ranges(headers) {
        match media.as_str() {
            "application/json" => json.named(Specificity::Exact, q),
            "text/html" | "application/xhtml+xml" => html.named(Specificity::Exact, q),
            "application/*" => json.named(Specificity::Type, q),
            "text/*" => html.named(Specificity::Type, q),
            "*/*" => {
                json.named(Specificity::Any, q);
                html.named(Specificity::Any, q);
            }
            other if other.starts_with("application/") && other.ends_with("+json") => {
                json.named(Specificity::Exact, q);
            }
            _ => {}
        }
    }
    json.rank() > html.rank()
}

/// How closely a media range names a type: `*/*`, `application/*`, `application/json`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    Any,
    Type,
    Exact,
}

/// The quality a client gives a media type: that of the most specific range naming it (the
/// best of them if several are as specific).
#[derive(Default)]
struct Preference {
    best: Option<(Specificity, f32)>,
}

impl Preference {
    fn named(&mut self, specificity: Specificity, q: f32) {
        self.best = match self.best {
            Some((known, best)) if known > specificity => Some((known, best)),
            Some((known, best)) if known == specificity => Some((known, best.max(q))),
            _ => Some((specificity, q)),
        };
    }

    /// Quality first, then specificity; nothing named ranks last.
    fn rank(&self) -> (f32, Option<Specificity>) {
        match self.best {
            Some((specificity, q)) => (q, Some(specificity)),
            None => (0.0, None),
        }
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
    fn a_named_json_beats_html_given_only_by_a_wildcard() {
        // axios, Angular: JSON named, HTML only through `*/*` at the same quality.
        assert!(prefers_json(&accept("application/json, text/plain, */*")));
        assert!(prefers_json(&accept("application/problem+json")));
        assert!(prefers_json(&accept("application/vnd.api+json, */*")));
        // Named both, at the same quality: the default.
        assert!(!prefers_json(&accept("application/json, text/html")));
        // A more specific range overrides a wildcard, whatever their qualities.
        assert!(!prefers_json(&accept("application/json;q=0, */*")));
        assert!(!prefers_json(&accept(
            "*/*, text/*;q=0.5, application/json;q=0.4"
        )));
        assert!(!prefers_json(&accept("text/plain")));
    }

    #[test]
    fn an_event_stream_only_when_asked_for_above_html_and_json() {
        let events = |value| prefers_event_stream(&Method::GET, &accept(value));
        assert!(events("text/event-stream"));
        assert!(events("text/event-stream, */*;q=0.1"));
        assert!(!events("text/event-stream;q=0, */*"));
        assert!(!events("text/html, text/event-stream;q=0.5"));
        assert!(!events(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(!events("*/*"));
        assert!(!prefers_event_stream(&Method::GET, &HeaderMap::new()));
        // Never but a `GET`, which is all an `EventSource` sends.
        for method in [Method::POST, Method::HEAD, Method::PUT] {
            assert!(!prefers_event_stream(&method, &accept("text/event-stream")));
        }
        assert_eq!(
            event_stream_body("not_ready", 3),
            ": not_ready\nretry: 3000\n\n"
        );
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
