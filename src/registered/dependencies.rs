//! The services a service needs up first ([`MonitoredService::depends_on`]): brought up before
//! its `on_down` runs, and kept from their idle stop while it is not down.
//!
//! [`MonitoredService::depends_on`]: crate::MonitoredService::depends_on

use std::fmt;
use std::sync::{Arc, Mutex};

use futures::future::try_join_all;

use super::{Asker, Registered};
use crate::Activity;
use crate::error::SharedError;
use crate::lifecycle::ServiceState;
use crate::sync::lock;

/// A service's dependencies, and the activity it holds on each while it is not down.
#[derive(Default)]
pub(super) struct Dependencies {
    of: Vec<Arc<Registered>>,
    /// One per dependency while the dependent is not down; empty while it is.
    held: Mutex<Vec<Activity>>,
}

impl Dependencies {
    pub(super) fn new(of: Vec<Arc<Registered>>) -> Self {
        Self {
            of,
            held: Mutex::default(),
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
    pub(super) fn come_up(
        &self,
        dependent: &Arc<str>,
    ) -> Option<impl Future<Output = Result<(), SharedError>> + Send + 'static> {
        if self.of.is_empty() {
            return None;
        }
        let ups = self
            .of
            .iter()
            .map(|dependency| up(Arc::clone(dependency), Arc::clone(dependent)));
        let all = try_join_all(ups);
        Some(async move { all.await.map(drop) })
    }
}

/// Brings `dependency` up for `dependent`'s start: probed if down, started if the probe finds
/// it down, awaited until up. Bounded by the dependency's own trigger and start timeouts.
async fn up(dependency: Arc<Registered>, dependent: Arc<str>) -> Result<(), SharedError> {
    let bound = dependency
        .service
        .trigger_timeout
        .saturating_add(dependency.service.start_timeout);
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
                ServiceState::Starting | ServiceState::Stopping => {}
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
                    tracing::info!(service = %dependent, dependency = %dependency.name,
                        "{dependent}: starting {} first", dependency.name);
                    if let Err(error) = dependency.start_for(Asker::Request).await {
                        return Err(failed(error.to_string()));
                    }
                    continue;
                }
            }
            changed.await;
        }
    };
    match tokio::time::timeout(bound, coming_up).await {
        Ok(result) => result,
        Err(_) => Err(failed(format!(
            "it was not up within {:?} (its trigger_timeout and start_timeout)",
            bound
        ))),
    }
}

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
