//! Key folding over every code point, held to the reference's independent
//! comparisons (`scrim::rewrite::reference::key_forms`, built on ICU4X).
//!
//! Whenever one of the comparisons a parser may use (full or Turkic case
//! folding, Go's `EqualFold`, Java's `equalsIgnoreCase`, .NET's
//! `OrdinalIgnoreCase`, full lower case) says a character is the same as a
//! piece of a key that the shipped rule files name, the engine's canonical
//! form must say so too: otherwise `EMA\u{130}L` or `pa\u{17f}\u{17f}word`
//! would slip past a rule that a partner's parser would apply. Then every
//! such character is put into those keys, and the engine must decide the
//! field as it does under the key as written: in a JSON body (raw and
//! `\u`-escaped), a form body and a query string.
//!
//! The same pass checks every two characters (and a character against its
//! own comparison forms, `\u{df}` against `ss`) both ways: what some
//! comparison joins, the engine joins; what the engine joins, some
//! comparison joins.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use scrim::policy::selector::canonical;
use scrim::policy::{Action, BodyFormat, CompiledPolicy, Segment, Selector};
use scrim::pseudonym::KeyRing;
use scrim::rewrite::{Engine, Explained, reference};

fn shipped_policies() -> Vec<Arc<CompiledPolicy>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    scrim::policy::load_all(&[dir]).expect("rules/ loads")
}

/// Every literal key segment of the field and query selectors.
fn rule_keys(policies: &[Arc<CompiledPolicy>]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for p in policies {
        for r in p.fields.rules().iter().chain(p.query.rules()) {
            for s in r.selector.segments() {
                if let Segment::Key(k) = s {
                    keys.insert(k.to_string());
                }
            }
        }
    }
    keys
}

/// Substrings of 1 to 3 characters.
fn pieces(keys: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for k in keys {
        let chars: Vec<char> = k.chars().collect();
        for i in 0..chars.len() {
            for n in 1..=3.min(chars.len() - i) {
                out.insert(chars[i..i + n].iter().collect());
            }
        }
    }
    out
}

fn code_point(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

fn show(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() {
                c.to_string()
            } else {
                format!("<{}>", code_point(c))
            }
        })
        .collect()
}

fn all_chars() -> impl Iterator<Item = char> {
    (0..=0x10FFFFu32).filter_map(char::from_u32)
}

/// What one pass over all code points finds.
#[derive(Default)]
struct Scan {
    /// For each rule-key piece, the characters the reference finds equal to
    /// it (the piece itself left out).
    equivalents: BTreeMap<String, BTreeSet<char>>,
    /// Each a line: what the reference finds equal and the engine does not.
    failures: Vec<String>,
    /// The characters whose canonical form is not themselves, with it.
    changed: Vec<(char, String)>,
}

/// Looks up every character in the pieces' comparison forms, and checks the
/// characters against each other and against their own forms (`\u{df}`
/// against `ss`, `\u{212a}` against `k`).
fn scan(chars: &[char], index: &[HashMap<String, Vec<String>>]) -> Scan {
    // Per comparison: the first character seen with a form that differs
    // from itself, by that form.
    let mut groups: Vec<HashMap<String, char>> = vec![HashMap::new(); reference::COMPARISONS.len()];
    let mut failures = Vec::new();
    let mut changed = Vec::new();
    let mut fail = |what: String| failures.push(what);
    let mut equivalents: BTreeMap<String, BTreeSet<char>> = BTreeMap::new();
    for &c in chars {
        let text = c.to_string();
        let forms = reference::key_forms(&text);
        if forms.iter().all(String::is_empty) {
            // Removed before folding (whitespace, controls, invisibles).
            continue;
        }
        let mine = canonical(&text);
        if mine != text {
            changed.push((c, mine.clone()));
        }
        for (i, form) in forms.iter().enumerate() {
            let how = reference::COMPARISONS[i];
            if let Some(targets) = index[i].get(form) {
                for t in targets {
                    if *t != text {
                        equivalents.entry(t.clone()).or_default().insert(c);
                    }
                    if canonical(t) != mine {
                        fail(format!(
                            "{} is {:?} under {how}; engine: {} vs {}",
                            code_point(c),
                            t,
                            show(&mine),
                            show(&canonical(t)),
                        ));
                    }
                }
            }
            if *form == text {
                continue;
            }
            // The form is itself a key equal to `c` when it is its own form.
            if reference::key_forms(form)[i] == *form && canonical(form) != mine {
                fail(format!(
                    "{} is {} under {how}; engine: {} vs {}",
                    code_point(c),
                    show(form),
                    show(&mine),
                    show(&canonical(form)),
                ));
            }
            match groups[i].get(form) {
                None => {
                    groups[i].insert(form.clone(), c);
                }
                Some(&first) if canonical(&first.to_string()) != mine => fail(format!(
                    "{} is {} under {how}; engine: {} vs {}",
                    code_point(c),
                    code_point(first),
                    show(&mine),
                    show(&canonical(&first.to_string())),
                )),
                Some(_) => {}
            }
        }
    }
    Scan {
        equivalents,
        failures,
        changed,
    }
}

