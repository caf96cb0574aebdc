use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt};
use regex::bytes::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use super::Probe;
use super::tcp::{connect, means_unreachable, target};
use crate::BoxError;

/// How much unmatched input an `expect` step reads before it gives up (down).
const MAX_UNMATCHED_BYTES: usize = 64 * 1024;

/// Up when a TCP dialogue goes as scripted: each step sends bytes or expects what the service
/// sends to match a regular expression (like blackbox_exporter's `query_response`).
///
/// An `expect` step reads until its pattern matches what has arrived since the previous match;
/// the service closing the connection first, or sending more than 64 KiB that never matches,
/// is down. The service's probe timeout bounds the whole dialogue, so silence is down too.
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::{MonitoredService, Url, probe::Expect};
///
/// let redis = Expect::new().send("PING\r\n").expect(r"^\+PONG\r\n").unwrap();
/// let url = Url::parse("redis://127.0.0.1:6379/").unwrap();
/// let service = MonitoredService::new(url, Duration::from_secs(5)).probe(redis);
/// # let _ = service;
/// ```
#[derive(Clone, Default)]
pub struct Expect {
    steps: Vec<Step>,
}

#[derive(Clone)]
enum Step {
    Send(Bytes),
    Expect(Regex),
}

impl Expect {
    /// An empty dialogue (up as soon as the connection opens, like [`Tcp`](super::Tcp)).
    ///
    /// ```
    /// let probe = tower_monitor::probe::Expect::new();
    /// # let _ = probe;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `bytes`.
    ///
    /// ```
    /// let probe = tower_monitor::probe::Expect::new().send("EHLO monitor\r\n");
    /// # let _ = probe;
    /// ```
    pub fn send(mut self, bytes: impl Into<Bytes>) -> Self {
        self.steps.push(Step::Send(bytes.into()));
        self
    }

    /// Waits for what the service sends to match `pattern` (a byte regex; `(?m)` for lines).
    ///
    /// ```
    /// let probe = tower_monitor::probe::Expect::new().expect(r"^220 ").unwrap();
    /// assert!(tower_monitor::probe::Expect::new().expect("(").is_err());
    /// # let _ = probe;
    /// ```
    pub fn expect(mut self, pattern: &str) -> Result<Self, regex::Error> {
        self.steps.push(Step::Expect(Regex::new(pattern)?));
        Ok(self)
    }

    async fn converse(self, url: Url) -> Result<bool, BoxError> {
        let (host, port) = target(&url)?;
        let Some(mut stream) = connect(host, port).await? else {
            return Ok(false);
        };
        let mut received = BytesMut::new();
        for (index, step) in self.steps.iter().enumerate() {
            match step {
                Step::Send(bytes) => {
                    if let Err(error) = stream.write_all(bytes).await {
                        return unreachable_or(error);
                    }
                }
                Step::Expect(pattern) => loop {
                    if let Some(found) = pattern.find(&received) {
                        received.advance(found.end());
                        break;
                    }
                    if received.len() > MAX_UNMATCHED_BYTES {
                        tracing::debug!(step = index, "probe: no match in what the service sent");
                        return Ok(false);
                    }
                    match stream.read_buf(&mut received).await {
                        Ok(0) => {
                            tracing::debug!(
                                step = index,
                                "probe: the service closed before the expected reply"
                            );
                            return Ok(false);
                        }
                        Ok(_) => {}
                        Err(error) => return unreachable_or(error),
                    }
                },
            }
        }
        Ok(true)
    }
}

fn unreachable_or(error: std::io::Error) -> Result<bool, BoxError> {
    if means_unreachable(&error) || error.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(false)
    } else {
        Err(error.into())
    }
}

impl Probe for Expect {
    fn probe(&self, url: &Url) -> BoxFuture<'static, Result<bool, BoxError>> {
        self.clone().converse(url.clone()).boxed()
    }

    fn validate_url(&self, url: &Url) -> Result<(), String> {
        target(url).map(|_| ())
    }
}

impl fmt::Debug for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for step in &self.steps {
            match step {
                Step::Send(bytes) => list.entry(&format_args!("send {bytes:?}")),
                Step::Expect(pattern) => list.entry(&format_args!("expect /{}/", pattern.as_str())),
            };
        }
        list.finish()
    }
}
