//! The services a service needs up first ([`MonitoredService::depends_on`]): brought up before
//! its `on_down` runs, and kept from their idle stop while it is not down.
//!
//! [`MonitoredService::depends_on`]: crate::MonitoredService::depends_on

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{Either, try_join_all};
use tokio::time::Instant;

use super::call_off::Ticket;
use super::recheck::Recheck;
use super::{Asker, Registered};
use crate::Activity;
use crate::error::SharedError;
use crate::lifecycle::{ServiceState, Stamp};
use crate::sync::lock;

/// A service's dependencies, and the activity it holds on each while it is not down.
#[derive(Default)]
pub(super) struct Dependencies {
    of: Vec<Arc<Registered>>,
    /// One per dependency while the dependent is not down; empty while it is.
    held: Mutex<Vec<Activity>>,
    /// The last start whose dependencies were awaited, and for how long.
    waited: Mutex<Waited>,
    /// The longest a start may wait for them (see [`Registered::dependencies_bound`]): their
    /// settings are fixed once added, so it is worked out once, at add.
    bound: Duration,
}

/// A start's wait for its dependencies: not counted in its start timeout.
#[derive(Default)]
struct Waited {
    /// The Starting stay it belongs to.
    start: Option<Stamp>,
    /// When the wait began, while it lasts.
    since: Option<Instant>,
    /// How long it took, once over.
    took: Duration,
    /// In a fleet, for a start that another replica leads: the longest its wait for the
    /// dependencies may take there, which this replica cannot see.
    elsewhere: Duration,
}

/// A start's wait for its dependencies while it lives (see [`Dependencies::awaiting`]).
pub(super) struct Awaiting<'a>(&'a Mutex<Waited>);

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        let mut waited = lock(self.0);
        if let Some(since) = waited.since.take() {
            waited.took = waited.took.saturating_add(since.elapsed());
        }
    }
}

impl Dependencies {
    pub(super) fn new(of: Vec<Arc<Registered>>) -> Self {
        let bound = of
            .iter()
            .map(|dependency| {
                let service = &dependency.service;
                dependency
                    .dependencies_bound()
                    .saturating_add(service.trigger_timeout)
                    .saturating_add(service.start_timeout)
                    .saturating_add(service.stop_timeout.max(service.trigger_timeout))
            })
            .max()
            .unwrap_or_default();
        Self {
            of,
            bound,
            ..Self::default()
        }
    }

    /// The services this one depends on.
    pub(super) fn of(&self) -> &[Arc<Registered>] {
        &self.of
    }

    /// Counts the dependencies' wait for the start `start` (when known) until dropped.
    /// A start taken over from another replica keeps what was allowed for that replica's wait.
    pub(super) fn awaiting(&self, start: Option<Stamp>) -> Option<Awaiting<'_>> {
        let start = start?;
        let mut waited = lock(&self.waited);
        if waited.start != Some(start) {
            *waited = Waited {
                start: Some(start),
                ..Waited::default()
            };
        }
        waited.since = Some(Instant::now());
        drop(waited);
        Some(Awaiting(&self.waited))
    }

    /// The start `start` is led by another replica of a fleet, whose wait for its dependencies
    /// may last up to `bound`: not counted in this replica's start timeout either, or it would
    /// give up (its held requests answered, the backend counted down) while that start goes
    /// on as it should.
    #[cfg(feature = "fleet")]
    pub(super) fn led_elsewhere(&self, start: Stamp, bound: Duration) {
        if self.of.is_empty() {
            return;
        }
        let mut waited = lock(&self.waited);
        if waited.start != Some(start) {
            *waited = Waited {
                start: Some(start),
                ..Waited::default()
            };
        }
        waited.elsewhere = bound;
    }

    /// How much of the stay `stay`, `lasted` long so far, counts as the backend's own start:
    /// all of it but the wait for the dependencies; `None` while they are still awaited.
    pub(super) fn own_part(&self, stay: Stamp, lasted: Duration) -> Option<Duration> {
        if self.of.is_empty() {
            return Some(lasted);
        }
        let waited = lock(&self.waited);
        if waited.start != Some(stay) {
            return Some(lasted);
        }
        match waited.since {
            Some(_) => None,
            None => Some(
                lasted
                    .saturating_sub(waited.took)
                    .saturating_sub(waited.elsewhere),
            ),
        }
    }

    /// After a transition of the dependent: holds its dependencies awake unless it is `now`
    /// down. `now` is read under the lock, so the last of two racing transitions decides.
    pub(super) fn follow(&self, now: impl FnOnce() -> ServiceState) {
        if self.of.is_empty() {
            return;
        }
        let mut held = lock(&self.held);
        if now() == ServiceState::Down {
            held.clear();
        } else if held.is_empty() {
            held.extend(self.of.iter().map(|dependency| dependency.activity()));
        }
    }

    /// Brings every dependency up, all at once; fails with the first that does not come up.
    /// Nothing is asked of a dependency that is up.
    /// A dependency is started for the same `asker` as the dependent: an operator's start
    /// (never refused) starts them during a shutdown too.
    pub(super) fn come_up(
        &self,
        dependent: &Arc<str>,
        asker: Asker,
    ) -> Option<impl Future<Output = Result<(), SharedError>> + Send + 'static> {
        if self.of.is_empty() {
            return None;
        }
        let ups = self
            .of
            .iter()
            .map(|dependency| up(Arc::clone(dependency), Arc::clone(dependent), asker, None));
        let all = try_join_all(ups);
        Some(async move { all.await.map(drop) })
    }
}

