//! A raw HTTP/1.1 backend on 127.0.0.1 that records each request head it receives (requests
//! without a body) and answers as its test says, and a gateway with one service in front of it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower_monitor::config::TriggerRegistry;

use super::{InProcessGateway, read_head, start_gateway};

/// The request heads a [`recording_backend`] received, in order.
pub type Heads = Arc<Mutex<Vec<String>>>;

/// What a [`recording_backend`] does with a request head.
pub enum RawAnswer {
    /// Writes these bytes, then reads the next request on the connection.
    Answer(Vec<u8>),
    /// Writes these bytes (a `101`), then answers every read with `each` until the client
    /// closes: a tunnel.
    Tunnel(Vec<u8>, &'static [u8]),
}

impl From<&[u8]> for RawAnswer {
    fn from(bytes: &[u8]) -> Self {
        RawAnswer::Answer(bytes.to_vec())
    }
}

impl From<String> for RawAnswer {
    fn from(text: String) -> Self {
        RawAnswer::Answer(text.into_bytes())
    }
}

/// A backend that records each request head and gives `reply`'s answer to it.
pub async fn recording_backend(
    reply: impl Fn(&str) -> RawAnswer + Send + Sync + 'static,
) -> (SocketAddr, Heads) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Heads::default();
    let recorded = heads.clone();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (recorded, reply) = (recorded.clone(), reply.clone());
            tokio::spawn(async move {
                let mut pending = Vec::new();
                while let Some(head) = read_head(&mut stream, &mut pending).await {
                    recorded.lock().unwrap().push(head.clone());
                    match reply(&head) {
                        RawAnswer::Answer(bytes) => {
                            if stream.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        RawAnswer::Tunnel(switch, each) => {
                            let _ = stream.write_all(&switch).await;
                            let mut buffer = [0u8; 1024];
                            while let Ok(1..) = stream.read(&mut buffer).await {
                                let _ = stream.write_all(each).await;
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, heads)
}

/// A gateway in this process with one service, "app", at `url`, routed for every host, with
/// the per-service gateway `settings` (a JSON object, `{}` for none).
pub async fn gateway_to_app(url: &str, settings: &str) -> InProcessGateway {
    let config = format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "services": {{ "app": {settings} }} }},
             "services": {{ "app": {{ "url": "{url}", "grace_period": "30s" }} }} }}"#
    );
    start_gateway(&config, &TriggerRegistry::new()).await
}