/// The other direction: characters that the engine puts in one canonical
/// form (with that form itself, when it is its own canonical form) are
/// equal under some comparison, two by two. So the engine joins nothing
/// that no parser joins, and the differential tests can hold it to the
/// reference both ways.
fn joined_without_reason(changed: &[(char, String)]) -> Vec<String> {
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (c, form) in changed {
        groups.entry(form).or_default().push(c.to_string());
    }
    let mut failures = Vec::new();
    for (form, mut members) in groups {
        if canonical(form) == form {
            members.push(form.to_string());
        }
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                if !reference::same_key(a, b) {
                    failures.push(format!(
                        "{} and {} are {} to the engine, different under every comparison",
                        show(a),
                        show(b),
                        show(form)
                    ));
                }
            }
        }
    }
    failures
}

/// A value each action applies to, as JSON text and as form text.
fn sample(action: &Action) -> (&'static str, &'static str) {
    match action {
        Action::TruncateIp { .. } => ("\"203.0.113.7\"", "203.0.113.7"),
        Action::CoarsenTime { .. } => ("\"2024-05-01T13:45:12Z\"", "2024-05-01T13%3A45%3A12Z"),
        Action::Bucket { .. } => ("30", "30"),
        Action::StripQuery { .. } => ("\"https://x.example/p?q=1\"", "https%3A%2F%2Fx.example%2Fp"),
        Action::EmbeddedJson { .. } => ("\"{}\"", "%7B%7D"),
        _ => ("\"a@b.example\"", "a%40b.example"),
    }
}

