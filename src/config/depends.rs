//! The order services are added in: each after the services it `depends_on`, which the
//! monitor requires. A file may list them in any order; a name that is no service, or a
//! cycle, is named before anything is added.

use super::ConfigError;
use super::registry::field_name;
use crate::MonitoredService;

/// `services` (name, its path in the configuration, the service) reordered so that each comes
/// after its dependencies, otherwise in the order given.
pub(super) fn order(
    mut services: Vec<(String, String, MonitoredService)>,
) -> Result<Vec<(String, String, MonitoredService)>, ConfigError> {
    for (_, path, service) in &services {
        for (i, dependency) in service.depends_on.iter().enumerate() {
            if !services.iter().any(|(name, _, _)| **name == **dependency) {
                return Err(ConfigError::new(
                    format!("{path}.depends_on[{i}]"),
                    format!("there is no service named {dependency:?}"),
                ));
            }
        }
    }
    let mut ordered = Vec::with_capacity(services.len());
    while !services.is_empty() {
        // The first whose dependencies are all placed; none means the rest hold a cycle.
        let ready = services.iter().position(|(_, _, service)| {
            service.depends_on.iter().all(|dependency| {
                ordered
                    .iter()
                    .any(|(name, _, _): &(String, String, MonitoredService)| **name == **dependency)
            })
        });
        match ready {
            Some(index) => ordered.push(services.remove(index)),
            None => return Err(cycle(&services)),
        }
    }
    Ok(ordered)
}

/// The error for the services left, each depending on another of them: follows the first's
/// dependencies until a name comes again, and names that loop.
fn cycle(left: &[(String, String, MonitoredService)]) -> ConfigError {
    let next = |name: &str| {
        left.iter()
            .find(|(n, _, _)| n == name)
            .and_then(|(_, _, service)| {
                service
                    .depends_on
                    .iter()
                    .find(|d| left.iter().any(|(n, _, _)| **n == ***d))
            })
            .map(|d| d.to_string())
    };
    let mut path: Vec<String> = vec![left[0].0.clone()];
    while let Some(dependency) = next(path.last().map_or("", String::as_str)) {
        if let Some(start) = path.iter().position(|name| *name == dependency) {
            path.drain(..start);
            path.push(dependency);
            break;
        }
        path.push(dependency);
    }
    let shown: Vec<String> = path
        .iter()
        .map(|name| field_name(name).into_owned())
        .collect();
    ConfigError::new(
        format!("services.{}.depends_on", field_name(&path[0])),
        format!(
            "a cycle: {}; a service cannot need itself up first",
            shown.join(" → ")
        ),
    )
}
