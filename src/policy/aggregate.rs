//! `mode = "aggregate"`, `records` and `[aggregate]`: what an aggregate-only
//! recipient receives (counts per group and window, never an event), raw
//! TOML in, validated [`AggregateRules`] out.
//!
//! Every field `[aggregate]` names is read from the event *after* the
//! `[fields]` actions, so the checks here look each one up in the compiled
//! `[fields]` rules: a field that `[fields]` drops would always be missing
//! (an error), the subject must leave `[fields]` pseudonymised (an error
//! otherwise), and a group that is not generalised is a lint warning
//! ([`super::lint`]).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::action::Action;
use super::compile::did_you_mean;
use super::diag;
use super::raw::{RawRuleFile, RawValue};
use super::selector::{Segment, Selector, canonical};
use super::{FieldRules, PolicyError};

/// The shortest window, in seconds.
pub const MIN_WINDOW_SECS: u64 = 1;
/// The longest window, in seconds (one day).
pub const MAX_WINDOW_SECS: u64 = 86_400;
/// The longest lateness, in seconds (seven days).
pub const MAX_LATENESS_SECS: u64 = 7 * 86_400;
/// The most `group_by` fields.
pub const MAX_GROUP_BY: usize = 16;
/// The most measures.
pub const MAX_MEASURES: usize = 32;

/// `[aggregate]` as written. Selectors here are relative to one event (an
/// element of `records`, or the document); see docs/rules.md.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Aggregate")]
pub struct RawAggregate {
    /// Tumbling window length, `"1s"` to `"1d"` (units `s`, `m`, `h`, `d`).
    /// A window starts at `floor(unix time / window) * window`, UTC.
    #[schemars(with = "String", regex(pattern = r"^[0-9]+[smhd]$"))]
    pub window: Spanned<String>,
    /// How long after its end a window is reported (default `"0s"`, at most
    /// `"7d"`). An event for a window already reported is counted as `late`
    /// in the report of the window it arrived in, never folded.
    #[schemars(with = "Option<String>", regex(pattern = r"^[0-9]+[smhd]$"))]
    pub lateness: Option<Spanned<String>>,
    /// The event time: an exact field path (RFC 3339 string, or epoch
    /// seconds or milliseconds). Default: the arrival time.
    #[schemars(with = "Option<String>")]
    pub time: Option<Spanned<String>>,
    /// Who an event is about: an exact field path that `[fields]`
    /// pseudonymises. Used for distinct counts and the `k` threshold, never
    /// reported. An event without it is refused (400 `missing_subject`).
    #[schemars(with = "String")]
    pub subject: Spanned<String>,
    /// Groups with fewer distinct subjects than `k` are suppressed (only
    /// counted in the report's `suppressed`). At least 1; the privacy lint
    /// warns below 5.
    #[schemars(with = "i64", range(min = 1))]
    pub k: Spanned<i64>,
    /// Exact field paths whose values (after `[fields]`) form a group's key;
    /// a missing field groups as `null`. Default: one group for all events.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub group_by: Vec<Spanned<String>>,
    /// Measures reported for each group, by name: `"count"`,
    /// `"distinct_subjects"`, `{ sum = "path", min = 0, max = 100 }`,
    /// `{ avg = "path", min = 0, max = 100 }`, `{ min_of = "path" }`,
    /// `{ max_of = "path" }`.
    #[schemars(with = "BTreeMap<String, MeasureRule>")]
    pub measures: Spanned<BTreeMap<Spanned<String>, Spanned<RawValue>>>,
    /// Laplace noise on every measure, with each subject's contribution
    /// capped. `{ epsilon = 1.0, max_events_per_subject = 10 }`.
    #[schemars(with = "Option<RawNoise>")]
    pub noise: Option<Spanned<RawNoise>>,
}

/// `noise = { epsilon = 1.0, max_events_per_subject = 10 }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Noise")]
pub struct RawNoise {
    /// The privacy budget of one window's report, split evenly over its
    /// measures; greater than 0 (the lint warns above 10).
    #[schemars(with = "f64", range(min = 0))]
    pub epsilon: Spanned<f64>,
    /// Events of one subject folded into one window; later ones are counted
    /// as `capped`, not folded. At least 1.
    #[schemars(with = "i64", range(min = 1))]
    pub max_events_per_subject: Spanned<i64>,
}

