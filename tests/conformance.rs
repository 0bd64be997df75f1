//! JSONTestSuite (nst/JSONTestSuite, test_parsing/) through the engine:
//! every `y_` accepted, every `n_` refused, no `i_` crashes or passes a
//! malformed document on.
//!
//! Documented limit: `y_object_duplicated_key*.json` are valid JSON but are
//! refused on purpose (parsers disagree on which duplicate wins, a known
//! way around minimisers).

use std::path::PathBuf;
use std::sync::Arc;

use scrim::policy::{BodyFormat, compile_str};
use scrim::pseudonym::KeyRing;
use scrim::rewrite::Engine;

const REFUSED_BY_DESIGN: &[&str] = &[
    "y_object_duplicated_key.json",
    "y_object_duplicated_key_and_value.json",
];

fn suite() -> Vec<(String, Vec<u8>)> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/JSONTestSuite/test_parsing");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 318, "the suite has 318 files");
    files
}

fn engines() -> Vec<Engine> {
    // Everything kept (copy path), and a mixed rule set (decision path).
    [
        "upstream = \"https://p.example\"\n[fields]\n\"**\" = \"keep\"\n",
        "upstream = \"https://p.example\"\n[fields]\n\"**.a\" = \"pseudonymise\"\n\"*\" = \"keep\"\n\"**.b\" = \"keep\"\n",
        "upstream = \"https://p.example\"\n",
    ]
    .iter()
    .map(|r| {
        Engine::new(
            Arc::new(compile_str(r, "c.toml", "c").unwrap()),
            &KeyRing::test_ring(),
        )
    })
    .collect()
}

/// Feeds in chunks of `n` bytes.
fn chunked(engine: &Engine, input: &[u8], n: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rw = engine.body_rewriter(BodyFormat::Json);
    for c in input.chunks(n.max(1)) {
        rw.feed(c, &mut out).map_err(|e| e.to_string())?;
    }
    rw.finish(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn json_test_suite() {
    let engines = engines();
    let mut failures = Vec::new();
    let (mut y, mut n, mut i) = (0, 0, 0);
    for (name, bytes) in suite() {
        for (k, engine) in engines.iter().enumerate() {
            let whole = engine.rewrite(BodyFormat::Json, &bytes);
            // The same answer whatever the chunking.
            for size in [1, 3, 64] {
                let c = chunked(engine, &bytes, size);
                match (&whole, &c) {
                    (Ok(a), Ok(b)) if a.body == *b => {}
                    (Err(_), Err(_)) => {}
                    _ => failures.push(format!("{name}: chunks of {size} differ (engine {k})")),
                }
            }
            match &whole {
                Ok(out) => {
                    // Whatever is accepted comes out as valid JSON.
                    if serde_json::from_slice::<serde_json::Value>(&out.body).is_err()
                        && !name.starts_with("i_number")
                    {
                        failures.push(format!("{name}: output is not JSON (engine {k})"));
                    }
                    if name.starts_with("n_") {
                        failures.push(format!("{name}: accepted (engine {k})"));
                    }
                    if REFUSED_BY_DESIGN.contains(&name.as_str()) {
                        failures.push(format!("{name}: duplicate keys accepted (engine {k})"));
                    }
                }
                Err(e) => {
                    if name.starts_with("y_") && !REFUSED_BY_DESIGN.contains(&name.as_str()) {
                        failures.push(format!("{name}: refused: {e} (engine {k})"));
                    }
                }
            }
        }
        match &name[..2] {
            "y_" => y += 1,
            "n_" => n += 1,
            _ => i += 1,
        }
    }
    assert_eq!((y, n, i), (95, 188, 35));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn kept_documents_pass_byte_for_byte() {
    let engine = &engines()[0];
    for (name, bytes) in suite() {
        if !name.starts_with("y_") || REFUSED_BY_DESIGN.contains(&name.as_str()) {
            continue;
        }
        let out = engine.rewrite(BodyFormat::Json, &bytes).unwrap();
        // Everything is kept: the output is the input, token for token, with
        // only insignificant whitespace removed.
        assert_eq!(out.body, minify(&bytes), "{name}");
    }
}

/// Removes whitespace outside strings.
fn minify(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut in_str, mut esc) = (false, false);
    for &b in bytes {
        if in_str {
            out.push(b);
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
            out.push(b);
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(b);
        }
    }
    out
}
