//! The bearer token that guards the admin actions, and the log of the actions it refuses.

use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::act::Peer;
use crate::once_a_minute::OnceAMinute;

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

/// The actions refused for want of the token, for their log (anyone who reaches the admin port
/// can ask without the token, as often as they like, and each warn line would be theirs to
/// write): the first, and then the first
/// after each minute, at warn with how many were refused since the last line at warn; the
/// others at debug, counted out at warn when their minute ends, so a flood that stops is
/// reported within a minute, not only with the next refusal ([`OnceAMinute`]). One for an
/// admin service and its clones.
#[derive(Debug, Default)]
pub(crate) struct Refusals(Arc<OnceAMinute>);

impl Refusals {
    /// Logs the refusal of `action` of `name` (as sent) to `peer`, for `why`.
    pub(crate) fn log(&self, peer: &Peer, name: &str, action: &str, why: &str) {
        let why = why.trim_end();
        // The name as sent (Debug: escaped), since it names no service yet.
        self.0.say(
            |quiet| {
                tracing::warn!(
                    %peer,
                    service = ?name,
                    action,
                    refused_quietly = quiet,
                    "admin action refused: {why} (refusals are logged at warn at most once a \
                     minute; refused_quietly: those logged at debug since the last one)"
                );
            },
            || tracing::debug!(%peer, service = ?name, action, "admin action refused: {why}"),
            |quiet| {
                tracing::warn!(
                    refused_quietly = quiet,
                    "admin actions refused without the token in the last minute, logged at \
                     debug: {quiet}"
                );
            },
        );
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
    fn an_empty_token_admits_no_one() {
        let token = Token::new(String::new());
        assert!(!token.admits(&with("Bearer ")));
    }
}
