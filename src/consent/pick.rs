//! The values at a few exact paths of one JSON event, read in one strict
//! pass without building the event: what a decision reads (the consent
//! field, the subjects) is deserialised, everything else is only
//! validated and skipped ([`serde::de::IgnoredAny`]). Building a whole
//! `serde_json::Value` per event cost more than rewriting the event.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::policy::selector::canonical_key;

use super::DecideError;

/// The value at each of `paths` (canonical keys) in the JSON text `doc`:
/// `None` where it has none. The whole text is checked to be one JSON
/// value (syntax, UTF-8, no trailing data).
pub(crate) fn pick(doc: &[u8], paths: &[&[String]]) -> Result<Vec<Option<Value>>, DecideError> {
    let mut out = vec![None; paths.len()];
    let wanted: Vec<(usize, &[String])> = paths.iter().copied().enumerate().collect();
    let mut de = serde_json::Deserializer::from_slice(doc);
    Seek {
        wanted: &wanted,
        out: &mut out,
    }
    .deserialize(&mut de)
    .map_err(|_| DecideError::Unreadable)?;
    de.end().map_err(|_| DecideError::Unreadable)?;
    Ok(out)
}

/// One value on the way down: the paths (by index) that go through it,
/// with the keys still to follow.
struct Seek<'s> {
    wanted: &'s [(usize, &'s [String])],
    out: &'s mut Vec<Option<Value>>,
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.wanted.iter().any(|(_, rest)| rest.is_empty()) {
            // A path ends here: the value whole (small in practice: a
            // consent field, an id), and any longer path inside it.
            let v = Value::deserialize_from(d)?;
            for (i, rest) in self.wanted {
                self.out[*i] = get(&v, rest).cloned();
            }
            return Ok(());
        }
        d.deserialize_any(self)
    }
}

/// `Value::deserialize` under a name that reads as what it does here.
trait DeserializeFrom: Sized {
    fn deserialize_from<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

impl DeserializeFrom for Value {
    fn deserialize_from<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d)
    }
}

fn get<'v>(v: &'v Value, keys: &[String]) -> Option<&'v Value> {
    let mut at = v;
    let mut buf = Vec::new();
    for key in keys {
        let Value::Object(map) = at else {
            return None;
        };
        at = map
            .iter()
            .filter(|(k, _)| canonical_key(k.as_bytes(), &mut buf) == key.as_bytes())
            .last()?
            .1;
    }
    Some(at)
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut buf = Vec::new();
        let mut next: Vec<(usize, &[String])> = Vec::with_capacity(self.wanted.len());
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let canon = canonical_key(key.as_bytes(), &mut buf);
            next.clear();
            next.extend(
                self.wanted
                    .iter()
                    .filter(|(_, rest)| rest.first().is_some_and(|k| k.as_bytes() == canon))
                    .map(|(i, rest)| (*i, &rest[1..])),
            );
            if next.is_empty() {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Seek {
                    wanted: &next,
                    out: &mut *self.out,
                })?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::selector::canonical;

    fn keys(p: &str) -> Vec<String> {
        p.split('.').map(canonical).collect()
    }

    #[test]
    fn picks_the_values_at_the_paths_and_skips_the_rest() {
        let a = keys("consent");
        let b = keys("traits.email");
        let c = keys("user.id");
        let doc = br#"{"x":[1,{"consent":"no"}],"Consent":["ads"],"traits":{"name":"n","e\u006dail":"E@x"},"user":7}"#;
        let got = pick(doc, &[&a, &b, &c]).unwrap();
        assert_eq!(got[0], Some(serde_json::json!(["ads"])));
        assert_eq!(got[1], Some(serde_json::json!("E@x")));
        assert_eq!(got[2], None);
        // A path inside the value of another.
        let d = keys("traits");
        let got = pick(doc, &[&d, &b]).unwrap();
        assert_eq!(got[1], Some(serde_json::json!("E@x")));
        assert!(got[0].as_ref().is_some_and(Value::is_object));
    }

    /// The syntax is checked throughout. (What a skipped string holds,
    /// its UTF-8 and escapes, is not: such an event is refused by the
    /// engine when it is kept, and never leaves when it is withheld.)
    #[test]
    fn the_whole_text_is_validated() {
        let a = keys("consent");
        for bad in [
            &br#"{"a":[1,2}"#[..],
            br#"{"a":1} {"b":2}"#,
            br#"{"a":tru}"#,
            br#"{"a":01}"#,
            br#"{"a" 1}"#,
            b"{\"consent\":\"\xff\"}",
        ] {
            assert!(
                pick(bad, &[&a]).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
