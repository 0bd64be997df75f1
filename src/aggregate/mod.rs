//! Aggregate-only recipients: from a rewritten body to folded events, and
//! from a closed window's groups to the report a partner receives.
//!
//! This room holds no I/O: the request path hands it the rewriter's output
//! (so nothing raw is ever read here), the store ([`crate::store`]) keeps
//! what it folds, and the flusher sends what it reports.
//!
//! * [`events_of`]: the events of a body, per `records`;
//! * [`fold`]: one event into a [`Folded`] record: its window, group key,
//!   subject (a pseudonym) and measure inputs, all read after `[fields]`;
//! * [`GroupState`]: what a store keeps per group and window;
//! * [`ReportBuilder`]: the k threshold, noise, and the report's JSON.

pub mod config;
pub mod time;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::policy::BodyFormat;
use crate::policy::aggregate::{AggregateRules, FieldPath, MeasureKind};

/// Why a body's events cannot be folded. Messages name paths, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The rewritten body is not what its format says (cannot happen for the
    /// rewriter's own output; kept so nothing is folded on a surprise).
    #[error("body could not be read as events")]
    Unreadable,
    /// `records` names a member that is not an array.
    #[error("`{0}` is not an array of events")]
    RecordsNotArray(String),
    /// An event has no subject.
    #[error("event {index} has no subject (`{path}`) after the rule file's actions")]
    MissingSubject {
        /// 0-based index of the event in the body.
        index: usize,
        /// The subject path.
        path: String,
    },
}

/// The events of a rewritten body: a JSON document, NDJSON lines or a form
/// (one event of its parameters, each a string, even with none left). With `records`, the array
/// at that path holds the events; a document without it is one event.
pub fn events_of(
    body: &[u8],
    format: BodyFormat,
    records: Option<&FieldPath>,
) -> Result<Vec<Value>, EventError> {
    let documents: Vec<Value> = match format {
        BodyFormat::Json => {
            if body.iter().all(u8::is_ascii_whitespace) {
                Vec::new()
            } else {
                vec![serde_json::from_slice(body).map_err(|_| EventError::Unreadable)?]
            }
        }
        BodyFormat::Ndjson => body
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(|l| serde_json::from_slice(l).map_err(|_| EventError::Unreadable))
            .collect::<Result<_, _>>()?,
        // Every parameter may have been dropped: still one event.
        BodyFormat::Form => vec![form_event(body)?],
    };
    let mut events = Vec::new();
    for doc in documents {
        match records.and_then(|r| r.get(&doc).map(|v| (r, v))) {
            Some((_, Value::Array(items))) => events.extend(items.iter().cloned()),
            Some((r, _)) => return Err(EventError::RecordsNotArray(r.text.clone())),
            None => events.push(doc),
        }
    }
    Ok(events)
}

/// A form body as one event: each parameter a string member (a repeated
/// name keeps its first value).
fn form_event(body: &[u8]) -> Result<Value, EventError> {
    let mut map = Map::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let k = percent_decode(k).ok_or(EventError::Unreadable)?;
        let v = percent_decode(v).ok_or(EventError::Unreadable)?;
        map.entry(k).or_insert(Value::String(v));
    }
    Ok(Value::Object(map))
}

fn percent_decode(b: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// One event, ready for a store: nothing in it but what `[fields]` let out.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    /// Window start, unix seconds.
    pub window: u64,
    /// Start of the window the event arrived in: an event whose own window
    /// was reported already is counted as late in this one's report.
    pub arrival_window: u64,
    /// The group key: a JSON array of the `group_by` values, in order.
    pub group: String,
    /// The subject (a pseudonym).
    pub subject: String,
    /// One input per measure (in the rules' order): the clamped number for
    /// a numeric measure whose field holds one, else `None`.
    pub values: Vec<Option<f64>>,
}

/// Reads one event (already rewritten by `[fields]`): its subject (an
/// event without one is refused), time (`arrival` when not set or not a
/// time), group key and measure inputs.
pub fn fold(
    rules: &AggregateRules,
    event: &Value,
    index: usize,
    arrival: u64,
) -> Result<Folded, EventError> {
    let subject = match rules.subject.get(event) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(EventError::MissingSubject {
                index,
                path: rules.subject.text.clone(),
            });
        }
    };
    let at = rules
        .time
        .as_ref()
        .and_then(|t| t.get(event))
        .and_then(time::epoch_seconds)
        .unwrap_or(arrival);
    let key: Vec<&Value> = rules
        .group_by
        .iter()
        .map(|g| g.get(event).unwrap_or(&Value::Null))
        .collect();
    let group = serde_json::to_string(&key).unwrap_or_else(|_| "[]".into());
    let values = rules
        .measures
        .iter()
        .map(|m| {
            let f = m.kind.field()?;
            let v = f.field.get(event)?.as_f64()?;
            v.is_finite().then(|| f.clamp(v))
        })
        .collect();
    Ok(Folded {
        window: rules.window_of(at),
        arrival_window: rules.window_of(arrival),
        group,
        subject,
        values,
    })
}

