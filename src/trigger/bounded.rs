//! Running a user's trigger so that it can neither hang nor panic its way out.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use super::Trigger;
use crate::error::SharedError;
use crate::stats::Stats;

tokio::task_local! {
    /// The service whose trigger runs: for a trigger's own log lines (a program's output) to
    /// name it without being told at build time, as the trigger types are built before the
    /// service is added under its name.
    static RUNNING_FOR: Arc<str>;
}

/// The name of the service whose trigger the monitor is running in this task, if it is.
pub(crate) fn running_for() -> Option<Arc<str>> {
    RUNNING_FOR.try_with(Arc::clone).ok()
}

/// Runs `future` as the monitor's run of a trigger of `service`, if known (see [`running_for`]).
pub(crate) async fn running_as<T>(service: Option<Arc<str>>, future: impl Future<Output = T>) -> T {
    match service {
        Some(service) => RUNNING_FOR.scope(service, future).await,
        None => future.await,
    }
}

/// Runs `trigger` for the service, bounded by `timeout`. A timeout or a panic (in the call or
/// in the future) is a failure like any other; every failure is logged and counted.
pub(crate) async fn run_bounded(
    trigger: &Arc<dyn Trigger>,
    timeout: Duration,
    stats: &Stats,
    service: &Arc<str>,
    which: &'static str,
) -> Result<(), SharedError> {
    let outcome = run_bounded_unsaid(trigger, timeout, stats, service, which).await;
    if let Err(error) = &outcome {
        tracing::warn!(service = %service, trigger = which, %error, "trigger failed");
    }
    outcome
}

/// [`run_bounded`], but a failure (counted all the same) is the caller's to log: one that
/// repeats itself may be said once only.
pub(crate) async fn run_bounded_unsaid(
    trigger: &Arc<dyn Trigger>,
    timeout: Duration,
    stats: &Stats,
    service: &Arc<str>,
    which: &'static str,
) -> Result<(), SharedError> {
    let run = RUNNING_FOR.scope(Arc::clone(service), async { trigger.trigger().await });
    let run = AssertUnwindSafe(run).catch_unwind();
    let service = &**service;
    let outcome = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(Ok(()))) => return Ok(()),
        Ok(Ok(Err(error))) => SharedError::from(error),
        Ok(Err(_panic)) => {
            tracing::error!(%service, trigger = which, "trigger panicked");
            message(format!("`{which}` trigger panicked"))
        }
        Err(_) => message(format!("`{which}` trigger timed out after {timeout:?}")),
    };
    stats.trigger_failed(service, which);
    Err(outcome)
}

fn message(text: String) -> SharedError {
    let boxed: crate::BoxError = text.into();
    Arc::from(boxed)
}
