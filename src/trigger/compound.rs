use std::fmt;
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};

use super::Trigger;
use crate::BoxError;

/// Runs triggers in order; the first failure stops the run and is its result.
///
/// ```
/// use tower_monitor::BoxError;
/// use tower_monitor::trigger::{self, Command, Compound};
///
/// let start = Compound::new()
///     .then(Command::new("start-vm"))
///     .then(trigger::from_fn(|| async { Ok::<(), BoxError>(()) }));
/// assert_eq!(start.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct Compound {
    triggers: Vec<Arc<dyn Trigger>>,
}

impl Compound {
    /// An empty sequence (which always succeeds).
    ///
    /// ```
    /// let nothing = tower_monitor::trigger::Compound::new();
    /// assert!(nothing.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `trigger` to the sequence.
    ///
    /// ```
    /// use tower_monitor::trigger::{Command, Compound};
    /// let two = Compound::new().then(Command::new("a")).then(Command::new("b"));
    /// assert_eq!(two.len(), 2);
    /// ```
    pub fn then(mut self, trigger: impl Trigger) -> Self {
        self.triggers.push(Arc::new(trigger));
        self
    }

    /// How many triggers the sequence holds.
    ///
    /// ```
    /// assert_eq!(tower_monitor::trigger::Compound::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.triggers.len()
    }

    /// Whether the sequence is empty.
    ///
    /// ```
    /// assert!(tower_monitor::trigger::Compound::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.triggers.is_empty()
    }
}

impl FromIterator<Arc<dyn Trigger>> for Compound {
    fn from_iter<I: IntoIterator<Item = Arc<dyn Trigger>>>(triggers: I) -> Self {
        Self {
            triggers: triggers.into_iter().collect(),
        }
    }
}

impl fmt::Debug for Compound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compound")
            .field("len", &self.triggers.len())
            .finish()
    }
}

impl Trigger for Compound {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        let triggers = self.triggers.clone();
        async move {
            for trigger in triggers {
                trigger.trigger().await?;
            }
            Ok(())
        }
        .boxed()
    }

    /// When what any member started has ended.
    fn ended(&self) -> Option<BoxFuture<'static, ()>> {
        let ended: Vec<_> = self.triggers.iter().filter_map(|t| t.ended()).collect();
        (!ended.is_empty()).then(|| futures::future::select_all(ended).map(|_| ()).boxed())
    }

    /// Stops what every member started.
    fn abandon(&self) -> Option<BoxFuture<'static, ()>> {
        let abandon: Vec<_> = self.triggers.iter().filter_map(|t| t.abandon()).collect();
        (!abandon.is_empty()).then(|| futures::future::join_all(abandon).map(drop).boxed())
    }
}
