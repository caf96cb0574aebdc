//! A service's layer settings in `gateway.services.<name>`: hold mode, `Retry-After`, the
//! waiting page and the wake policy.

use std::path::Path;
use std::sync::Arc;

use regex::Regex;

use crate::config::ConfigError;
use crate::{MinMonitor, MonitorLayer};

use super::super::route_path::routing_path;
use super::ServiceSettings;

/// The monitor's layer for the service `name` as its `settings` (at `at`) say, each checked
/// here with an error naming its field.
pub(super) fn layer(
    monitor: &Arc<MinMonitor>,
    name: &str,
    settings: &ServiceSettings,
    at: &str,
    base_dir: Option<&Path>,
) -> Result<MonitorLayer, ConfigError> {
    // A refused or reset forward marks the backend down and wakes it (a 503, not a bare 502).
    let mut layer = monitor
        .layer(name)
        .map_err(|e| ConfigError::new(at, e.to_string()))?
        .backend_gone_when(crate::layer::BackendGone::in_response);
    if let Some(hold) = &settings.hold {
        layer = layer.hold(hold.max_wait.positive(format!("{at}.hold.max_wait"))?);
        if let Some(max_held) = hold.max_held {
            if max_held == 0 {
                return Err(ConfigError::new(
                    format!("{at}.hold.max_held"),
                    "must be at least 1",
                ));
            }
            layer = layer.max_held(max_held);
        }
    }
    if let Some(retry_after) = settings.retry_after {
        layer = layer.retry_after(retry_after.0);
    }
    if let Some(file) = &settings.waiting_page {
        // Named where it was looked for, as a relative `command` is.
        let (path, shown) = crate::config::paths::locate(base_dir, file);
        let page = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new(
                format!("{at}.waiting_page"),
                format!("cannot read {shown}: {e}"),
            )
        })?;
        layer = layer.waiting_page(page);
    }
    if let Some(wake) = &settings.wake {
        for (i, path) in wake.never_paths.iter().enumerate() {
            if !path.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{at}.wake.never_paths[{i}]"),
                    format!("{path:?} must start with \"/\""),
                ));
            }
        }
        let agents = wake
            .never_user_agents
            .as_deref()
            .map(|pattern| {
                Regex::new(pattern).map_err(|e| {
                    ConfigError::regex(format!("{at}.wake.never_user_agents"), pattern, &e)
                })
            })
            .transpose()?;
        // Compared as routes are: `/%68ealthz` is `/healthz` to the backend too.
        let paths: Vec<Box<[u8]>> = wake
            .never_paths
            .iter()
            .map(|path| routing_path(path).into())
            .collect();
        layer = layer.wake_when(move |_method, uri, headers| {
            let path = routing_path(uri.path());
            let quiet_path = paths.iter().any(|prefix| path.starts_with(prefix));
            let quiet_agent = agents.as_ref().is_some_and(|agents| {
                headers
                    .get(http::header::USER_AGENT)
                    .and_then(|ua| ua.to_str().ok())
                    .is_some_and(|ua| agents.is_match(ua))
            });
            !quiet_path && !quiet_agent
        });
    }
    Ok(layer)
}