/// The shape of one measure (for the schema; the compiler reads
/// [`RawValue`] for located messages).
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
pub enum MeasureRule {
    /// `"count"` (events) or `"distinct_subjects"`.
    Name(MeasureName),
    /// A sum, average or extreme of a numeric field.
    Table(MeasureTable),
}

/// A measure by name.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum MeasureName {
    /// Events in the group.
    Count,
    /// Distinct subjects in the group (exact).
    DistinctSubjects,
}

/// A measure of a numeric field: exactly one of `sum`, `avg`, `min_of`,
/// `max_of`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct MeasureTable {
    /// Sum of the field's values.
    sum: Option<String>,
    /// Mean of the field's values.
    avg: Option<String>,
    /// Smallest value of the field.
    min_of: Option<String>,
    /// Largest value of the field.
    max_of: Option<String>,
    /// Clamp: values below are counted as `min` (`sum`, `avg`; required
    /// with noise).
    min: Option<f64>,
    /// Clamp: values above are counted as `max` (`sum`, `avg`; required
    /// with noise).
    max: Option<f64>,
}

/// An exact field path relative to an event (no wildcards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    /// As written.
    pub text: String,
    /// The keys, in canonical form (compared like `[fields]` keys).
    pub keys: Vec<String>,
    /// Where it was written.
    pub span: Range<usize>,
}

impl FieldPath {
    /// The value at this path in `event`, keys compared in canonical form;
    /// `None` when a key is missing or a step is not an object.
    pub fn get<'v>(&self, event: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        let mut at = event;
        for key in &self.keys {
            let serde_json::Value::Object(map) = at else {
                return None;
            };
            at = match map.get(key.as_str()) {
                Some(v) => v,
                None => map.iter().find(|(k, _)| canonical(k) == *key)?.1,
            };
        }
        Some(at)
    }
}

/// What a measure computes.
#[derive(Debug, Clone, PartialEq)]
pub enum MeasureKind {
    /// Events.
    Count,
    /// Distinct subjects.
    DistinctSubjects,
    /// Sum of a numeric field, each value clamped to the bounds given.
    Sum(NumericField),
    /// Mean of a numeric field, each value clamped to the bounds given.
    Avg(NumericField),
    /// Smallest value.
    Min(NumericField),
    /// Largest value.
    Max(NumericField),
}

/// A numeric field and its clamps.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericField {
    /// The field.
    pub field: FieldPath,
    /// Lower clamp.
    pub min: Option<f64>,
    /// Upper clamp.
    pub max: Option<f64>,
}

impl NumericField {
    /// The value clamped to the bounds.
    pub fn clamp(&self, v: f64) -> f64 {
        let v = self.min.map_or(v, |m| v.max(m));
        self.max.map_or(v, |m| v.min(m))
    }
}

/// One named measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    /// Its name in the report.
    pub name: String,
    /// What it computes.
    pub kind: MeasureKind,
}

impl MeasureKind {
    /// The measure's kind as written (`count`, `sum`...).
    pub fn label(&self) -> &'static str {
        match self {
            MeasureKind::Count => "count",
            MeasureKind::DistinctSubjects => "distinct_subjects",
            MeasureKind::Sum(_) => "sum",
            MeasureKind::Avg(_) => "avg",
            MeasureKind::Min(_) => "min_of",
            MeasureKind::Max(_) => "max_of",
        }
    }

    /// The field it reads, if any.
    pub fn field(&self) -> Option<&NumericField> {
        match self {
            MeasureKind::Count | MeasureKind::DistinctSubjects => None,
            MeasureKind::Sum(f)
            | MeasureKind::Avg(f)
            | MeasureKind::Min(f)
            | MeasureKind::Max(f) => Some(f),
        }
    }
}