/// What the wait for a start's dependencies decided.
pub(super) enum Awaited {
    /// All up: `on_down` runs.
    Up,
    /// The start ended meanwhile (a probe found the backend up, say): `on_down`, which is for
    /// this start only, does not run, and this is the start's result (what ended the start has
    /// said so already).
    StartEnded(Result<(), SharedError>),
    /// One did not come up: the start fails, and `on_down` does not run.
    Down(SharedError),
    /// An operator's stop called the start off (see `call_off`): `on_down` does not run.
    CalledOff,
}

impl Registered {
    /// What a start whose Starting stay ended while it waited (the backend found up, its
    /// timeout, a failed start) comes to: it runs no `on_down`, and succeeds if it is up.
    pub(super) fn start_ended(&self) -> Awaited {
        Awaited::StartEnded(match self.state() {
            ServiceState::Up => Ok(()),
            _ => Err(Arc::new(StartEnded)),
        })
    }

    /// Its requests in flight (see [`Registered::in_flight`]), but for the activities that
    /// those of `dependents` that are not down hold on it: no request of its own, and held
    /// until their own stop. A gateway's reload that retires a dependency and its dependents
    /// (changed with it) waits for this, not for a hold that only its stop of the dependent
    /// would end.
    #[cfg(feature = "gateway")]
    pub(crate) fn in_flight_but_held_by(&self, dependents: &[Arc<Registered>]) -> usize {
        // Their holds locked while the count is read: none is taken or dropped between the
        // count and what it discounts, so a request of its own is never discounted.
        let holds: Vec<_> = (dependents.iter())
            .filter_map(|dependent| {
                let of = &dependent.dependencies.of;
                let times = of.iter().filter(|d| std::ptr::eq(&***d, self)).count();
                (times > 0).then(|| (lock(&dependent.dependencies.held), times))
            })
            .collect();
        let held: usize = (holds.iter())
            .filter(|(held, _)| !held.is_empty())
            .map(|(_, times)| times)
            .sum();
        let in_flight = self.in_flight();
        drop(holds);
        in_flight.saturating_sub(held)
    }

    /// The longest a start of this service may wait for its dependencies: the longest of
    /// theirs, each its own such wait, trigger and start timeouts, and the longest its stop
    /// may last (in case it was stopping).
    pub(crate) fn dependencies_bound(&self) -> Duration {
        self.dependencies.bound
    }

    /// In a fleet: the current start is led by another replica, whose wait for the
    /// dependencies this replica's start timeout must leave out too (see
    /// [`Dependencies::led_elsewhere`]).
    #[cfg(feature = "fleet")]
    pub(crate) fn start_led_elsewhere(&self) {
        let stay = self.lifecycle.stamp();
        if stay.state() == ServiceState::Starting {
            self.dependencies
                .led_elsewhere(stay, self.dependencies_bound());
        }
    }

    /// Awaits `up` (see [`Dependencies::come_up`]) for the start `starting`, its wait not
    /// counted in the start's timeout, unless the start is called off (`ticket`) first. The
    /// dependencies' own starts go on then: they are their own runs, which no one waiting for
    /// them cancels.
    pub(super) async fn await_dependencies(
        &self,
        up: impl Future<Output = Result<(), SharedError>>,
        starting: Option<Stamp>,
        ticket: &mut Ticket,
    ) -> Awaited {
        let awaiting = self.dependencies.awaiting(starting);
        let (up, called_off) = (std::pin::pin!(up), std::pin::pin!(ticket.wait()));
        let result = match futures::future::select(up, called_off).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => return Awaited::CalledOff,
        };
        drop(awaiting);
        match result {
            Ok(()) if starting.is_some_and(|start| self.lifecycle.stamp() != start) => {
                self.start_ended()
            }
            Ok(()) => Awaited::Up,
            Err(down) => {
                tracing::warn!(service = %self.name, "{} not started: {down}", self.name);
                Awaited::Down(down)
            }
        }
    }
}

