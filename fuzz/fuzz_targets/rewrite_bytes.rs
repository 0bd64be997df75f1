//! Arbitrary bytes through a fixed, realistic policy ([`common::POLICY`]), as
//! one JSON document and as NDJSON.
//!
//! Oracles, whenever the engine accepts the input:
//! * the input is JSON without duplicate keys (nothing invalid is let through);
//! * the output is JSON without duplicate keys;
//! * nothing under a `password` key survives (`**.password` is dropped),
//!   embedded too, but what a deeper selector allows (`password.email`);
//! * every scalar left at a pseudonymised path (`userId`, `payload.userId`,
//!   `**.email`) is the pseudonym of some input value at such a path;
//! * no pseudonymised input value (4 characters or more) appears verbatim in a
//!   kept key or value, unless the input also has it somewhere not pseudonymised.

#![no_main]

mod common;

use std::collections::HashSet;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scrim::policy::BodyFormat;
use scrim::policy::selector::canonical;
use scrim::pseudonym::{KeyRing, Normalise, ScopedKey, normalise};
use scrim::rewrite::Engine;
use serde_json::Value;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| common::engine(common::POLICY).unwrap());
static KEY: LazyLock<ScopedKey> = LazyLock::new(|| KeyRing::test_ring().scoped("analytics"));

#[derive(Clone, Copy, PartialEq)]
enum Pos {
    /// `userId`, `payload.userId`: pseudonymised as is.
    User,
    /// `**.email`: pseudonymised after email normalisation.
    Email,
    /// Replaced by a transform whose output is not a copy of input text.
    Transformed,
    Other,
}

/// Where a path is, its keys in canonical form (selectors match keys lower
/// case, without whitespace or invisible characters: `emaIl` is `email`).
fn pos(path: &[String]) -> Pos {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        [.., "email"] => Pos::Email,
        ["userid"] | ["payload", "userid"] => Pos::User,
        ["context", "ip"] | ["context", "page", "title"] | ["timestamp"] | ["age"] | ["blob64"] => {
            Pos::Transformed
        }
        _ => Pos::Other,
    }
}

/// The text a scalar is pseudonymised from (strings unescaped, numbers as
/// serde_json writes them).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What the input says: which pseudonyms may appear, which values must not.
#[derive(Default)]
struct Facts {
    /// Pseudonyms of the values at `User` / `Email` paths.
    pseudonyms: HashSet<String>,
    /// Values at those paths, 4 characters or more.
    secrets: HashSet<String>,
    /// Every key and every value at another path (may legitimately be kept).
    public: Vec<String>,
}

impl Facts {
    fn learn(&mut self, v: &Value, path: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    self.public.push(k.clone());
                    path.push(canonical(k));
                    self.learn(x, path);
                    path.pop();
                }
            }
            Value::Array(items) => items.iter().for_each(|x| self.learn(x, path)),
            // The embedded document is walked instead of being public as a whole.
            Value::String(s) if *path == ["payload"] && common::parse_strict(s.as_bytes()).is_ok() => {
                let doc = common::parse_strict(s.as_bytes()).unwrap();
                self.learn(&doc, path);
            }
            scalar => {
                let Some(text) = scalar_text(scalar) else { return };
                let norm = match pos(path) {
                    Pos::User => Normalise::None,
                    Pos::Email if scalar.is_string() => Normalise::Email,
                    Pos::Email => Normalise::None,
                    _ => {
                        self.public.push(text);
                        return;
                    }
                };
                // serde_json writes an exponent as `e+`/`e-`: the input may
                // have had `E` or no sign, which the engine hashes as written.
                let mut texts = vec![text.clone()];
                if scalar.is_number() {
                    let bare = text.replace("e+", "e");
                    texts.extend([text.replace('e', "E"), bare.replace('e', "E"), bare]);
                }
                for t in &texts {
                    let n = normalise(norm, t);
                    self.pseudonyms.insert(KEY.pseudonymise(n.as_bytes(), 128));
                }
                if text.chars().count() >= 4 {
                    self.secrets.insert(text);
                }
            }
        }
    }

    fn leaks(&self, text: &str) -> Option<&str> {
        self.secrets
            .iter()
            .find(|s| text.contains(s.as_str()) && !self.public.iter().any(|p| p.contains(s.as_str())))
            .map(String::as_str)
    }

    /// Checks one rewritten document. `dropped`: under a `password` key.
    fn check(&self, v: &Value, path: &mut Vec<String>, dropped: bool) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    // `drop` on a container still lets deeper selectors allow
                    // (here `**.email`), so the key may stay as a container
                    // holding only pseudonyms; never with a value of its own.
                    let password = canonical(k) == "password";
                    assert!(
                        !password || x.is_object() || x.is_array(),
                        "a dropped field survived at {path:?}: {x}"
                    );
                    if let Some(s) = self.leaks(k) {
                        panic!("pseudonymised value {s:?} leaked as a key at {path:?}");
                    }
                    path.push(canonical(k));
                    self.check(x, path, dropped || password);
                    path.pop();
                }
            }
            Value::Array(items) => items.iter().for_each(|x| self.check(x, path, dropped)),
            Value::String(s) if *path == ["payload"] => {
                let doc = common::parse_strict(s.as_bytes())
                    .unwrap_or_else(|e| panic!("embedded output is not JSON ({e}): {s:?}"));
                self.check(&doc, path, dropped);
            }
            scalar => match pos(path) {
                Pos::User | Pos::Email => {
                    assert!(
                        scalar.as_str().is_some_and(|s| self.pseudonyms.contains(s)),
                        "{scalar} at {path:?} is not the pseudonym of an input value there"
                    );
                }
                _ if dropped => panic!("{scalar} survived under a dropped key at {path:?}"),
                Pos::Transformed => {}
                Pos::Other => {
                    let text = scalar_text(scalar).unwrap_or_default();
                    if let Some(s) = self.leaks(&text) {
                        panic!("pseudonymised value {s:?} leaked at {path:?}: {text:?}");
                    }
                }
            },
        }
    }
}

fn check_json(data: &[u8]) {
    let Ok(out) = ENGINE.rewrite(BodyFormat::Json, data) else { return };
    let input = common::parse_strict(data)
        .unwrap_or_else(|e| panic!("engine accepted what serde_json refuses: {e}"));
    let output = common::parse_strict(&out.body).unwrap_or_else(|e| {
        panic!("output is not JSON ({e}): {}", String::from_utf8_lossy(&out.body))
    });
    let mut facts = Facts::default();
    facts.learn(&input, &mut Vec::new());
    facts.check(&output, &mut Vec::new(), false);
}

fn check_ndjson(data: &[u8]) {
    let Ok(out) = ENGINE.rewrite(BodyFormat::Ndjson, data) else { return };
    let mut facts = Facts::default();
    let mut docs = 0;
    for line in data.split(|&b| b == b'\n') {
        if line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
            continue;
        }
        let doc = common::parse_strict(line)
            .unwrap_or_else(|e| panic!("engine accepted an NDJSON line serde_json refuses: {e}"));
        facts.learn(&doc, &mut Vec::new());
        docs += 1;
    }
    let text = std::str::from_utf8(&out.body).expect("NDJSON output is UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), docs, "one output line per input document: {text:?}");
    for line in lines {
        let doc = common::parse_strict(line.as_bytes())
            .unwrap_or_else(|e| panic!("NDJSON output line is not JSON ({e}): {line:?}"));
        facts.check(&doc, &mut Vec::new(), false);
    }
}

fuzz_target!(|data: &[u8]| {
    check_json(data);
    check_ndjson(data);
});
