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

impl RedisServer {
    /// Whether the fleet `prefix` lists `replica` in "app"'s activity (`P:svc:app:active`)
    /// and in its idle times (`P:svc:app:idle`), in that order.
    pub async fn lists(&self, prefix: &str, replica: &str) -> (bool, bool) {
        let idle = format!("{prefix}:svc:app:idle");
        let known = self.command(&["HEXISTS", &idle, replica]).await;
        (
            self.activity(prefix, replica).await.is_some(),
            known.as_deref() == Some(":1\r\n"),
        )
    }

    /// `replica`'s latest activity on "app" as the fleet `prefix` lists it (Redis ms).
    pub async fn activity(&self, prefix: &str, replica: &str) -> Option<u64> {
        let active = format!("{prefix}:svc:app:active");
        let reply = self.command(&["ZSCORE", &active, replica]).await?;
        reply
            .lines()
            .nth(1)?
            .parse::<f64>()
            .ok()
            .map(|ms| ms as u64)
    }

    /// Redis's clock (`TIME`), in ms.
    pub async fn now_ms(&self) -> u64 {
        let reply = self.command(&["TIME"]).await.expect("TIME");
        let parts: Vec<u64> = reply
            .lines()
            .filter(|line| !line.starts_with(['*', '$']))
            .map(|part| part.parse().expect("a number"))
            .collect();
        parts[0] * 1000 + parts[1] / 1000
    }
}
