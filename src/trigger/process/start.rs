//! The process as a trigger: a start that finds the program being stopped (by this supervisor,
//! or by another that holds its lock file and whose record says so) waits for that stop to
//! end, and then starts it, rather than take it for running and start nothing.

use std::path::Path;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use tokio::time::Instant;

use super::lock::{self, Claim, RunLock};
use super::run::{self, Blocked};
use super::stop::{AFTER_KILL, STOP_SLACK};
use super::{Process, ProcessError, leftover};
use crate::BoxError;
use crate::trigger::Trigger;

/// How many stops in a row a start waits for (one, then one begun meanwhile) before it fails.
const ROUNDS: usize = 3;

/// How often a start waiting for another supervisor's stop tries the lock file's lock.
const LOCK_POLL: Duration = Duration::from_millis(20);

impl Trigger for Process {
    /// Starts the program unless it runs. A stop of it under way here (the program, or what it
    /// left in its group) is waited for first (as long as that stop takes, SIGKILL included),
    /// so that it is not started beside what is left of its last run, nor taken for running.
    /// With a lock file, what a supervisor that died left of it is stopped first (see
    /// [`ProcessBuilder::lock_file`](super::ProcessBuilder::lock_file)), and a lock held by
    /// another supervisor whose record says it is stopping the program is waited for (as long
    /// as its record says that stop takes, and a SIGKILL after), then taken.
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        let stopping = self
            .shared
            .lock()
            .stops
            .as_ref()
            .is_some_and(|s| s.under_way());
        if !stopping && (self.shared.spec.lock_file.is_none() || self.is_running()) {
            let started = self.start().map_err(BoxError::from);
            return async move { started }.boxed();
        }
        let process = self.clone();
        async move { Ok(process.start_after_stops(ROUNDS).await?) }.boxed()
    }

    /// When the program the last start started, or found running, exits. `None` when it runs
    /// under another supervisor: this one does not see that program's end.
    fn ended(&self) -> Option<BoxFuture<'static, ()>> {
        let state = self.shared.lock();
        let latest = state.latest.clone().filter(|_| !state.elsewhere)?;
        Some(run::exited(latest).map(drop).boxed())
    }

    /// Stops the program (SIGTERM, SIGKILL after the stop grace) if it runs under this
    /// supervisor.
    fn abandon(&self) -> Option<BoxFuture<'static, ()>> {
        let state = self.shared.lock();
        if state.running.is_none() || state.elsewhere {
            return None;
        }
        drop(state);
        let process = self.clone();
        Some(
            async move {
                if let Err(error) = process.stop().await {
                    tracing::warn!(service = process.shared.service().map(tracing::field::display), %error, "cannot stop the program whose start was given up");
                }
            }
            .boxed(),
        )
    }
}

impl Process {
    /// Starts the program once the stops found in the way, at most `rounds` of them in a row,
    /// have ended.
    async fn start_after_stops(&self, rounds: usize) -> Result<(), ProcessError> {
        let shared = &self.shared;
        let mut taken = None;
        for _ in 0..rounds {
            self.own_stops_ended().await?;
            let Some(path) = shared.spec.lock_file.as_deref() else {
                return self.start();
            };
            if taken.is_none() {
                leftover::reclaim(shared, shared.spec.stop_grace).await?;
            }
            // Held: a stop's look at the lock file meanwhile would make this start take it
            // for another supervisor's.
            let one = shared.reclaiming.lock().await;
            let left = match run::try_start(shared, taken.take())? {
                None => return Ok(()),
                Some(Blocked::OwnStop) => continue,
                Some(Blocked::HolderStops(left)) => left,
            };
            drop(one);
            taken = self.holders_stop_ended(path, left).await?;
        }
        // The last stop waited for ended with the lock taken by this start: dropped, it would
        // fail a start that may run the program now.
        if taken.is_some() {
            let _one = shared.reclaiming.lock().await;
            if run::try_start(shared, taken)?.is_none() {
                return Ok(());
            }
        }
        Err(self.not_started(format!(
            "a stop held its lock file each of the {rounds} times this start looked"
        )))
    }

    /// Resolves once no stop of this supervisor's is under way, or fails once those have
    /// outlasted their own bound.
    async fn own_stops_ended(&self) -> Result<(), ProcessError> {
        let Some(stops) = self.shared.lock().stops.clone() else {
            return Ok(());
        };
        if stops.under_way() {
            let service = self.shared.asker();
            tracing::info!(service = service.as_deref().map(tracing::field::display), program = %self.shared.program,
                "the backend program is being stopped: starting it once that stop is done");
        }
        stops.ended().await.map_err(|past| {
            self.not_started(format!(
                "its stop here still runs {past:?} after its SIGKILL was due"
            ))
        })
    }

