//! The fast rewriter against the reference rewriter, on generated documents
//! and rule sets; and whole-buffer against chunked feeding.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value;

use scrim::policy::{BodyFormat, compile_str};
use scrim::pseudonym::KeyRing;
use scrim::rewrite::{Engine, ErrorKind, reference};

const KEYS: &[&str] = &[
    "a",
    "b",
    "email",
    "ip",
    "ts",
    "n",
    "x.y",
    "é",
    "Email",
    "e\u{200b}mail",
    "É",
    // Keys that fold alike under one of the reference's comparisons: Turkic
    // folding and Java (İ), simple folding (Kelvin sign), full folding (ẞ).
    "EMA\u{130}L",
    "k",
    "\u{212a}",
    "strasse",
    "STRA\u{1e9e}E",
];

const SELECTORS: &[&str] = &[
    "a",
    "b",
    "email",
    "ip",
    "ts",
    "n",
    "a.b",
    "a.email",
    "a.*",
    "*.ip",
    "**.email",
    "b.**",
    "a.a.n",
    "*",
    "\"x.y\"",
    "a.\"x.y\"",
    "**.ts",
    "b.*.n",
    "é",
    "a.é",
    "k",
    "a.strasse",
];

const ACTIONS: &[&str] = &[
    "\"keep\"",
    "\"keep\"",
    "\"drop\"",
    "\"pseudonymise\"",
    "{ action = \"pseudonymise\", normalise = \"email\", bits = 64 }",
    "{ action = \"hash_sha256\", normalise = \"lower\" }",
    "\"truncate_ip\"",
    "{ action = \"coarsen_time\", unit = \"day\" }",
    "{ action = \"bucket\", bounds = [0, 10, 100] }",
    "\"mask_email\"",
    "\"strip_query\"",
    "{ action = \"redact\", with = \"-\" }",
    "\"embedded_json\"",
    "\"scan\"",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just("0"),
            Just("-0"),
            Just("12"),
            Just("1.50"),
            Just("1e3"),
            Just("-2.5E-3"),
            Just("1700000000"),
            Just("1700000000123"),
            Just("99999999999999999999999"),
        ]
        .prop_map(|n| serde_json::from_str::<Value>(n).unwrap()),
        prop_oneof![
            Just("Alice@Example.com"),
            Just("192.168.10.20"),
            Just("2001:db8::1"),
            Just("2024-05-01T13:45:12Z"),
            Just("https://x.example/p?q=1#f"),
            Just("mail bob@example.org now"),
            Just("{\"a\":1,\"ip\":\"10.0.0.1\",\"b\":[1,{\"email\":\"e@x.io\"}]}"),
            Just("plain text"),
            Just("quote \" back \\ nl \n tab \t é ☃"),
            Just(""),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..5).prop_map(|kvs| {
                let mut m = serde_json::Map::new();
                for (k, v) in kvs {
                    m.insert(k.to_string(), v);
                }
                Value::Object(m)
            }),
        ]
    })
}

fn rule_set() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(SELECTORS),
            prop::sample::select(ACTIONS),
        ),
        0..7,
    )
    .prop_map(|rules| {
        let mut seen = std::collections::HashSet::new();
        let mut text = String::from("upstream = \"https://partner.example\"\n[fields]\n");
        for (sel, action) in rules {
            if seen.insert(sel) {
                text.push_str(&format!("'{sel}' = {action}\n"));
            }
        }
        text
    })
}

/// Serialises with random insignificant whitespace and random escapes of
/// ASCII letters in keys and strings (`"em\u0061il"`).
fn write_noisy(v: &Value, noise: &mut impl FnMut() -> u32, out: &mut String) {
    let ws = |noise: &mut dyn FnMut() -> u32, out: &mut String| {
        if noise().is_multiple_of(4) {
            out.push_str([" ", "\n", "\t", "\r\n  "][(noise() % 4) as usize]);
        }
    };
    match v {
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(noise, out);
                write_str(k, noise, out);
                ws(noise, out);
                out.push(':');
                ws(noise, out);
                write_noisy(x, noise, out);
            }
            ws(noise, out);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(noise, out);
                write_noisy(x, noise, out);
            }
            out.push(']');
        }
        Value::String(s) => write_str(s, noise, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_str(s: &str, noise: &mut impl FnMut() -> u32, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if c.is_ascii_alphabetic() && noise().is_multiple_of(5) => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            '☃' if noise().is_multiple_of(2) => out.push_str("\\u2603"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn engine(rules: &str) -> Option<Engine> {
    let policy = compile_str(rules, "gen.toml", "gen").ok()?;
    Some(Engine::new(Arc::new(policy), &KeyRing::test_ring()))
}

/// Parses the fast rewriter's output for comparison; embedded JSON strings are
/// compared as documents (their escapes may legitimately differ).
fn normalise(v: Value) -> Value {
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn fast_rewriter_matches_reference(doc in document(), rules in rule_set(), seed in any::<u64>()) {
        let Some(engine) = engine(&rules) else {
            // Ambiguous combinations are refused at load: nothing to compare.
            return Ok(());
        };
        let mut state = seed | 1;
        let mut noise = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u32
        };
        let mut text = String::new();
        write_noisy(&doc, &mut noise, &mut text);

        let fast = engine.rewrite(BodyFormat::Json, text.as_bytes());
        if reference::folded_duplicate(&doc) {
            // Two keys of one object that fold alike: refused, as the
            // partner's case-insensitive reading could pick either.
            let kind = fast.map(|_| ()).map_err(|e| e.kind);
            prop_assert_eq!(kind, Err(ErrorKind::DuplicateKey), "input: {}", text);
            return Ok(());
        }
        let fast = fast.map_err(|e| TestCaseError::fail(format!("refused valid input: {e}\n{text}")))?;
        let fast_doc: Value = serde_json::from_slice(&fast.body)
            .map_err(|e| TestCaseError::fail(format!("output not JSON: {e}")))?;
        let slow = reference::rewrite(&engine, &doc);
        prop_assert_eq!(normalise(fast_doc), normalise(slow), "rules:\n{}\ninput: {}\noutput: {}", rules, text, String::from_utf8_lossy(&fast.body));

        // Chunked feeding gives the same bytes.
        let mut out = Vec::new();
        let mut rw = engine.body_rewriter(BodyFormat::Json);
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let n = 1 + (noise() as usize % 7);
            let end = (i + n).min(bytes.len());
            rw.feed(&bytes[i..end], &mut out).unwrap();
            i = end;
        }
        let stats = rw.finish(&mut out).unwrap();
        prop_assert_eq!(&out, &fast.body);
        prop_assert_eq!(stats, fast.stats);
    }

    #[test]
    fn ndjson_is_each_line_rewritten(docs in prop::collection::vec(document(), 0..5), rules in rule_set()) {
        let Some(engine) = engine(&rules) else { return Ok(()) };
        let text: String = docs.iter().map(|d| format!("{d}\n")).collect();
        let out = engine.rewrite(BodyFormat::Ndjson, text.as_bytes());
        if docs.iter().any(reference::folded_duplicate) {
            let kind = out.map(|_| ()).map_err(|e| e.kind);
            prop_assert_eq!(kind, Err(ErrorKind::DuplicateKey), "input: {}", text);
            return Ok(());
        }
        let out = out.unwrap();
        let lines: Vec<Value> = String::from_utf8(out.body).unwrap().lines()
            .map(|l| normalise(serde_json::from_str(l).unwrap())).collect();
        let expect: Vec<Value> = docs.iter().map(|d| normalise(reference::rewrite(&engine, d))).collect();
        prop_assert_eq!(lines, expect);
    }
}