/// Brings `dependency` up for `dependent`'s start (or its recheck, `recheck`): probed if
/// down, started if the probe finds it down, awaited until up. Bounded by the dependency's own
/// trigger and start timeouts and its own wait for its dependencies, and, if it is seen
/// stopping, the longest its stop may last (its stop timeout, or its `on_idle` running up to
/// the trigger timeout) on top.
pub(super) async fn up(
    dependency: Arc<Registered>,
    dependent: Arc<str>,
    asker: Asker,
    recheck: Option<&Recheck>,
) -> Result<(), SharedError> {
    let service = &dependency.service;
    // Its own start may first wait for its own dependencies (a chain app → db → disk).
    let chain = dependency.dependencies_bound();
    let bound = service
        .trigger_timeout
        .saturating_add(service.start_timeout)
        .saturating_add(chain);
    let stop_bound = service.stop_timeout.max(service.trigger_timeout);
    let stopping_seen = AtomicBool::new(false);
    let failed = |reason: String| -> SharedError {
        Arc::new(DependencyDown {
            dependency: Arc::clone(&dependency.name),
            reason,
        })
    };
    let coming_up = async {
        let mut asked = false;
        loop {
            let changed = dependency.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match dependency.state() {
                ServiceState::Up => return Ok(()),
                ServiceState::Starting => {}
                ServiceState::Stopping => stopping_seen.store(true, Ordering::Relaxed),
                ServiceState::Down if asked => {
                    return Err(failed("it did not come up".into()));
                }
                ServiceState::Down => {
                    asked = true;
                    // Down until a probe says otherwise: it may be running already.
                    match dependency.status().await {
                        Ok(true) => return Ok(()),
                        Ok(false) => {}
                        Err(error) => return Err(failed(error.to_string())),
                    }
                    if dependency.service.on_down.is_none() {
                        return Err(failed("it is down, and has no on_down to start it".into()));
                    }
                    if let Some(recheck) = recheck {
                        recheck.may_start()?;
                    }
                    if recheck.is_some_and(|recheck| !recheck.first) {
                        tracing::debug!(service = %dependent, dependency = %dependency.name,
                            "{dependent}: starting {} again", dependency.name);
                    } else {
                        tracing::info!(service = %dependent, dependency = %dependency.name,
                            "{dependent}: starting {} first", dependency.name);
                    }
                    if let Err(error) = dependency.start_for(asker).await {
                        return Err(failed(error.to_string()));
                    }
                    continue;
                }
            }
            changed.await;
        }
    };
    tokio::pin!(coming_up);
    let began = Instant::now();
    // A timeout of `Duration::MAX` (no bound) would overflow an `Instant`.
    let forever = crate::deadline::PRACTICALLY_FOREVER;
    let mut deadline = began + bound.min(forever);
    let mut stop_counted = false;
    loop {
        match tokio::time::timeout_at(deadline, coming_up.as_mut()).await {
            Ok(result) => return result,
            Err(_) if !stop_counted && stopping_seen.load(Ordering::Relaxed) => {
                stop_counted = true;
                deadline += stop_bound.min(forever);
            }
            Err(_) => {
                return Err(failed(format!(
                    "it was not up within {:?} (its trigger_timeout and start_timeout{}{})",
                    deadline.duration_since(began),
                    if chain.is_zero() {
                        ""
                    } else {
                        ", its wait for its own dependencies"
                    },
                    if stop_counted { ", after its stop" } else { "" }
                )));
            }
        }
    }
}

/// Why a start's `on_down` did not run: the start ended while its dependencies came up.
#[derive(Debug)]
struct StartEnded;

impl fmt::Display for StartEnded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("its start ended while its dependencies came up")
    }
}

impl std::error::Error for StartEnded {}

/// Why a start failed before its `on_down` ran: a dependency did not come up.
#[derive(Debug)]
struct DependencyDown {
    dependency: Arc<str>,
    reason: String,
}

impl fmt::Display for DependencyDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "its dependency {} is not up: {}",
            self.dependency, self.reason
        )
    }
}

impl std::error::Error for DependencyDown {}
