//! [`Store`]: the fleet's Redis, every call bounded by a timeout, with one warning per outage.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script, ScriptInvocation};
use tokio::time::Instant;

use super::scripts;
use crate::deadline::PRACTICALLY_FOREVER;

/// How long Redis must answer without a failure for an outage to count as over (nanoseconds).
const OUTAGE_OVER_AFTER: u64 = 1_000_000_000;

/// One replica's connection to the fleet's Redis.
///
/// Every call gives up after `timeout`; a failure marks Redis unreachable until a call
/// succeeds again. Each outage is logged once at warn, and its end once at info when Redis has
/// answered for a second without a failure. While unreachable, the request
/// paths do not try Redis at all (see [`is_up`](Self::is_up)): only the heartbeat does, so a
/// Redis outage costs a request nothing.
pub(crate) struct Store {
    pub(crate) client: redis::Client,
    connection: ConnectionManager,
    pub(crate) timeout: Duration,
    up: AtomicBool,
    down_since: std::sync::Mutex<Option<Instant>>,
    /// When the last call that succeeded started (nanoseconds after `origin`): a call that
    /// started before it and fails late (its timeout ran out during the outage) is old news,
    /// not a new outage.
    last_ok: AtomicU64,
    /// When a call last failed (nanoseconds after `origin`).
    last_failure: AtomicU64,
    origin: Instant,
    pub(crate) prefix: String,
    pub(crate) replica: String,
    acquire: Script,
    renew: Script,
    release: Script,
    abandon: Script,
    touch: Script,
    alive: Script,
}

