//! The reference rewriter: slow and obviously correct, on `serde_json::Value`.
//!
//! It decides every field straight from the selectors
//! ([`Selector::best_ranks_with`]), with no automaton, and walks a parsed
//! document. It is the oracle that differential tests and fuzz targets hold
//! the fast rewriter to. Built only with the `oracle` feature (which turns on
//! serde_json's `arbitrary_precision` and `preserve_order`, so numbers keep
//! their text and objects their key order).
//!
//! Keys are compared with [`same_key`], built on ICU4X's case mapping rather
//! than on the engine's own folding ([`crate::policy::selector::canonical`]),
//! so that a folding bug in the engine shows up as a difference.

use std::cmp::Reverse;

use icu_casemap::CaseMapper;
use icu_locale_core::LanguageIdentifier;
use serde_json::Value;

use super::Engine;
use super::apply::{self, Out, Scalar};
use crate::policy::{Action, Segment, Selector};

/// Rewrites a parsed document as the fast rewriter does with the same engine.
pub fn rewrite(engine: &Engine, doc: &Value) -> Value {
    let r = Reference { engine };
    let mut path = Vec::new();
    match r.value(doc, &mut path, false, false) {
        Some(v) => v,
        None => match doc {
            // The document root is always present.
            Value::Object(_) => Value::Object(Default::default()),
            Value::Array(_) => Value::Array(Vec::new()),
            _ => Value::Null,
        },
    }
}

struct Reference<'e> {
    engine: &'e Engine,
}

impl Reference<'_> {
    /// The rule deciding exactly `path`: best per-key rank vector, then fewer
    /// `**`, then the earlier rule.
    fn decide(&self, path: &[String]) -> Option<usize> {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        let rules = self.engine.policy().fields.rules();
        let mut best: Option<(Vec<u8>, Reverse<usize>, Reverse<usize>)> = None;
        for (i, r) in rules.iter().enumerate() {
            if let Some(ranks) = r.selector.best_ranks_with(&keys, &same_key) {
                let cand = (ranks, Reverse(r.selector.globstars()), Reverse(i));
                if best.as_ref().is_none_or(|b| cand > *b) {
                    best = Some(cand);
                }
            }
        }
        best.map(|b| b.2.0)
    }

    /// Whether some rule (only allowing ones unless `any`) can match
    /// strictly below `path`.
    fn can_descend(&self, path: &[String], any: bool) -> bool {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        self.engine
            .policy()
            .fields
            .rules()
            .iter()
            .any(|r| (any || r.action.allows()) && remains_after(&r.selector, &keys))
    }

    fn value(&self, v: &Value, path: &mut Vec<String>, keep: bool, fresh: bool) -> Option<Value> {
        let rule = if fresh { None } else { self.decide(path) };
        let rules = self.engine.policy().fields.rules();
        let action = match rule {
            Some(i) => &rules[i].action,
            None if keep => &Action::Keep,
            None => &Action::Drop,
        };
        // A kept container must be entered when any deeper rule (a `drop`
        // included) may override; a dropped one only when something deeper
        // may allow.
        let descend = self.can_descend(path, matches!(action, Action::Keep));
        match v {
            Value::Object(m) => match action {
                Action::Keep if !descend => Some(v.clone()),
                Action::Drop if !descend => None,
                Action::Keep | Action::Drop => {
                    let child_keep = matches!(action, Action::Keep);
                    let mut out = serde_json::Map::new();
                    for (k, x) in m {
                        path.push(k.clone());
                        if let Some(y) = self.value(x, path, child_keep, false) {
                            out.insert(k.clone(), y);
                        }
                        path.pop();
                    }
                    // A container not kept as such appears only when
                    // something inside it stays.
                    (child_keep || !out.is_empty()).then_some(Value::Object(out))
                }
                Action::Redact { with, .. } => Some(Value::String(with.to_string())),
                _ => None,
            },
            // Arrays are transparent: each element has the array's path.
            Value::Array(items) => match action {
                Action::Keep if !descend => Some(v.clone()),
                Action::Drop if !descend => None,
                _ => {
                    let out: Vec<Value> = items
                        .iter()
                        .filter_map(|x| self.value(x, path, keep, fresh))
                        .collect();
                    (matches!(action, Action::Keep) || !out.is_empty()).then_some(Value::Array(out))
                }
            },
            scalar => self.scalar(scalar, action, path),
        }
    }

    fn scalar(&self, v: &Value, action: &Action, path: &[String]) -> Option<Value> {
        match action {
            Action::Keep => return Some(v.clone()),
            Action::Drop => return None,
            Action::EmbeddedJson { base64 } => {
                let Value::String(s) = v else { return None };
                let (bytes, style) = apply::decode_embedded(s, *base64)?;
                let doc: Value = serde_json::from_slice(&bytes).ok()?;
                let mut sub_path = path.to_vec();
                let out = match self.value(&doc, &mut sub_path, false, true) {
                    Some(x) => x,
                    None => match doc {
                        Value::Object(_) => Value::Object(Default::default()),
                        Value::Array(_) => Value::Array(Vec::new()),
                        _ => Value::Null,
                    },
                };
                let text = serde_json::to_vec(&out).ok()?;
                return Some(Value::String(match style {
                    None => String::from_utf8(text).ok()?,
                    Some(st) => st.encode(&text),
                }));
            }
            _ => {}
        }
        let num_text;
        let scalar = match v {
            Value::String(s) => Scalar::Str(s),
            Value::Number(n) => {
                num_text = n.to_string();
                Scalar::Num(&num_text)
            }
            _ => Scalar::Other,
        };
        match apply::apply_scalar(self.engine, action, scalar, None)? {
            Out::Original | Out::Written => Some(v.clone()),
            Out::Str(s) => Some(Value::String(s)),
            Out::Num(n) => serde_json::from_str(&n).ok(),
        }
    }
}

