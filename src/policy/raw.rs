//! Rule files as written: plain serde structs, unknown keys refused.
//!
//! These types only describe the TOML shape. Everything that needs judgement
//! (selectors, actions and their options, URLs, header names) is validated in
//! [`super::compile`], which turns them into a [`super::CompiledPolicy`].
//!
//! The same types give the rule files' JSON Schema (`scrim schema rules`):
//! their doc comments are the descriptions an editor shows on hover, so they
//! are written for the person editing a rule file. Field and query actions
//! are parsed from [`RawValue`] by the compiler (for its located,
//! did-you-mean messages); their shape is described by the `*Table` types at
//! the end of this file, and `tests/schema.rs` proves the two agree.

use std::borrow::Cow;
use std::collections::BTreeMap;

use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::action::{ACTIONS, ActionKind, ActionSpec};

/// A scrim rule file: what one recipient (partner) may receive. A field, query
/// parameter or header leaves only if a rule below allows it, and then only in
/// the form its action gives; everything else is dropped. Reference:
/// docs/rules.md.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "scrim rule file")]
pub struct RawRuleFile {
    /// Routing name: requests to `/{recipient}/{rest}` go to
    /// `{upstream}/{rest}`. 1 to 64 characters of `A-Z a-z 0-9 _ -` (it is a
    /// URL path segment). Default: the file name without `.toml`.
    #[schemars(
        with = "Option<String>",
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_-]+$")
    )]
    pub recipient: Option<Spanned<String>>,
    /// The partner's base URL: `https://host[:port][/base/path]` (no
    /// userinfo, query or fragment); `http://` only for loopback or with
    /// `allow_plain_http = true`; `capture:` for the built-in capture upstream,
    /// which records what would have been sent (listed at `/captured`).
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    /// Host names this recipient also claims, for transparent egress: a
    /// request whose `Host` is one of them is routed here. Compared in lower
    /// case, without port.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub hosts: Vec<Spanned<String>>,
    /// Allows an `http://` upstream that is not on loopback (an in-cluster
    /// partner). Default `false`.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// Content types forwarded untouched, e.g. `["image/gif"]`:
    /// `type/subtype` only, no parameters. JSON, NDJSON and form bodies are
    /// always rewritten and cannot be listed; any other type not listed is
    /// refused with 415. Default: none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub passthrough_content_types: Vec<Spanned<String>>,
    /// Pseudonym scope: pseudonyms are equal for one key, scope and value,
    /// and unrelated across scopes. Default: the recipient name, so two
    /// partners cannot join their data. Not empty.
    #[schemars(with = "Option<String>", length(min = 1))]
    pub scope: Option<Spanned<String>>,
    /// A PEM CA bundle also trusted for this upstream's certificate; a
    /// relative path is relative to the rule file.
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Spanned<String>>,
    /// Requests per second allowed to this recipient; beyond it requests get
    /// 429 with `Retry-After`. Default: no limit.
    #[schemars(with = "Option<RawRateLimit>")]
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    /// Deepest JSON nesting accepted, 1 to 1024 (default 64); deeper bodies
    /// are refused with 400.
    #[schemars(with = "Option<i64>", range(min = 1, max = 1024))]
    pub max_depth: Option<Spanned<i64>>,
    /// Request header minimisation: which headers pass, which are set.
    /// Default: no caller header passes.
    #[serde(default)]
    pub headers: RawHeaders,
    /// Query parameter rules: a parameter name (taken literally, after
    /// percent-decoding) or `"*"` for any other parameter, to an action.
    /// Parameters not listed are dropped. `embedded_json` is not available
    /// here.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, QueryRule>")]
    pub query: BTreeMap<Spanned<String>, Spanned<RawValue>>,
    /// The URL paths the partner accepts, matched against `{rest}` of
    /// `/{recipient}/{rest}` (under Host routing, the whole path), e.g.
    /// `["/v1/batch", "/users/{id}/events", "/v2/**"]`. A literal segment
    /// matches itself after percent-decoding; `{name}` is one segment,
    /// rewritten by the action of `name` in `[path_params]`; a final `**` is
    /// any rest, screened for personal data. The most specific template
    /// decides. A path that matches none is refused (404
    /// `path_not_allowed`). Without `paths`, every segment is screened for
    /// personal data (emails, phone, card and IBAN numbers, IP addresses,
    /// secret tokens) and a path holding one is refused (400
    /// `personal_data_in_path`).
    #[schemars(with = "Option<Vec<String>>")]
    pub paths: Option<Spanned<Vec<Spanned<String>>>>,
    /// The action for each `{name}` placeholder of `paths`: an action that
    /// yields a value (`pseudonymise`, `keep`, `redact`, ...; not `drop` or
    /// `embedded_json`, since a path cannot lose a segment).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, QueryRule>")]
    pub path_params: BTreeMap<Spanned<String>, Spanned<RawValue>>,
    /// Body field rules: a selector (`user.email`, `items.*.sku`, `**.ip`)
    /// to an action. Fields not matched are dropped.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, FieldRule>")]
    pub fields: BTreeMap<Spanned<String>, Spanned<RawValue>>,
    /// Self-tests, run by `scrim check` and `scrim test` under the fixed test
    /// key. Each must assert something.
    #[serde(default)]
    #[schemars(with = "Vec<RawTest>")]
    pub tests: Vec<Spanned<RawTest>>,
    /// What the recipient receives: `"forward"` (default), each request in
    /// minimised form; or `"aggregate"`, only counts per group and time
    /// window, reported by scrim (see `[aggregate]`).
    #[schemars(with = "Option<String>", regex(pattern = "^(forward|aggregate)$"))]
    pub mode: Option<Spanned<String>>,
    /// The exact path of the array whose elements are a body's events
    /// (`"batch"`). A body without it is one event; a body where it is not
    /// an array is refused (400). Default: each document is one event.
    #[schemars(with = "Option<String>")]
    pub records: Option<Spanned<String>>,
    /// Aggregate-only recipient (`mode = "aggregate"`): windows, subject,
    /// k threshold, groups and measures. Selectors here are relative to one
    /// event and read after `[fields]`.
    #[schemars(with = "Option<super::aggregate::RawAggregate>")]
    pub aggregate: Option<Spanned<super::aggregate::RawAggregate>>,
    /// Consent: the purpose the partner uses the data for, and where each
    /// event says whether its person agreed to it. Events without consent
    /// are withheld before rewriting, never forwarded.
    #[schemars(with = "Option<super::consent::RawConsent>")]
    pub consent: Option<Spanned<super::consent::RawConsent>>,
    /// Suppression lists: events whose subject is on one of the lists
    /// (opt-outs, erasure requests) are withheld before rewriting.
    #[schemars(with = "Option<super::consent::RawSuppress>")]
    pub suppress: Option<Spanned<super::consent::RawSuppress>>,
    /// Lint findings accepted on review, each with its reason.
    #[serde(default)]
    #[schemars(with = "Vec<RawAllow>")]
    pub allow: Vec<Spanned<RawAllow>>,
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
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RateLimit")]
pub struct RawRateLimit {
    /// Sustained requests per second; greater than 0.
    #[schemars(range(min = 1))]
    pub per_second: u32,
    /// Requests allowed in a burst; greater than 0. Default: `per_second`.
    #[schemars(range(min = 1))]
    pub burst: Option<u32>,
}

