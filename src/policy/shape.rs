//! Unknown keys and values of the wrong type, all of them in one pass.
//!
//! serde stops at the first problem. To show every one, the TOML is parsed
//! once into a spanned tree, and deserialising is retried: after each
//! problem, the entry it lies in is taken out of the tree and the rest is
//! read again, so the next problem surfaces. Spans stay those of the
//! original text. Problems are phrased for the person editing the file
//! (`` `limits.body_bytes` must be a whole number of bytes, found a
//! string ``), never with the value itself: a rule file's values may come
//! from test inputs, and the one-line form goes to logs.
//!
//! Used for rule files ([`super::compile`]) and `scrim.toml`
//! ([`crate::config`]).

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::compile::did_you_mean;

/// One problem of shape, located in the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShapeProblem {
    /// Byte range the caret goes under; `None`: the whole file.
    pub span: Option<Range<usize>>,
    /// What is wrong, in plain words.
    pub message: String,
    /// The fix, when one is known.
    pub help: Option<String>,
}

/// How many problems one file may show before the rest is left unread.
const MAX_PROBLEMS: usize = 64;

/// Reads `text` into `T`, or gives every unknown key and wrongly typed
/// value (in file order; a TOML syntax error alone, since nothing after it
/// can be read reliably). With `partial`, also the value read once the
/// faulty entries were taken out, when it could be read: its defaults stand
/// in for them.
pub(crate) fn deserialize_all<T: DeserializeOwned>(text: &str) -> (Option<T>, Vec<ShapeProblem>) {
    let mut root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            return (
                None,
                vec![ShapeProblem {
                    span: e.span(),
                    message: e.message().trim_end().replace('\n', " "),
                    help: None,
                }],
            );
        }
    };
    let mut problems = Vec::new();
    let mut removed: Vec<Removed<'_>> = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let de = toml::de::Deserializer::from(root.clone());
        let e = match T::deserialize(de) {
            Ok(v) => {
                problems.sort_by_key(|p: &ShapeProblem| p.span.clone().map(|s| (s.start, s.end)));
                return (Some(v), problems);
            }
            Err(e) => e,
        };
        let msg = e.message().trim_end().replace('\n', " ");
        if let Some(name) = quoted(&msg, "missing field `")
            && let Some(r) = removed.iter().rposition(|r| r.name == name)
        {
            // Required, and taken out because its value was of the wrong
            // kind (already shown): put it back with a stand-in of the
            // right kind, and read on.
            let r = removed.swap_remove(r);
            let Some(v) = placeholder(&r.expected) else {
                break;
            };
            if insert(root.get_mut(), &r.steps, r.key, Spanned::new(r.span, v)) {
                continue;
            }
            break;
        }
        let span = e.span().filter(|s| !s.is_empty() || s.start > 0);
        let found = span
            .as_ref()
            .and_then(|s| locate(root.get_ref(), s, &mut Vec::new()));
        let (path, key_span, in_array) = match &found {
            Some(f) => (f.path.join("."), Some(f.key_span.clone()), f.in_array),
            None => (String::new(), None, false),
        };
        let (message, help) = describe(&msg, &path, in_array, found.as_ref().map(|f| f.kind));
        let caret = if msg.starts_with("unknown field") {
            key_span.or(span.clone())
        } else {
            span.clone()
        };
        problems.push(ShapeProblem {
            span: caret,
            message,
            help,
        });
        let Some(f) = found else {
            // Nothing to take out (a missing key): the rest cannot be read.
            break;
        };
        match remove(root.get_mut(), &f.steps) {
            Some((key, value)) => removed.push(Removed {
                name: f.path.last().cloned().unwrap_or_default(),
                steps: f.steps,
                key,
                span: value.span(),
                expected: msg.split(", expected ").nth(1).unwrap_or("").to_string(),
            }),
            None => break,
        }
    }
    problems.sort_by_key(|p| p.span.clone().map(|s| (s.start, s.end)));
    (None, problems)
}

