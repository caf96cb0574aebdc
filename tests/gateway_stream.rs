//! 100 MB up and 100 MB down through the gateway program, byte-exact, while the gateway's
//! memory stays far below the size of what passed through it: bodies are streamed, not
//! buffered.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use tokio::process::Command;

const TOTAL: usize = 100 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// Far below `TOTAL`: a gateway that buffered a body could not stay under it.
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// The byte at `offset` of the test data: a pattern that a lost, repeated or reordered chunk
/// breaks.
fn byte_at(offset: usize) -> u8 {
    (offset % 251) as u8
}

fn chunk_at(start: usize) -> Bytes {
    let end = (start + CHUNK).min(TOTAL);
    (start..end).map(byte_at).collect::<Vec<u8>>().into()
}

/// Checks a stream of chunks against the pattern; returns how many bytes it had.
struct Checker {
    offset: usize,
}

impl Checker {
    fn check(&mut self, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            assert_eq!(b, byte_at(self.offset + i), "byte {}", self.offset + i);
        }
        self.offset += data.len();
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_and_download_pass_byte_exact_with_the_gateway_memory_bounded() {
    let backend = common::serve(
        Router::new()
            .route(
                "/download",
                get(|| async {
                    let chunks = futures::stream::iter((0..TOTAL).step_by(CHUNK))
                        .map(|start| Ok::<_, std::io::Error>(chunk_at(start)));
                    Body::from_stream(chunks)
                }),
            )
            .route(
                "/upload",
                post(|body: Body| async move {
                    let mut checker = Checker { offset: 0 };
                    let mut stream = body.into_data_stream();
                    while let Some(chunk) = stream.next().await {
                        checker.check(&chunk.unwrap());
                    }
                    checker.offset.to_string()
                }),
            ),
    )
    .await;
    let config = common::TempFile::new(
        "stream",
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
                 "services": {{ "app": {{ "url": "http://{}/", "grace_period": "60s" }} }} }}"#,
            backend.addr
        ),
    );
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_tower-monitor-gateway"))
        .arg("--config")
        .arg(config.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = gateway.id().unwrap();
    let addr = common::listening_addr(&mut gateway).await;
    drop(config);

    tokio::time::timeout(Duration::from_secs(120), async {
        // Download.
        let client = Client::builder(TokioExecutor::new()).build_http::<String>();
        let response = client
            .get(format!("http://{addr}/download").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut checker = Checker { offset: 0 };
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                checker.check(&data);
            }
        }
        assert_eq!(checker.offset, TOTAL, "the whole download");

        // Upload.
        let chunks = futures::stream::iter((0..TOTAL).step_by(CHUNK))
            .map(|start| Ok::<_, std::io::Error>(Frame::data(chunk_at(start))));
        let client = Client::builder(TokioExecutor::new()).build_http();
        let request = http::Request::post(format!("http://{addr}/upload"))
            .body(StreamBody::new(chunks))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let said = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            said,
            TOTAL.to_string(),
            "the backend got every byte, in order"
        );
    })
    .await
    .expect("200 MB pass within two minutes");

    let peak = peak_rss_kib(pid);
    eprintln!("the gateway's peak RSS: {peak} KiB");
    assert!(
        peak < RSS_LIMIT_KIB,
        "the gateway's peak RSS was {peak} KiB for 100 MB bodies"
    );
    gateway.kill().await.unwrap();
}
