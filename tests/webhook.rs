//! The webhook trigger against hostile answers and URLs: a huge body is not read, credentials in
//! the URL never show. Real hyper servers on 127.0.0.1.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::StreamBody;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_monitor::trigger::{MAX_WEBHOOK_ANSWER_BYTES, Webhook, WebhookError};
use tower_monitor::{Trigger, Url};

/// Far more than the webhook may read, far less than would hurt the machine if it did.
const HUGE: u64 = 256 << 20;
const CHUNK: usize = 64 << 10;

/// A server whose `/huge` answers 200 with a `HUGE` body, counting the bytes it hands to the
/// connection; `/fail` answers 503. Each connection's end is reported on the channel.
async fn server(sent: Arc<AtomicU64>) -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, ends) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (sent, ended) = (sent.clone(), ended.clone());
            tokio::spawn(async move {
                let answer = service_fn(move |request: Request<Incoming>| {
                    let sent = sent.clone();
                    async move { Ok::<_, Infallible>(answer(request.uri().path(), sent)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), answer)
                    .await;
                let _ = ended.send(());
            });
        }
    });
    (addr, ends)
}

fn answer(path: &str, sent: Arc<AtomicU64>) -> Response<BoxBody<Bytes, Infallible>> {
    if path != "/huge" {
        let mut response = Response::new(BoxBody::default());
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return response;
    }
    let chunks = futures::stream::iter(0..HUGE / CHUNK as u64).map(move |_| {
        // Counted as hyper takes it: it takes the next chunk only once it could write the last.
        sent.fetch_add(CHUNK as u64, Ordering::SeqCst);
        Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; CHUNK])))
    });
    Response::new(BoxBody::new(StreamBody::new(chunks)))
}

fn hook(url: &str) -> Webhook {
    Webhook::new(Method::POST, Url::parse(url).unwrap())
        .unwrap()
        .timeout(Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_not_read_to_its_end() {
    let sent = Arc::new(AtomicU64::new(0));
    let (addr, mut ends) = server(sent.clone()).await;
    hook(&format!("http://{addr}/huge"))
        .trigger()
        .await
        .expect("a 200 succeeds, whatever its body");
    // The webhook closes the connection instead of reading on: once the server sees it end,
    // the count is final.
    tokio::time::timeout(Duration::from_secs(20), ends.recv())
        .await
        .expect("the webhook closed the connection")
        .unwrap();
    let sent = sent.load(Ordering::SeqCst);
    // What was read is at most the bound; what was sent beyond it sits in socket buffers
    // (a few MiB on loopback), not in the trigger.
    assert!(
        sent < 32 << 20,
        "the server could send {sent} bytes of {HUGE}; the webhook reads at most {MAX_WEBHOOK_ANSWER_BYTES}"
    );
}

fn assert_hidden(text: &str) {
    for secret in ["s3cret", "alice", "t0ken"] {
        assert!(!text.contains(secret), "{secret:?} shown in: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_never_show() {
    let (addr, _ends) = server(Arc::new(AtomicU64::new(0))).await;
    let answered = hook(&format!("http://alice:s3cret@{addr}/fail"));
    let debug = format!("{answered:?}");
    assert_hidden(&debug);
    assert!(
        debug.contains(&format!("http://***@{addr}/fail")),
        "{debug}"
    );

    let err = answered.trigger().await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<WebhookError>(),
        Some(WebhookError::Status { status, .. }) if *status == StatusCode::SERVICE_UNAVAILABLE
    ));
    assert_hidden(&common::all_text(&err));
    assert!(err.to_string().contains("***@"), "{err}");

    let refused = refused_addr().await;
    let err = hook(&format!("http://:s3cret@{refused}/"))
        .trigger()
        .await
        .unwrap_err();
    assert!(matches!(
        err.downcast_ref::<WebhookError>(),
        Some(WebhookError::Request { .. })
    ));
    assert_hidden(&common::all_text(&err));

    let (silent, _fillers) = blackhole().await;
    let err = hook(&format!("http://t0ken@{}/", silent.local_addr().unwrap()))
        .timeout(Duration::from_millis(300))
        .trigger()
        .await
        .unwrap_err();
    assert!(matches!(
        err.downcast_ref::<WebhookError>(),
        Some(WebhookError::Timeout { .. })
    ));
    assert_hidden(&common::all_text(&err));

    let err = Webhook::new(
        Method::POST,
        Url::parse("ftp://alice:s3cret@127.0.0.1:1/").unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, WebhookError::InvalidUrl { .. }));
    assert_hidden(&format!("{err} {err:?}"));
}