/// `[headers]`: request header minimisation. Hop-by-hop headers never pass;
/// `Host`, `Content-Length`, `Content-Encoding` and `Content-Type` are always
/// set by scrim.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Headers")]
pub struct RawHeaders {
    /// Request header names (case-insensitive) that may pass. Every other
    /// header is dropped, `Cookie` and `Authorization` included.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allow: Vec<Spanned<String>>,
    /// Headers put on every upstream request, replacing any the caller sent:
    /// a literal value (visible ASCII, never printed) or `env:NAME`, read from
    /// the gateway's environment when the rules load. Use `env:` for
    /// credentials.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub set: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// One `[[tests]]` case: an input body and what must hold of its rewrite.
/// Give `expect`, `absent`, `present`, `transformed` or `refused = true`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Test")]
pub struct RawTest {
    /// What the case shows; printed in results.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The request body. Use a literal string (`'...'`) so JSON escapes are
    /// written as in a real body.
    pub input: String,
    /// Body format: `json` (default), `ndjson` (one document a line) or
    /// `form`; or `path`: the input is a URL path (`{rest}` of
    /// `/{recipient}/{rest}`), checked against `paths` and screened, and
    /// `expect` is the path the partner gets (or `refused = true`).
    #[schemars(with = "Option<TestFormat>")]
    pub format: Option<Spanned<String>>,
    /// The exact expected output, under the test key. Whitespace outside
    /// strings is ignored within a line; line breaks separate NDJSON
    /// documents.
    pub expect: Option<String>,
    /// Paths that must not appear in any output document.
    #[serde(default)]
    pub absent: Vec<String>,
    /// Paths that must appear (in at least one output document).
    #[serde(default)]
    pub present: Vec<String>,
    /// Paths that must appear with a value that is none of the input's
    /// values at that path.
    #[serde(default)]
    pub transformed: Vec<String>,
    /// `true`: the input must be refused (invalid JSON, duplicate key, too
    /// deep ...).
    #[serde(default)]
    pub refused: bool,
    /// Aggregate recipients: the report the input's events produce (a JSON
    /// object; an array for one report per window, oldest first). Only the
    /// keys written are compared (`groups`, `suppressed`, `late`,
    /// `window`...). Events without a time count at
    /// 2026-01-01T00:00:00Z; noise is left out.
    #[schemars(with = "Option<String>")]
    pub report: Option<Spanned<String>>,
    /// Request headers of the case, e.g. `{ "Sec-GPC" = "1" }` (read by
    /// `[consent] gpc`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Identifiers taken as being on every list of `[suppress] lists`
    /// for this case (hashed under the test key with each subject's
    /// normalisation, as `scrim suppress add` would).
    #[serde(default)]
    pub suppressed: Vec<String>,
    /// The number of events `[consent]` and `[suppress]` must withhold.
    /// When every event is withheld, the output is empty (`expect = ""`).
    #[schemars(range(min = 0))]
    pub withheld: Option<u64>,
}

/// Body format of a `[[tests]]` case.
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)] // describes the strings `compile_test` accepts
enum TestFormat {
    /// One JSON document (the default).
    Json,
    /// Newline-delimited JSON: one document a line.
    Ndjson,
    /// `application/x-www-form-urlencoded`.
    Form,
    /// A URL path, not a body.
    Path,
}

