//! Request smuggling through the gateway, client side: requests whose body's framing is in
//! doubt (`Content-Length` beside `Transfer-Encoding`, lengths that disagree or are no number,
//! codings besides `chunked`, malformed header lines and chunks) carrying a `GET /admin` in
//! their body, which must never reach the backend as a request of its own. Raw bytes to a
//! gateway served in the test's process, in front of a raw backend that records every request
//! as the bytes it read. (The backend's answers: `gateway_smuggling_answers.rs`.)
//!
//! nginx 1.22 in front of the same backend: it refuses (400) a request with both
//! `Content-Length` and `Transfer-Encoding`, two `Content-Length`s even when equal, and two
//! `Transfer-Encoding` lines, where the gateway forwards the first as chunks alone (ending the
//! connection) and answers the others 200 and 501; nginx accepts chunk lines ended by a bare
//! LF, which the gateway refuses. Neither lets the smuggled request through.

mod common;
mod smuggling_support;

use smuggling_support::*;

/// What the client hides in a body: a request of its own, should the backend take the body's
/// end before it.
const ADMIN: &str = "GET /admin HTTP/1.1\r\nhost: app\r\n\r\n";

/// The headers the gateway adds to every request (a client on 127.0.0.1, host `app`).
const FORWARDED: &str =
    "x-forwarded-for: 127.0.0.1\r\nx-forwarded-host: app\r\nx-forwarded-proto: http\r\n";

async fn gateway() -> (common::InProcessGateway, Received) {
    let (backend, received) = raw_backend(|_| MINE.into()).await;
    let gateway = common::gateway_to_app(&format!("http://{backend}/"), "{}").await;
    (gateway, received)
}

fn post(headers: &str, body: &str) -> String {
    format!("POST /p HTTP/1.1\r\nhost: app\r\n{headers}\r\n{body}")
}

/// A body framed both by a length and by chunks (CL.TE, TE.CL) is read as its chunks (RFC
/// 9112 section 6.3), and reaches the backend as those chunks alone, without the length: the
/// backend cannot take the other framing. The client's connection then ends (RFC 9112: the
/// sender may have meant the length), so what followed is no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_framed_both_ways_reaches_the_backend_as_its_chunks_alone() {
    let (gateway, received) = gateway().await;
    let te_cl_body = format!("{:x}\r\n{ADMIN}\r\n0\r\n\r\n", ADMIN.len());
    for (request, body) in [
        (
            post(
                "content-length: 6\r\ntransfer-encoding: chunked\r\n",
                &format!("0\r\n\r\n{ADMIN}"),
            ),
            "0\r\n\r\n".to_owned(),
        ),
        (
            post(
                "transfer-encoding: chunked\r\ncontent-length: 4\r\n",
                &te_cl_body,
            ),
            te_cl_body.clone(),
        ),
    ] {
        received.lock().unwrap().clear();
        let reply = send(gateway.addr, &[request.as_bytes(), LAST].concat()).await;
        assert_eq!(
            statuses(&reply),
            ["HTTP/1.1 200 OK"],
            "{request:?}: {reply}"
        );
        assert!(reply.contains("\r\nconnection: close\r\n"), "{reply}");
        let received = received.lock().unwrap();
        let expected = format!(
            "POST /p HTTP/1.1\r\nhost: app\r\n{FORWARDED}transfer-encoding: chunked\r\n\r\n{body}"
        );
        let requests: Vec<&str> = received.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(requests, [expected.as_str()], "{request:?}");
    }
}

