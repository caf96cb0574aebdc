//! URLs as errors and logs show them: credentials (`user:password@`) and the values of query
//! parameters that look secret (`?token=…`, `?api_key=…`) replaced by `***`.

use url::Url;

/// Query parameter names that hold a secret when they contain one of these (compared without
/// case): `token`, `access_token`, `api_key`, `apikey`, `password`, `secret`, `sig`,
/// `signature`, `auth`, `credential`, `session`…
const SECRET_KEYS: [&str; 9] = [
    "token",
    "key",
    "pass",
    "pwd",
    "secret",
    "sig",
    "auth",
    "credential",
    "session",
];

/// `url` with any user name and password, and the values of secret-looking query parameters,
/// replaced by `***`.
pub(crate) fn url(url: &Url) -> String {
    let query = url.query().and_then(query);
    if url.username().is_empty() && url.password().is_none() && query.is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    if query.is_some() {
        shown.set_query(query.as_deref());
    }
    if (!url.username().is_empty() || url.password().is_some())
        && (shown.set_password(None).is_err() || shown.set_username("***").is_err())
    {
        // Credentials that cannot be replaced (no host to attach them to): show the scheme only.
        return format!("{}://***", url.scheme());
    }
    shown.to_string()
}

/// Text meant as a URL, perhaps not a valid one, with whatever precedes an `@` in its
/// authority and the values of secret-looking query parameters replaced by `***`: a URL that
/// does not parse may still hold a password.
pub(crate) fn url_text(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let authority_len = text[start..]
        .find(['/', '?', '#'])
        .unwrap_or(text.len() - start);
    let authority = &text[start..start + authority_len];
    let mut shown = match authority.rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_string(),
    };
    if let Some(question) = shown.find('?') {
        let end = shown[question..]
            .find('#')
            .map_or(shown.len(), |i| question + i);
        if let Some(query) = query(&shown[question + 1..end]) {
            shown.replace_range(question + 1..end, &query);
        }
    }
    shown
}

/// `query` with the values of secret-looking parameters replaced, or `None` if it has none.
fn query(query: &str) -> Option<String> {
    let secret = |key: &str| {
        let key = key.to_ascii_lowercase();
        SECRET_KEYS.iter().any(|word| key.contains(word))
    };
    let mut found = false;
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if secret(key) && !value.is_empty() => {
                found = true;
                format!("{key}=***")
            }
            _ => pair.to_string(),
        })
        .collect();
    found.then(|| parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_replaced_in_urls_and_in_text_that_does_not_parse() {
        let parsed = Url::parse("http://alice:s3cret@127.0.0.1:9/hook?x=1").unwrap();
        assert_eq!(url(&parsed), "http://***@127.0.0.1:9/hook?x=1");
        let plain = Url::parse("http://127.0.0.1:9/").unwrap();
        assert_eq!(url(&plain), "http://127.0.0.1:9/");

        assert_eq!(
            url_text("http://alice:s3:cret@127.0.0.1:99999/a@b"),
            "http://***@127.0.0.1:99999/a@b"
        );
        assert_eq!(url_text("alice:s3cret@host"), "***@host");
        assert_eq!(url_text("http://[::1"), "http://[::1");
        assert_eq!(url_text("é@ü://x"), "é@ü://x", "no `@` in the authority");
    }

    #[test]
    fn secret_looking_query_values_are_replaced_and_the_others_kept() {
        let parsed =
            Url::parse("http://127.0.0.1:9/hook?service=app&Access_Token=abc&apikey=k1&x=&sig=s#f")
                .unwrap();
        assert_eq!(
            url(&parsed),
            "http://127.0.0.1:9/hook?service=app&Access_Token=***&apikey=***&x=&sig=***#f"
        );
        let both = Url::parse("redis://:pw@127.0.0.1:6379/?password=pw2").unwrap();
        assert_eq!(url(&both), "redis://***@127.0.0.1:6379/?password=***");
        assert_eq!(
            url_text("redis://127.0.0.1:99999/?password=pw&db=1#x?token=t"),
            "redis://127.0.0.1:99999/?password=***&db=1#x?token=t"
        );
        assert_eq!(url_text("http://h/?a=1"), "http://h/?a=1");
    }
}