/// A numeric measure's running state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Num {
    /// Sum of the values.
    pub sum: f64,
    /// Values seen.
    pub n: u64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// What a store keeps for one group of one window (besides the group's
/// subjects, which it keeps as a set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Events folded.
    pub events: u64,
    /// Numeric measures, by measure name.
    pub nums: BTreeMap<String, Num>,
}

impl GroupState {
    /// Folds one event.
    pub fn add(&mut self, rules: &AggregateRules, f: &Folded) {
        self.events += 1;
        for (m, v) in rules.measures.iter().zip(&f.values) {
            let Some(v) = *v else { continue };
            let e = self.nums.entry(m.name.clone()).or_insert(Num {
                sum: 0.0,
                n: 0,
                min: v,
                max: v,
            });
            e.sum += v;
            e.n += 1;
            e.min = e.min.min(v);
            e.max = e.max.max(v);
        }
    }

    /// Merges another replica's or batch's state for the same group.
    pub fn merge(&mut self, other: &GroupState) {
        self.events += other.events;
        for (k, o) in &other.nums {
            match self.nums.get_mut(k) {
                Some(e) => {
                    e.sum += o.sum;
                    e.n += o.n;
                    e.min = e.min.min(o.min);
                    e.max = e.max.max(o.max);
                }
                None => {
                    self.nums.insert(k.clone(), *o);
                }
            }
        }
    }
}

/// What a window's record says besides its groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowMeta {
    /// Window length in seconds when it was opened.
    pub window_secs: u64,
    /// Groups folded.
    pub groups: u64,
    /// Events folded.
    pub events: u64,
    /// Events refused because the window had reached its group cap.
    pub cut_events: u64,
    /// Events not folded because their subject had reached
    /// `max_events_per_subject` in this window.
    pub capped_events: u64,
    /// Events that arrived in this window for a window reported already.
    #[serde(default)]
    pub late: u64,
}

/// The stable id of the report of one window of one store: the same on
/// every retry and after a restart. `store` names the store the window
/// lives in (empty for the shared store, whose replicas make one report;
/// each embedded store has its own name, so replicas that each report
/// their part of a window never share an id).
pub fn report_id(recipient: &str, start: u64, window_secs: u64, store: &str) -> String {
    let mut h = Sha256::new();
    h.update(recipient.as_bytes());
    h.update([0]);
    h.update(start.to_be_bytes());
    h.update(window_secs.to_be_bytes());
    h.update(store.as_bytes());
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A report, ready to send and to persist until a partner takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Its id (`scrim-report-id`).
    pub id: String,
    /// The recipient.
    pub recipient: String,
    /// Window start, unix seconds.
    pub start: u64,
    /// The JSON body.
    pub body: String,
    /// Counts for the audit line and metrics.
    pub counts: ReportCounts,
}

/// What a report holds, counted (for the audit line and the metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportCounts {
    /// Groups reported.
    pub groups: u64,
    /// Events in the reported groups.
    pub events: u64,
    /// Groups suppressed (fewer than k subjects).
    pub suppressed_groups: u64,
    /// Events in suppressed groups.
    pub suppressed_events: u64,
    /// Late events reported.
    pub late: u64,
    /// Events cut by the group cap.
    pub cut_events: u64,
}

/// Builds one window's report from its groups, one at a time (a store
/// streams them: memory holds the reported groups only).
pub struct ReportBuilder<'r> {
    rules: &'r AggregateRules,
    recipient: String,
    start: u64,
    window_secs: u64,
    groups: Vec<Value>,
    counts: ReportCounts,
    store: String,
}