/// An entry taken out of the tree, to put back if it turns out required.
struct Removed<'i> {
    name: String,
    steps: Vec<Step>,
    key: Spanned<DeString<'i>>,
    span: Range<usize>,
    /// What serde expected there.
    expected: String,
}

/// A value of the kind serde expected, standing in for a wrong one.
fn placeholder(expected: &str) -> Option<DeValue<'static>> {
    let bare = expected
        .trim()
        .strip_prefix("a ")
        .or_else(|| expected.trim().strip_prefix("an "))
        .unwrap_or(expected.trim());
    let text = match bare {
        "boolean" | "bool" => "false",
        "string" | "borrowed string" | "str" | "path string" | "char" => "\"x\"",
        "sequence" => "[]",
        "map" => "{}",
        b if b.starts_with("struct ") => "{}",
        b if b.starts_with('u') || b.starts_with('i') => "1",
        "f32" | "f64" => "1.0",
        _ => return None,
    };
    DeValue::parse(text).ok().map(Spanned::into_inner)
}

/// One step down the tree: a table key, or an array element.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The entry an error's span lies in: the innermost table entry holding
/// it, and the kind of the innermost value at it.
struct Found {
    /// Table keys from the root (array indices left out), for messages.
    path: Vec<String>,
    /// The way to the entry, to take it out.
    steps: Vec<Step>,
    /// Where its key is written.
    key_span: Range<usize>,
    /// What kind of value is at the span.
    kind: &'static str,
    /// The entry is in a table of an array of tables (`[[tests]]`).
    in_array: bool,
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer != &(0..0)
}

/// Searches the whole tree, deepest first: the spans of tables written as
/// `[section]` headers do not cover their entries, so containment of a
/// table's span cannot guide the search.
fn locate(table: &DeTable<'_>, span: &Range<usize>, steps: &mut Vec<Step>) -> Option<Found> {
    for (k, v) in table.iter() {
        steps.push(Step::Key(k.get_ref().to_string()));
        if let Some(found) = locate_value(v, span, steps) {
            steps.pop();
            return Some(found);
        }
        steps.pop();
    }
    for (k, v) in table.iter() {
        if !contains(&k.span(), span) && !contains(&v.span(), span) {
            continue;
        }
        steps.push(Step::Key(k.get_ref().to_string()));
        let found = Found {
            path: steps
                .iter()
                .filter_map(|s| match s {
                    Step::Key(k) => Some(k.clone()),
                    Step::Index(_) => None,
                })
                .collect(),
            steps: steps.clone(),
            key_span: k.span(),
            kind: innermost_kind(v, span),
            in_array: matches!(steps.iter().rev().nth(1), Some(Step::Index(_))),
        };
        steps.pop();
        return Some(found);
    }
    None
}

fn locate_value(
    v: &Spanned<DeValue<'_>>,
    span: &Range<usize>,
    steps: &mut Vec<Step>,
) -> Option<Found> {
    match v.get_ref() {
        DeValue::Table(t) => locate(t, span, steps),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                if let DeValue::Table(t) = item.get_ref() {
                    steps.push(Step::Index(i));
                    let found = locate(t, span, steps);
                    steps.pop();
                    if found.is_some() {
                        return found;
                    }
                }
            }
            None
        }
        _ => None,
    }
}