fn json_string(s: &str, escape: Option<usize>) -> String {
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || escape == Some(i) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A JSON document with `value` at the path the selector names: `*` as a
/// plain key, `**` as no key, and a string where an `embedded_json` rule
/// stands on the way. `keys[j]` replaces segment `j`; `escape` writes one
/// character of one key as a `\u` escape.
fn document(
    policy: &CompiledPolicy,
    segments: &[Segment],
    keys: &[String],
    value: &str,
    escape: Option<(usize, usize)>,
) -> String {
    let mut doc = value.to_string();
    for j in (0..segments.len()).rev() {
        let prefix = Selector::from_segments(segments[..=j].to_vec());
        let embedded = policy.fields.rules().iter().find_map(|r| match r.action {
            Action::EmbeddedJson { base64 } if r.selector == prefix && j + 1 < segments.len() => {
                Some(base64)
            }
            _ => None,
        });
        if let Some(base64) = embedded {
            use base64::Engine as _;
            doc = if base64 {
                json_string(
                    &base64::engine::general_purpose::STANDARD.encode(&doc),
                    None,
                )
            } else {
                json_string(&doc, None)
            };
        }
        if segments[j] == Segment::GlobStar {
            continue;
        }
        let esc = escape.and_then(|(at, i)| (at == j).then_some(i));
        doc = format!("{{{}:{doc}}}", json_string(&keys[j], esc));
    }
    doc
}

/// What the engine decided, without the key's spelling: field counts and,
/// for JSON, the deciding selector, action and outcome of every field.
fn decision(engine: &Engine, format: BodyFormat, body: &str) -> String {
    let mut rw = engine.body_rewriter(format);
    rw.explain();
    let mut out = Vec::new();
    let stats = rw
        .feed(body.as_bytes(), &mut out)
        .and_then(|()| rw.finish(&mut out));
    match stats {
        Err(e) => format!("refused: {:?}", e.kind),
        Ok(s) => {
            let fields: Vec<String> = rw
                .explained()
                .iter()
                .map(|e: &Explained| format!("{:?} {} {}", e.selector, e.action, e.outcome))
                .collect();
            format!(
                "kept {} dropped {} transformed {} {:?}",
                s.kept, s.dropped, s.transformed, fields
            )
        }
    }
}

fn query_decision(engine: &Engine, query: &str) -> String {
    match engine.rewrite_query(query.as_bytes()) {
        Err(e) => format!("refused: {:?}", e.kind),
        Ok(r) => format!(
            "kept {} dropped {} transformed {}",
            r.stats.kept, r.stats.dropped, r.stats.transformed
        ),
    }
}

/// Puts each equivalent character in place of each piece of each rule key
/// and compares the engine's decision with the one under the key as written.
fn substitutions(
    policies: &[Arc<CompiledPolicy>],
    equivalents: &BTreeMap<String, BTreeSet<char>>,
) -> (usize, Vec<String>) {
    let mut tried = 0;
    let mut failures = Vec::new();
    for p in policies {
        let engine = Engine::new(p.clone(), &KeyRing::test_ring());
        let field_rules = p.fields.rules().iter().map(|r| (r, false));
        for (rule, query) in field_rules.chain(p.query.rules().iter().map(|r| (r, true))) {
            let segments = rule.selector.segments();
            let keys: Vec<String> = segments
                .iter()
                .map(|s| match s {
                    Segment::Key(k) => k.to_string(),
                    _ => "zz".to_string(),
                })
                .collect();
            let (json_value, form_value) = sample(&rule.action);
            let top_level = segments.len() == 1 && matches!(segments[0], Segment::Key(_));
            let json_want = document(p, segments, &keys, json_value, None);
            let want = decision(&engine, BodyFormat::Json, &json_want);
            let form_want = format!("{}={form_value}", percent(&keys[0]));
            let want_form = decision(&engine, BodyFormat::Form, &form_want);
            let want_query = query_decision(&engine, &form_want);
            for (j, seg) in segments.iter().enumerate() {
                let Segment::Key(k) = seg else { continue };
                let chars: Vec<char> = k.chars().collect();
                for start in 0..chars.len() {
                    for n in 1..=3.min(chars.len() - start) {
                        let piece: String = chars[start..start + n].iter().collect();
                        let Some(cs) = equivalents.get(&piece) else {
                            continue;
                        };
                        for &c in cs {
                            tried += 1;
                            let mut variant: String = chars[..start].iter().collect();
                            variant.push(c);
                            variant.extend(&chars[start + n..]);
                            let mut vkeys = keys.clone();
                            vkeys[j] = variant.clone();
                            let label = format!(
                                "{}: {:?} with {} for {piece:?} at {start}",
                                p.recipient,
                                rule.text,
                                code_point(c)
                            );
                            if query {
                                let q = format!("{}={form_value}", percent(&variant));
                                let got = query_decision(&engine, &q);
                                if got != want_query {
                                    failures
                                        .push(format!("{label} (query): {got}, not {want_query}"));
                                }
                                continue;
                            }
                            for escape in [None, Some((j, start))] {
                                let body = document(p, segments, &vkeys, json_value, escape);
                                let got = decision(&engine, BodyFormat::Json, &body);
                                if got != want {
                                    failures.push(format!(
                                        "{label} (JSON{}): {got}, not {want}",
                                        if escape.is_some() { ", escaped" } else { "" }
                                    ));
                                }
                            }
                            if top_level {
                                let body = format!("{}={form_value}", percent(&variant));
                                let got = decision(&engine, BodyFormat::Form, &body);
                                if got != want_form {
                                    failures
                                        .push(format!("{label} (form): {got}, not {want_form}"));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (tried, failures)
}

fn report(what: &str, failures: &[String]) {
    const SHOWN: usize = 200;
    assert!(
        failures.is_empty(),
        "{} {what}:\n{}{}",
        failures.len(),
        failures[..failures.len().min(SHOWN)].join("\n"),
        if failures.len() > SHOWN { "\n..." } else { "" }
    );
}

#[test]
fn every_code_point_folds_as_the_reference_says() {
    let policies = shipped_policies();
    let keys = rule_keys(&policies);
    let pieces = pieces(&keys);
    let mut index: Vec<HashMap<String, Vec<String>>> =
        vec![HashMap::new(); reference::COMPARISONS.len()];
    for t in &pieces {
        for (i, form) in reference::key_forms(t).into_iter().enumerate() {
            index[i].entry(form).or_default().push(t.clone());
        }
    }

    // Two halves on two threads: this is most of the test's time.
    let chars: Vec<char> = all_chars().collect();
    let (low, high) = chars.split_at(chars.len() / 2);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| scan(low, &index));
        let b = s.spawn(|| scan(high, &index));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut failures = a.failures;
    failures.extend(b.failures);
    let mut changed = a.changed;
    changed.extend(b.changed);
    failures.extend(joined_without_reason(&changed));
    let mut equivalents = a.equivalents;
    for (t, cs) in b.equivalents {
        equivalents.entry(t).or_default().extend(cs);
    }
    report(
        "code points the engine folds unlike the reference",
        &failures,
    );

    // The class this exists for is found at all.
    for (piece, c) in [
        ("i", '\u{130}'),
        ("k", '\u{212a}'),
        ("s", '\u{17f}'),
        ("ss", '\u{df}'),
    ] {
        assert!(
            equivalents.get(piece).is_some_and(|cs| cs.contains(&c)),
            "{} not found equal to {piece:?}",
            code_point(c)
        );
    }

    let (tried, failures) = substitutions(&policies, &equivalents);
    assert!(tried > 1000, "only {tried} substitutions");
    report("substitutions decided unlike the key as written", &failures);
}
