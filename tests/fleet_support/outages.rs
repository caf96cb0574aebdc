//! The fleet's outage warnings and recovery notices, counted per replica in the log of the
//! whole test binary (its one subscriber, `logs.rs`: its tests tell their replicas apart by id).

use tracing::Level;

use super::logs::{Captured, logs};

/// What the fleet has said of Redis, per replica.
pub struct Outages(Captured);

impl Outages {
    /// The log of this test binary, read for outages. Every test of a binary that counts
    /// outages calls this first, before its replicas log anything.
    pub fn logged() -> Self {
        Self(logs(Level::INFO))
    }

    /// How many times `replica` warned that Redis is unreachable.
    pub fn warned(&self, replica: &str) -> usize {
        self.count(replica, Level::WARN, "Redis is unreachable")
    }

    /// How many times `replica` said Redis is reachable again.
    pub fn recovered(&self, replica: &str) -> usize {
        self.count(replica, Level::INFO, "Redis is reachable again")
    }

    fn count(&self, replica: &str, level: Level, said: &str) -> usize {
        self.0
            .events_with("replica", replica)
            .iter()
            .filter(|event| event.level == level && event.message.contains(said))
            .count()
    }
}
