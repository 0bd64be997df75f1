//! Running a rule file's own `[[tests]]` (`scrim test`, `scrim check`, and
//! the gateway's loader, which refuses a file whose tests fail).
//!
//! This module sits above [`crate::policy`] and [`crate::rewrite`]: it runs
//! the engine on a compiled policy, which the policy itself never does.
//!
//! Tests run under the fixed test key ([`KeyRing::test_ring`]), so an
//! expected output may spell out pseudonyms. Their inputs are synthetic data
//! written by rule authors, so a failure shows expected and actual output.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::policy::{
    BodyFormat, CompiledPolicy, PolicyError, RuleTest, Segment, Selector, diag, load_all,
};
use crate::pseudonym::KeyRing;
use crate::rewrite::Engine;

/// The outcome of one test case.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// Test name.
    pub name: String,
    /// 1-based line of the case.
    pub line: usize,
    /// `None` when it passed, else why it failed.
    pub failure: Option<String>,
}

/// Runs every `[[tests]]` case of a policy.
pub fn run(policy: &Arc<CompiledPolicy>) -> Vec<TestResult> {
    let engine = Engine::new(policy.clone(), &KeyRing::test_ring());
    policy
        .tests
        .iter()
        .map(|t| TestResult {
            name: t.name.clone(),
            line: t.line,
            failure: run_one(&engine, t).err(),
        })
        .collect()
}

/// Loads every rule file and runs its `[[tests]]`: a file whose own tests
/// fail is refused like an invalid one. This is what the gateway loads and
/// reloads.
pub fn load_verified(paths: &[PathBuf]) -> Result<Vec<Arc<CompiledPolicy>>, Vec<PolicyError>> {
    let policies = load_all(paths)?;
    let errors: Vec<PolicyError> = policies.iter().flat_map(test_failures).collect();
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}

/// Runs a policy's `[[tests]]` and returns one error per failing case. The
/// message names the test and the first line of why; the rest (expected
/// and actual output, which show test input values) is in the note.
pub fn test_failures(p: &Arc<CompiledPolicy>) -> Vec<PolicyError> {
    let text = std::fs::read_to_string(&p.source).unwrap_or_default();
    run(p)
        .into_iter()
        .filter_map(|r| {
            let why = r.failure?;
            let (first, rest) = why.split_once('\n').unwrap_or((why.as_str(), ""));
            let file = p.source.display().to_string();
            let mut e = match test_span(&text, r.line) {
                Some(span) => PolicyError::at(diag::TEST_FAILED, file, &text, span, ""),
                None => PolicyError {
                    line: r.line,
                    col: 1,
                    ..PolicyError::whole_file(diag::TEST_FAILED, file, "")
                },
            };
            e.message = format!("test \"{}\" failed: {}", r.name, first.trim());
            if !rest.trim().is_empty() {
                e.note = Some(rest.lines().map(str::trim).collect::<Vec<_>>().join("\n"));
            }
            Some(e)
        })
        .collect()
}

/// The `[[tests]]` header on a 1-based line (or the line itself).
fn test_span(text: &str, line: usize) -> Option<std::ops::Range<usize>> {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum();
    let rest = text.get(start..)?;
    let len = rest.find('\n').unwrap_or(rest.len());
    let l = &rest[..len];
    let lead = l.len() - l.trim_start().len();
    Some(start + lead..start + l.trim_end().len())
}