    /// Waits for the stop of another supervisor that holds the lock file at `path`, which its
    /// record says kills what is left within `left`: the lock once it is free and holds no
    /// record; `None` once it is free but holds one (its holder died halfway: `reclaim`'s to
    /// deal with), or taken by one that runs the program (which a start then finds).
    async fn holders_stop_ended(
        &self,
        path: &Path,
        left: Duration,
    ) -> Result<Option<RunLock>, ProcessError> {
        let bound = left.saturating_add(AFTER_KILL + STOP_SLACK);
        let service = self.shared.asker();
        tracing::info!(service = service.as_deref().map(tracing::field::display), program = %self.shared.program,
            lock_file = %path.display(), ?bound,
            "the supervisor that holds the lock file is stopping the backend program: starting it once that stop is done");
        let deadline = crate::deadline::saturating_after(Instant::now(), bound);
        loop {
            let file = path.to_path_buf();
            let claim = leftover::off_runtime(move || {
                lock::claim(&file).map(|claim| match claim {
                    Claim::Ours(lock) if lock.left().is_some() => {
                        lock.release_keeping_record();
                        None
                    }
                    claim => Some(claim),
                })
            });
            match claim.await {
                Ok(Some(Claim::Ours(lock))) => return Ok(Some(lock)),
                // Free, with a record in it; or taken to run the program.
                Ok(None) => return Ok(None),
                Ok(Some(Claim::Elsewhere(Some(record)))) if record.stopping_until.is_none() => {
                    return Ok(None);
                }
                // Still stopping, or between its record's clearing and its release.
                Ok(Some(Claim::Elsewhere(_))) => {}
                Err(error) => {
                    return Err(self.not_started(format!(
                        "lock file {:?}: {error}",
                        path.display().to_string()
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(self.not_started(format!(
                    "the supervisor that holds its lock file {:?} still stops it after {bound:?}",
                    path.display().to_string()
                )));
            }
            // Polled: no event tells of another program's release of a `flock` but a thread
            // blocked in it, which could not be given up at the deadline.
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    fn not_started(&self, why: String) -> ProcessError {
        ProcessError::Spawn {
            program: self.shared.program.to_string(),
            source: std::io::Error::other(why),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::Duration;

    use super::super::Process;

    /// Ample for a stop of a couple of seconds, SIGKILL included, on a loaded machine.
    const WITHIN: Duration = Duration::from_secs(15);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_last_stop_waited_for_ending_with_the_lock_taken_starts_the_program() {
        let dir = std::env::temp_dir().join(format!("tower-monitor-start-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (lock, deaf) = (dir.join("app.lock"), dir.join("deaf"));
        // Deaf to SIGTERM once it says so: its holder's stop holds the lock until the SIGKILL.
        let script = format!(
            "trap '' TERM; : > {:?}; while :; do sleep 0.05; done",
            deaf.display().to_string()
        );
        let gateway = || {
            Process::builder("sh")
                .args(["-c", &script])
                .lock_file(&lock)
                .stop_grace(Duration::from_secs(4))
                .build()
        };
        let (holder, other) = (gateway(), gateway());
        holder.start().unwrap();
        let deadline = std::time::Instant::now() + WITHIN;
        while !deaf.exists() {
            assert!(std::time::Instant::now() < deadline, "it never said so");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stopping = tokio::spawn({
            let holder = holder.clone();
            async move { holder.stop().await }
        });
        let says_stopping =
            || std::fs::read_to_string(&lock).is_ok_and(|text| text.contains("\nstopping_until "));
        while !says_stopping() {
            let ended = stopping.is_finished();
            assert!(
                std::time::Instant::now() < deadline && !ended,
                "the stop never said so (ended: {ended})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // One round: the holder's stop is the last one waited for, and it ends with the lock
        // free, taken by this start.
        tokio::time::timeout(WITHIN, other.start_after_stops(1))
            .await
            .expect("the start waits for the holder's stop, which its record bounds")
            .unwrap();

        assert!(other.is_running(), "the lock taken was dropped");
        assert!(stopping.await.unwrap().unwrap().is_some(), "it was running");
        other.stop_with(Duration::ZERO).await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
