//! Hold mode: instead of answering 503 at once, keep a request until the backend is up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::Either;
use tokio::time::Instant;

use super::FallbackReason;
use crate::lifecycle::ServiceState;
use crate::registered::{Registered, StartPaused};

/// How many requests may be held at once unless set otherwise.
pub const DEFAULT_MAX_HELD: usize = 10_000;

/// How long a held request waits before asking for a start again after one failed (`on_down`
/// failed, the start timed out, or its backend ended first), unless the backend comes up sooner.
const WAKE_RETRY: Duration = Duration::from_secs(1);

/// The layer's hold settings, and how many requests it holds right now.
#[derive(Clone, Debug)]
pub(crate) struct Hold {
    pub(crate) max_wait: Duration,
    pub(crate) max_held: usize,
    places: Arc<Places>,
}

impl Hold {
    pub(crate) fn new(max_wait: Duration) -> Self {
        Self {
            max_wait,
            max_held: DEFAULT_MAX_HELD,
            places: Arc::default(),
        }
    }

    /// Wakes the backend and waits for it to come up: `Ok(waited)` once it is, or the answer to
    /// give. `max_wait` counts from the request's arrival, the status probe and the run of
    /// `on_down` included: it is answered 504 at `max_wait` whatever is still running, and it
    /// takes a place (`max_held`) before `on_down` runs.
    ///
    /// Once the monitor releases held requests (its server shuts down), each is answered 503
    /// at once, and none is held any more.
    ///
    /// Held requests do not probe: the monitor polls a starting backend and wakes every waiter
    /// at the transition to Up. A request whose client goes away is dropped here, and its
    /// place freed.
    pub(crate) async fn wait_until_up(
        &self,
        registered: &Registered,
        arrived: Instant,
    ) -> Result<Duration, FallbackReason> {
        if registered.is_released() {
            return Err(FallbackReason::NotReady);
        }
        let _place = match self.take_place() {
            Ok(place) => place,
            Err(first) => {
                // At warn once each time the bound is reached: the operator must know these
                // 503s are not the usual "starting", and a herd must not fill the log.
                if first {
                    tracing::warn!(service = %registered.name, max_held = self.max_held, "{} requests held already: answering 503 to those beyond", self.max_held);
                } else {
                    tracing::debug!(service = %registered.name, max_held = self.max_held, "too many requests held; answering 503");
                }
                return Err(FallbackReason::NotReady);
            }
        };
        registered.stats.hold(&registered.name);
        let _watching = registered.watch();
        let max_wait = self.max_wait;
        let deadline = crate::deadline::saturating_after(arrived, max_wait);
        let up = tokio::time::timeout_at(deadline, until_up(registered, deadline));
        let released = registered.released();
        tokio::pin!(up, released);
        match futures::future::select(up, released).await {
            Either::Left((Ok(Ok(())), _)) => Ok(arrived.elapsed()),
            Either::Left((Ok(Err(reason)), _)) => Err(reason),
            Either::Left((Err(_), _)) => {
                registered.say_held_timed_out(max_wait);
                Err(FallbackReason::Timeout)
            }
            Either::Right(((), _)) => Err(FallbackReason::NotReady),
        }
    }

    /// The count of the requests it holds, to share with another layer's (see
    /// [`HeldCount`]).
    #[cfg(feature = "gateway")]
    pub(crate) fn held_count(&self) -> HeldCount {
        HeldCount(Arc::clone(&self.places))
    }

    /// Counts its held requests in `count`, against its own `max_held`.
    #[cfg(feature = "gateway")]
    pub(crate) fn count_in(&mut self, count: &HeldCount) {
        self.places = Arc::clone(&count.0);
    }

    /// A place, or whether this is the first request refused since there were free places.
    fn take_place(&self) -> Result<Place, bool> {
        let places = &self.places;
        let taken = places.held.fetch_add(1, Ordering::SeqCst);
        let place = Place(Arc::clone(places));
        if taken < self.max_held {
            if places.refusing.load(Ordering::Relaxed) {
                places.refusing.store(false, Ordering::Relaxed);
            }
            Ok(place)
        } else {
            Err(!places.refusing.swap(true, Ordering::Relaxed))
        }
    }
}

