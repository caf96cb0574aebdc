//! The built-in answers: the waiting page, `Retry-After`, a local shortage's 503.

use super::*;

#[test]
fn the_waiting_page_escapes_the_service_name() {
    let (parts, ()) = http::Request::new(()).into_parts();
    let response = Fallback::default().respond_in(
        &parts,
        FallbackReason::NotReady,
        "<b>\"a&b\"</b>",
        Situation::UNKNOWN,
    );
    let body =
        futures::FutureExt::now_or_never(http_body_util::BodyExt::collect(response.into_body()))
            .expect("a full body is ready at once")
            .expect("infallible")
            .to_bytes();
    let page = String::from_utf8_lossy(&body);
    assert!(
        page.contains("&lt;b&gt;&quot;a&amp;b&quot;&lt;/b&gt; is starting"),
        "{page}"
    );
    assert!(page.contains(r#"content="5""#));
}

#[test]
fn retry_after_is_rounded_up_to_whole_seconds() {
    let (parts, ()) = http::Request::new(()).into_parts();
    let response = default_response(
        &parts,
        FallbackReason::NotReady,
        Duration::from_millis(1500),
    );
    assert_eq!(response.headers()[RETRY_AFTER], "2");
    let response = default_response(&parts, FallbackReason::Error, Duration::from_secs(1));
    assert!(response.headers().get(RETRY_AFTER).is_none());
}

/// The proxy's answer for the same cause: a 503 to retry in a second, whatever the layer's
/// `retry_after` (a start's).
#[test]
fn a_local_shortage_is_a_503_to_retry_in_a_second() {
    let reason = FallbackReason::LocalResources;
    let (parts, ()) = http::Request::new(()).into_parts();
    let response = default_response(&parts, reason, Duration::from_secs(30));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    let json = http::Request::get("/").header("accept", "application/json");
    let (parts, ()) = json.body(()).unwrap().into_parts();
    let response = default_response(&parts, reason, Duration::from_secs(30));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    assert_eq!(reason.as_str(), "local_resources");
}

/// An `EventSource` (a `GET` that asks for an event stream) is told when to come back in a 200
/// event stream, as it gives up for good on any other status; any other method asking for one
/// (a fetch-based stream's `POST`, an MCP client's) gets the 503, which a 200 would hide: its
/// client would take its request for taken.
#[test]
fn only_a_get_asking_for_an_event_stream_gets_the_200_retry() {
    let accept = "application/json, text/event-stream";
    for (method, status) in [
        (Method::GET, StatusCode::OK),
        (Method::POST, StatusCode::SERVICE_UNAVAILABLE),
        (Method::HEAD, StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let request = http::Request::builder().method(method.clone());
        let (parts, ()) = request
            .header("accept", accept)
            .body(())
            .unwrap()
            .into_parts();
        let response = default_response(&parts, FallbackReason::NotReady, Duration::from_secs(3));
        assert_eq!(response.status(), status, "{method}");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store", "{method}");
        let events = response.headers()[CONTENT_TYPE] == "text/event-stream";
        assert_eq!(events, method == Method::GET, "{method}");
    }
}