impl Store {
    /// Needs a Tokio runtime: the connection manager runs a task. Connects lazily.
    pub(crate) fn new(
        client: redis::Client,
        timeout: Duration,
        prefix: String,
        replica: String,
    ) -> redis::RedisResult<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(timeout);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            connection,
            timeout,
            up: AtomicBool::new(true),
            down_since: std::sync::Mutex::new(None),
            last_ok: AtomicU64::new(0),
            last_failure: AtomicU64::new(0),
            origin: Instant::now(),
            prefix,
            replica,
            acquire: Script::new(scripts::ACQUIRE),
            renew: Script::new(scripts::RENEW),
            release: Script::new(scripts::RELEASE),
            abandon: Script::new(scripts::ABANDON),
            touch: Script::new(scripts::TOUCH),
            alive: Script::new(scripts::ALIVE),
        })
    }

    /// Whether the last call succeeded. The request paths skip Redis while it is not.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The channel every replica of the fleet listens on.
    pub(crate) fn channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    pub(crate) fn key(&self, service: &str, what: &str) -> String {
        format!("{}:svc:{service}:{what}", self.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// Runs one script call, bounded; `None` if Redis failed or was too slow.
    async fn call<T: FromRedisValue>(&self, what: &str, call: ScriptInvocation<'_>) -> Option<T> {
        let started = self.clock();
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, call.invoke_async(&mut connection)).await {
            Ok(Ok(value)) => {
                self.reached(started);
                Some(value)
            }
            Ok(Err(error)) => {
                self.failed(started, what, &error.to_string());
                None
            }
            Err(_) => {
                self.failed(
                    started,
                    what,
                    &format!("no answer within {:?}", self.timeout),
                );
                None
            }
        }
    }

    fn clock(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn reached(&self, started: u64) {
        self.last_ok.fetch_max(started, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
        // The outage is over (and said so, once) when Redis has answered for a while with no
        // failure: a connection that breaks again right after coming back is the same outage.
        let quiet = self
            .clock()
            .saturating_sub(self.last_failure.load(Ordering::SeqCst));
        if quiet < OUTAGE_OVER_AFTER {
            return;
        }
        let since = self
            .down_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(since) = since {
            let lasted = since.elapsed();
            tracing::info!(replica = %self.replica, prefix = %self.prefix, ?lasted, "fleet: Redis is reachable again; sharing the lifecycle again");
        }
    }

    fn failed(&self, started: u64, what: &str, error: &str) {
        if started < self.last_ok.load(Ordering::SeqCst) {
            tracing::debug!(replica = %self.replica, %error, call = what, "fleet: a call from before Redis answered again failed");
            return;
        }
        self.up.store(false, Ordering::SeqCst);
        self.last_failure.fetch_max(self.clock(), Ordering::SeqCst);
        let mut down_since = self
            .down_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if down_since.is_none() {
            *down_since = Some(Instant::now());
            tracing::warn!(replica = %self.replica, prefix = %self.prefix, %error, call = what, "fleet: Redis is unreachable; serving on local state, and no idle stop until it is back");
        } else {
            tracing::debug!(replica = %self.replica, %error, call = what, "fleet: Redis still unreachable");
        }
    }

    /// Tries to take `service`'s lease, passing over the stopped mark `past` if given; see
    /// [`scripts::ACQUIRE`] for the answer.
    pub(crate) async fn acquire(
        &self,
        service: &str,
        kind: &str,
        ttl: Duration,
        (idle, settle): (Duration, Duration),
        past: Option<&str>,
    ) -> Option<(i64, String, i64)> {
        let mut call = self.acquire.prepare_invoke();
        call.key(self.key(service, "lease"))
            .key(self.key(service, "fence"))
            .key(self.key(service, "active"))
            .key(self.epoch_key())
            .key(self.key(service, "stopped"))
            .key(self.key(service, "idle"))
            .arg(&self.replica)
            .arg(kind)
            .arg(expiry(ttl))
            .arg(capped(idle))
            .arg(capped(settle))
            .arg(self.channel())
            .arg(service)
            .arg(past.unwrap_or(""));
        self.call("acquire", call).await
    }

    /// Extends a held lease: `Some(true)` extended, `Some(false)` lost.
    pub(crate) async fn renew(
        &self,
        service: &str,
        value: &str,
        token: i64,
        ttl: Duration,
    ) -> Option<bool> {
        let mut call = self.renew.prepare_invoke();
        call.key(self.key(service, "lease"))
            .key(self.key(service, "fence"))
            .arg(value)
            .arg(token)
            .arg(expiry(ttl));
        self.call::<i64>("renew", call).await.map(|done| done == 1)
    }

    /// Frees a held lease and announces `message`, leaving the stopped mark for `stopped` if
    /// given (see [`scripts::RELEASE`]): `Some(false)` if it was not ours any more.
    pub(crate) async fn release(
        &self,
        service: &str,
        value: &str,
        token: i64,
        message: &str,
        stopped: Option<Duration>,
    ) -> Option<bool> {
        let mut call = self.release.prepare_invoke();
        call.key(self.key(service, "lease"))
            .key(self.key(service, "fence"))
            .key(self.key(service, "stopped"))
            .arg(value)
            .arg(token)
            .arg(self.channel())
            .arg(message)
            .arg(stopped.map_or(0, expiry));
        self.call::<i64>("release", call)
            .await
            .map(|done| done == 1)
    }

    /// Frees this replica's `kind` lease taken after its acquire gave up, announcing `message`
    /// (see [`scripts::ABANDON`]): `Some(true)` if there was one.
    pub(crate) async fn abandon(&self, service: &str, kind: &str, message: &str) -> Option<bool> {
        let mut call = self.abandon.prepare_invoke();
        call.key(self.key(service, "lease"))
            .arg(kind)
            .arg(&self.replica)
            .arg(self.channel())
            .arg(message);
        self.call::<i64>("abandon", call)
            .await
            .map(|done| done == 1)
    }

    /// Records that this replica, whose idle time on `service` is `idle`, was last active on
    /// it `offset` ms from now (Redis time; 0 or negative). `None` if Redis did not answer;
    /// else another replica whose idle time differs, with its idle time in ms, if there is one.
    pub(crate) async fn touch(
        &self,
        service: &str,
        offset: i64,
        (idle, keep): (Duration, Duration),
    ) -> Option<Option<(String, u64)>> {
        let mut call = self.touch.prepare_invoke();
        call.key(self.key(service, "active"))
            .key(self.key(service, "idle"))
            .arg(&self.replica)
            .arg(offset)
            .arg(expiry(keep))
            .arg(capped(idle));
        let other: Vec<String> = self.call("touch", call).await?;
        Some(match other.as_slice() {
            [replica, idle] => idle.parse().ok().map(|idle| (replica.clone(), idle)),
            _ => None,
        })
    }

    /// The heartbeat: the fleet's epoch in this Redis (new after a restart).
    pub(crate) async fn alive(&self) -> Option<i64> {
        let mut call = self.alive.prepare_invoke();
        call.key(self.epoch_key());
        self.call("alive", call).await
    }

    /// Announces a message to the other replicas (not fenced: for shared status only).
    pub(crate) async fn publish(&self, message: String) {
        let started = self.clock();
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("PUBLISH");
        command.arg(self.channel()).arg(message);
        let publish = command.exec_async(&mut connection);
        match tokio::time::timeout(self.timeout, publish).await {
            Ok(Ok(())) => self.reached(started),
            Ok(Err(error)) => self.failed(started, "publish", &error.to_string()),
            Err(_) => self.failed(started, "publish", "timed out"),
        }
    }
}

/// A duration for Redis, in ms, at most a century ([`PRACTICALLY_FOREVER`], as the monitor's
/// own timers take a longer one): Redis refuses an expiry past the end of its clock, which a
/// duration meaning "never" (`Duration::MAX`) would ask for; the call would fail, and the
/// replica take Redis for unreachable. A century is exact for any idle time up to it (the
/// activity must outlive one idle time), and well within what Redis and Lua's numbers hold.
fn capped(duration: Duration) -> u64 {
    millis(duration.min(PRACTICALLY_FOREVER))
}

/// An expiry for Redis ([`capped`]), at least 1 ms (Redis refuses 0).
fn expiry(duration: Duration) -> u64 {
    capped(duration).max(1)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
