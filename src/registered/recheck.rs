//! A look at the dependencies of a dependent that a probe found up again: one found down is
//! started again, in the background (see [`Registered::recheck_dependencies`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::future::join_all;

use super::dependencies::up;
use super::{Asker, Registered};
use crate::error::SharedError;
use crate::lifecycle::ServiceState;

/// A dependent's rechecks of its dependencies.
pub(super) struct Rechecks {
    /// A look is under way: one at a time.
    rechecking: AtomicBool,
    /// Per dependency (in `depends_on`'s order), the last down spell of it that a look found
    /// and said at info or warn, unless that look started nothing (its dependent had left
    /// Up): its [`Registered::times_up`] then, plus one (zero: none).
    said: Vec<AtomicU64>,
}

impl Rechecks {
    pub(super) fn new(dependencies: usize) -> Self {
        Self {
            rechecking: AtomicBool::new(false),
            said: (0..dependencies).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// One recheck's start of a dependency (see [`up`]).
pub(super) struct Recheck {
    /// The dependent, which the dependency is started for only while it is up.
    dependent: Arc<Registered>,
    /// Whether this is the first recheck to find the dependency down in this down spell:
    /// what it says is said at info or warn, the later ones' at debug.
    pub(super) first: bool,
}

impl Recheck {
    /// Whether the dependency may still be started: only while the dependent is Up. Looked at
    /// right before its start is asked, as late as can be: a recheck begun just before the
    /// dependent's idle stop would otherwise start the dependency for a dependent that is
    /// stopping (or down), and it would then run for nothing until its own idle stop. Not
    /// while the dependent is Starting either: that start brings its dependencies up itself.
    /// (What is left is a dependent stopped between this look and the dependency's start:
    /// then its hold on the dependency ends with it, and the dependency's idle stop follows.)
    pub(super) fn may_start(&self) -> Result<(), SharedError> {
        match self.dependent.state() {
            ServiceState::Up => Ok(()),
            state => Err(Arc::new(DependentNotUp(
                Arc::clone(&self.dependent.name),
                state,
            ))),
        }
    }
}

impl Registered {
    /// A probe found this service up while it was up already (its grace period over, a request
    /// asked): its dependencies are looked at too, each through its own cache, and one found
    /// down is started again, in the background. A database that the app talks to directly is
    /// reached by no request through the monitor, so nothing else would notice that it crashed,
    /// or that another replica of a fleet stopped it as the app's start began: it would stay
    /// down for as long as the app is up. One look at a time. (An operator's stop of a
    /// dependency while its dependent is up is undone so too: stop the dependent first.)
    ///
    /// A dependency that cannot be started again (no `on_down`, its starts paused after a
    /// series of failures) is found down at every look, about once per grace period of the
    /// dependent: that is said at warn once per down spell of the dependency, at debug after,
    /// and at warn again once it has been up and gone down again.
    pub(super) fn recheck_dependencies(&self) {
        // Shutting down (held requests released): nothing is started for requests any more.
        if self.dependencies.of().is_empty() || self.is_released() {
            return;
        }
        let (Some(me), Ok(runtime)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        if self.rechecks.rechecking.swap(true, Ordering::SeqCst) {
            return;
        }
        let looking = Rechecking(me);
        runtime.spawn(async move {
            let me = &looking.0;
            let looks = me.dependencies.of().iter().zip(&me.rechecks.said);
            join_all(looks.map(|(dependency, said)| me.recheck(dependency, said))).await;
        });
    }

    /// One dependency's part of [`recheck_dependencies`](Self::recheck_dependencies).
    async fn recheck(self: &Arc<Self>, dependency: &Arc<Registered>, said: &AtomicU64) {
        if !matches!(dependency.status().await, Ok(false)) {
            return;
        }
        let dependent = &self.name;
        // Read after the probe that found it down: an up before that is another spell.
        let spell = dependency.times_up().wrapping_add(1);
        let before = said.swap(spell, Ordering::SeqCst);
        let first = before != spell;
        if first {
            tracing::info!(service = %dependent, dependency = %dependency.name,
                "{dependent}: {} was found down while {dependent} is up; starting it again",
                dependency.name);
        } else {
            tracing::debug!(service = %dependent, dependency = %dependency.name,
                "{dependent}: {} is still down; starting it again", dependency.name);
        }
        let recheck = Recheck {
            dependent: Arc::clone(self),
            first,
        };
        let again = up(
            Arc::clone(dependency),
            Arc::clone(dependent),
            Asker::Request,
            Some(&recheck),
        );
        match again.await {
            Ok(()) => {}
            Err(error) if error.downcast_ref::<DependentNotUp>().is_some() => {
                tracing::info!(service = %dependent, dependency = %dependency.name,
                    "{dependent}: {} is not started again: {error}", dependency.name);
                // Nothing was tried: a start that fails in a later look of this spell (the
                // dependent up again, its stop called off) is still the first said at warn.
                if first {
                    let _ =
                        said.compare_exchange(spell, before, Ordering::SeqCst, Ordering::SeqCst);
                }
            }
            Err(error) if first => {
                tracing::warn!(service = %dependent, dependency = %dependency.name, %error,
                    "{dependent}: {} could not be started again", dependency.name);
            }
            Err(error) => {
                tracing::debug!(service = %dependent, dependency = %dependency.name, %error,
                    "{dependent}: {} could not be started again", dependency.name);
            }
        }
    }
}

/// Why a recheck did not start a dependency it found down: its dependent had left Up.
#[derive(Debug)]
struct DependentNotUp(Arc<str>, ServiceState);

impl fmt::Display for DependentNotUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {} now", self.0, self.1)
    }
}

impl std::error::Error for DependentNotUp {}

/// Ends a look at the dependencies (see [`Registered::recheck_dependencies`]) however its task
/// ends: done, or dropped by a runtime shutting down.
struct Rechecking(Arc<Registered>);

impl Drop for Rechecking {
    fn drop(&mut self) {
        self.0.rechecks.rechecking.store(false, Ordering::SeqCst);
    }
}