/// The kind of the innermost value of `v` that holds `span`.
fn innermost_kind(v: &Spanned<DeValue<'_>>, span: &Range<usize>) -> &'static str {
    if let DeValue::Array(a) = v.get_ref()
        && let Some(item) = a.iter().find(|i| contains(&i.span(), span))
    {
        return innermost_kind(item, span);
    }
    match v.get_ref() {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "a whole number",
        DeValue::Float(_) => "a decimal number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date or time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

type Entry<'i> = (Spanned<DeString<'i>>, Spanned<DeValue<'i>>);

/// Takes the entry at `steps` out of the tree.
fn remove<'i>(table: &mut DeTable<'i>, steps: &[Step]) -> Option<Entry<'i>> {
    let (Step::Key(first), rest) = steps.split_first()? else {
        return None;
    };
    if rest.is_empty() {
        return table.remove_entry(first.as_str());
    }
    let v = table.get_mut(first.as_str())?;
    match (v.get_mut(), rest.first()) {
        (DeValue::Table(t), Some(Step::Key(_))) => remove(t, rest),
        (DeValue::Array(a), Some(Step::Index(i))) => match a.get_mut(*i)?.get_mut() {
            DeValue::Table(t) => remove(t, &rest[1..]),
            _ => None,
        },
        _ => None,
    }
}

/// Puts an entry back where [`remove`] took it from.
fn insert<'i>(
    table: &mut DeTable<'i>,
    steps: &[Step],
    key: Spanned<DeString<'i>>,
    value: Spanned<DeValue<'i>>,
) -> bool {
    let Some((Step::Key(first), rest)) = steps.split_first() else {
        return false;
    };
    if rest.is_empty() {
        table.insert(key, value);
        return true;
    }
    let Some(v) = table.get_mut(first.as_str()) else {
        return false;
    };
    match (v.get_mut(), rest.first()) {
        (DeValue::Table(t), Some(Step::Key(_))) => insert(t, rest, key, value),
        (DeValue::Array(a), Some(Step::Index(i))) => match a.get_mut(*i).map(|x| x.get_mut()) {
            Some(DeValue::Table(t)) => insert(t, &rest[1..], key, value),
            _ => false,
        },
        _ => false,
    }
}

/// The text between `prefix` and the next backtick.
fn quoted<'m>(msg: &'m str, prefix: &str) -> Option<&'m str> {
    msg.strip_prefix(prefix)?.split('`').next()
}

/// The backticked names of serde's "expected one of `a`, `b`" lists.
fn names(list: &str) -> Vec<&str> {
    list.split('`')
        .skip(1)
        .step_by(2)
        .filter(|c| !c.is_empty())
        .collect()
}

