//! The lifecycle tests' fixture: one service "app" whose probe answers what a flag holds, with
//! counted probes, `on_down` runs and forwards.
#![allow(dead_code)] // each test binary uses its own subset

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tower_monitor::{
    BoxError, MinMonitor, MonitorLayer, MonitoredService, ServiceState, probe, trigger,
};

use crate::common::*;

/// A backend whose probe answers what `up` holds (counting probes), with a counted `on_down`
/// that takes `boot` and then, if `comes_up`, makes the backend answer.
pub struct Fixture {
    pub monitor: Arc<MinMonitor>,
    pub up: Arc<AtomicBool>,
    pub probes: Arc<AtomicUsize>,
    pub wakes: Arc<AtomicUsize>,
    pub forwarded: Arc<AtomicUsize>,
}

pub async fn fixture(
    configure: impl FnOnce(MonitoredService) -> MonitoredService,
    on_down_takes: Duration,
) -> Fixture {
    let (up, probes, wakes) = (Arc::new(AtomicBool::new(false)), counter(), counter());
    let (u, p, w) = (up.clone(), probes.clone(), wakes.clone());
    let service = MonitoredService::new(url_for(refused_addr().await), Duration::from_secs(60))
        .probe(probe::from_fn(move |_url| {
            p.fetch_add(1, Ordering::SeqCst);
            let up = u.load(Ordering::SeqCst);
            async move { Ok::<bool, BoxError>(up) }
        }))
        .on_down(trigger::from_fn(move || {
            w.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(on_down_takes).await;
                Ok::<(), BoxError>(())
            }
        }));
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("app", configure(service)).unwrap();
    Fixture {
        monitor,
        up,
        probes,
        wakes,
        forwarded: counter(),
    }
}

impl Fixture {
    /// A fixture for a service made by the test itself, whose probe answers what `up` holds;
    /// its own probes and wakes are not counted.
    pub fn around(service: MonitoredService, up: Arc<AtomicBool>) -> Self {
        let monitor = Arc::new(MinMonitor::new());
        monitor.add("app", service).unwrap();
        Self {
            monitor,
            up,
            probes: counter(),
            wakes: counter(),
            forwarded: counter(),
        }
    }

    pub fn service(
        &self,
        layer: MonitorLayer,
    ) -> tower_monitor::MonitorService<
        impl tower::Service<
            Request<()>,
            Response = Response<Full<Bytes>>,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static,
    > {
        let forwarded = self.forwarded.clone();
        layer.layer(tower::service_fn(move |_req: Request<()>| {
            forwarded.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::from("app"))) }
        }))
    }

    pub async fn send(&self, layer: MonitorLayer) -> StatusCode {
        self.service(layer)
            .oneshot(Request::new(()))
            .await
            .unwrap()
            .status()
    }

    /// Waits (bounded) until `on_down` has begun `n` runs, then checks there is no extra one.
    /// A run woken by no request (an idle stop's pending wake, a gone backend) is its own task.
    pub async fn woken(&self, n: usize) {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
        while count(&self.wakes) < n {
            assert!(tokio::time::Instant::now() < give_up, "on_down never ran");
            tokio::task::yield_now().await;
        }
        assert_eq!(count(&self.wakes), n);
    }

    /// Waits (bounded) until `n` requests are held, as the monitor's snapshot counts them.
    pub async fn holds(&self, n: usize, within: Duration) {
        let held = || self.monitor.snapshot()[0].requests_held;
        until(within, &format!("{n} held"), held, |held| *held == n).await;
    }

    /// Waits (bounded) until the service reaches `state`.
    pub async fn reaches(&self, state: ServiceState, within: Duration) {
        wait_for_state(&self.monitor, "app", state, within).await;
    }
}