/// Whether `sel` can consume all of `path` and still have a segment left
/// (so it may match something strictly below `path`).
fn remains_after(sel: &Selector, path: &[&str]) -> bool {
    fn go(segs: &[Segment], path: &[&str]) -> bool {
        match (segs.first(), path.first()) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(Segment::GlobStar), Some(_)) => go(segs, &path[1..]) || go(&segs[1..], path),
            (Some(Segment::Star), Some(_)) => go(&segs[1..], &path[1..]),
            (Some(Segment::Key(k)), Some(p)) => same_key(k, p) && go(&segs[1..], &path[1..]),
        }
    }
    go(sel.segments(), path)
}

/// The ways of comparing keys case-insensitively that [`same_key`] covers,
/// in the order of [`key_forms`]: each is how some parser, framework or
/// language matches names without regard to case.
pub const COMPARISONS: [&str; 6] = [
    "full case folding",
    "Turkic full case folding",
    "Go strings.EqualFold (simple folding)",
    "Java String.equalsIgnoreCase (simple lower of simple upper)",
    ".NET OrdinalIgnoreCase (simple upper)",
    "full lower case",
];

/// One comparison form of `key` per entry of [`COMPARISONS`]: two keys are
/// equal under a comparison when their forms at its index are equal.
///
/// Before any of them, whitespace, control and invisible characters are
/// removed and fullwidth ASCII is read as ASCII (steps shared with the
/// engine's `visible_narrow`); the case mapping itself is
/// ICU4X's (Unicode's `CaseFolding.txt`, `SpecialCasing.txt` and
/// `UnicodeData.txt` as compiled into `icu_casemap`).
pub fn key_forms(key: &str) -> [String; 6] {
    let plain: String = key
        .chars()
        .filter_map(crate::policy::selector::visible_narrow)
        .collect();
    let cm = CaseMapper::new();
    let per_char = |f: &dyn Fn(char) -> char| plain.chars().map(f).collect::<String>();
    [
        cm.fold_string(&plain).into_owned(),
        cm.fold_turkic_string(&plain).into_owned(),
        per_char(&|c| cm.simple_fold(c)),
        per_char(&|c| cm.simple_lowercase(cm.simple_uppercase(c))),
        per_char(&|c| cm.simple_uppercase(c)),
        cm.lowercase_to_string(&plain, &LanguageIdentifier::UNKNOWN)
            .into_owned(),
    ]
}

/// Whether `a` and `b` are the same key for the reference: equal under at
/// least one of the [`COMPARISONS`]. So `EMAIL`, `EMA\u{130}L` (Turkic
/// folding, Java), `stra\u{df}e` and `STRASSE` (full folding) all meet
/// `email` and `strasse`. The relation is not transitive: `\u{130}` is `i`
/// under Turkic folding and `i\u{307}` under full folding, which no
/// comparison finds the same. The engine's one canonical form must join all
/// three, so it reads `i` and a combining dot above as `i`: the one place
/// where it joins more than a single comparison does.
pub fn same_key(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    if a.is_ascii() && b.is_ascii() {
        // In ASCII every comparison is ASCII case (Turkic folding only
        // joins less), and this is most keys: spare the differential tests
        // twelve case mappings per comparison.
        let visible = |s: &str| {
            s.bytes()
                .filter(|b| b.is_ascii_graphic())
                .map(|b| b.to_ascii_lowercase())
                .collect::<Vec<u8>>()
        };
        return visible(a) == visible(b);
    }
    let (fa, fb) = (key_forms(a), key_forms(b));
    fa.iter().zip(&fb).any(|(x, y)| x == y)
}

/// Whether some object of `doc` (at any depth) has two keys that are
/// [`same_key`]: the engine must refuse such a document as a duplicate, as
/// partners that read keys case-insensitively would pick either one.
/// Strings holding embedded documents are not looked into.
pub fn folded_duplicate(doc: &Value) -> bool {
    match doc {
        Value::Object(m) => {
            let keys: Vec<&String> = m.keys().collect();
            keys.iter()
                .enumerate()
                .any(|(i, a)| keys[i + 1..].iter().any(|b| same_key(a, b)))
                || m.values().any(folded_duplicate)
        }
        Value::Array(items) => items.iter().any(folded_duplicate),
        _ => false,
    }
}
