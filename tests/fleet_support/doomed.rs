//! A replica that will crash in the middle of a start: it runs on a runtime of its own, and its
//! `on_down` starts and never finishes; shutting that runtime down is the crash (its tasks are
//! gone, its lease neither renewed nor freed).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Runtime;
use tower_monitor::{BoxError, MinMonitor, MonitoredService, ServiceState, trigger};

use std::time::Duration;

use super::{Backend, GRACE, RedisServer, eventually, fleet, replica, request, state};

pub struct Doomed {
    runtime: Runtime,
    pub monitor: Arc<MinMonitor>,
    starts: Arc<AtomicUsize>,
}

impl Doomed {
    /// Replica `id` of the fleet "t", in front of `backend`.
    pub async fn new(redis: &RedisServer, backend: &Backend, id: &'static str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&starts);
        let hanging =
            MonitoredService::new(backend.url(), GRACE).on_down(trigger::from_fn(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<Result<(), BoxError>>()
            }));
        let url = redis.url();
        let monitor = runtime
            .spawn(async move { replica(fleet(&url, "t", id), hanging) })
            .await
            .unwrap();
        Self {
            runtime,
            monitor,
            starts,
        }
    }

    /// A request to the replica, on its runtime: it starts the backend (and never ends).
    pub fn request(&self) {
        let monitor = Arc::clone(&self.monitor);
        self.runtime
            .spawn(async move { request(&monitor, None, 1).await });
    }

    /// Makes the request that starts the backend, and waits (bounded) until its start runs and
    /// each of `followers` has heard of it (Starting, leaving the start to this replica).
    pub async fn start_followed_by(&self, followers: &[&Arc<MinMonitor>]) {
        self.request();
        assert!(
            eventually(Duration::from_secs(5), || self.starts() == 1).await,
            "the doomed replica's start did not begin"
        );
        for follower in followers {
            assert!(
                eventually(Duration::from_secs(5), || state(follower)
                    == ServiceState::Starting)
                .await,
                "a replica did not hear of the start: {}",
                state(follower)
            );
        }
    }

    /// How many times its `on_down` was called.
    pub fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    /// The crash: its tasks are gone, its lease is neither renewed nor freed.
    pub fn crash(self) {
        self.runtime.shutdown_background();
    }
}
