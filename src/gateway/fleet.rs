//! The gateway's fleet section: `"fleet": { "redis": "redis://127.0.0.1:6379/", "prefix": "…" }`
//! beside `gateway` and `services`. Replicas with the same Redis and prefix share one lifecycle
//! per backend (see the `fleet` module). Needs the `fleet` feature.

use serde_json::Value;

use crate::config::ConfigError;

/// The fleet's settings, checked (joined when the gateway starts serving: joining needs a
/// running Tokio runtime, which `--check` does not start).
#[cfg(feature = "fleet")]
pub(super) type FleetSettings = crate::fleet::FleetConfig;

/// Without the `fleet` feature there is nothing to hold.
#[cfg(not(feature = "fleet"))]
pub(super) type FleetSettings = std::convert::Infallible;

/// Takes the `fleet` section out of the document, if there is one.
pub(super) fn take(document: &mut Value) -> Result<Option<FleetSettings>, ConfigError> {
    let Some(section) = document.as_object_mut().and_then(|doc| doc.remove("fleet")) else {
        return Ok(None);
    };
    parse(section).map(Some)
}

#[cfg(feature = "fleet")]
fn parse(section: Value) -> Result<FleetSettings, ConfigError> {
    let config: FleetSettings = crate::config::registry::parse_at("fleet", section)?;
    config.validate().map_err(|error| match error {
        crate::fleet::FleetError::Invalid { field, .. } => {
            ConfigError::new(field, error.to_string())
        }
        other => ConfigError::new("fleet", other.to_string()),
    })?;
    Ok(config)
}

#[cfg(not(feature = "fleet"))]
fn parse(_section: Value) -> Result<FleetSettings, ConfigError> {
    Err(ConfigError::new(
        "fleet",
        "this gateway was built without fleet mode (cargo feature `fleet`)",
    ))
}
