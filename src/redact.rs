//! URLs as errors and logs show them: credentials (`user:password@`) replaced by `***`.

use url::Url;

/// `url` with any user name and password replaced by `***`.
pub(crate) fn url(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    if shown.set_password(None).is_err() || shown.set_username("***").is_err() {
        // Credentials that cannot be replaced (no host to attach them to): show the scheme only.
        return format!("{}://***", url.scheme());
    }
    shown.to_string()
}

/// Text meant as a URL, perhaps not a valid one, with whatever precedes an `@` in its
/// authority replaced by `***`: a URL that does not parse may still hold a password.
pub(crate) fn url_text(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let authority_len = text[start..]
        .find(['/', '?', '#'])
        .unwrap_or(text.len() - start);
    let authority = &text[start..start + authority_len];
    match authority.rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_string(),
    }
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
}
