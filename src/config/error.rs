use std::fmt;

/// A configuration that cannot be used: where (the field's path) and why (with the bad value).
///
/// ```
/// use tower_monitor::MinMonitor;
///
/// let err = MinMonitor::from_config(r#"{"services": {"app": {"url": "nope", "grace_period": "1s"}}}"#).unwrap_err();
/// assert_eq!(err.path(), "services.app.url");
/// assert!(err.message().contains("\"nope\""));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    message: String,
}

impl ConfigError {
    /// An error at `path` (dotted, with `[i]` for list items; empty for the whole document).
    ///
    /// ```
    /// let err = tower_monitor::config::ConfigError::new("services.app.on_down.level", "must be 1 to 3");
    /// assert_eq!(err.to_string(), "services.app.on_down.level: must be 1 to 3");
    /// ```
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A regular expression at `path` that does not compile, said in one line: the regex
    /// crate's own text spans several, pointing a caret at the pattern.
    pub(crate) fn regex(path: impl Into<String>, pattern: &str, error: &regex::Error) -> Self {
        let text = error.to_string();
        let reason = text
            .lines()
            .find_map(|line| line.strip_prefix("error: "))
            .map_or_else(
                || text.split_whitespace().collect::<Vec<_>>().join(" "),
                str::to_string,
            );
        Self::new(
            path,
            format!("invalid regular expression {pattern:?}: {reason}"),
        )
    }

    /// Where the problem is, e.g. `services.app.grace_period`.
    ///
    /// ```
    /// let err = tower_monitor::config::ConfigError::new("services", "at least one service is required");
    /// assert_eq!(err.path(), "services");
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong there.
    ///
    /// ```
    /// let err = tower_monitor::config::ConfigError::new("services", "at least one service is required");
    /// assert_eq!(err.message(), "at least one service is required");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}
