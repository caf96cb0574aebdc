//! Keys given twice in one JSON object. A JSON parser keeps the last of them, so the first (a
//! whole service, or a whole `services` section) would be dropped without a word: the text is
//! walked once before it is parsed, and the first key seen twice is an error naming its path.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ConfigError;
use super::registry::field_name;

/// Fails at the first key that an object of `json` has twice. Text that is not JSON passes:
/// the parse that follows says what is wrong with it.
pub(crate) fn check(json: &str) -> Result<(), ConfigError> {
    let twice = RefCell::new(None);
    let walk = Walk {
        path: String::new(),
        twice: &twice,
    };
    let _ = walk.deserialize(&mut serde_json::Deserializer::from_str(json));
    match twice.into_inner() {
        Some(path) => Err(ConfigError::new(
            path,
            "given twice in one object: each field and each name may appear only once",
        )),
        None => Ok(()),
    }
}

/// One JSON value at `path`, walked; `twice` takes the path of a key seen twice.
struct Walk<'a> {
    path: String,
    twice: &'a RefCell<Option<String>>,
}

impl Walk<'_> {
    fn at(&self, path: String) -> Self {
        Walk {
            path,
            twice: self.twice,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(self.at(format!("{}[{index}]", self.path)))?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let name = field_name(&key);
            let path = if self.path.is_empty() {
                name.into_owned()
            } else {
                format!("{}.{name}", self.path)
            };
            if !seen.insert(key) {
                *self.twice.borrow_mut() = Some(path);
                return Err(de::Error::custom("a key given twice"));
            }
            map.next_value_seed(self.at(path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn the_first_key_given_twice_is_named_with_its_path() {
        assert!(check(r#"{"a": {"b": [1, {"c": 1, "d": null}]}, "e": "x"}"#).is_ok());
        let err = check(r#"{"a": {"b": [1, {"c": 1, "c": 2}]}}"#).unwrap_err();
        assert_eq!(err.path(), "a.b[1].c");
        let err = check(r#"{"a": 1, "x.y": {}, "x.y": {}}"#).unwrap_err();
        assert_eq!(err.path(), "\"x.y\"");
        // Not JSON: left to the parser, which says more.
        assert!(check("{").is_ok());
    }
}
