//! What the benches share: the bench rule files and the `serde_json`
//! baselines that apply the same edits (the realistic rules' pseudonyms and
//! drops) to a parsed `serde_json::Value`.

#![allow(dead_code)]

use std::sync::Arc;

use serde::de::IgnoredAny;
use serde_json::Value;

use scrim::policy::compile_str;
use scrim::pseudonym::{DEFAULT_BITS, KeyRing, Normalise, ScopedKey, normalise};
use scrim::rewrite::Engine;

/// Recipient and pseudonym scope of every bench rule file, so that the
/// engine's scope key is `KeyRing::test_ring().scoped(SCOPE)`, the key the
/// baselines use.
pub const SCOPE: &str = "bench";

// ---------------------------------------------------------------------------
// Rules

/// The bench rule file. `prefix` is `"batch."` for batches and `""` for a
/// single event or NDJSON lines. With `transforms`, the 3 identifiers are
/// pseudonymised; without, they are kept (keep/drop only, same shape).
pub fn rules(prefix: &str, transforms: bool) -> String {
    let p = prefix;
    let (id, email) = if transforms {
        (
            "\"pseudonymise\"",
            "{ action = \"pseudonymise\", normalise = \"email\" }",
        )
    } else {
        ("\"keep\"", "\"keep\"")
    };
    format!(
        r#"recipient = "{SCOPE}"
upstream  = "https://api.segment.example"

[fields]
"sentAt"               = "keep"
"{p}type"              = "keep"
"{p}event"             = "keep"
"{p}messageId"         = "keep"
"{p}timestamp"         = "keep"
"{p}channel"           = "keep"
"{p}integrations"      = "keep"
"{p}properties"        = "keep"
"{p}context"           = "keep"
"{p}context.userAgent" = "drop"
"{p}traits"            = "keep"
"{p}traits.phone"      = "drop"
"{p}traits.address"    = "drop"
"{p}userId"            = {id}
"{p}anonymousId"       = {id}
"{p}traits.email"      = {email}
"#
    )
}

pub const TINY_RULES: &str = r#"recipient = "bench"
upstream = "https://api.segment.example"
[fields]
userId = "pseudonymise"
"#;

pub fn engine(text: &str) -> Engine {
    let policy =
        compile_str(text, "bench.toml", SCOPE).unwrap_or_else(|e| panic!("bench rules: {e}"));
    assert_eq!(policy.scopes, [SCOPE]);
    Engine::new(Arc::new(policy), &KeyRing::test_ring())
}

// ---------------------------------------------------------------------------
// Baselines on serde_json::Value

/// The realistic (or keep/drop) edits on one event.
pub fn edit_event(ev: &mut Value, key: &ScopedKey, transforms: bool) {
    let Some(obj) = ev.as_object_mut() else {
        return;
    };
    if transforms {
        for f in ["userId", "anonymousId"] {
            if let Some(Value::String(s)) = obj.get_mut(f) {
                *s = key.pseudonymise(s.as_bytes(), DEFAULT_BITS);
            }
        }
    }
    if let Some(Value::Object(ctx)) = obj.get_mut("context") {
        ctx.remove("userAgent");
    }
    if let Some(Value::Object(traits)) = obj.get_mut("traits") {
        traits.remove("phone");
        traits.remove("address");
        if transforms && let Some(Value::String(s)) = traits.get_mut("email") {
            let p = key.pseudonymise(normalise(Normalise::Email, s).as_bytes(), DEFAULT_BITS);
            *s = p;
        }
    }
}

pub fn serde_batch(input: &[u8], key: &ScopedKey, transforms: bool) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(input).unwrap();
    if let Some(Value::Array(events)) = v.get_mut("batch") {
        for ev in events {
            edit_event(ev, key, transforms);
        }
    }
    let mut out = Vec::with_capacity(input.len());
    serde_json::to_writer(&mut out, &v).unwrap();
    out
}

pub fn serde_single(input: &[u8], key: &ScopedKey) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(input).unwrap();
    edit_event(&mut v, key, true);
    let mut out = Vec::with_capacity(input.len());
    serde_json::to_writer(&mut out, &v).unwrap();
    out
}

/// Non-empty lines, split with memchr (the fastest split available).
pub fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', input)
        .chain(std::iter::once(input.len()))
        .filter_map(move |end| {
            let line = &input[start..end];
            start = end + 1;
            (!line.is_empty()).then_some(line)
        })
}

pub fn serde_ndjson(input: &[u8], key: &ScopedKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for line in lines(input) {
        let mut v: Value = serde_json::from_slice(line).unwrap();
        edit_event(&mut v, key, true);
        serde_json::to_writer(&mut out, &v).unwrap();
        out.push(b'\n');
    }
    out
}

pub fn validate(input: &[u8]) {
    serde_json::from_slice::<IgnoredAny>(input).unwrap();
}

pub fn validate_ndjson(input: &[u8]) {
    for line in lines(input) {
        serde_json::from_slice::<IgnoredAny>(line).unwrap();
    }
}
