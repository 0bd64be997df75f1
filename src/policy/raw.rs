//! Rule files as written: plain serde structs, unknown keys refused.
//!
//! These types only describe the TOML shape. Everything that needs judgement
//! (selectors, actions and their options, URLs, header names) is validated in
//! [`super::compile`], which turns them into a [`super::CompiledPolicy`].

use std::collections::BTreeMap;

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// One rule file, as parsed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuleFile {
    /// Recipient name; defaults to the file stem.
    pub recipient: Option<Spanned<String>>,
    /// Partner base URL (`https://...`; `http://` for loopback or with
    /// `allow_plain_http = true`; `capture:` for the built-in capture upstream).
    pub upstream: Spanned<String>,
    /// Host names claimed for Host-based routing.
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    /// Allows an `http://` upstream that is not on loopback (in-cluster partners).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Content types forwarded untouched (no rewriting). Empty by default.
    #[serde(default)]
    pub passthrough_content_types: Vec<Spanned<String>>,
    /// Pseudonym scope for this recipient; defaults to the recipient name.
    pub scope: Option<Spanned<String>>,
    /// Extra PEM CA bundle trusted for this recipient's upstream.
    pub ca_file: Option<Spanned<String>>,
    /// Requests per second allowed to this recipient (429 beyond).
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    /// Maximum JSON nesting depth for this recipient (default 64).
    pub max_depth: Option<Spanned<i64>>,
    /// Request header minimisation.
    #[serde(default)]
    pub headers: RawHeaders,
    /// Query parameter rules: parameter name (or `*`) to action.
    #[serde(default)]
    pub query: BTreeMap<Spanned<String>, Spanned<RawValue>>,
    /// Body field rules: selector to action.
    #[serde(default)]
    pub fields: BTreeMap<Spanned<String>, Spanned<RawValue>>,
    /// Self-tests run by `scrim test` and `scrim check`.
    #[serde(default)]
    pub tests: Vec<Spanned<RawTest>>,
    /// Lint warnings deliberately accepted, each with its reason.
    #[serde(default)]
    pub allow: Vec<Spanned<RawAllow>>,
}

/// One `[[allow]]` entry: a lint warning accepted for one selector (or for
/// the whole file, for file-level lints), with the reason kept in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    /// The lint's code (`P001`) or short name (`personal-keep`).
    pub lint: Spanned<String>,
    /// The selector as written under `[fields]`, or `query:NAME` for a
    /// `[query]` rule; absent for file-level lints.
    pub selector: Option<Spanned<String>>,
    /// Why the warning is accepted (required, not empty).
    pub reason: Spanned<String>,
}

/// A TOML value that remembers where every key and value inside it was
/// written, so that an error in an action's options (also in a
/// `[fields."a.b"]` table spread over several lines) points at the option
/// itself rather than at the table.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Boolean(bool),
    /// An array.
    Array(Vec<Spanned<RawValue>>),
    /// A table, sorted by key.
    Table(Vec<(Spanned<String>, Spanned<RawValue>)>),
}

impl RawValue {
    /// The entry of a table, if this is a table holding `key`.
    pub fn get(&self, key: &str) -> Option<&Spanned<RawValue>> {
        match self {
            RawValue::Table(t) => t.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RawValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            RawValue::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// What kind of value this is, for error messages (never the value).
    pub fn kind(&self) -> &'static str {
        match self {
            RawValue::String(_) => "a string",
            RawValue::Integer(_) => "an integer",
            RawValue::Float(_) => "a float",
            RawValue::Boolean(_) => "a boolean",
            RawValue::Array(_) => "an array",
            RawValue::Table(_) => "a table",
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawValueVisitor)
    }
}

struct RawValueVisitor;

impl<'de> Visitor<'de> for RawValueVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Boolean(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        i64::try_from(v)
            .map(RawValue::Integer)
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Spanned<RawValue>>()? {
            items.push(v);
        }
        Ok(RawValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        // A date arrives as a one-key table whose key has no location: it
        // fails here, and the compiler reports it as a misplaced date.
        while let Some(k) = map.next_key::<Spanned<String>>()? {
            let v = map.next_value::<Spanned<RawValue>>()?;
            entries.push((k, v));
        }
        entries.sort_by(|a, b| a.0.get_ref().cmp(b.0.get_ref()));
        Ok(RawValue::Table(entries))
    }
}

/// `rate_limit = { per_second = 100, burst = 200 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed in a burst (default: `per_second`).
    pub burst: Option<u32>,
}

/// `[headers]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    /// Request headers that may pass (case-insensitive names).
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// Headers set on the upstream request: a literal value, or `env:NAME`.
    #[serde(default)]
    pub set: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// One `[[tests]]` case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    /// What the case shows.
    pub name: Spanned<String>,
    /// The request body.
    pub input: String,
    /// Body format: `json` (default), `ndjson` or `form`.
    pub format: Option<Spanned<String>>,
    /// The exact expected output (compared after removing insignificant
    /// whitespace), under the documented test key.
    pub expect: Option<String>,
    /// Paths that must not appear in the output.
    #[serde(default)]
    pub absent: Vec<String>,
    /// Paths that must appear in the output.
    #[serde(default)]
    pub present: Vec<String>,
    /// Paths that must appear with a value different from the input's.
    #[serde(default)]
    pub transformed: Vec<String>,
    /// The input must be refused (invalid, too deep ...).
    #[serde(default)]
    pub refused: bool,
}