/// One `[[allow]]` entry: a privacy-lint warning accepted on review, for
/// one selector (or for the whole file, for file-level lints such as
/// `P005 no-tests`), with the reason kept in the file.
///
/// ```toml
/// [[allow]]
/// lint = "P001"
/// selector = "user.ip"
/// reason = "Fraud partner needs the full address (DPA 2024-07, s.3)"
/// ```
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Allow")]
pub struct RawAllow {
    /// The lint: its code (`P001` to `P005`) or short name
    /// (`personal-keep`, `unkeyed-hash`, `keep-under-globstar`,
    /// `wide-ip-prefix`, `no-tests`). `P006 stale-allow` cannot be allowed.
    #[schemars(with = "String")]
    pub lint: Spanned<String>,
    /// The selector exactly as written under `[fields]`, or `query:NAME` for
    /// a `[query]` rule. Required for per-selector lints; absent for
    /// file-level lints.
    #[schemars(with = "Option<String>")]
    pub selector: Option<Spanned<String>>,
    /// Why the warning is accepted; required, not empty, read on review.
    #[schemars(with = "String", length(min = 1))]
    pub reason: Spanned<String>,
}

// What follows describes actions as rule files write them, for the schema
// only: the compiler reads actions from [`RawValue`] (see `parse_action`).
// Each action's row in [`ACTIONS`] names its `*Table` type here, and the
// table names its row back through [`ActionOptions::KIND`].

/// The value of a `[fields]` entry: an action name, a table with `action`
/// and its options, or a table without `action` grouping selectors under a
/// common prefix (`context = { ip = "truncate_ip" }` is
/// `"context.ip" = "truncate_ip"`).
pub struct FieldRule;

