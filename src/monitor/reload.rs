//! What a gateway's reload asks of a monitor: to take the services it keeps from the
//! monitor in use, and to put the new set in place of the old at once.

#[cfg(feature = "gateway")]
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, PoisonError};

use super::MinMonitor;
use crate::error::MonitorError;
use crate::registered::Registered;

impl MinMonitor {
    /// Takes `registered`, a service of another monitor, under `name` as it is: its state,
    /// its programs and its counters go on. Its dependencies must be here already, as the
    /// very ones it holds (a reload adopts an unchanged service with its unchanged
    /// dependencies).
    pub(crate) fn adopt(
        &self,
        name: String,
        registered: Arc<Registered>,
    ) -> Result<(), MonitorError> {
        let mut services = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match services.entry(name) {
            Entry::Occupied(taken) => Err(MonitorError::DuplicateServiceRegistration(
                taken.key().clone(),
            )),
            Entry::Vacant(slot) => {
                slot.insert(registered);
                Ok(())
            }
        }
    }

    /// Puts the services of `from` in place of this monitor's, at once (a reload's commit),
    /// and answers those it had.
    #[cfg(feature = "gateway")]
    pub(crate) fn replace_services(&self, from: &MinMonitor) -> HashMap<String, Arc<Registered>> {
        let new = from
            .services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut services = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut *services, new);
        let mut removed = self.removed.write().unwrap_or_else(PoisonError::into_inner);
        removed.extend(
            old.keys()
                .filter(|name| !services.contains_key(*name))
                .cloned(),
        );
        removed.retain(|name| !services.contains_key(name));
        old
    }

    /// The names of the services a reload removed, none of them added back since.
    #[cfg(all(feature = "gateway", feature = "admin"))]
    pub(crate) fn removed(&self) -> std::collections::BTreeSet<String> {
        self.removed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
