//! The `Content-Length` of a backend's answer, made one that every client takes (RFC 9110
//! §8.6): hyper's client accepts a list of equal values (`5, 5`, or the header twice), and
//! reads none at all on a `204`, `304` or `HEAD` answer, but its server passes the header on
//! as it came. An HTTP/2 client (curl, browsers) resets a stream whose `content-length` is
//! not one number, or that announces a length on a `204` with no body; HTTP/1.1 clients vary.

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue, StatusCode};

/// Leaves one decimal `Content-Length` in `headers`, or none: none on a `1xx` or `204`
/// (which RFC 9110 forbids it), one number for a list of equal ones or one with leading
/// zeros, and none for a value that is no length (only an answer without a body gets this
/// far with one: hyper refuses such a value where it frames a body).
pub(super) fn normalize(status: StatusCode, headers: &mut HeaderMap) {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return;
    };
    if status == StatusCode::NO_CONTENT || status.is_informational() {
        headers.remove(CONTENT_LENGTH);
        return;
    }
    // The busy path: one value, already a plain number.
    if values.next().is_none() && canonical(first.as_bytes()) {
        return;
    }
    match agreed(headers) {
        Some(length) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        None => {
            headers.remove(CONTENT_LENGTH);
        }
    }
}

/// Whether `value` is digits without a leading zero (or `0`), few enough for a `u64`.
fn canonical(value: &[u8]) -> bool {
    (1..=19).contains(&value.len())
        && value.iter().all(u8::is_ascii_digit)
        && (value.len() == 1 || value[0] != b'0')
}

/// The length a request's `Content-Length` gives its body, which hyper sends that much of.
pub(super) fn of_request(headers: &HeaderMap) -> Option<u64> {
    agreed(headers)
}

/// The one length every `Content-Length` value and list element names, if they agree and
/// each is digits only (no sign, as hyper reads them).
fn agreed(headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value.to_str().ok()?;
        for element in text.split(',') {
            let element = element.trim();
            if element.is_empty() || !element.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u64 = element.parse().ok()?;
            if *length.get_or_insert(n) != n {
                return None;
            }
        }
    }
    length
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(status: u16, values: &[&str]) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CONTENT_LENGTH, HeaderValue::from_str(value).unwrap());
        }
        normalize(StatusCode::from_u16(status).unwrap(), &mut headers);
        headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_plain_length_stays_as_it_is() {
        assert_eq!(normalized(200, &["5"]), ["5"]);
        assert_eq!(normalized(200, &["0"]), ["0"]);
        assert_eq!(normalized(200, &[]), Vec::<String>::new());
    }

    #[test]
    fn equal_values_become_one_number() {
        assert_eq!(normalized(200, &["5, 5"]), ["5"]);
        assert_eq!(normalized(200, &["5", "5"]), ["5"]);
        assert_eq!(normalized(200, &["5,5", " 5 "]), ["5"]);
        assert_eq!(normalized(304, &["007"]), ["7"]);
        assert_eq!(normalized(200, &["00"]), ["0"]);
    }

    #[test]
    fn a_value_that_is_no_length_is_dropped() {
        assert!(normalized(304, &["5, 6"]).is_empty());
        assert!(normalized(200, &["5", "6"]).is_empty());
        assert!(normalized(200, &["+5"]).is_empty());
        assert!(normalized(200, &["5,"]).is_empty());
        assert!(normalized(200, &["99999999999999999999999"]).is_empty());
    }

    #[test]
    fn no_length_on_a_204_or_1xx() {
        assert!(normalized(204, &["7"]).is_empty());
        assert!(normalized(103, &["0"]).is_empty());
        assert_eq!(normalized(304, &["7"]), ["7"]);
    }
}