impl<'r> ReportBuilder<'r> {
    /// The report of the window starting at `start` (unix seconds) in
    /// the store named `store` (see [`report_id`]).
    pub fn new(
        rules: &'r AggregateRules,
        recipient: &str,
        start: u64,
        window_secs: u64,
        store: &str,
    ) -> ReportBuilder<'r> {
        ReportBuilder {
            rules,
            recipient: recipient.to_string(),
            start,
            window_secs,
            groups: Vec::new(),
            counts: ReportCounts::default(),
            store: store.to_string(),
        }
    }

    /// One group: its key (the JSON array a [`Folded`] holds), its state and
    /// its exact number of distinct subjects. Below `k` it is only counted.
    pub fn group(&mut self, key: &str, state: &GroupState, distinct: u64) {
        if distinct < u64::from(self.rules.k) {
            self.counts.suppressed_groups += 1;
            self.counts.suppressed_events += state.events;
            return;
        }
        self.counts.groups += 1;
        self.counts.events += state.events;
        let values: Vec<Value> = serde_json::from_str(key).unwrap_or_default();
        let mut key_obj = Map::new();
        for (i, g) in self.rules.group_by.iter().enumerate() {
            key_obj.insert(
                g.text.clone(),
                values.get(i).cloned().unwrap_or(Value::Null),
            );
        }
        let mut obj = Map::new();
        obj.insert("key".into(), Value::Object(key_obj));
        let noise = self.rules.noise;
        let share = self.rules.measures.len().max(1) as f64;
        for m in &self.rules.measures {
            let cap = noise.map_or(1.0, |n| f64::from(n.max_events_per_subject));
            // Laplace scale: sensitivity over this measure's share of epsilon.
            let scale = |sensitivity: f64| noise.map(|n| sensitivity * share / n.epsilon);
            let num = state.nums.get(&m.name);
            let value = match &m.kind {
                MeasureKind::Count => count(state.events, scale(cap)),
                MeasureKind::DistinctSubjects => count(distinct, scale(cap)),
                MeasureKind::Sum(f) => {
                    let bound = f.min.unwrap_or(0.0).abs().max(f.max.unwrap_or(0.0).abs());
                    let sum = num.map_or(0.0, |n| n.sum);
                    number(sum + scale(cap * bound).map_or(0.0, laplace))
                }
                MeasureKind::Avg(f) => {
                    let bound = f.min.unwrap_or(0.0).abs().max(f.max.unwrap_or(0.0).abs());
                    let (sum, n) = num.map_or((0.0, 0), |n| (n.sum, n.n));
                    // Half the measure's share for the sum, half for the count.
                    let sum = sum + scale(2.0 * cap * bound).map_or(0.0, laplace);
                    let n = n as f64 + scale(2.0 * cap).map_or(0.0, laplace);
                    if n < 1.0 {
                        Value::Null
                    } else {
                        number(f.clamp(sum / n))
                    }
                }
                MeasureKind::Min(_) => num.map_or(Value::Null, |n| number(n.min)),
                MeasureKind::Max(_) => num.map_or(Value::Null, |n| number(n.max)),
            };
            obj.insert(m.name.clone(), value);
        }
        self.groups.push(Value::Object(obj));
    }

    /// The report, with the late events and the window's cut and capped
    /// counts.
    pub fn finish(mut self, late: u64, meta: &WindowMeta) -> Report {
        self.counts.late = late;
        self.counts.cut_events = meta.cut_events;
        let mut body = Map::new();
        body.insert("recipient".into(), Value::String(self.recipient.clone()));
        body.insert(
            "window".into(),
            serde_json::json!({
                "start": time::rfc3339(self.start),
                "end": time::rfc3339(self.start + self.window_secs),
            }),
        );
        body.insert("groups".into(), Value::Array(self.groups));
        body.insert(
            "suppressed".into(),
            serde_json::json!({
                "groups": self.counts.suppressed_groups,
                "events": self.counts.suppressed_events,
            }),
        );
        body.insert("late".into(), Value::from(late));
        if meta.cut_events > 0 {
            body.insert("cut".into(), serde_json::json!({"events": meta.cut_events}));
        }
        if let Some(n) = self.rules.noise {
            body.insert(
                "noise".into(),
                serde_json::json!({
                    "mechanism": "laplace",
                    "epsilon": n.epsilon,
                    "max_events_per_subject": n.max_events_per_subject,
                    "capped_events": meta.capped_events,
                }),
            );
        }
        Report {
            id: report_id(&self.recipient, self.start, self.window_secs, &self.store),
            recipient: self.recipient,
            start: self.start,
            body: Value::Object(body).to_string(),
            counts: self.counts,
        }
    }
}

