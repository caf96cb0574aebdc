//! Running a user's trigger so that it can neither hang nor panic its way out.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use super::Trigger;
use crate::error::SharedError;
use crate::stats::Stats;

/// Runs `trigger` for the service, bounded by `timeout`. A timeout or a panic (in the call or
/// in the future) is a failure like any other; every failure is logged and counted.
pub(crate) async fn run_bounded(
    trigger: &Arc<dyn Trigger>,
    timeout: Duration,
    stats: &Stats,
    service: &str,
    which: &'static str,
) -> Result<(), SharedError> {
    let run = AssertUnwindSafe(async { trigger.trigger().await }).catch_unwind();
    let outcome = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(Ok(()))) => return Ok(()),
        Ok(Ok(Err(error))) => SharedError::from(error),
        Ok(Err(_panic)) => {
            tracing::error!(service, trigger = which, "trigger panicked");
            message(format!("`{which}` trigger panicked"))
        }
        Err(_) => message(format!("`{which}` trigger timed out after {timeout:?}")),
    };
    tracing::warn!(service, trigger = which, error = %outcome, "trigger failed");
    stats.trigger_failed(service, which);
    Err(outcome)
}

fn message(text: String) -> SharedError {
    let boxed: crate::BoxError = text.into();
    Arc::from(boxed)
}