/// The value of a `[query]` entry: an action name or a table with `action`
/// and its options (`embedded_json` is not available for query parameters).
pub struct QueryRule;

/// A `[fields]` table without `action`: selectors under a common prefix.
struct FieldGroup;

/// An action written by name, with its default options; `QUERY` leaves out
/// the body-only actions. Actions with a required option have no name form.
struct ActionName<const QUERY: bool>;

/// The table form of one action: its options plus `action = "<name>"`.
struct ActionTable<T>(std::marker::PhantomData<T>);

/// The options of one action, as a rule file writes them in the table form.
pub(crate) trait ActionOptions: JsonSchema {
    /// The action these are the options of.
    const KIND: ActionKind;
    /// The action's row.
    const SPEC: &'static ActionSpec = &ACTIONS[Self::KIND as usize];
}

/// How an action's row in [`ACTIONS`] builds its schema pieces.
pub(crate) type ActionSchema = fn(&mut SchemaGenerator) -> ActionEntry;

/// One action's schema pieces.
pub(crate) struct ActionEntry {
    kind: ActionKind,
    name: &'static str,
    in_query: bool,
    /// Whether the action has a required option, so that its name alone is
    /// not a complete rule (`bucket` needs `bounds`).
    needs_options: bool,
    description: serde_json::Value,
    table: Schema,
}

impl ActionEntry {
    /// The schema pieces of the action whose options `T` describes.
    pub(crate) fn of<T: ActionOptions>(generator: &mut SchemaGenerator) -> ActionEntry {
        let options = T::json_schema(generator);
        let description = options.get("description").cloned().unwrap_or_default();
        let needs_options = options
            .get("required")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|r| !r.is_empty());
        ActionEntry {
            kind: T::KIND,
            name: T::SPEC.name,
            in_query: T::SPEC.in_query,
            needs_options,
            description,
            table: generator.subschema_for::<ActionTable<T>>(),
        }
    }
}

/// Every action, in [`ACTIONS`] order.
fn actions(generator: &mut SchemaGenerator) -> Vec<ActionEntry> {
    ACTIONS
        .iter()
        .map(|a| {
            let entry = (a.schema)(generator);
            assert_eq!(
                entry.kind, a.kind,
                "{} names another action's table",
                a.name
            );
            entry
        })
        .collect()
}

impl<T: ActionOptions> JsonSchema for ActionTable<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        format!("scrim::ActionTable<{}>", T::schema_id()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = T::json_schema(generator);
        let obj = schema.ensure_object();
        let props = obj
            .entry("properties")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let serde_json::Value::Object(props) = props {
            props.insert(
                "action".into(),
                serde_json::json!({ "type": "string", "const": T::SPEC.name }),
            );
        }
        let required = obj
            .entry("required")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(required) = required {
            required.insert(0, "action".into());
        }
        schema
    }
}

impl<const QUERY: bool> JsonSchema for ActionName<QUERY> {
    fn schema_name() -> Cow<'static, str> {
        if QUERY {
            "QueryActionName"
        } else {
            "ActionName"
        }
        .into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let actions: Vec<ActionEntry> = actions(generator)
            .into_iter()
            .filter(|a| (a.in_query || !QUERY) && !a.needs_options)
            .collect();
        let names: Vec<&str> = actions.iter().map(|a| a.name).collect();
        let docs: Vec<&serde_json::Value> = actions.iter().map(|a| &a.description).collect();
        json_schema!({
            "description": "An action, with its default options.",
            "type": "string",
            "enum": names,
            "x-taplo": { "docs": { "enumValues": docs } },
        })
    }
}

impl JsonSchema for FieldRule {
    fn schema_name() -> Cow<'static, str> {
        "FieldRule".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut one_of = vec![generator.subschema_for::<ActionName<false>>()];
        one_of.extend(actions(generator).into_iter().map(|a| a.table));
        one_of.push(generator.subschema_for::<FieldGroup>());
        json_schema!({
            "description": "An action name, a table with `action` and its options, or a table of selectors under this prefix.",
            "oneOf": one_of,
        })
    }
}