/// The arrival time of a `[[tests]]` case's events without a time:
/// 2026-01-01T00:00:00Z.
pub const TEST_ARRIVAL: u64 = 1_767_225_600;

/// The reports a rewritten body's events make on their own (in memory,
/// without noise, one per window, oldest first): what `[[tests]]` `report`
/// is compared with.
pub fn reports_of(
    rules: &AggregateRules,
    policy: &crate::policy::CompiledPolicy,
    body: &[u8],
    format: BodyFormat,
    arrival: u64,
) -> Result<Vec<Value>, EventError> {
    use std::collections::BTreeSet;
    let rules = AggregateRules {
        noise: None,
        ..rules.clone()
    };
    let events = events_of(body, format, policy.records.as_ref())?;
    let mut windows: BTreeMap<u64, BTreeMap<String, (GroupState, BTreeSet<String>)>> =
        BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let f = fold(&rules, e, i, arrival)?;
        let (state, subjects) = windows
            .entry(f.window)
            .or_default()
            .entry(f.group.clone())
            .or_default();
        state.add(&rules, &f);
        subjects.insert(f.subject);
    }
    Ok(windows
        .into_iter()
        .map(|(start, groups)| {
            let mut b = ReportBuilder::new(&rules, &policy.recipient, start, rules.window_secs, "");
            for (key, (state, subjects)) in &groups {
                b.group(key, state, subjects.len() as u64);
            }
            let report = b.finish(0, &WindowMeta::default());
            serde_json::from_str(&report.body).unwrap_or(Value::Null)
        })
        .collect())
}

