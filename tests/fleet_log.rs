//! A Redis outage is logged once at warn, and its end once, however many calls fail meanwhile.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fleet_support::*;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Counts the fleet's outage warnings and recovery notices.
#[derive(Clone, Default)]
struct Outages {
    warned: Arc<AtomicUsize>,
    recovered: Arc<AtomicUsize>,
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Outages {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let level = *event.metadata().level();
        if level == tracing::Level::WARN && message.0.contains("Redis is unreachable") {
            self.warned.fetch_add(1, Ordering::SeqCst);
        }
        if level == tracing::Level::INFO && message.0.contains("Redis is reachable again") {
            self.recovered.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outage_is_one_warning_and_one_recovery_notice() {
    let outages = Outages::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(outages.clone()))
        .unwrap();
    let warned = || outages.warned.load(Ordering::SeqCst);
    let recovered = || outages.recovered.load(Ordering::SeqCst);

    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let backend = Backend::new(Duration::ZERO).await;
    backend.start_now().await;
    let fleet = fleet(&redis.url(), "t", "a").heartbeat(Duration::from_millis(50));
    let monitor = replica(
        fleet,
        service(
            &backend,
            Duration::from_secs(60),
            Duration::from_millis(100),
        ),
    );
    assert_eq!(request(&monitor, None, 1).await, 200);
    assert_eq!(warned(), 0);

    for outage in 1..=2 {
        redis.kill();
        // Twenty heartbeats fail, and requests go on; one warning.
        for _ in 0..10 {
            assert_eq!(request(&monitor, None, 1).await, 200);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(warned(), outage, "one warning per outage");
        redis.restart().await;
        assert!(eventually(Duration::from_secs(10), || recovered() == outage).await);
        assert_eq!(warned(), outage);
    }
}
