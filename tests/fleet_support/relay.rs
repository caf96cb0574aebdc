//! A relay between one replica and Redis that can make the replica hard of hearing: what Redis
//! sends on the replica's subscriber connection (the fleet's announcements) is held back until
//! the test lets it through, in order, as a slow or reconnecting listener would get it. The
//! replica's other calls pass as they are.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::RedisServer;

pub struct Relay {
    pub port: u16,
    deaf: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port, relaying every connection to `redis`.
    pub async fn start(redis: &RedisServer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (deaf, _) = watch::channel(false);
        let hearing = deaf.clone();
        let server = redis.port;
        let task = tokio::spawn(async move {
            // Dropped with the accept loop: aborting it ends every relayed connection too.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", server)).await else {
                    continue;
                };
                connections.spawn(relay(client, upstream, hearing.subscribe()));
            }
        });
        Self { port, deaf, task }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// From now on, announcements wait in the relay.
    pub fn deafen(&self) {
        self.deaf.send_replace(true);
    }

    /// Lets the announcements held back (and all later ones) through.
    pub fn hear(&self) {
        self.deaf.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways; once the client has subscribed, what the server sends it is held while
/// `deaf` says so.
async fn relay(client: TcpStream, upstream: TcpStream, mut deaf: watch::Receiver<bool>) {
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = upstream.into_split();
    let (subscribed, mut listening) = watch::channel(false);
    let requests = async move {
        let mut buffer = [0_u8; 16 * 1024];
        loop {
            let n = client_in.read(&mut buffer).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            let chunk = &buffer[..n];
            if chunk
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
            {
                subscribed.send_replace(true);
            }
            if server_out.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let replies = async move {
        let mut buffer = [0_u8; 16 * 1024];
        loop {
            let n = server_in.read(&mut buffer).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            // Looked at after the read: a message that arrives once deafened is held.
            if *listening.borrow_and_update() && deaf.wait_for(|deaf| !deaf).await.is_err() {
                return;
            }
            if client_out.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = requests => {}
        () = replies => {}
    }
}
