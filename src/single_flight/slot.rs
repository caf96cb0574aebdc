//! The slot of a [`SingleFlight`](super::SingleFlight): the run in flight, if any, joined or
//! started under one lock, and freed when the run ends.
//!
//! Kept apart from the Tokio side (spawning the run, sharing its result) so that loom can
//! drive every interleaving of callers and a finishing run directly (the model is below).

use std::sync::PoisonError;

use crate::sync::Mutex;

pub(crate) struct Slot<F> {
    /// The handle of the run in flight.
    current: Mutex<Option<F>>,
}

/// What a caller of [`Slot::join_or_start`] got.
pub(crate) enum Entry<F, R> {
    /// A run was in flight: its handle.
    Joined(F),
    /// None was, so this caller started one: its handle (now in the slot) and what the caller
    /// needs to run it. The run must [`clear`](Slot::clear) the slot when it ends.
    Started(F, R),
    /// None was, and none is needed.
    Declined,
}

impl<F: Clone> Slot<F> {
    pub(crate) fn new() -> Self {
        Self {
            current: Mutex::new(None),
        }
    }

    /// Joins the run in flight, or, if none is, calls `start` to start one: it returns the
    /// handle to store and what its caller needs, `None` if no run is needed after all, or an
    /// error (the slot stays empty). `start` is called under the slot's lock, so its decision
    /// cannot race with a run that is just finishing: it sees everything that run did before
    /// it cleared the slot.
    pub(crate) fn join_or_start<R, E>(
        &self,
        start: impl FnOnce() -> Result<Option<(F, R)>, E>,
    ) -> Result<Entry<F, R>, E> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = current.as_ref() {
            return Ok(Entry::Joined(flight.clone()));
        }
        Ok(match start()? {
            Some((flight, run)) => {
                *current = Some(flight.clone());
                Entry::Started(flight, run)
            }
            None => Entry::Declined,
        })
    }

    /// Frees the slot: the run in flight has ended.
    pub(crate) fn clear(&self) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    #[cfg(test)]
    pub(crate) fn is_full(&self) -> bool {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::sync::Arc;
    use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use loom::thread;

    /// Invariant: callers arriving together with a job whose run makes it unnecessary (as a
    /// probe that caches its "up") start exactly one run: each other caller joins that run or,
    /// arriving after it ended, sees its effect and starts none. Once the run has ended the
    /// slot is empty. The effect is written with `Relaxed`: only the slot's lock may order it.
    #[test]
    fn loom_concurrent_callers_start_one_run_and_the_slot_ends_empty() {
        loom::model(|| {
            let slot = Arc::new(Slot::<usize>::new());
            let cached = Arc::new(AtomicBool::new(false));
            let runs = Arc::new(AtomicUsize::new(0));

            let callers: Vec<_> = (0..2)
                .map(|_| {
                    let (slot, cached, runs) = (slot.clone(), cached.clone(), runs.clone());
                    thread::spawn(move || {
                        let entry = slot.join_or_start(|| {
                            if cached.load(Ordering::Relaxed) {
                                return Ok::<_, ()>(None);
                            }
                            let id = runs.fetch_add(1, Ordering::Relaxed) + 1;
                            Ok(Some((id, ())))
                        });
                        match entry.unwrap() {
                            Entry::Started(id, ()) => {
                                // The run is a task of its own, as in `SingleFlight`: it
                                // records its effect, then frees the slot.
                                let run = thread::spawn(move || {
                                    cached.store(true, Ordering::Relaxed);
                                    slot.clear();
                                });
                                Some((id, run))
                            }
                            Entry::Joined(id) => {
                                assert_eq!(id, 1, "joined a run that is not the first");
                                None
                            }
                            Entry::Declined => {
                                assert!(cached.load(Ordering::Relaxed), "declined, no effect");
                                None
                            }
                        }
                    })
                })
                .collect();
            for caller in callers {
                if let Some((id, run)) = caller.join().unwrap() {
                    assert_eq!(id, 1, "a second run started");
                    run.join().unwrap();
                }
            }
            assert_eq!(runs.load(Ordering::Relaxed), 1, "one run, not more");
            assert!(
                !slot.is_full(),
                "the slot ends empty once the run has ended"
            );
        });
    }
}