/// Laplace noise settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Budget of one report, split evenly over its measures.
    pub epsilon: f64,
    /// Events of one subject folded into one window.
    pub max_events_per_subject: u32,
    /// Where `epsilon` was written (for the lint).
    pub epsilon_span: (usize, usize),
}

/// `[aggregate]`, validated.
#[derive(Debug, Clone)]
pub struct AggregateRules {
    /// Window length in seconds.
    pub window_secs: u64,
    /// Lateness in seconds.
    pub lateness_secs: u64,
    /// The event time field; `None`: arrival time.
    pub time: Option<FieldPath>,
    /// The subject field.
    pub subject: FieldPath,
    /// The suppression threshold (distinct subjects).
    pub k: u32,
    /// Where `k` was written.
    pub k_span: Range<usize>,
    /// The group key's fields, in order.
    pub group_by: Vec<FieldPath>,
    /// The measures, sorted by name.
    pub measures: Vec<Measure>,
    /// Noise, if any.
    pub noise: Option<Noise>,
    /// Where `[aggregate]` was written.
    pub span: Range<usize>,
}

impl AggregateRules {
    /// The start (unix seconds) of the window holding `t`.
    pub fn window_of(&self, t: u64) -> u64 {
        t - t % self.window_secs
    }
}

/// What a rule file does with its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forwarded in minimised form (the default).
    #[default]
    Forward,
    /// Folded into windows and reported as counts per group.
    Aggregate,
}

/// The modes, as written.
pub const MODE_NAMES: &[&str] = &["forward", "aggregate"];

/// The measure names a string may give.
const MEASURE_NAMES: &[&str] = &["count", "distinct_subjects"];
/// The keys of a measure table.
const MEASURE_KEYS: &[&str] = &["sum", "avg", "min_of", "max_of", "min", "max"];

/// What [`compile`] gives: the mode, the records path, and `[aggregate]`.
#[derive(Debug, Default)]
pub struct Compiled {
    /// The mode.
    pub mode: Mode,
    /// `records`, if any.
    pub records: Option<FieldPath>,
    /// `[aggregate]`, validated, in aggregate mode.
    pub aggregate: Option<Arc<AggregateRules>>,
}

struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
    errors: &'a mut Vec<PolicyError>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) -> &mut PolicyError {
        self.errors.push(PolicyError::at(
            diag::AGGREGATE,
            self.file,
            self.text,
            span,
            message,
        ));
        let last = self.errors.len() - 1;
        &mut self.errors[last]
    }
}

/// Checks `mode`, `records` and `[aggregate]` against the compiled
/// `[fields]` (when they compiled). Problems go to `errors`.
pub fn compile(
    text: &str,
    file: &str,
    raw: &RawRuleFile,
    fields: Option<&FieldRules>,
    errors: &mut Vec<PolicyError>,
) -> Compiled {
    let mut cx = Ctx { text, file, errors };
    let mut out = Compiled::default();
    if let Some(m) = &raw.mode {
        match m.get_ref().as_str() {
            "forward" => out.mode = Mode::Forward,
            "aggregate" => out.mode = Mode::Aggregate,
            other => {
                let help = did_you_mean(other, MODE_NAMES);
                cx.errors.push(
                    PolicyError::at(diag::SETTING, file, text, m.span(), "unknown mode")
                        .with_help(help),
                );
            }
        }
    }
    if let Some(r) = &raw.records {
        out.records = exact_path(&mut cx, r, "records");
    }
    match (&raw.aggregate, out.mode) {
        (None, Mode::Aggregate) => {
            let span = raw.mode.as_ref().map_or(0..0, Spanned::span);
            cx.err(span, "mode = \"aggregate\" needs an [aggregate] table")
                .help = Some("add [aggregate] with window, subject, k and measures".into());
        }
        (Some(a), Mode::Forward) => {
            cx.err(
                a.span(),
                "[aggregate] is only read with mode = \"aggregate\"",
            )
            .help = Some("add mode = \"aggregate\" at the top of the file".into());
        }
        (Some(a), Mode::Aggregate) => {
            if let Some(t) = raw.passthrough_content_types.first() {
                cx.err(
                    t.span(),
                    "an aggregate recipient reads every body: nothing passes through untouched",
                );
            }
            out.aggregate =
                compile_aggregate(&mut cx, a, out.records.as_ref(), fields).map(Arc::new);
        }
        (None, Mode::Forward) => {}
    }
    out
}

