//! Waiting on what a fleet leaves in Redis.

use std::time::Duration;

use super::RedisServer;

impl RedisServer {
    /// Waits (bounded by `within`, looking every 20 ms: Redis tells no one) until `key` is
    /// gone; panics with `what` if it is still there then.
    pub async fn until_gone(&self, key: &str, within: Duration, what: &str) {
        let until = tokio::time::Instant::now() + within;
        while self.command(&["EXISTS", key]).await.as_deref() != Some(":0\r\n") {
            assert!(tokio::time::Instant::now() < until, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
