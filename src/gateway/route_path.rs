//! The path a request is routed by: percent-decoded, with repeated slashes merged, as nginx
//! matches its locations. Otherwise `/%61pi/x` or `//api/x` would miss the `/api/` route and
//! fall through to a catch-all whose backend, decoding them, serves its own `/api/x`. Only
//! the routing sees this form; the request goes on as it came.

use std::borrow::Cow;

/// `path` as routes compare it: borrowed when there is nothing to decode or merge (the usual
/// case).
pub(super) fn routing_path(path: &str) -> Cow<'_, [u8]> {
    let bytes = path.as_bytes();
    if !bytes.contains(&b'%') && !bytes.windows(2).any(|pair| pair == b"//") {
        return Cow::Borrowed(bytes);
    }
    let mut routed = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&first, after)) = rest.split_first() {
        let (byte, after) = match (first, after) {
            (b'%', [high, low, tail @ ..]) => match (hex(*high), hex(*low)) {
                (Some(high), Some(low)) => (high << 4 | low, tail),
                _ => (first, after),
            },
            _ => (first, after),
        };
        if !(byte == b'/' && routed.last() == Some(&b'/')) {
            routed.push(byte);
        }
        rest = after;
    }
    Cow::Owned(routed)
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::routing_path;

    fn routed(path: &str) -> String {
        String::from_utf8_lossy(&routing_path(path)).into_owned()
    }

    #[test]
    fn a_plain_path_is_borrowed_as_it_is() {
        assert!(matches!(
            routing_path("/api/v1/items"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(routed("/"), "/");
    }

    #[test]
    fn percent_encodings_are_decoded_and_repeated_slashes_merged() {
        assert_eq!(routed("/%61pi/x"), "/api/x");
        assert_eq!(routed("/%41%2fB"), "/A/B");
        assert_eq!(routed("//api///x"), "/api/x");
        assert_eq!(routed("/a%2F/b"), "/a/b");
        assert_eq!(routed("/my%20docs/"), "/my docs/");
    }

    #[test]
    fn a_percent_that_does_not_begin_an_encoding_stays() {
        assert_eq!(routed("/100%"), "/100%");
        assert_eq!(routed("/a%zz"), "/a%zz");
        assert_eq!(routed("/a%4"), "/a%4");
    }
}
