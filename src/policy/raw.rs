//! Rule files as written: plain serde structs, unknown keys refused.
//!
//! These types only describe the TOML shape. Everything that needs judgement
//! (selectors, actions and their options, URLs, header names) is validated in
//! [`super::compile`], which turns them into a [`super::CompiledPolicy`].

use std::collections::BTreeMap;

use serde::Deserialize;
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
    pub query: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    /// Body field rules: selector to action.
    #[serde(default)]
    pub fields: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    /// Self-tests run by `scrim test` and `scrim check`.
    #[serde(default)]
    pub tests: Vec<Spanned<RawTest>>,
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
    pub name: String,
    /// The request body.
    pub input: String,
    /// Body format: `json` (default), `ndjson` or `form`.
    pub format: Option<String>,
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