fn compile_aggregate(
    cx: &mut Ctx<'_>,
    raw: &Spanned<RawAggregate>,
    records: Option<&FieldPath>,
    fields: Option<&FieldRules>,
) -> Option<AggregateRules> {
    let a = raw.get_ref();
    let before = cx.errors.len();
    let window_secs = duration(cx, &a.window, MIN_WINDOW_SECS, MAX_WINDOW_SECS, "window");
    let lateness_secs = match &a.lateness {
        Some(l) => duration(cx, l, 0, MAX_LATENESS_SECS, "lateness"),
        None => Some(0),
    };
    let time = a.time.as_ref().and_then(|t| exact_path(cx, t, "time"));
    let subject = exact_path(cx, &a.subject, "subject");
    let k = *a.k.get_ref();
    if !(1..=1_000_000).contains(&k) {
        cx.err(a.k.span(), "k must be between 1 and 1000000");
    }
    let mut group_by: Vec<FieldPath> = Vec::new();
    if a.group_by.len() > MAX_GROUP_BY {
        cx.err(
            a.group_by[MAX_GROUP_BY].span(),
            format!("at most {MAX_GROUP_BY} group_by fields"),
        );
    }
    for g in &a.group_by {
        let Some(path) = exact_path(cx, g, "group_by") else {
            continue;
        };
        if group_by.iter().any(|o| o.keys == path.keys) {
            cx.err(g.span(), format!("group_by names \"{}\" twice", path.text));
            continue;
        }
        group_by.push(path);
    }
    let noise = a.noise.as_ref().and_then(|n| compile_noise(cx, n));
    let measures = compile_measures(cx, &a.measures, a.noise.is_some());

    if let (Some(fields), Some(subject)) = (fields, &subject) {
        match decided_by(fields, records, subject) {
            Some(Action::Pseudonymise { .. }) => {}
            Some(other) => {
                cx.err(
                    subject.span.clone(),
                    format!(
                        "the subject must be pseudonymised by [fields], but \"{}\" leaves as {}",
                        subject.text,
                        other.name()
                    ),
                )
                .help = Some(format!(
                    "add \"{}\" = \"pseudonymise\" to [fields]",
                    in_document(records, subject)
                ));
            }
            None => {
                cx.err(
                    subject.span.clone(),
                    format!(
                        "the subject \"{}\" is dropped by [fields], so every event would be refused",
                        subject.text
                    ),
                )
                .help = Some(format!(
                    "add \"{}\" = \"pseudonymise\" to [fields]",
                    in_document(records, subject)
                ));
            }
        }
        let read: Vec<(&FieldPath, &str)> = time
            .iter()
            .map(|t| (t, "time"))
            .chain(group_by.iter().map(|g| (g, "group_by")))
            .chain(
                measures
                    .iter()
                    .flat_map(|m| m.kind.field().map(|f| (&f.field, "measure"))),
            )
            .collect();
        for (path, what) in read {
            if decided_by(fields, records, path).is_none() {
                cx.err(
                    path.span.clone(),
                    format!(
                        "{what} field \"{}\" is dropped by [fields], so it would always be missing",
                        path.text
                    ),
                )
                .help = Some(format!(
                    "allow \"{}\" in [fields] (keep it, or better, generalise it)",
                    in_document(records, path)
                ));
            }
        }
    }
    if cx.errors.len() > before {
        return None;
    }
    Some(AggregateRules {
        window_secs: window_secs?,
        lateness_secs: lateness_secs?,
        time,
        subject: subject?,
        k: u32::try_from(k).ok()?,
        k_span: a.k.span(),
        group_by,
        measures,
        noise,
        span: raw.span(),
    })
}