fn run_one(engine: &Engine, t: &RuleTest) -> Result<(), String> {
    if t.url_path {
        return run_path(engine, t);
    }
    let (input, withheld) = match decide(engine, t) {
        Ok(d) => d,
        Err(_) if t.refused => return Ok(()),
        Err(e) => return Err(format!("input refused: {e}")),
    };
    if let Some(want) = t.withheld
        && want != withheld.total()
    {
        return Err(format!(
            "withheld {} events ({}), expected {want}",
            withheld.total(),
            reasons(&withheld)
        ));
    }
    let result = match &input {
        // Every event withheld: nothing would be sent.
        None => Ok(crate::rewrite::Rewritten {
            body: Vec::new(),
            stats: Default::default(),
        }),
        Some(input) => engine.rewrite(t.format, input),
    };
    let out = match (result, t.refused) {
        (Err(_), true) => return Ok(()),
        (Ok(_), true) => {
            return Err("expected the input to be refused, but it was rewritten".into());
        }
        (Err(e), false) => return Err(format!("input refused: {e}")),
        (Ok(r), false) => r.body,
    };
    let out_text = String::from_utf8_lossy(&out).into_owned();
    if let Some(expect) = &t.expect {
        let (got, want) = match t.format {
            BodyFormat::Form => (out_text.trim().to_string(), expect.trim().to_string()),
            // One document: line breaks in `expect` are insignificant whitespace.
            BodyFormat::Json => (minify(&out_text), minify(expect)),
            BodyFormat::Ndjson => (minify_lines(&out_text), minify_lines(expect)),
        };
        if got != want {
            return Err(format!(
                "output differs\n    expected: {want}\n    actual:   {got}"
            ));
        }
    }
    if let Some(want) = &t.report {
        let Some(rules) = &engine.policy().aggregate else {
            return Err("`report` is for aggregate recipients (mode = \"aggregate\")".into());
        };
        let got = crate::aggregate::reports_of(
            rules,
            engine.policy(),
            &out,
            t.format,
            crate::aggregate::TEST_ARRIVAL,
        )
        .map_err(|e| format!("events refused: {e}"))?;
        crate::aggregate::compare_reports(want, &got)?;
    }
    let docs_out = documents(&out_text, t.format)?;
    let docs_in = documents(&t.input, t.format).unwrap_or_default();
    for p in &t.absent {
        let sel = parse_path(p)?;
        if docs_out.iter().any(|d| !lookup(d, &sel).is_empty()) {
            return Err(format!(
                "path \"{p}\" should be absent but is in the output"
            ));
        }
    }
    for p in &t.present {
        let sel = parse_path(p)?;
        if docs_out.iter().all(|d| lookup(d, &sel).is_empty()) {
            return Err(format!(
                "path \"{p}\" should be present but is not in the output"
            ));
        }
    }
    for p in &t.transformed {
        let sel = parse_path(p)?;
        let found: Vec<&Value> = docs_out.iter().flat_map(|d| lookup(d, &sel)).collect();
        if found.is_empty() {
            return Err(format!(
                "path \"{p}\" should be transformed but is not in the output"
            ));
        }
        let before: Vec<&Value> = docs_in.iter().flat_map(|d| lookup(d, &sel)).collect();
        if found.iter().any(|v| before.contains(v)) {
            return Err(format!("path \"{p}\" left with its input value unchanged"));
        }
    }
    Ok(())
}

/// `[consent]` and `[suppress]` on a case's input, with its `headers` and
/// `suppressed` identifiers: the input without its withheld events
/// (`None`: all withheld), and the counts.
fn decide(
    engine: &Engine,
    t: &RuleTest,
) -> Result<(Option<Vec<u8>>, crate::consent::Withheld), String> {
    let policy = engine.policy();
    if !policy.decides_events() {
        return Ok((Some(t.input.as_bytes().to_vec()), Default::default()));
    }
    let lists = crate::consent::test_lists(policy, &t.suppressed);
    let gpc = t
        .headers
        .iter()
        .any(|(k, v)| k == "sec-gpc" && crate::consent::gpc_header(Some(v.as_bytes())));
    let cx = crate::consent::Context {
        policy,
        lists: &lists,
        gpc,
    };
    let d = crate::consent::decide(&cx, t.format, t.input.as_bytes()).map_err(|e| e.to_string())?;
    if d.all_withheld() {
        return Ok((None, d.withheld));
    }
    let body = d.body.unwrap_or_else(|| t.input.as_bytes().to_vec());
    Ok((Some(body), d.withheld))
}