/// Waits until the backend is up; or, should it be paused after failed starts past
/// `deadline`, says so: the request gets the "could not be started" answer, with the pause's
/// end as its `Retry-After`, now rather than a 504 at `deadline`.
async fn until_up(registered: &Registered, deadline: Instant) -> Result<(), FallbackReason> {
    let mut previous = None;
    loop {
        let changed = registered.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let state = registered.state();
        let start_failed = previous == Some(ServiceState::Starting) && state == ServiceState::Down;
        previous = Some(state);
        match state {
            ServiceState::Up => return Ok(()),
            ServiceState::Down if registered.service.on_down.is_some() => {
                // Down right after a start: it failed, or its backend ended before it came
                // up. Not again at once: a program that exits at once would run in a loop.
                let past_deadline = |left: Duration| Instant::now() + left >= deadline;
                if start_failed && registered.start_pause_left().is_some_and(past_deadline) {
                    return Err(FallbackReason::StartFailed);
                }
                if start_failed && up_within(registered, WAKE_RETRY).await {
                    return Ok(());
                }
                // Released at Up, not at the start's end: a start this request set off (or
                // joined) can go on long after its backend is found up, waiting for its
                // dependencies (up to `dependencies_bound`). It is its own task: it goes on.
                let Some(woken) = unless_up(registered, registered.wake()).await else {
                    return Ok(());
                };
                if let Err(error) = woken {
                    // Paused after a series of failed starts: not asked again before its end.
                    let paused = error.downcast_ref::<StartPaused>();
                    // The pause as it is now, not as the refusal found it: an operator's start
                    // that joined the refused flight ends the pause and starts the backend.
                    let still_paused = || registered.start_pause_left().is_some_and(past_deadline);
                    if paused.is_some() && still_paused() {
                        return Err(FallbackReason::StartFailed);
                    }
                    let pause = paused.map_or(WAKE_RETRY, |paused| paused.left.max(WAKE_RETRY));
                    if up_within(registered, pause).await {
                        return Ok(());
                    }
                } else {
                    // A start is on (or was joined): Down next means it ended, even if this
                    // loop never sees it Starting (its end can come before on_down returns).
                    previous = Some(ServiceState::Starting);
                }
                continue;
            }
            _ => {}
        }
        changed.await;
    }
}

/// `work`'s output, or `None` as soon as the backend is up, whichever comes first.
async fn unless_up<T>(registered: &Registered, work: impl Future<Output = T>) -> Option<T> {
    tokio::pin!(work);
    loop {
        let changed = registered.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if registered.state() == ServiceState::Up {
            return None;
        }
        if let Either::Left((output, _)) = futures::future::select(work.as_mut(), changed).await {
            return Some(output);
        }
    }
}

/// The pause before a start is asked for again: `true` as soon as the backend is up (started
/// by another request meanwhile, or found up late), `false` once `pause` has passed.
async fn up_within(registered: &Registered, pause: Duration) -> bool {
    let until = Instant::now() + pause;
    loop {
        let changed = registered.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if registered.state() == ServiceState::Up {
            return true;
        }
        if tokio::time::timeout_at(until, changed).await.is_err() {
            return false;
        }
    }
}

/// The requests held at once, and whether the last to come was refused for want of a place.
#[derive(Debug, Default)]
struct Places {
    held: AtomicUsize,
    refusing: AtomicBool,
}

/// A layer's count of the requests it holds, which a gateway's reload hands to the new layer
/// of a service it keeps: the requests held before the reload (a cold start under way) and
/// those held after it count against one `max_held`.
#[cfg(feature = "gateway")]
#[derive(Clone)]
pub(crate) struct HeldCount(Arc<Places>);

/// One held request; frees its place when dropped.
struct Place(Arc<Places>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::SeqCst);
    }
}
