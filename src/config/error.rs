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

/// serde's message in the words of a JSON file's writer: `object` and `list` for `map` and
/// `sequence`, `a whole number` for `usize`, and a list given for an object (which serde's
/// derived structs would read by position) said to be the wrong type, not the wrong length.
/// Every object of the configuration says what it expects as `an object …` (serde's
/// `expecting`), which is how a list given for one is told from a list too short.
pub(crate) fn plain_words(message: String) -> String {
    let mut message = message;
    if let Some(rest) = message.strip_prefix("invalid length ") {
        if let Some((_, expected)) = rest.split_once(", expected ") {
            if expected.starts_with("an object") {
                message = format!("invalid type: list, expected {expected}");
            }
        }
    }
    for (from, to) in [
        ("invalid type: map,", "invalid type: object,"),
        ("invalid type: sequence,", "invalid type: list,"),
    ] {
        if let Some(rest) = message.strip_prefix(from) {
            message = format!("{to}{rest}");
        }
    }
    if let Some(with_suggestion) = suggest_field(&message) {
        message = with_suggestion;
    }
    for (from, to) in [
        (", expected a sequence", ", expected a list"),
        (", expected a map", ", expected an object"),
        (", expected usize", ", expected a whole number"),
        (", expected u64", ", expected a whole number"),
        (", expected u32", ", expected a whole number"),
        (", expected u16", ", expected a whole number"),
    ] {
        if let Some(start) = message.strip_suffix(from) {
            message = format!("{start}{to}");
        }
    }
    message
}

/// serde's "unknown field `grace_perod`, expected one of `url`, `grace_period`, …" with the
/// likely meant one named first, "(did you mean `grace_period`?)": the list is long, and a
/// typo, a `-` for `_` or a capital is the usual cause.
fn suggest_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once("`, expected ")?;
    let meant = closest(unknown, expected.split('`').skip(1).step_by(2))?;
    Some(format!(
        "unknown field `{unknown}` (did you mean `{meant}`?), expected {expected}"
    ))
}

/// The one of `known` that `typed` likely means: within two edits (one for a name of five
/// letters or fewer), once `-` is read as `_` and capitals as small letters, and closer than
/// any other.
pub(crate) fn closest<'a>(typed: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    // A name as long as a page is no typo (and would cost its length times each name's).
    if typed.len() > 64 {
        return None;
    }
    let typed = typed.to_lowercase().replace('-', "_");
    let close: Vec<(usize, &str)> = known
        .map(|name| (edit_distance(&typed, name), name))
        .filter(|(distance, name)| *distance <= if name.len() > 5 { 2 } else { 1 })
        .collect();
    let best = close.iter().map(|(distance, _)| *distance).min()?;
    let mut nearest = close.iter().filter(|(distance, _)| *distance == best);
    // Two names as close: naming one would be a guess.
    match (nearest.next(), nearest.next()) {
        (Some((_, meant)), None) => Some(meant),
        _ => None,
    }
}

/// The Levenshtein distance between two short names, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}
