//! [`FleetConfig`]: where the fleet's Redis is and which keys it uses, as a gateway config reads it.

use serde::Deserialize;

use super::FleetError;

/// The prefix of every key and channel when none is given.
pub const DEFAULT_PREFIX: &str = "tower-monitor";

/// The `"fleet"` part of a configuration: `{"redis": "redis://127.0.0.1:6379/", "prefix": "…"}`.
///
/// `redis` is a `redis://` URL (Valkey speaks the same protocol), with a database number and
/// credentials if needed (`redis://user:password@host:6379/2`);
/// `prefix` (optional, default `"tower-monitor"`) starts every key and the channel, so fleets
/// that must not see each other can share one Redis. Replicas of one fleet need the same URL
/// and prefix. Unknown fields are rejected, so a typo is an error rather than a fleet of one.
///
/// ```
/// use tower_monitor::fleet::FleetConfig;
///
/// let config: FleetConfig =
///     serde_json::from_str(r#"{"redis": "redis://127.0.0.1:6379/", "prefix": "shop"}"#).unwrap();
/// assert_eq!(config.prefix, "shop");
/// config.validate().unwrap();
/// ```
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(
    deny_unknown_fields,
    expecting = "an object such as {\"redis\": \"redis://127.0.0.1:6379/\", \"prefix\": \"shop\"}"
)]
pub struct FleetConfig {
    /// The Redis (Valkey) URL.
    pub redis: String,
    /// What every key and the channel start with.
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

// By hand: the URL's password stays out of debug output (a gateway's settings are printed so).
impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfig")
            .field("redis", &crate::redact::url_text(&self.redis))
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.to_string()
}

impl FleetConfig {
    /// A configuration for `redis` with the default prefix.
    ///
    /// ```
    /// let config = tower_monitor::fleet::FleetConfig::new("redis://127.0.0.1:6379/");
    /// assert_eq!(config.prefix, "tower-monitor");
    /// ```
    pub fn new(redis: impl Into<String>) -> Self {
        Self {
            redis: redis.into(),
            prefix: default_prefix(),
        }
    }

    /// The same configuration with another prefix.
    ///
    /// ```
    /// let config = tower_monitor::fleet::FleetConfig::new("redis://127.0.0.1:6379/").prefix("shop");
    /// assert_eq!(config.prefix, "shop");
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Checks both fields: a URL the Redis client accepts, and a prefix that is not empty and
    /// has no whitespace (it is written into messages split on spaces). The error names the
    /// field and the value.
    ///
    /// ```
    /// use tower_monitor::fleet::{FleetConfig, FleetError};
    ///
    /// let err = FleetConfig::new("http://127.0.0.1/").validate().unwrap_err();
    /// assert!(matches!(err, FleetError::Invalid { field: "fleet.redis", .. }));
    /// ```
    pub fn validate(&self) -> Result<(), FleetError> {
        redis::Client::open(self.redis.as_str()).map_err(|error| FleetError::Invalid {
            field: "fleet.redis",
            // A Redis URL often carries a password (`redis://:password@…`); errors are logged.
            value: crate::redact::url_text(&self.redis),
            reason: error.to_string(),
        })?;
        check_word("fleet.prefix", &self.prefix)
    }
}

/// A value that goes into keys and space-separated messages: not empty, no whitespace.
pub(crate) fn check_word(field: &'static str, value: &str) -> Result<(), FleetError> {
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(FleetError::Invalid {
            field,
            value: value.to_string(),
            reason: "must be non-empty and contain no whitespace".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_defaults_and_unknown_fields_are_rejected() {
        let config: FleetConfig =
            serde_json::from_str(r#"{"redis": "redis://127.0.0.1:6379/"}"#).unwrap();
        assert_eq!(config.prefix, DEFAULT_PREFIX);
        let typo = serde_json::from_str::<FleetConfig>(r#"{"redis": "redis://x/", "prefx": "a"}"#);
        assert!(typo.unwrap_err().to_string().contains("prefx"));
    }

    #[test]
    fn a_bad_prefix_names_its_field() {
        let err = FleetConfig::new("redis://127.0.0.1/")
            .prefix("two words")
            .validate()
            .unwrap_err();
        assert!(
            matches!(err, FleetError::Invalid { field: "fleet.prefix", ref value, .. } if value == "two words")
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!("{:?}", FleetConfig::new("redis://:hunter2@127.0.0.1:6379/"));
        assert!(shown.contains("127.0.0.1:6379"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
