//! The bearer token that guards the admin actions, and the log of the actions it refuses.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::act::Peer;

/// At most one refusal a minute is logged at warn: anyone who reaches the admin port can ask
/// without the token, as often as they like, and each warn line would be theirs to write.
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(60);

/// The token an action must present as `Authorization: Bearer <token>`.
#[derive(Clone)]
pub(crate) struct Token(Box<[u8]>);

impl Token {
    pub(crate) fn new(token: String) -> Self {
        Self(token.into_bytes().into_boxed_slice())
    }

    /// Whether the request carries the token. An empty token admits no one.
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let Some(scheme) = value.get(..7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        !self.0.is_empty() && same(&value[7..], &self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// The actions refused for want of the token, for their log: the first, and then the first
/// after each [`REFUSAL_WARN_EVERY`], at warn with how many were refused since the last one
/// logged at warn; the others at debug. One for an admin service and its clones.
#[derive(Debug, Default)]
pub(crate) struct Refusals(Mutex<Window>);

#[derive(Debug, Default)]
struct Window {
    /// When the last refusal logged at warn was.
    warned: Option<Instant>,
    /// The refusals logged at debug since.
    quiet: u64,
}

impl Refusals {
    /// Logs the refusal of `action` of `name` (as sent) to `peer`, for `why`.
    pub(crate) fn log(&self, peer: &Peer, name: &str, action: &str, why: &str) {
        let why = why.trim_end();
        // The name as sent (Debug: escaped), since it names no service yet.
        match self.at_warn(Instant::now()) {
            Some(quiet) => tracing::warn!(
                %peer,
                service = ?name,
                action,
                refused_quietly = quiet,
                "admin action refused: {why} (refusals are logged at warn at most once a minute; \
                 refused_quietly: those logged at debug since the last one)"
            ),
            None => tracing::debug!(%peer, service = ?name, action, "admin action refused: {why}"),
        }
    }

    /// Whether a refusal at `now` is logged at warn: then with how many were refused since the
    /// last one that was.
    fn at_warn(&self, now: Instant) -> Option<u64> {
        let mut window = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match window.warned {
            Some(warned) if now.saturating_duration_since(warned) < REFUSAL_WARN_EVERY => {
                window.quiet += 1;
                None
            }
            _ => {
                window.warned = Some(now);
                Some(std::mem::take(&mut window.quiet))
            }
        }
    }
}

/// Compares in time that depends on the lengths only, never on where the bytes differ, so a
/// client cannot find the token byte by byte from how long refusals take.
fn same(given: &[u8], token: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != token.len());
    for (i, expected) in token.iter().enumerate() {
        let got = given.get(i).copied().unwrap_or(!expected);
        diff |= std::hint::black_box(got ^ expected);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_exact_token_is_admitted() {
        let token = Token::new("s3cret".into());
        assert!(token.admits(&with("Bearer s3cret")));
        assert!(token.admits(&with("bearer s3cret")));
        assert!(!token.admits(&with("Bearer s3cre")));
        assert!(!token.admits(&with("Bearer s3cret!")));
        assert!(!token.admits(&with("Bearer S3cret")));
        assert!(!token.admits(&with("Basic s3cret")));
        assert!(!token.admits(&with("Bearer")));
        assert!(!token.admits(&HeaderMap::new()));
    }

    #[test]
    fn one_refusal_a_minute_is_at_warn_with_the_count_of_those_since() {
        let refusals = Refusals::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(refusals.at_warn(at(0)), Some(0));
        for secs in [0, 1, 59] {
            assert_eq!(refusals.at_warn(at(secs)), None, "at {secs} s");
        }
        assert_eq!(refusals.at_warn(at(60)), Some(3));
        assert_eq!(refusals.at_warn(at(61)), None);
        // Long after: at warn at once, with the one refused quietly meanwhile.
        assert_eq!(refusals.at_warn(at(3600)), Some(1));
        assert_eq!(refusals.at_warn(at(3660)), Some(0));
    }

    #[test]
    fn an_empty_token_admits_no_one() {
        let token = Token::new(String::new());
        assert!(!token.admits(&with("Bearer ")));
    }
}