/// Lengths that disagree or are no plain number, codings that do not end with `chunked`,
/// `Transfer-Encoding` on HTTP/1.0, a folded line, a CR alone, a NUL, a space before the
/// colon: the head is refused (400) before anything reaches the backend. A chunk size that is
/// no hex number (`+5`, `0x5`) or overflows, a chunk without its CRLF, chunk lines ended by a
/// bare LF: the body breaks off at the bad chunk, the backend's connection is closed on an
/// unfinished body, and the client gets a 400. Either way the client's connection ends, and
/// the `GET /admin` after the bad bytes is never read as a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_or_chunk_in_doubt_is_refused_and_ends_the_connection() {
    let (gateway, received) = gateway().await;
    let chunked = "transfer-encoding: chunked\r\n";
    let cases = [
        post("content-length: 0\r\ncontent-length: 34\r\n", ADMIN),
        post("content-length: +34\r\n", ADMIN),
        post("content-length: -1\r\n", ADMIN),
        post("content-length: 34 ,34\r\n", ADMIN),
        post("transfer-encoding: chunked, identity\r\n", ADMIN),
        post("transfer-encoding: xchunked\r\n", ADMIN),
        post(
            "transfer-encoding: \r\n chunked\r\ncontent-length: 5\r\n",
            "0\r\n\r\n",
        ),
        post(
            "transfer-encoding : chunked\r\ncontent-length: 5\r\n",
            "0\r\n\r\n",
        ),
        post("x-a: 1\rtransfer-encoding: chunked\r\n", "0\r\n\r\n"),
        post("x-a: a\0b\r\n", ""),
        format!(
            "POST /p HTTP/1.0\r\nhost: app\r\nconnection: keep-alive\r\n{chunked}\r\n0\r\n\r\n"
        ),
        post(chunked, "+5\r\nhello\r\n0\r\n\r\n"),
        post(chunked, "0x5\r\nhello\r\n0\r\n\r\n"),
        post(chunked, "10000000000000005\r\nhello\r\n0\r\n\r\n"),
        post(chunked, "5\r\nhello0\r\n\r\n"),
        post(chunked, "5\nhello\n0\n\n"),
        post(chunked, "5;a\nb\r\nhello\r\n0\r\n\r\n"),
    ];
    for case in &cases {
        let reply = send(
            gateway.addr,
            &[case.as_bytes(), ADMIN.as_bytes(), LAST].concat(),
        )
        .await;
        assert_eq!(
            statuses(&reply),
            ["HTTP/1.1 400 Bad Request"],
            "{case:?}: {reply}"
        );
    }
    // The bodies that broke off were cut short at the backend: no request reached it whole.
    let reply = send(gateway.addr, LAST).await;
    assert_eq!(statuses(&reply), ["HTTP/1.1 200 OK"], "{reply}");
    assert_eq!(request_lines(&received), ["GET /last HTTP/1.1"]);
}

/// What the gateway takes but frames one way only reaches the backend in one plain framing:
/// a padded or repeated equal length as one `content-length`, `CHUNKED` as chunks, chunk
/// extensions and trailer fields (a `content-length` among them) dropped, bare-LF line ends as
/// CRLF. The client's next request is its own, as nginx reads it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framing_the_gateway_takes_reaches_the_backend_in_one_plain_form() {
    let (gateway, received) = gateway().await;
    let length =
        format!("POST /p HTTP/1.1\r\nhost: app\r\ncontent-length: 5\r\n{FORWARDED}\r\nhello");
    let chunks = format!(
        "POST /p HTTP/1.1\r\nhost: app\r\n{FORWARDED}transfer-encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n"
    );
    let chunked = "transfer-encoding: chunked\r\n";
    for (request, expected) in [
        (post("content-length:   5  \r\n", "hello"), &length),
        (
            post("content-length: 5\r\ncontent-length: 5\r\n", "hello"),
            &length,
        ),
        (
            "POST /p HTTP/1.1\nhost: app\ncontent-length: 5\n\nhello".to_owned(),
            &length,
        ),
        (
            post("transfer-encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            &chunks,
        ),
        (
            post(chunked, "5;a=b;c=\"d\"\r\nhello\r\n0;x\r\n\r\n"),
            &chunks,
        ),
        (
            post(
                chunked,
                "5\r\nhello\r\n0\r\nx-t: 1\r\ncontent-length: 99\r\n\r\n",
            ),
            &chunks,
        ),
    ] {
        received.lock().unwrap().clear();
        let reply = send(
            gateway.addr,
            &[request.as_bytes(), ADMIN.as_bytes(), LAST].concat(),
        )
        .await;
        assert_eq!(statuses(&reply).len(), 3, "{request:?}: {reply}");
        let received = received.lock().unwrap();
        let requests: Vec<&str> = received.iter().map(|(_, r)| r.as_str()).collect();
        let admin = format!("GET /admin HTTP/1.1\r\nhost: app\r\n{FORWARDED}\r\n");
        let last = format!("GET /last HTTP/1.1\r\nhost: app\r\n{FORWARDED}\r\n");
        assert_eq!(requests, [expected.as_str(), &admin, &last], "{request:?}");
    }
}