fn reasons(w: &crate::consent::Withheld) -> String {
    let r: Vec<String> = w
        .by_reason()
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect();
    if r.is_empty() {
        "none".into()
    } else {
        r.join(", ")
    }
}

/// A `format = "path"` case: the path as the partner would get it.
fn run_path(engine: &Engine, t: &RuleTest) -> Result<(), String> {
    match (engine.rewrite_path(&t.input), t.refused) {
        (Err(_), true) => Ok(()),
        (Ok(p), true) => Err(format!(
            "expected the path to be refused, but it would be sent as {}",
            p.path
        )),
        (Err(e), false) => Err(format!("path refused: {e} ({})", e.code())),
        (Ok(p), false) => match &t.expect {
            Some(want) if p.path != *want => Err(format!(
                "path differs\n    expected: {want}\n    actual:   {}",
                p.path
            )),
            _ => Ok(()),
        },
    }
}

fn parse_path(p: &str) -> Result<Vec<String>, String> {
    let sel = Selector::parse(p).map_err(|e| format!("invalid path \"{p}\": {e}"))?;
    sel.segments()
        .iter()
        .map(|s| match s {
            Segment::Key(k) => Ok(k.to_string()),
            _ => Err(format!(
                "path \"{p}\": wildcards are not allowed in test paths"
            )),
        })
        .collect()
}

fn documents(text: &str, format: BodyFormat) -> Result<Vec<Value>, String> {
    match format {
        // Every event withheld: nothing.
        BodyFormat::Json if text.trim().is_empty() => Ok(Vec::new()),
        BodyFormat::Json => serde_json::from_str(text)
            .map(|v| vec![v])
            .map_err(|e| format!("output is not JSON: {e}")),
        BodyFormat::Ndjson => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("output line is not JSON: {e}")))
            .collect(),
        BodyFormat::Form => {
            let mut map = serde_json::Map::new();
            for pair in text.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let k = crate::rewrite::form::decode(k.as_bytes(), 0).map_err(|e| e.to_string())?;
                let v = crate::rewrite::form::decode(v.as_bytes(), 0).map_err(|e| e.to_string())?;
                map.insert(
                    String::from_utf8_lossy(&k).into_owned(),
                    Value::String(String::from_utf8_lossy(&v).into_owned()),
                );
            }
            Ok(vec![Value::Object(map)])
        }
    }
}

/// Every value at `path`, arrays transparent.
fn lookup<'v>(doc: &'v Value, path: &[String]) -> Vec<&'v Value> {
    let mut cur = vec![doc];
    for key in path {
        let mut next = Vec::new();
        for v in cur {
            collect_key(v, key, &mut next);
        }
        cur = next;
    }
    // A path that ends on an array stands for the array.
    cur
}

fn collect_key<'v>(v: &'v Value, key: &str, out: &mut Vec<&'v Value>) {
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(key) {
                out.push(x);
            }
        }
        Value::Array(items) => {
            for i in items {
                collect_key(i, key, out);
            }
        }
        _ => {}
    }
}

/// Removes insignificant whitespace from each line of JSON text.
pub fn minify_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&minify(line));
    }
    out
}

/// Removes insignificant whitespace from JSON text.
pub fn minify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    {
        let line = text;
        let mut in_str = false;
        let mut esc = false;
        for c in line.chars() {
            if in_str {
                out.push(c);
                if esc {
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '"' {
                    in_str = false;
                }
            } else if c == '"' {
                in_str = true;
                out.push(c);
            } else if !c.is_whitespace() {
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minify_keeps_string_whitespace() {
        assert_eq!(
            minify_lines("{ \"a b\" : [1, \"x \\\" y\"] }\n\n{}\n"),
            "{\"a b\":[1,\"x \\\" y\"]}\n{}"
        );
    }

    #[test]
    fn lookup_is_array_transparent() {
        let v: Value = serde_json::from_str(r#"{"batch":[{"e":1},{"e":2},{"f":3}]}"#).unwrap();
        let path = vec!["batch".to_string(), "e".to_string()];
        assert_eq!(lookup(&v, &path).len(), 2);
    }
}
