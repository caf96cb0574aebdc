//! The fleet's outage warnings and recovery notices, counted per replica from the log of the
//! whole test binary (one subscriber per binary: its tests tell their replicas apart by id).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// What the fleet has said of Redis, per replica.
#[derive(Default)]
pub struct Outages {
    warned: Mutex<HashMap<String, usize>>,
    recovered: Mutex<HashMap<String, usize>>,
}

impl Outages {
    /// The counts of this test binary, counting from the first call on.
    pub fn installed() -> &'static Outages {
        static OUTAGES: OnceLock<&'static Outages> = OnceLock::new();
        OUTAGES.get_or_init(|| {
            let outages: &'static Outages = Box::leak(Box::default());
            let subscriber = tracing_subscriber::registry().with(Layer(outages));
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            outages
        })
    }

    /// How many times `replica` warned that Redis is unreachable.
    pub fn warned(&self, replica: &str) -> usize {
        count(&self.warned, replica)
    }

    /// How many times `replica` said Redis is reachable again.
    pub fn recovered(&self, replica: &str) -> usize {
        count(&self.recovered, replica)
    }
}

fn count(counts: &Mutex<HashMap<String, usize>>, replica: &str) -> usize {
    counts.lock().unwrap().get(replica).copied().unwrap_or(0)
}

struct Layer(&'static Outages);

/// An event's message and `replica` field.
#[derive(Default)]
struct Fields {
    message: String,
    replica: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "replica" => self.replica = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let counts =
            if level == tracing::Level::WARN && fields.message.contains("Redis is unreachable") {
                &self.0.warned
            } else if level == tracing::Level::INFO
                && fields.message.contains("Redis is reachable again")
            {
                &self.0.recovered
            } else {
                return;
            };
        *counts.lock().unwrap().entry(fields.replica).or_default() += 1;
    }
}