/// A coding the gateway does not forward (`identity, chunked`; `chunked` on two lines, chunks
/// within chunks) is answered 501 and never reaches the backend (nginx: 501 and 400). Its body
/// unread, hyper's server ends the connection, or reads on past the body's outer chunks (one
/// already read whole): what follows them is the client's next request, never the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coding_besides_chunked_is_answered_501_and_reaches_no_backend() {
    let (gateway, received) = gateway().await;
    for codings in [
        "transfer-encoding: identity, chunked\r\n",
        "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
    ] {
        received.lock().unwrap().clear();
        let request = post(
            codings,
            &format!("{:x}\r\n{ADMIN}\r\n0\r\n\r\n", ADMIN.len()),
        );
        let reply = send(gateway.addr, &[request.as_bytes(), LAST].concat()).await;
        let statuses = statuses(&reply);
        assert_eq!(statuses[0], "HTTP/1.1 501 Not Implemented", "{reply}");
        let next = ["HTTP/1.1 200 OK"];
        assert_eq!(statuses[1..], next[..statuses.len() - 1], "{reply}");
        let forwarded = request_lines(&received);
        assert_eq!(
            forwarded,
            ["GET /last HTTP/1.1"][..statuses.len() - 1],
            "{codings}"
        );
    }
}

/// The backend must read the host the request was routed by. Two `Host`s (nginx: 400), one
/// with userinfo (nginx passes it on), and a port without a host (`:80`, which RFC 9110
/// section 4.2.1 has a recipient reject; nginx: 400; it reached the backend as `host: :80`
/// and `x-forwarded-host: :80`) are answered 400 and never forwarded. An absolute-form target
/// names the host over a `Host` that differs (RFC 9112 section 3.2.2): the backend gets the
/// target's, the one the routes saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_reads_the_host_the_request_was_routed_by() {
    let (gateway, received) = gateway().await;
    for hosts in [
        "host: app\r\nhost: evil\r\n",
        "host: user@app\r\n",
        "host: :80\r\n",
    ] {
        let request = format!("GET /x HTTP/1.1\r\n{hosts}connection: close\r\n\r\n");
        let reply = send(gateway.addr, request.as_bytes()).await;
        assert_eq!(statuses(&reply), ["HTTP/1.1 400 Bad Request"], "{hosts:?}");
    }
    let request = "GET http://other/x HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n";
    let reply = send(gateway.addr, request.as_bytes()).await;
    assert_eq!(statuses(&reply), ["HTTP/1.1 200 OK"], "{reply}");
    let received = received.lock().unwrap();
    let requests: Vec<&str> = received.iter().map(|(_, r)| r.as_str()).collect();
    let expected = "GET /x HTTP/1.1\r\nhost: other\r\nx-forwarded-for: 127.0.0.1\r\n\
                    x-forwarded-host: other\r\nx-forwarded-proto: http\r\n\r\n";
    assert_eq!(requests, [expected]);
}

/// After its 400 for a host that is not one (a port alone, userinfo, two `Host`s) or for no
/// host at all, the gateway closes the client's connection, as nginx does, saying so with
/// `Connection: close`: a request the client sent after it on that connection is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_host_ends_the_connection_after_its_400() {
    let (gateway, received) = gateway().await;
    for hosts in [
        "host: :80\r\n",
        "host: user@app\r\n",
        "host: app\r\nhost: evil\r\n",
        "",
    ] {
        let request = format!("GET /x HTTP/1.1\r\n{hosts}\r\n");
        let reply = send(gateway.addr, &[request.as_bytes(), LAST].concat()).await;
        assert_eq!(statuses(&reply), ["HTTP/1.1 400 Bad Request"], "{hosts:?}");
        assert!(reply.contains("\r\nconnection: close\r\n"), "{reply}");
    }
    assert!(
        received.lock().unwrap().is_empty(),
        "a request was forwarded"
    );
}
