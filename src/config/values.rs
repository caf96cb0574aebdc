//! The values a configuration writes as text: durations (`"30s"`) and URLs, each read with an
//! error that says what to write.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::{ConfigError, MAX_DURATION};
use crate::Url;

/// A duration written the human way: `"30s"`, `"1m30s"`, `"250ms"`; at most [`MAX_DURATION`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct DurationValue(pub(crate) Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = deserializer.deserialize_str(DurationText)?;
        let duration = humantime::parse_duration(&text).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write e.g. \"30s\" or \"1m30s\""
            ))
        })?;
        if duration > MAX_DURATION {
            return Err(de::Error::custom(format!(
                "duration {text:?} is longer than the maximum, {:?} ({}s)",
                humantime::format_duration(MAX_DURATION).to_string(),
                MAX_DURATION.as_secs()
            )));
        }
        Ok(DurationValue(duration))
    }
}

/// Reads a duration's text, so that a number or a list in its place is said to be no
/// duration ("expected a duration such as …"), not merely no string.
struct DurationText;

impl de::Visitor<'_> for DurationText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30s\", \"1m30s\" or \"250ms\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
        Ok(text.to_string())
    }
}

impl DurationValue {
    /// The duration, if it is more than zero; `field` names it in the error. For waits whose
    /// zero gives up at once (a 504 for a request that was about to be answered), though a
    /// reader may take it to mean "no limit".
    pub(crate) fn positive(self, field: impl Into<String>) -> Result<Duration, ConfigError> {
        if self.0.is_zero() {
            return Err(ConfigError::new(
                field,
                format!(
                    "must be more than \"0s\": zero gives up at once, it is not \"no limit\" (for that, write \"{}\")",
                    humantime::format_duration(MAX_DURATION)
                ),
            ));
        }
        Ok(self.0)
    }
}

/// A URL, whose parse error names it.
pub(crate) struct UrlValue(pub(crate) Url);

impl<'de> Deserialize<'de> for UrlValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let shown = crate::redact::url_text(&text);
        // `127.0.0.1:8081` fails as a relative URL and `localhost:8081` parses with the scheme
        // `localhost` and no host: both are an address written without its `http://`.
        let hint = || match shown.contains("//") {
            true => String::new(),
            false => format!(
                "; write it with its scheme, e.g. \"http://{}/\"",
                shown.trim_end_matches('/')
            ),
        };
        match Url::parse(&text) {
            Ok(url) if url.cannot_be_a_base() => Err(de::Error::custom(format!(
                "invalid URL {shown:?}: no host{}",
                hint()
            ))),
            Ok(url) => Ok(UrlValue(url)),
            Err(e @ url::ParseError::RelativeUrlWithoutBase) => Err(de::Error::custom(format!(
                "invalid URL {shown:?}: {e}{}",
                hint()
            ))),
            Err(e) => Err(de::Error::custom(format!("invalid URL {shown:?}: {e}"))),
        }
    }
}

impl fmt::Debug for UrlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_str().fmt(f)
    }
}