/// The selector text of `path` in the document (under `records`).
pub fn in_document(records: Option<&FieldPath>, path: &FieldPath) -> String {
    match records {
        Some(r) => format!("{}.{}", r.text, path.text),
        None => path.text.clone(),
    }
}

/// The action `[fields]` gives the value at `path` of an event: the
/// deepest decision on the way down (a `keep` on a container decides for
/// what is inside it unless a deeper rule says otherwise). `None`: dropped.
pub fn decided_by<'f>(
    fields: &'f FieldRules,
    records: Option<&FieldPath>,
    path: &FieldPath,
) -> Option<&'f Action> {
    let mut state = fields.root();
    let mut decision = None;
    let keys = records
        .into_iter()
        .flat_map(|r| r.keys.iter())
        .chain(path.keys.iter());
    for key in keys {
        state = fields.step(state, key.as_bytes());
        if let Some(rule) = fields.info(state).decision {
            decision = Some(&fields.rule(rule).action);
        }
    }
    match decision {
        Some(Action::Drop) | None => None,
        Some(a) => Some(a),
    }
}

fn exact_path(cx: &mut Ctx<'_>, s: &Spanned<String>, what: &str) -> Option<FieldPath> {
    let sel = match Selector::parse(s.get_ref()) {
        Ok(sel) => sel,
        Err(e) => {
            cx.err(s.span(), format!("invalid {what} path: {e}"));
            return None;
        }
    };
    let mut keys = Vec::new();
    for seg in sel.segments() {
        match seg {
            Segment::Key(k) => keys.push(canonical(k)),
            Segment::Star | Segment::GlobStar => {
                cx.err(
                    s.span(),
                    format!("{what} must be an exact field path, without `*` or `**`"),
                );
                return None;
            }
        }
    }
    Some(FieldPath {
        text: s.get_ref().clone(),
        keys,
        span: s.span(),
    })
}

