//! The start of a service that a reload added or changed waits for the programs of the
//! definitions it retired to stop: one port, one program at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::BoxError;
use crate::trigger::Trigger;

/// Opened once a reload's retired programs have stopped (or there was none to stop).
#[derive(Clone)]
pub(super) struct Gate(watch::Receiver<bool>);

/// Opens its [`Gate`]; dropped without it (its runtime gone), the gate opens too.
pub(super) struct Opener(watch::Sender<bool>);

impl Opener {
    pub(super) fn open(self) {
        self.0.send_replace(true);
    }
}

pub(super) fn gate() -> (Opener, Gate) {
    let (tx, rx) = watch::channel(false);
    (Opener(tx), Gate(rx))
}

impl Gate {
    /// Whether it is open already: nothing to wait for.
    pub(super) fn is_open(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once open, or after `bound`: whether it opened.
    pub(super) async fn opened_within(mut self, bound: std::time::Duration) -> bool {
        let open = self.0.wait_for(|open| *open);
        tokio::time::timeout(bound, open).await.is_ok()
    }
}

/// A new definition's `on_down`, run once its [`Gate`] is open; one whose definition a later
/// reload retired before it ran starts nothing.
pub(super) struct AfterStop {
    gate: Gate,
    retired: Arc<AtomicBool>,
    inner: Arc<dyn Trigger>,
    name: Arc<str>,
}

impl AfterStop {
    /// `inner` behind `gate`, and the flag that retires it.
    pub(super) fn new(gate: Gate, inner: Arc<dyn Trigger>, name: &str) -> (Self, Arc<AtomicBool>) {
        let retired = Arc::new(AtomicBool::new(false));
        let this = Self {
            gate,
            retired: Arc::clone(&retired),
            inner,
            name: Arc::from(name),
        };
        (this, retired)
    }
}

impl Trigger for AfterStop {
    fn trigger(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        let (gate, retired, inner, name) = (
            self.gate.clone(),
            Arc::clone(&self.retired),
            Arc::clone(&self.inner),
            Arc::clone(&self.name),
        );
        Box::pin(async move {
            if !gate.is_open() {
                tracing::info!(service = %name, "{name}'s start waits for the programs of the services a reload removed or changed to stop");
                if !gate.opened_within(super::plan::START_WAIT_BOUND).await {
                    return Err(format!(
                        "{name}: the programs a reload retired did not stop in time"
                    )
                    .into());
                }
            }
            if retired.load(Ordering::SeqCst) {
                return Err(format!("{name}: removed by a reload").into());
            }
            inner.trigger().await
        })
    }

    fn ended(&self) -> Option<BoxFuture<'static, ()>> {
        self.inner.ended()
    }

    fn abandon(&self) -> Option<BoxFuture<'static, ()>> {
        self.inner.abandon()
    }
}
