//! The bearer token that guards the admin actions.

use http::HeaderMap;
use http::header::AUTHORIZATION;

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
