//! Helpers shared by the fuzz targets (each target includes this file with
//! `mod common;`; not every target uses every helper).
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use scrim::policy::compile_str;
use scrim::pseudonym::KeyRing;
use scrim::rewrite::Engine;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A realistic rule file: kept fields, pseudonyms, an IP, a URL, a time, a
/// kept container with a dropped key inside, and an embedded document.
pub const POLICY: &str = r#"
recipient = "analytics"
upstream = "https://api.analytics.example"

[fields]
"type" = "keep"
"event" = "keep"
"userId" = "pseudonymise"
"context.ip" = { action = "truncate_ip", v4_prefix = 24, v6_prefix = 48 }
"context.page.url" = "strip_query"
"context.page.title" = "scan"
"properties" = "keep"
"**.password" = "drop"
"**.email" = { action = "pseudonymise", normalise = "email" }
"timestamp" = { action = "coarsen_time", unit = "hour" }
"age" = { action = "bucket", bounds = [18, 25, 35, 45, 55, 65] }
"payload" = "embedded_json"
"payload.event" = "keep"
"payload.userId" = "pseudonymise"
"payload.context" = "keep"
"blob64" = { action = "embedded_json", encoding = "base64" }
"blob64.ip" = "truncate_ip"
"blob64.n" = "keep"
"#;

/// The engine for `rules` under the public test key; `None` if refused.
pub fn engine(rules: &str) -> Option<Engine> {
    let policy = compile_str(rules, "fuzz.toml", "fuzz").ok()?;
    Some(Engine::new(Arc::new(policy), &KeyRing::test_ring()))
}

/// Embedded JSON strings are compared as documents (their escapes may
/// legitimately differ), as in `tests/differential.rs`.
pub fn normalise(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, x)| (k, normalise(x))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(normalise).collect()),
        Value::String(s) if s.starts_with(['{', '[']) => match serde_json::from_str::<Value>(&s) {
            Ok(doc) => Value::Array(vec![Value::String("<embedded>".into()), normalise(doc)]),
            Err(_) => Value::String(s),
        },
        other => other,
    }
}

/// Nesting depth of containers (a scalar is 0, `{}` is 1).
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// What an `embedded_json` action could read from a string: the text itself,
/// and its base64 decoding as `scrim::rewrite::apply::decode_embedded` does it.
pub fn embedded_candidates(s: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let b64 = match (s.contains(['-', '_']), s.ends_with('=')) {
        (false, true) => STANDARD.decode(s.trim()),
        (false, false) => STANDARD_NO_PAD.decode(s.trim()),
        (true, true) => URL_SAFE.decode(s.trim()),
        (true, false) => URL_SAFE_NO_PAD.decode(s.trim()),
    };
    let mut out = vec![s.as_bytes().to_vec()];
    out.extend(b64.ok());
    out
}

/// As [`depth`], counting a string that holds a JSON document (plain or
/// base64) as nested there (an `embedded_json` document shares the limit).
pub fn depth_with_embedded(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth_with_embedded).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth_with_embedded).max().unwrap_or(0),
        Value::String(s) => embedded_candidates(s)
            .iter()
            .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
            .map(|d| depth_with_embedded(&d))
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

fn has_exponent(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().any(has_exponent),
        Value::Array(a) => a.iter().any(has_exponent),
        Value::Number(n) => n.to_string().contains(['e', 'E']),
        _ => false,
    }
}

/// Whether every string that serde_json reads as a document (plain or
/// base64) is one the engine must accept too: no duplicate key (nor two
/// that fold alike, `reference::folded_duplicate`), and short
/// enough that no number in it can pass `MAX_NUMBER_LEN`; and one where the
/// reference sees numbers as written (serde_json turns `1E5` into `1e+5`,
/// which then pseudonymises differently). (The reference parses embedded
/// documents with serde_json, which is laxer.)
pub fn embedded_strict(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().all(embedded_strict),
        Value::Array(a) => a.iter().all(embedded_strict),
        Value::String(s) => embedded_candidates(s).iter().all(|b| {
            match serde_json::from_slice::<Value>(b) {
                Err(_) => true,
                Ok(d) => {
                    b.len() < scrim::rewrite::json::MAX_NUMBER_LEN
                        && parse_strict(b).is_ok()
                        && !scrim::rewrite::reference::folded_duplicate(&d)
                        && !has_exponent(&d)
                        && embedded_strict(&d)
                }
            }
        }),
        _ => true,
    }
}

/// Parses JSON like serde_json, but refuses an object with a duplicate key:
/// an output with one would let the partner's parser pick either value.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    NoDuplicates::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Walks a document, failing on a duplicate key.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicates)
    }
}

/// With `arbitrary_precision`, serde_json may hand a number to `visit_map` as
/// a one-entry map under this key.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if k == NUMBER_TOKEN && seen.is_empty() {
                map.next_value::<IgnoredAny>()?;
                return Ok(self);
            }
            if !seen.insert(k) {
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(self)
    }
}