/// Compares a `[[tests]]` `report` (an object: the only report; an array:
/// one per window) with the reports made, on the keys the test gives.
pub fn compare_reports(want: &Value, got: &[Value]) -> Result<(), String> {
    let wants: Vec<&Value> = match want {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    if wants.len() != got.len() {
        return Err(format!(
            "expected {} report(s), the events make {}\n    actual: {}",
            wants.len(),
            got.len(),
            Value::Array(got.to_vec())
        ));
    }
    for (w, g) in wants.iter().zip(got) {
        let Value::Object(keys) = w else {
            return Err("a report is a JSON object".into());
        };
        for (k, v) in keys {
            if g.get(k) != Some(v) {
                return Err(format!(
                    "report differs at `{k}`\n    expected: {v}\n    actual:   {}",
                    g.get(k).unwrap_or(&Value::Null)
                ));
            }
        }
    }
    Ok(())
}

/// A count, noised and rounded to a whole number no lower than 0.
fn count(exact: u64, scale: Option<f64>) -> Value {
    match scale {
        None => Value::from(exact),
        Some(b) => {
            let noisy = (exact as f64 + laplace(b)).round().max(0.0);
            Value::from(noisy as u64)
        }
    }
}

/// A number as JSON: whole numbers without a fraction.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

/// A draw from the Laplace distribution with scale `b` (inverse CDF of a
/// uniform draw from the operating system's generator).
pub fn laplace(b: f64) -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: no report would be safe with a fixed value, and
        // none must go out without noise. The largest noise is the safe
        // failure: the value becomes useless, never exact.
        return f64::MAX.sqrt();
    }
    // 53 random bits in (0, 1), then centred on 0: (-0.5, 0.5).
    let u = ((u64::from_le_bytes(bytes) >> 11) as f64 + 0.5) / (1u64 << 53) as f64 - 0.5;
    -b * u.signum() * (1.0 - 2.0 * u.abs()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile_str;

    fn rules(extra: &str) -> std::sync::Arc<AggregateRules> {
        let text = format!(
            r#"upstream = "http://127.0.0.1:9/in"
mode = "aggregate"
records = "batch"
[fields]
"batch.userId" = "pseudonymise"
"batch.event" = "keep"
"batch.revenue" = "keep"
"batch.ts" = "keep"
[aggregate]
window = "1h"
time = "ts"
subject = "userId"
k = 2
group_by = ["event"]
{extra}
[aggregate.measures]
events = "count"
users = "distinct_subjects"
revenue = {{ sum = "revenue", min = 0, max = 100 }}
"#
        );
        compile_str(&text, "x.toml", "x")
            .unwrap()
            .aggregate
            .unwrap()
    }

    #[test]
    fn events_follow_records() {
        let r = rules("");
        let p = compile_str(
            "upstream = \"http://127.0.0.1:9\"\nrecords = \"batch\"\n[fields]\na = \"keep\"\n",
            "x.toml",
            "x",
        )
        .unwrap();
        let records = p.records.as_ref();
        let ev = events_of(br#"{"batch":[{"a":1},{"a":2}]}"#, BodyFormat::Json, records).unwrap();
        assert_eq!(ev.len(), 2);
        let ev = events_of(br#"{"a":1}"#, BodyFormat::Json, records).unwrap();
        assert_eq!(ev, vec![serde_json::json!({"a":1})]);
        assert_eq!(
            events_of(br#"{"batch":{"a":1}}"#, BodyFormat::Json, records),
            Err(EventError::RecordsNotArray("batch".into()))
        );
        let ev = events_of(b"{\"a\":1}\n{\"a\":2}\n", BodyFormat::Ndjson, None).unwrap();
        assert_eq!(ev.len(), 2);
        let ev = events_of(b"a=x%20y&b=2", BodyFormat::Form, None).unwrap();
        assert_eq!(ev, vec![serde_json::json!({"a":"x y","b":"2"})]);
        drop(r);
    }

    #[test]
    fn fold_reads_after_fields_and_clamps() {
        let r = rules("");
        let e = serde_json::json!({"userId":"p1","event":"buy","revenue":250,"ts":"2026-12-07T10:42:00Z"});
        let f = fold(&r, &e, 0, 5).unwrap();
        assert_eq!(f.window, 1_796_637_600);
        assert_eq!(f.group, "[\"buy\"]");
        assert_eq!(f.subject, "p1");
        assert_eq!(
            f.values,
            vec![None, Some(100.0), None],
            "measures in name order"
        );
        let no_subject = serde_json::json!({"event":"buy"});
        assert!(matches!(
            fold(&r, &no_subject, 3, 5),
            Err(EventError::MissingSubject { index: 3, .. })
        ));
        // No time: arrival.
        let f = fold(&r, &serde_json::json!({"userId":"p"}), 0, 7300).unwrap();
        assert_eq!(f.window, 7200);
        assert_eq!(f.group, "[null]");
    }

    #[test]
    fn groups_below_k_are_only_counted() {
        let r = rules("");
        let mut b = ReportBuilder::new(&r, "stats", 0, 3600, "");
        let mut big = GroupState::default();
        let mut small = GroupState::default();
        for v in [10.0, 20.0, 30.0] {
            let f = Folded {
                window: 0,
                arrival_window: 0,
                group: "[\"a\"]".into(),
                subject: "s".into(),
                values: vec![None, Some(v), None],
            };
            big.add(&r, &f);
            small.add(&r, &f);
        }
        b.group("[\"a\"]", &big, 2);
        b.group("[\"b\"]", &small, 1);
        let report = b.finish(4, &WindowMeta::default());
        let body: Value = serde_json::from_str(&report.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "recipient": "stats",
                "window": {"start": "1970-01-01T00:00:00Z", "end": "1970-01-01T01:00:00Z"},
                "groups": [{"key": {"event": "a"}, "events": 3, "users": 2, "revenue": 60}],
                "suppressed": {"groups": 1, "events": 3},
                "late": 4
            })
        );
        assert_eq!(report.id, report_id("stats", 0, 3600, ""));
        assert_ne!(report.id, report_id("stats", 3600, 3600, ""));
        assert_ne!(report.id, report_id("stats", 0, 3600, "replica-b"));
    }

    #[test]
    fn noise_is_stated_and_counts_stay_whole() {
        let r = rules("noise = { epsilon = 1.0, max_events_per_subject = 2 }");
        let mut b = ReportBuilder::new(&r, "stats", 0, 3600, "");
        let st = GroupState {
            events: 1000,
            ..GroupState::default()
        };
        b.group("[\"a\"]", &st, 500);
        let body: Value = serde_json::from_str(&b.finish(0, &WindowMeta::default()).body).unwrap();
        assert_eq!(body["noise"]["mechanism"], "laplace");
        assert_eq!(body["noise"]["epsilon"], 1.0);
        let events = body["groups"][0]["events"].as_u64().unwrap();
        // Scale 2 * 3 / 1 = 6: beyond 200 away has a chance of e^-33.
        assert!((800..=1200).contains(&events), "{events}");
    }

    #[test]
    fn laplace_has_the_right_spread() {
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| laplace(2.0)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let mean_abs = draws.iter().map(|d| d.abs()).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.15, "{mean}");
        // E|X| = b.
        assert!((mean_abs - 2.0).abs() < 0.15, "{mean_abs}");
    }
}