/// `"90s"`, `"5m"`, `"1h"`, `"1d"` in seconds, within `min..=max`.
pub fn parse_duration(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

fn duration(cx: &mut Ctx<'_>, s: &Spanned<String>, min: u64, max: u64, what: &str) -> Option<u64> {
    let Some(secs) = parse_duration(s.get_ref()) else {
        cx.err(s.span(), format!("{what} is not a duration")).help =
            Some("write a whole number and a unit: \"30s\", \"5m\", \"1h\", \"1d\"".into());
        return None;
    };
    if !(min..=max).contains(&secs) {
        cx.err(
            s.span(),
            format!(
                "{what} must be between {} and {}",
                show_secs(min),
                show_secs(max)
            ),
        );
        return None;
    }
    Some(secs)
}

/// Seconds as the shortest duration text.
pub fn show_secs(secs: u64) -> String {
    match secs {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn compile_noise(cx: &mut Ctx<'_>, n: &Spanned<RawNoise>) -> Option<Noise> {
    let raw = n.get_ref();
    let epsilon = *raw.epsilon.get_ref();
    let mut ok = true;
    if !(epsilon.is_finite() && epsilon > 0.0) {
        cx.err(
            raw.epsilon.span(),
            "epsilon must be a number greater than 0",
        );
        ok = false;
    }
    let cap = *raw.max_events_per_subject.get_ref();
    if !(1..=1_000_000).contains(&cap) {
        cx.err(
            raw.max_events_per_subject.span(),
            "max_events_per_subject must be between 1 and 1000000",
        );
        ok = false;
    }
    let span = raw.epsilon.span();
    ok.then_some(Noise {
        epsilon,
        max_events_per_subject: cap as u32,
        epsilon_span: (span.start, span.end),
    })
}

fn compile_measures(
    cx: &mut Ctx<'_>,
    raw: &Spanned<BTreeMap<Spanned<String>, Spanned<RawValue>>>,
    noise: bool,
) -> Vec<Measure> {
    let mut out = Vec::new();
    if raw.get_ref().is_empty() {
        cx.err(
            raw.span(),
            "[aggregate.measures] is empty: a report would say nothing",
        )
        .help = Some("add events = \"count\"".into());
    }
    if raw.get_ref().len() > MAX_MEASURES {
        cx.err(raw.span(), format!("at most {MAX_MEASURES} measures"));
    }
    for (name, value) in raw.get_ref() {
        let n = name.get_ref();
        if n.is_empty()
            || n.len() > 64
            || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            cx.err(
                name.span(),
                "a measure name is 1 to 64 characters of `A-Z a-z 0-9 _`",
            );
            continue;
        }
        if n == "key" {
            cx.err(
                name.span(),
                "\"key\" is the group's key in the report; name the measure otherwise",
            );
            continue;
        }
        if let Some(kind) = measure_kind(cx, value, noise) {
            out.push(Measure {
                name: n.clone(),
                kind,
            });
        }
    }
    out
}

fn measure_kind(cx: &mut Ctx<'_>, value: &Spanned<RawValue>, noise: bool) -> Option<MeasureKind> {
    match value.get_ref() {
        RawValue::String(s) => match s.as_str() {
            "count" => Some(MeasureKind::Count),
            "distinct_subjects" => Some(MeasureKind::DistinctSubjects),
            other => {
                let help = if MEASURE_KEYS[..4].contains(&other) {
                    format!("write {other} as a table: {{ {other} = \"path\" }}")
                } else {
                    did_you_mean(other, MEASURE_NAMES)
                };
                cx.err(value.span(), "unknown measure").help = Some(help);
                None
            }
        },
        RawValue::Table(entries) => {
            let mut kind: Option<(&str, &Spanned<RawValue>)> = None;
            let (mut min, mut max) = (None, None);
            let mut ok = true;
            for (k, v) in entries {
                match k.get_ref().as_str() {
                    key @ ("sum" | "avg" | "min_of" | "max_of") => {
                        if let Some((first, _)) = kind {
                            cx.err(
                                k.span(),
                                format!("a measure is one of sum, avg, min_of, max_of: found {first} and {key}"),
                            );
                            ok = false;
                        }
                        kind = Some((key, v));
                    }
                    "min" => min = number(cx, v, "min", &mut ok),
                    "max" => max = number(cx, v, "max", &mut ok),
                    other => {
                        let help = did_you_mean(other, MEASURE_KEYS);
                        cx.err(k.span(), format!("unknown measure option `{other}`"))
                            .help = Some(help);
                        ok = false;
                    }
                }
            }
            let Some((key, path)) = kind else {
                cx.err(
                    value.span(),
                    "a measure table needs one of sum, avg, min_of, max_of",
                );
                return None;
            };
            let path = match path.get_ref() {
                RawValue::String(s) => exact_path(cx, &Spanned::new(path.span(), s.clone()), key),
                other => {
                    cx.err(
                        path.span(),
                        format!("{key} takes a field path, not {}", other.kind()),
                    );
                    None
                }
            };
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                cx.err(value.span(), "min is greater than max");
                ok = false;
            }
            let clamps = matches!(key, "sum" | "avg");
            if !clamps && (min.is_some() || max.is_some()) {
                cx.err(value.span(), format!("{key} takes no min or max"));
                ok = false;
            }
            if noise && clamps && (min.is_none() || max.is_none()) {
                cx.err(
                    value.span(),
                    format!("with noise, {key} needs both min and max"),
                )
                .help =
                    Some("the bounds limit what one event can add, which sets the noise".into());
                ok = false;
            }
            if noise && !clamps {
                cx.err(value.span(), format!("{key} cannot be reported with noise"))
                    .help = Some("use sum or avg with min and max, or remove noise".into());
                ok = false;
            }
            let field = NumericField {
                field: path?,
                min,
                max,
            };
            ok.then_some(match key {
                "sum" => MeasureKind::Sum(field),
                "avg" => MeasureKind::Avg(field),
                "min_of" => MeasureKind::Min(field),
                _ => MeasureKind::Max(field),
            })
        }
        other => {
            cx.err(
                value.span(),
                format!("a measure is a name or a table, not {}", other.kind()),
            )
            .help = Some("events = \"count\", users = \"distinct_subjects\", revenue = { sum = \"path\", min = 0, max = 1000 }".into());
            None
        }
    }
}

fn number(cx: &mut Ctx<'_>, v: &Spanned<RawValue>, what: &str, ok: &mut bool) -> Option<f64> {
    match v.get_ref() {
        RawValue::Integer(i) => Some(*i as f64),
        RawValue::Float(f) if f.is_finite() => Some(*f),
        other => {
            cx.err(
                v.span(),
                format!("{what} is a number, not {}", other.kind()),
            );
            *ok = false;
            None
        }
    }
}

/// The privacy lint's aggregate warnings (`P008` small k, `P009` personal
/// group, `P010` weak noise), each file-level, so an `[[allow]]` names only
/// the lint and a reason.
pub fn lints(policy: &super::CompiledPolicy, text: &str) -> Vec<PolicyError> {
    use super::lint::{PERSONAL_GROUP, SMALL_K, WEAK_NOISE, personal_key};
    let Some(a) = &policy.aggregate else {
        return Vec::new();
    };
    let file = policy.source.display().to_string();
    let accept =
        |code: &str| format!("or accept it: [[allow]] lint = \"{code}\", reason = \"...\"");
    let mut out = Vec::new();
    if a.k < 5 {
        out.push(
            PolicyError::at(
                SMALL_K,
                &file,
                text,
                a.k_span.clone(),
                format!(
                    "k = {}: a reported group may stand for fewer than 5 people",
                    a.k
                ),
            )
            .with_help(format!(
                "raise k to 5 or more (10 is common); {}",
                accept(SMALL_K)
            ))
            .warning(),
        );
    }
    for g in &a.group_by {
        let action = decided_by(&policy.fields, policy.records.as_ref(), g);
        let why = match action {
            Some(Action::Pseudonymise { .. } | Action::HashSha256 { .. }) => {
                Some("a pseudonym: one group per person or device")
            }
            Some(Action::Keep) => {
                let last = g.keys.last().map_or("", String::as_str);
                let above: Vec<&str> = g.keys[..g.keys.len().saturating_sub(1)]
                    .iter()
                    .map(String::as_str)
                    .collect();
                personal_key(last, &above)
                    .or_else(|| looks_like_time(last).then_some("a timestamp"))
            }
            _ => None,
        };
        if let Some(why) = why {
            out.push(
                PolicyError::at(
                    PERSONAL_GROUP,
                    &file,
                    text,
                    g.span.clone(),
                    format!("group_by \"{}\" is not generalised and looks like {why}", g.text),
                )
                .with_help(format!(
                    "generalise it in [fields] (truncate_ip, coarsen_time, bucket, mask_email) or group by something coarser; {}",
                    accept(PERSONAL_GROUP)
                ))
                .warning(),
            );
        }
    }
    if let Some(n) = &a.noise
        && n.epsilon > 10.0
    {
        out.push(
            PolicyError::at(
                WEAK_NOISE,
                &file,
                text,
                n.epsilon_span.0..n.epsilon_span.1,
                format!(
                    "epsilon = {}: noise this weak protects next to nothing",
                    n.epsilon
                ),
            )
            .with_help(format!(
                "use epsilon of 1 or less where you can; {}",
                accept(WEAK_NOISE)
            ))
            .warning(),
        );
    }
    out
}

/// A key that names a point in time (`ts`, `timestamp`, `created_at`...).
fn looks_like_time(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "ts"
        || k.ends_with("_at")
        || k.ends_with("_ts")
        || ["time", "date", "when"].iter().any(|w| k.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Some(1));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("1h"), Some(3600));
        assert_eq!(parse_duration("1d"), Some(86_400));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("1.5h"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(show_secs(86_400), "1d");
        assert_eq!(show_secs(90), "90s");
    }

    #[test]
    fn paths_compare_canonically() {
        let p = FieldPath {
            text: "user.Id".into(),
            keys: vec![canonical("user"), canonical("Id")],
            span: 0..0,
        };
        let v = serde_json::json!({"User": {"id": "x"}});
        assert_eq!(p.get(&v), Some(&serde_json::json!("x")));
        assert_eq!(p.get(&serde_json::json!({"user": 1})), None);
    }
}