/// A serde message in plain words: what is wrong with `path` (dotted, the
/// entry's keys), whose value is of kind `found`.
fn describe(
    msg: &str,
    path: &str,
    in_array: bool,
    found: Option<&'static str>,
) -> (String, Option<String>) {
    let parent = path.rsplit_once('.').map(|(p, _)| p);
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let candidates = names(expected);
        let help = (!candidates.is_empty()).then(|| did_you_mean(name, &candidates));
        let message = match parent {
            Some(p) if in_array => format!("unknown key `{name}` in `[[{p}]]`"),
            Some(p) => format!("unknown key `{name}` in `[{p}]`"),
            None => format!("unknown key `{name}`"),
        };
        return (message, help);
    }
    if let Some(name) = quoted(msg, "missing field `") {
        let message = match path {
            "" => format!("`{name}` is required"),
            p => format!("`{p}.{name}` is required"),
        };
        return (message, None);
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let (_, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let candidates = names(expected);
        let list = candidates
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        return (format!("`{path}` must be one of {list}"), None);
    }
    if msg.contains("expected a spanned value") {
        // How a date or time reaches a value read with its place.
        return ("a date or time is not valid here".into(), None);
    }
    let (is_type, rest) = match (
        msg.strip_prefix("invalid type: "),
        msg.strip_prefix("invalid value: "),
    ) {
        (Some(r), _) => (true, r),
        (_, Some(r)) => (false, r),
        _ => return (msg.to_string(), None),
    };
    let (given, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
    let key = path.rsplit('.').next().unwrap_or(path);
    let want = expected_words(expected.trim(), key);
    let found = if is_type {
        found.unwrap_or("another kind of value").to_string()
    } else if given.starts_with("integer `-") {
        "a negative number".into()
    } else if given.starts_with("integer") {
        "a number too large".into()
    } else {
        "a value out of range".into()
    };
    let subject = if path.is_empty() {
        "the value".to_string()
    } else {
        format!("`{path}`")
    };
    (format!("{subject} must be {want}, found {found}"), None)
}

/// serde's name of an expected type, for people; `key` gives the unit.
fn expected_words(expected: &str, key: &str) -> String {
    let bare = expected
        .strip_prefix("a ")
        .or_else(|| expected.strip_prefix("an "))
        .unwrap_or(expected);
    match bare {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128"
        | "isize" | "integer" => {
            let unit = if key.ends_with("_bytes_per_s") {
                " of bytes per second"
            } else if key.ends_with("_bytes") {
                " of bytes"
            } else if key.ends_with("_ms") {
                " of milliseconds"
            } else {
                ""
            };
            let sign = if bare.starts_with('u') {
                " (0 or more)"
            } else {
                ""
            };
            format!("a whole number{unit}{sign}")
        }
        "f32" | "f64" | "float" => "a number".into(),
        "boolean" | "bool" => "true or false".into(),
        "string" | "borrowed string" | "str" | "char" => "a string".into(),
        "path string" => "a string (a file path)".into(),
        "sequence" => "an array".into(),
        "map" => "a table".into(),
        b if b.starts_with("struct ") => "a table".into(),
        "TOML value" => "a value".into(),
        "" => "another kind of value".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        #[serde(default)]
        limits: Limits,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        body_bytes: Option<u64>,
        on: Option<bool>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        sku: String,
    }

    fn at<'t>(text: &'t str, p: &ShapeProblem) -> &'t str {
        &text[p.span.clone().expect("located")]
    }

    #[test]
    fn every_problem_in_one_pass_located_and_in_plain_words() {
        let text = "name = \"x\"\nnmae = 1\n[limits]\nbody_bytes = \"ten\"\nbody_byte = 3\non = 1\n\
                    [[items]]\nsku = \"a\"\n[[items]]\nsku = 5\nextra = true\n";
        let (doc, problems) = deserialize_all::<Doc>(text);
        let shown: Vec<(&str, &str, Option<&str>)> = problems
            .iter()
            .map(|p| (at(text, p), p.message.as_str(), p.help.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                ("nmae", "unknown key `nmae`", Some("did you mean \"name\"?")),
                (
                    "\"ten\"",
                    "`limits.body_bytes` must be a whole number of bytes (0 or more), found a string",
                    None
                ),
                (
                    "body_byte",
                    "unknown key `body_byte` in `[limits]`",
                    Some("did you mean \"body_bytes\"?")
                ),
                (
                    "1",
                    "`limits.on` must be true or false, found a whole number",
                    None
                ),
                (
                    "5",
                    "`items.sku` must be a string, found a whole number",
                    None
                ),
                (
                    "extra",
                    "unknown key `extra` in `[[items]]`",
                    Some("expected one of: sku")
                ),
            ]
        );
        // The faulty entries taken out (a required one given a stand-in of
        // its kind), the rest reads, with its defaults.
        let doc = doc.expect("read without the faulty entries");
        assert_eq!(doc.name, "x");
        assert_eq!(doc.limits.body_bytes, None);
        assert_eq!(doc.items.len(), 2);
        assert_eq!(doc.items[0].sku, "a");
    }

    #[test]
    fn a_required_key_taken_out_is_not_reported_twice() {
        let text = "name = 5\nnope = 1\n";
        let (_, problems) = deserialize_all::<Doc>(text);
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`name` must be a string, found a whole number",
                "unknown key `nope`"
            ]
        );
    }

    #[test]
    fn a_missing_key_and_a_syntax_error() {
        let (_, problems) = deserialize_all::<Doc>("[limits]\non = true\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].message, "`name` is required");
        let (_, problems) = deserialize_all::<Doc>("name = \"x\"\nlimits = [\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn no_value_is_ever_shown() {
        let text = "name = \"x\"\n[limits]\nbody_bytes = -12345\non = \"s3cr3t\"\n";
        let (_, problems) = deserialize_all::<Doc>(text);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(
            problems[0].message,
            "`limits.body_bytes` must be a whole number of bytes (0 or more), found a negative number"
        );
        for p in &problems {
            assert!(!p.message.contains("12345") && !p.message.contains("s3cr3t"));
        }
    }
}
