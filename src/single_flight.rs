//! One run at a time of an async job, whose result everyone who asked while it ran receives.

mod slot;

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::runtime::{Handle, TryCurrentError};
use tokio::sync::oneshot;

use crate::error::SharedError;
use slot::{Entry, Slot};

/// A run in progress; clone it to wait for its result.
pub(crate) type Flight<T> = Shared<BoxFuture<'static, Result<T, SharedError>>>;

/// Coalesces concurrent runs of one job.
///
/// The job runs as its own Tokio task, so a caller that stops waiting (its future dropped)
/// cancels nothing: the job finishes for the others and records its result. The slot is cleared
/// by a guard inside the task, so even a job that panics, or a task dropped by a runtime shutting
/// down, never leaves the slot stuck on a run that will not finish.
pub(crate) struct SingleFlight<T> {
    slot: Arc<Slot<Flight<T>>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        Self {
            slot: Arc::new(Slot::new()),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Joins the run in flight, or starts `job()` if none is. `job` may return `None` to say no
    /// run is needed after all; it is called under the slot's lock, so that decision cannot race
    /// with a run that is just finishing.
    pub(crate) fn join_or_start<F>(
        &self,
        job: impl FnOnce() -> Option<F>,
    ) -> Result<Option<Flight<T>>, TryCurrentError>
    where
        F: Future<Output = Result<T, SharedError>> + Send + 'static,
    {
        let entry = self.slot.join_or_start(|| {
            let runtime = Handle::try_current()?;
            let Some(job) = job() else { return Ok(None) };
            let (done, result) = oneshot::channel();
            let flight: Flight<T> = result
                .map(|sent| sent.unwrap_or_else(|_| Err(message_error("the run was cancelled"))))
                .boxed()
                .shared();
            Ok(Some((flight, (runtime, job, done))))
        })?;
        // Spawn only after the lock is released (by now): a runtime that is shutting down drops
        // the task at once, and the guard's drop takes the same lock.
        let (flight, (runtime, job, done)) = match entry {
            Entry::Joined(flight) => return Ok(Some(flight)),
            Entry::Declined => return Ok(None),
            Entry::Started(flight, run) => (flight, run),
        };

        let clear = ClearSlot(Arc::clone(&self.slot));
        runtime.spawn(async move {
            let outcome = AssertUnwindSafe(job)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(message_error(&panic_message(&*panic))));
            // Free the slot before anyone sees the result, so every waiter that wakes up finds
            // the job finished and its effects (a cached status) recorded.
            drop(clear);
            let _ = done.send(outcome);
        });
        Ok(Some(flight))
    }

    /// Whether a run is in flight right now.
    #[cfg(test)]
    pub(crate) fn is_running(&self) -> bool {
        self.slot.is_full()
    }
}

/// Frees the slot when the run's task ends, however it ends.
struct ClearSlot<T>(Arc<Slot<Flight<T>>>);

impl<T> Drop for ClearSlot<T> {
    fn drop(&mut self) {
        self.0.clear();
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("panicked: {detail}")
}

fn message_error(message: &str) -> SharedError {
    let boxed: Box<dyn std::error::Error + Send + Sync> = message.into();
    Arc::from(boxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights = SingleFlight::<u32>::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let start = || {
            let (runs, gate) = (runs.clone(), gate.clone());
            Some(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                Ok(7)
            })
        };
        let a = flights.join_or_start(start).unwrap().unwrap();
        let b = flights.join_or_start(start).unwrap().unwrap();
        gate.notify_one();
        assert_eq!(a.await.unwrap(), 7);
        assert_eq!(b.await.unwrap(), 7);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_dropped_caller_does_not_cancel_the_run() {
        let flights = SingleFlight::<u32>::default();
        let gate = Arc::new(Notify::new());
        let finished = Arc::new(AtomicUsize::new(0));
        let (g, f) = (gate.clone(), finished.clone());
        let flight = flights
            .join_or_start(|| {
                Some(async move {
                    g.notified().await;
                    f.fetch_add(1, Ordering::SeqCst);
                    Ok(1)
                })
            })
            .unwrap()
            .unwrap();
        drop(flight);
        let joined = flights
            .join_or_start(|| None::<BoxFuture<'static, _>>)
            .unwrap();
        let joined = joined.expect("the run must still be in flight");
        gate.notify_one();
        assert_eq!(joined.await.unwrap(), 1);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_frees_the_slot() {
        let flights = SingleFlight::<u32>::default();
        let flight = flights
            .join_or_start(|| Some(async { panic!("boom") }))
            .unwrap()
            .unwrap();
        let err = flight.await.unwrap_err();
        assert_eq!(err.to_string(), "panicked: boom");
        assert!(!flights.is_running());
    }

    #[test]
    fn outside_a_runtime_nothing_starts() {
        let flights = SingleFlight::<u32>::default();
        assert!(flights.join_or_start(|| Some(async { Ok(1) })).is_err());
        assert!(!flights.is_running());
    }
}