impl JsonSchema for QueryRule {
    fn schema_name() -> Cow<'static, str> {
        "QueryRule".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut one_of = vec![generator.subschema_for::<ActionName<true>>()];
        one_of.extend(
            actions(generator)
                .into_iter()
                .filter(|a| a.in_query)
                .map(|a| a.table),
        );
        json_schema!({
            "description": "An action name or a table with `action` and its options.",
            "oneOf": one_of,
        })
    }
}

impl JsonSchema for FieldGroup {
    fn schema_name() -> Cow<'static, str> {
        "FieldGroup".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Selectors under a common prefix (a table without `action`).",
            "type": "object",
            "minProperties": 1,
            "not": { "required": ["action"] },
            "additionalProperties": generator.subschema_for::<FieldRule>(),
        })
    }
}

/// `keep`: passes the value verbatim (bytes, escapes, number spelling); a
/// container with its subtree, except where a deeper selector says otherwise.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct KeepTable {}

impl ActionOptions for KeepTable {
    const KIND: ActionKind = ActionKind::Keep;
}

/// `drop`: removes the field (also the default for anything no selector
/// allows).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct DropTable {}

impl ActionOptions for DropTable {
    const KIND: ActionKind = ActionKind::Drop;
}

/// `pseudonymise`: a keyed HMAC-SHA256 of the normalised value,
/// `<key id>.<base64url>`. Stable per key, scope and value; useless elsewhere.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct PseudonymiseTable {
    /// Normalisation before hashing. Default: none (hashed as it is).
    normalise: Option<NormaliseName>,
    /// Pseudonym scope; naming a shared scope in two files lets those
    /// recipients join on it. Default: the file's `scope`.
    #[schemars(length(min = 1))]
    scope: Option<String>,
    /// Output length in bits: a multiple of 8 from 64 to 256 (default 128).
    #[schemars(range(min = 64, max = 256), extend("multipleOf" = 8))]
    bits: Option<i64>,
}

impl ActionOptions for PseudonymiseTable {
    const KIND: ActionKind = ActionKind::Pseudonymise;
}

/// `hash_sha256`: unkeyed SHA-256 of the normalised value, 64 lowercase hex
/// digits. Pseudonymous, not anonymous: anyone can compute the same hash.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct HashSha256Table {
    /// Normalisation before hashing. Default: none (hashed as it is).
    normalise: Option<NormaliseName>,
}

impl ActionOptions for HashSha256Table {
    const KIND: ActionKind = ActionKind::HashSha256;
}

/// `truncate_ip`: zeroes the host bits of an IP address
/// (`203.0.113.77` gives `203.0.113.0`).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct TruncateIpTable {
    /// IPv4 prefix length kept, 0 to 32 (default 24).
    #[schemars(range(min = 0, max = 32))]
    v4_prefix: Option<i64>,
    /// IPv6 prefix length kept, 0 to 128 (default 48).
    #[schemars(range(min = 0, max = 128))]
    v6_prefix: Option<i64>,
}

impl ActionOptions for TruncateIpTable {
    const KIND: ActionKind = ActionKind::TruncateIp;
}

/// `coarsen_time`: rounds an RFC 3339 timestamp or an epoch number down,
/// keeping its format.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct CoarsenTimeTable {
    /// The unit rounded down to (default `hour`).
    unit: Option<TimeUnitName>,
}

impl ActionOptions for CoarsenTimeTable {
    const KIND: ActionKind = ActionKind::CoarsenTime;
}

/// `bucket`: a number into a band label such as `"25-34"`, `"<18"` or
/// `"65+"`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct BucketTable {
    /// Band bounds: strictly increasing integers, e.g. `[18, 25, 35, 45, 55, 65]`.
    #[schemars(length(min = 1))]
    bounds: Vec<i64>,
}

impl ActionOptions for BucketTable {
    const KIND: ActionKind = ActionKind::Bucket;
}

/// `mask_email`: keeps only the domain of an email address, lower-cased.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(crate) struct MaskEmailTable {}

impl ActionOptions for MaskEmailTable {
    const KIND: ActionKind = ActionKind::MaskEmail;
}

