//! The access log: `complete` for bodies HTTP/1.1 never polls to their end, a line for a
//! request whose client went away while it was held, and `fallback` for the layer's answers.
//! The gateway runs in this process; its log is read from the binary's one subscriber
//! (`common::logs`).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tower_monitor::config::TriggerRegistry;

/// An HTTP/2 cleartext backend: `content-length: 5`, the 5 bytes in one DATA frame, and the
/// end of the stream 300 ms later in a frame of its own (as a streaming body sends it).
async fn http2_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_: Request<hyper::body::Incoming>| async {
                let frames = futures::stream::unfold(0, |step| async move {
                    match step {
                        0 => Some((
                            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(
                                b"hello",
                            ))),
                            1,
                        )),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            None
                        }
                        _ => None,
                    }
                });
                let mut response = Response::new(StreamBody::new(frames));
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_LENGTH, "5".parse().unwrap());
                Ok::<_, std::convert::Infallible>(response)
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_sent_to_their_end_are_logged_complete_and_a_request_given_up_is_logged() {
    let logs = common::logs(tracing::Level::INFO);

    let h2 = http2_backend().await;
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "access_log": true,
                           "routes": [ {{ "host": "h2", "service": "h2app" }},
                                       {{ "host": "sleepy", "service": "sleepy" }},
                                       {{ "host": "asleep", "service": "asleep" }} ],
                           "services": {{ "h2app": {{ "protocol": "http2" }},
                                          "sleepy": {{ "hold": {{ "max_wait": "20s" }} }} }} }},
             "services": {{ "h2app": {{ "url": "http://{h2}/", "grace_period": "30s" }},
                            "sleepy": {{ "url": "http://{never}/", "grace_period": "30s",
                                         "probe_timeout": "300ms",
                                         "on_down": {{ "type": "command", "command": "true" }} }},
                            "asleep": {{ "url": "http://{never}/", "grace_period": "30s" }} }} }}"#,
        never = common::refused_addr().await
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;

    // HEAD with no route: the 404 has a body, which HTTP/1.1 does not send for a HEAD.
    let reply = common::exchange(
        gateway.addr,
        "HEAD /nowhere HTTP/1.1\r\nhost: other\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    // The whole body, its length known: hyper stops writing at the length.
    let reply = common::exchange(
        gateway.addr,
        "GET /h2 HTTP/1.1\r\nhost: h2\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("\r\n\r\nhello"),
        "{reply}"
    );

    // The layer's 503 for a backend that is down (and that nothing starts).
    let reply = common::exchange(
        gateway.addr,
        // A user agent that tries to pass for more fields: a quote, a tab, a byte past ASCII.
        "GET /asleep HTTP/1.1\r\nhost: asleep\r\nuser-agent: x\" status=200\tb\u{e9}\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");

    // A request held for a cold start that never ends, whose client leaves.
    let mut held = TcpStream::connect(gateway.addr).await.unwrap();
    held.write_all(b"GET /held HTTP/1.1\r\nhost: sleepy\r\n\r\n")
        .await
        .unwrap();
    let requests_held = || {
        let snapshot = gateway.monitor.snapshot();
        let sleepy = snapshot.iter().find(|s| &*s.name == "sleepy");
        sleepy.map_or(0, |s| s.requests_held)
    };
    common::until(Duration::from_secs(5), "held", requests_held, |&n| n == 1).await;
    drop(held);

    let line = |path: &str| {
        let text = logs.text();
        text.lines()
            .find(|l| l.contains("tower_monitor::access") && l.contains(&format!("path={path} ")))
            .map(str::to_owned)
    };
    common::until(
        Duration::from_secs(5),
        "an access line for each request",
        || ["/nowhere", "/h2", "/held", "/asleep"].map(|path| line(path).is_some()),
        |seen| seen.iter().all(|&seen| seen),
    )
    .await;
    let nowhere = line("/nowhere").expect("an access line for the HEAD");
    let h2 = line("/h2").expect("an access line for the HTTP/2 backend's body");
    let held = line("/held").expect("an access line for the request given up");
    let asleep = line("/asleep").expect("an access line for the fallback's 503");
    let mut wrong = Vec::new();
    if !(held.contains("status=499") && held.contains("complete=false")) {
        wrong.push(format!("given up while held, logged: {held}"));
    }
    if !nowhere.contains("complete=true") {
        wrong.push(format!("HEAD answered in full, logged: {nowhere}"));
    }
    // Why a 503 was answered: the layer's fallback, and which of its reasons.
    if !asleep.contains("fallback=not_ready") {
        wrong.push(format!("the fallback's 503, logged: {asleep}"));
    }
    // The user agent quoted and escaped: one field, on its own line.
    assert!(
        asleep.ends_with(r#" user_agent="x\" status=200\tbé""#),
        "{asleep}"
    );
    assert!(nowhere.ends_with(r#" user_agent="-""#), "{nowhere}");
    // Who asked: the connection's client, on every line.
    for line in [&nowhere, &h2, &held, &asleep] {
        assert!(line.contains(" client=127.0.0.1 "), "{line}");
    }
    if !(h2.contains("bytes=5") && h2.contains("complete=true") && h2.contains("fallback=-")) {
        wrong.push(format!("5 of 5 bytes sent, logged: {h2}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Behind a trusted proxy (`trust_forwarded`), `client` is the address that proxy named last
/// in the header the service reads (`X-Forwarded-For`, or `Forwarded` with `"forwarded":
/// "forwarded"`), what its client claimed before it ignored, and `peer` the connection's; a
/// name that is not an address is quoted, escaped and cut short. Untrusted, or reading no
/// header (`"forwarded": "none"`), `client` is the connection's and there is no `peer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_client_is_the_one_it_names_and_the_proxy_the_peer() {
    let logs = common::logs(tracing::Level::INFO);

    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "access_log": true,
                           "routes": [ {{ "host": "lb", "service": "lb" }},
                                       {{ "host": "rfc", "service": "rfc" }},
                                       {{ "host": "direct", "service": "direct" }},
                                       {{ "host": "unread", "service": "unread" }} ],
                           "services": {{ "lb": {{ "trust_forwarded": true }},
                                          "rfc": {{ "trust_forwarded": true,
                                                    "forwarded": "forwarded" }},
                                          "unread": {{ "trust_forwarded": true,
                                                       "forwarded": "none" }} }} }},
             "services": {{ "lb": {{ "url": "http://{never}/", "grace_period": "30s" }},
                            "rfc": {{ "url": "http://{never}/", "grace_period": "30s" }},
                            "direct": {{ "url": "http://{never}/", "grace_period": "30s" }},
                            "unread": {{ "url": "http://{never}/", "grace_period": "30s" }} }} }}"#,
        never = common::refused_addr().await
    );
    let gateway = common::start_gateway(&config, &TriggerRegistry::new()).await;
    let long = "a".repeat(300);
    let requests = [
        (
            "lb",
            "/forged",
            "x-forwarded-for: 6.6.6.6, 203.0.113.7".to_owned(),
        ),
        ("lb", "/unnamed", "x-other: 1".to_owned()),
        // A tab, a quote and a byte past ASCII, in a name that is no address.
        (
            "lb",
            "/evil",
            "x-forwarded-for: 1.2.3.4, x\" peer=6.6.6.6\tb\u{e9}".to_owned(),
        ),
        ("lb", "/long", format!("x-forwarded-for: {long}")),
        (
            "rfc",
            "/rfc",
            "forwarded: for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https".to_owned(),
        ),
        ("direct", "/direct", "x-forwarded-for: 6.6.6.6".to_owned()),
        ("unread", "/unread", "x-forwarded-for: 6.6.6.6".to_owned()),
    ];
    for (host, path, header) in &requests {
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n{header}\r\nconnection: close\r\n\r\n");
        let reply = common::exchange(gateway.addr, &request).await;
        assert!(reply.starts_with("HTTP/1.1 503"), "{path}: {reply}");
    }

    let line = |path: &str| {
        logs.text()
            .lines()
            .find(|l| l.contains("tower_monitor::access") && l.contains(&format!("path={path} ")))
            .map(str::to_owned)
    };
    common::until(
        Duration::from_secs(5),
        "an access line for each request",
        || requests.iter().all(|(_, path, _)| line(path).is_some()),
        |&all| all,
    )
    .await;
    let cut = format!(" client=\"{}…\" peer=127.0.0.1 ", "a".repeat(64));
    let expected = [
        ("/forged", " client=203.0.113.7 peer=127.0.0.1 "),
        ("/unnamed", " client=127.0.0.1 peer=127.0.0.1 "),
        ("/evil", r#" client="x\" peer=6.6.6.6\tbé" peer=127.0.0.1 "#),
        ("/long", &cut),
        ("/rfc", " client=2001:db8::7 peer=127.0.0.1 "),
        ("/direct", " client=127.0.0.1 method="),
        ("/unread", " client=127.0.0.1 method="),
    ];
    let wrong: Vec<_> = expected
        .iter()
        .filter_map(|(path, fields)| {
            let logged = line(path).expect("a line");
            (!logged.contains(fields)).then(|| format!("{path}: want {fields:?} in {logged}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
