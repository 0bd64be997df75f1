//! Arbitrary text through the rule-file compiler.
//!
//! Oracles:
//! * no panic;
//! * a refusal reads `fuzz.toml:LINE:COL: error[CODE]: message`, at a line and column
//!   inside the file (only a whole-file problem, such as a missing top-level key, may
//!   omit the location);
//! * a compiled policy rewrites `{}` as the reference does, an empty NDJSON
//!   body and an empty form body to nothing, and runs its own `[[tests]]` without panic;
//! * on a few fixed documents the engine agrees with the reference rewriter
//!   (or refuses only for depth, below the policy's `max_depth`).

#![no_main]

mod common;

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use scrim::policy::{BodyFormat, compile_str};
use scrim::pseudonym::KeyRing;
use scrim::rewrite::{Engine, ErrorKind, reference};
use scrim::selftest;

const FILE: &str = "fuzz.toml";

const DOCS: &[&str] = &[
    r#"{"type":"track","userId":"u-1","email":" Alice@Example.COM ","password":"hunter2","n":1.50,"ok":true,"none":null}"#,
    r#"{"context":{"ip":"192.168.10.20","page":{"url":"https://x.example/p?q=1#f","title":"mail bob@example.org"}},"properties":{"a.b":[1,{"email":"e@x.io"}],"é":"ü"}}"#,
    r#"{"timestamp":"2024-05-01T13:45:12Z","ts":1700000000123,"age":37,"payload":"{\"userId\":\"u-2\",\"ip\":\"10.0.0.1\",\"event\":\"x\"}","blob64":"eyJpcCI6IjEwLjAuMC4xIiwibiI6MX0="}"#,
    r#"[{"a":{"a":{"n":1}},"b":[[{"ip":"2001:db8::1"}]]},"x",2]"#,
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let policy = match compile_str(&text, FILE, "fuzz") {
        Ok(p) => p,
        Err(e) => {
            let shown = e.to_string();
            if e.line == 0 {
                assert!(shown.starts_with(&format!("{FILE}: ")), "{shown}");
                // Whole-file problems: the selectors' combinations, and a
                // required top-level key that is not there at all.
                assert!(
                    e.message.contains("too many combinations") || e.message.ends_with("is required"),
                    "a refusal without a location: {shown}"
                );
            } else {
                let prefix = format!("{FILE}:{}:{}: ", e.line, e.col);
                assert!(shown.starts_with(&prefix), "{shown}");
                let lines: Vec<&str> = text.split('\n').collect();
                assert!(e.line <= lines.len(), "line {} past the end: {shown}", e.line);
                let width = lines[e.line - 1].chars().count();
                assert!(e.col >= 1 && e.col <= width + 1, "column {} past line end ({width}): {shown}", e.col);
            }
            assert!(!e.message.trim().is_empty(), "empty message: {shown}");
            return;
        }
    };
    let policy = Arc::new(policy);
    let engine = Engine::new(policy.clone(), &KeyRing::test_ring());
    // `{}` (usually to `{}`, but `"**"` also names the root: redact gives a string).
    let out = engine.rewrite(BodyFormat::Json, b"{}").expect("`{}` is refused");
    let out = common::parse_strict(&out.body).expect("output for `{}` is JSON");
    let empty = serde_json::Value::Object(Default::default());
    assert_eq!(out, reference::rewrite(&engine, &empty), "on {{}}");
    let out = engine.rewrite(BodyFormat::Ndjson, b"").expect("empty NDJSON is refused");
    assert_eq!(out.body, b"");
    let out = engine.rewrite(BodyFormat::Form, b"").expect("empty form is refused");
    assert_eq!(out.body, b"");
    let _ = engine.rewrite_query(b"v=1&cid=u-1&email=a%40b.c");
    let _ = selftest::run(&policy);

    for doc in DOCS {
        let value: serde_json::Value = serde_json::from_str(doc).unwrap();
        match engine.rewrite(BodyFormat::Json, doc.as_bytes()) {
            Ok(fast) => {
                let fast = common::parse_strict(&fast.body).expect("output is JSON");
                if common::depth_with_embedded(&value) < policy.max_depth {
                    let slow = reference::rewrite(&engine, &value);
                    assert_eq!(common::normalise(fast), common::normalise(slow), "on {doc}");
                }
            }
            Err(e) => assert!(
                matches!(e.kind, ErrorKind::TooDeep(_)) && common::depth(&value) > policy.max_depth,
                "refused {doc}: {e}"
            ),
        }
    }
});