/// `strip_query`: removes the query, fragment and userinfo of a URL; the
/// path stays.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct StripQueryTable {
    /// Query parameters that stay, by raw name, in their original order.
    /// Default: none.
    keep_params: Option<Vec<String>>,
}

impl ActionOptions for StripQueryTable {
    const KIND: ActionKind = ActionKind::StripQuery;
}

/// `redact`: replaces the value (string, number or whole object) by a
/// constant string.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct RedactTable {
    /// The replacement (default `"[redacted]"`).
    with: Option<String>,
}

impl ActionOptions for RedactTable {
    const KIND: ActionKind = ActionKind::Redact;
}

/// `scan`: finds personal data inside free text and replaces each find.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
// `with` goes with `replace = "redact"` only.
#[schemars(extend("dependencies" = {
    "with": { "required": ["replace"], "properties": { "replace": { "const": "redact" } } }
}))]
#[allow(dead_code)]
pub(crate) struct ScanTable {
    /// What to look for, at least one detector. Default: every detector.
    #[schemars(length(min = 1))]
    detect: Option<Vec<DetectorName>>,
    /// What each find becomes (default `pseudonymise`).
    replace: Option<ScanReplaceName>,
    /// The replacement with `replace = "redact"` (default `"[redacted]"`).
    with: Option<String>,
    /// Pseudonym scope with `replace = "pseudonymise"`. Default: the file's
    /// `scope`.
    #[schemars(length(min = 1))]
    scope: Option<String>,
    /// Pseudonym length in bits with `replace = "pseudonymise"`: a multiple
    /// of 8 from 64 to 256 (default 128).
    #[schemars(range(min = 64, max = 256), extend("multipleOf" = 8))]
    bits: Option<i64>,
}

impl ActionOptions for ScanTable {
    const KIND: ActionKind = ActionKind::Scan;
}

/// `embedded_json`: the string holds a JSON document, rewritten by the
/// selectors below this path and encoded back. Not for `[query]`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct EmbeddedJsonTable {
    /// How the document is encoded in the string (default `plain`).
    encoding: Option<EncodingName>,
}

impl ActionOptions for EmbeddedJsonTable {
    const KIND: ActionKind = ActionKind::EmbeddedJson;
}

/// Normalisation before hashing.
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)]
enum NormaliseName {
    /// The value is hashed as it is (the same as leaving the option out).
    None,
    /// Trim, then Unicode lowercase; dots and `+tags` stay.
    Email,
    /// Unicode lowercase, no trim.
    Lower,
    /// Strip Unicode whitespace at both ends.
    Trim,
    /// ASCII digits only: `+1 (650) 555-1234` is `16505551234`.
    Phone,
}

/// A `coarsen_time` unit.
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)]
enum TimeUnitName {
    /// Seconds and fractions become zero.
    Minute,
    /// Minutes, seconds and fractions become zero.
    Hour,
    /// The time of day becomes `00:00:00`.
    Day,
}

/// A `scan` detector.
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)]
enum DetectorName {
    /// Email addresses (also with `%40` for `@`).
    Email,
    /// IPv4 and IPv6 addresses.
    Ip,
    /// IPv4 addresses.
    Ipv4,
    /// IPv6 addresses.
    Ipv6,
    /// Phone numbers: 7 to 15 digits in groups, `+` optional.
    Phone,
    /// Payment card numbers: 13 to 19 digits, Luhn-valid.
    Card,
    /// IBANs, mod-97 valid.
    Iban,
    /// Tokens with a known prefix (`sk_live_`, `ghp_`, `AKIA` ...) and JWTs.
    Secret,
}

/// What a `scan` find is replaced by.
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)]
enum ScanReplaceName {
    /// A pseudonym of the find (emails and phones normalised).
    Pseudonymise,
    /// The constant `with`.
    Redact,
}

/// How `embedded_json` finds the document in the string.
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)]
enum EncodingName {
    /// The string is the JSON text.
    Plain,
    /// Base64 of the JSON text (standard or URL-safe alphabet, padding
    /// optional).
    Base64,
}
