//! The processes a program started, to stop them all when it exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::{Process, ProcessBuilder, ProcessError, WeakProcess};

/// Remembers every [`Process`] it made, so that a program (the gateway) stops them all on its
/// way out: [`shutdown`](Self::shutdown) stops each running one (SIGTERM, SIGKILL after the
/// grace) and from then on none of them starts again.
///
/// It holds its processes weakly: a process whose last handle is dropped is killed then, and
/// forgotten here. Cloning gives another handle to the same supervisor. A configuration read
/// with [`TriggerRegistry`](crate::config::TriggerRegistry) puts its `process` triggers under
/// the registry's supervisor ([`TriggerRegistry::supervisor`](crate::config::TriggerRegistry::supervisor)).
///
/// ```
/// use std::time::Duration;
/// use tower_monitor::trigger::{Process, Supervisor};
///
/// # #[tokio::main] async fn main() -> Result<(), tower_monitor::trigger::ProcessError> {
/// let supervisor = Supervisor::new();
/// let a = supervisor.supervise(Process::builder("sleep").arg("60"));
/// let b = supervisor.supervise(Process::builder("sleep").arg("60"));
/// a.start()?;
/// b.start()?;
/// assert_eq!(supervisor.running().len(), 2);
///
/// supervisor.shutdown(Duration::from_secs(5)).await?;
/// assert!(supervisor.running().is_empty());
/// assert!(a.start().is_err(), "nothing starts after the shutdown");
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Default)]
pub(super) struct Inner {
    closed: AtomicBool,
    processes: Mutex<Vec<WeakProcess>>,
}

impl Inner {
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn processes(&self) -> Vec<Process> {
        let mut list = self
            .processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        list.retain(|weak| weak.upgrade().is_some());
        list.iter().filter_map(WeakProcess::upgrade).collect()
    }
}

impl Supervisor {
    /// A supervisor with no process yet.
    ///
    /// ```
    /// let supervisor = tower_monitor::trigger::Supervisor::new();
    /// assert!(supervisor.running().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The process described by `builder`, supervised by this supervisor.
    ///
    /// ```
    /// use tower_monitor::trigger::{Process, Supervisor};
    ///
    /// let supervisor = Supervisor::new();
    /// let backend = supervisor.supervise(Process::builder("my-server").arg("--port=8081"));
    /// assert!(!backend.is_running());
    /// ```
    pub fn supervise(&self, builder: ProcessBuilder) -> Process {
        let process = Process::new(builder, Some(self.inner.clone()));
        let mut list = self
            .inner
            .processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Forget the dropped ones here too, so that the list stays as long as the live ones.
        list.retain(|weak| weak.upgrade().is_some());
        list.push(process.downgrade());
        process
    }

    /// The process ids of its programs that run now.
    ///
    /// ```
    /// assert!(tower_monitor::trigger::Supervisor::new().running().is_empty());
    /// ```
    pub fn running(&self) -> Vec<u32> {
        self.inner
            .processes()
            .iter()
            .filter_map(Process::pid)
            .collect()
    }

    /// Its processes that are the backend of the service `name` (given at build time, or
    /// learned from the first start), running or not.
    #[cfg(feature = "gateway")]
    pub(crate) fn processes_of(&self, name: &str) -> Vec<Process> {
        let mut processes = self.inner.processes();
        processes.retain(|process| process.shared.service() == Some(name));
        processes
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    ///
    /// ```
    /// assert!(!tower_monitor::trigger::Supervisor::new().is_shut_down());
    /// ```
    pub fn is_shut_down(&self) -> bool {
        self.inner.is_closed()
    }

    /// Stops every running program (all at once: SIGTERM to each group, SIGKILL to what is left
    /// after `grace`) and starts none from now on: their triggers fail with
    /// [`ProcessError::ShutDown`]. Resolves once all have exited and been reaped; the first
    /// failure, if any, is returned after every stop was tried (each failure is logged).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// # use std::time::Duration;
    /// let supervisor = tower_monitor::trigger::Supervisor::new();
    /// supervisor.shutdown(Duration::from_secs(10)).await.unwrap();
    /// assert!(supervisor.is_shut_down());
    /// # }
    /// ```
    pub async fn shutdown(&self, grace: Duration) -> Result<(), ProcessError> {
        self.stop_all(Some(grace)).await
    }

    /// Like [`shutdown`](Self::shutdown), each program with its own stop grace
    /// ([`ProcessBuilder::stop_grace`]): what an operator configured for it, as its idle stop
    /// uses.
    #[cfg(feature = "gateway")]
    pub(crate) async fn shutdown_each_with_its_grace(&self) -> Result<(), ProcessError> {
        self.stop_all(None).await
    }

    async fn stop_all(&self, grace: Option<Duration>) -> Result<(), ProcessError> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let processes = self.inner.processes();
        let stops = processes.iter().map(|process| async move {
            match grace {
                Some(grace) => process.stop_with(grace).await,
                None => process.stop().await,
            }
        });
        let mut first_error = None;
        let results = futures::future::join_all(stops).await;
        for (process, result) in processes.iter().zip(results) {
            if let Err(error) = result {
                let service = process.shared.service();
                tracing::error!(service = service.map(tracing::field::display), %error, "could not stop a supervised program");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("running", &self.running())
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}
