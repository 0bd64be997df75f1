//! Per-event decisions before the engine: consent for the recipient's
//! purpose, Global Privacy Control, and suppression lists.
//!
//! [`decide`] reads a body (or a query string) the way the caller sent
//! it, finds its events ([`events`]), and decides each: withheld (with its
//! reason) or kept. Withheld events are cut out of the bytes; what stays
//! goes to the engine, which rewrites it like any body. Nothing here ever
//! logs or returns a value from an event, only counts.

pub mod events;
pub mod list;
mod pick;
pub mod source;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::policy::consent::{ConsentRules, Missing, Subject, SuppressRules};
use crate::policy::{BodyFormat, CompiledPolicy};
use crate::pseudonym::{ListKey, Normalise};
use events::Layout;
use list::{ListData, entry_of};

/// Why a body's events could not be decided: the whole request is
/// refused (400), nothing is forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// The body is not what its format says.
    #[error("body could not be read as events")]
    Unreadable,
    /// `records` names a member that is not an array.
    #[error("`{0}` is not an array of events")]
    RecordsNotArray(String),
}

/// A loaded list, with the key its entries were made with.
#[derive(Debug)]
pub struct LoadedList {
    /// The key derived from the list's key id.
    pub key: ListKey,
    /// Entries and what they were made with.
    pub data: ListData,
    /// Every subject is looked up, each with its own normalisation (the
    /// lists of `[[tests]]`, which hold each identifier under each);
    /// otherwise only the subjects normalised as the list was.
    pub any_normalise: bool,
    /// `index[b]` is the first entry whose top `bits` bits are `b` or
    /// more: a look-up bisects only its bucket (about 8 entries), so a
    /// list far larger than the cache costs two or three cache misses
    /// instead of one per level of a bisection of the whole array (half a
    /// byte an entry).
    index: Vec<u32>,
    bits: u32,
}

impl LoadedList {
    /// A list ready for look-ups.
    pub fn new(key: ListKey, data: ListData, any_normalise: bool) -> LoadedList {
        let n = data.entries.len();
        // About 8 entries a bucket, at most 2^24 buckets (64 MiB index).
        let bits = if n < 16 { 0 } else { ((n / 8).ilog2()).min(24) };
        let buckets = 1usize << bits;
        let mut index = Vec::with_capacity(buckets + 1);
        let mut at = 0usize;
        for b in 0..buckets {
            while at < n && bucket(data.entries[at], bits) < b {
                at += 1;
            }
            index.push(u32::try_from(at).unwrap_or(u32::MAX));
        }
        index.push(u32::try_from(n).unwrap_or(u32::MAX));
        LoadedList {
            key,
            data,
            any_normalise,
            index,
            bits,
        }
    }

    /// Bytes the bucket index takes.
    pub fn index_bytes(&self) -> usize {
        self.index.capacity() * std::mem::size_of::<u32>()
    }

    /// Whether `entry` is on the list.
    #[inline]
    pub fn contains(&self, entry: u128) -> bool {
        let b = bucket(entry, self.bits);
        let (Some(&lo), Some(&hi)) = (self.index.get(b), self.index.get(b + 1)) else {
            return self.data.contains(entry);
        };
        self.data
            .entries
            .get(lo as usize..hi as usize)
            .is_some_and(|s| s.binary_search(&entry).is_ok())
    }
}

/// The top `bits` bits of an entry.
#[inline]
fn bucket(entry: u128, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (entry >> (128 - bits)) as usize
    }
}

/// The suppression lists in force, by name. A list that is not here is
/// empty (it does not exist yet).
#[derive(Debug, Default, Clone)]
pub struct ListSet {
    pub(crate) lists: HashMap<String, Arc<LoadedList>>,
}

impl ListSet {
    /// A list by name.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedList>> {
        self.lists.get(name)
    }

    /// Takes a list out (it is empty now).
    pub fn remove(&mut self, name: &str) {
        self.lists.remove(name);
    }

    /// Puts a list in (replacing one of the same name).
    pub fn insert(&mut self, name: String, list: Arc<LoadedList>) {
        self.lists.insert(name, list);
    }

    /// Names and entry counts, sorted by name.
    pub fn sizes(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = self
            .lists
            .iter()
            .map(|(k, l)| (k.clone(), l.data.entries.len()))
            .collect();
        v.sort();
        v
    }
}

/// Why events were withheld: counts by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// No consent for the purpose (or none stated, with `missing =
    /// "withhold"`).
    pub consent: u64,
    /// The request carried `Sec-GPC: 1`.
    pub gpc: u64,
    /// On a suppression list: `(list name, count)`, in `lists` order.
    pub lists: Vec<(String, u64)>,
}

impl Withheld {
    /// Every withheld event.
    pub fn total(&self) -> u64 {
        self.consent + self.gpc + self.lists.iter().map(|(_, n)| n).sum::<u64>()
    }

    /// Counts by reason label (`consent`, `gpc`, `list:<name>`), non-zero
    /// ones only.
    pub fn by_reason(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        if self.consent > 0 {
            out.push(("consent".to_string(), self.consent));
        }
        if self.gpc > 0 {
            out.push(("gpc".to_string(), self.gpc));
        }
        for (name, n) in &self.lists {
            if *n > 0 {
                out.push((format!("list:{name}"), *n));
            }
        }
        out
    }

    fn count(&mut self, reason: Reason) {
        match reason {
            Reason::Consent => self.consent += 1,
            Reason::Gpc => self.gpc += 1,
            Reason::List(i) => {
                if let Some((_, n)) = self.lists.get_mut(i) {
                    *n += 1;
                }
            }
        }
    }
}

/// Why one event is withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Consent,
    Gpc,
    /// The index in `[suppress] lists`.
    List(usize),
}

/// What a request's events came to.
#[derive(Debug, Default)]
pub struct Decided {
    /// The body without its withheld events (the caller's bytes
    /// otherwise); `None` when nothing was withheld (the body as it came).
    pub body: Option<Vec<u8>>,
    /// Events found.
    pub events: u64,
    /// Events withheld, by reason.
    pub withheld: Withheld,
}

impl Decided {
    /// Every event was withheld (and there was at least one).
    pub fn all_withheld(&self) -> bool {
        self.events > 0 && self.withheld.total() == self.events
    }
}

/// What the decisions need besides the body.
pub struct Context<'a> {
    /// The recipient's rules.
    pub policy: &'a CompiledPolicy,
    /// The lists in force.
    pub lists: &'a ListSet,
    /// The request carried `Sec-GPC: 1`.
    pub gpc: bool,
}

impl Context<'_> {
    fn new_withheld(&self) -> Withheld {
        Withheld {
            lists: self
                .policy
                .suppress
                .iter()
                .flat_map(|s| s.lists.iter().map(|l| (l.clone(), 0)))
                .collect(),
            ..Withheld::default()
        }
    }

    /// The whole request is withheld by GPC.
    fn gpc_applies(&self) -> bool {
        self.gpc && self.policy.consent.as_ref().is_some_and(|c| c.gpc)
    }
}

/// Whether a `Sec-GPC` header value says "do not sell or share": `1`
/// (Global Privacy Control, section 3.1).
pub fn gpc_header(value: Option<&[u8]>) -> bool {
    value.is_some_and(|v| v.trim_ascii() == b"1")
}

/// Decides the events of a body of `format`.
pub fn decide(cx: &Context<'_>, format: BodyFormat, body: &[u8]) -> Result<Decided, DecideError> {
    let paths = read_paths(cx.policy);
    let mut out = Decided {
        withheld: cx.new_withheld(),
        ..Decided::default()
    };
    let kept = match format {
        BodyFormat::Form => {
            let params = events::form_params(body)?;
            out.events = 1;
            match decide_params(cx, &params) {
                Some(r) => {
                    out.withheld.count(r);
                    Vec::new()
                }
                None => return Ok(out),
            }
        }
        BodyFormat::Json => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(out);
            }
            decide_document(cx, &paths, body, &mut out)?.unwrap_or_default()
        }
        BodyFormat::Ndjson => {
            let mut kept = Vec::with_capacity(body.len());
            let mut changed = false;
            for line in body.split(|b| *b == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    changed |= !line.is_empty();
                    continue;
                }
                match decide_document(cx, &paths, line, &mut out)? {
                    Some(doc) => {
                        changed |= doc.as_slice() != line;
                        kept.extend_from_slice(&doc);
                        kept.push(b'\n');
                    }
                    None => changed = true,
                }
            }
            if !changed {
                return Ok(out);
            }
            kept
        }
    };
    if out.withheld.total() > 0 {
        out.body = Some(kept);
    }
    Ok(out)
}

/// One JSON document: its bytes without the withheld events, or `None`
/// when all of its events are withheld.
fn decide_document(
    cx: &Context<'_>,
    paths: &[&[String]],
    doc: &[u8],
    out: &mut Decided,
) -> Result<Option<Vec<u8>>, DecideError> {
    match events::layout(doc, cx.policy.records.as_ref())? {
        Layout::Whole => {
            let event = pick::pick(doc, paths)?;
            out.events += 1;
            match decide_event(cx, &event) {
                Some(r) => {
                    out.withheld.count(r);
                    Ok(None)
                }
                None => Ok(Some(doc.to_vec())),
            }
        }
        Layout::Array { open, items, close } => {
            if items.is_empty() {
                return Ok(Some(doc.to_vec()));
            }
            let mut kept: Vec<&std::ops::Range<usize>> = Vec::with_capacity(items.len());
            for item in &items {
                let event = pick::pick(&doc[item.clone()], paths)?;
                out.events += 1;
                match decide_event(cx, &event) {
                    Some(r) => out.withheld.count(r),
                    None => kept.push(item),
                }
            }
            if kept.is_empty() {
                return Ok(None);
            }
            if kept.len() == items.len() {
                return Ok(Some(doc.to_vec()));
            }
            let mut b = Vec::with_capacity(doc.len());
            b.extend_from_slice(&doc[..open]);
            for (i, r) in kept.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                b.extend_from_slice(&doc[(*r).clone()]);
            }
            b.extend_from_slice(&doc[close..]);
            Ok(Some(b))
        }
    }
}

/// Decides a request without a body by its query string (one event).
pub fn decide_query(cx: &Context<'_>, query: &[u8]) -> Result<Decided, DecideError> {
    let params = events::form_params(query)?;
    let mut out = Decided {
        withheld: cx.new_withheld(),
        events: 1,
        body: None,
    };
    if let Some(r) = decide_params(cx, &params) {
        out.withheld.count(r);
    }
    Ok(out)
}

/// The paths an event's decision reads: the consent field first (when
/// there is `[consent]`), then each subject of `[suppress]`.
fn read_paths(policy: &CompiledPolicy) -> Vec<&[String]> {
    policy
        .consent
        .iter()
        .map(|c| c.field.keys.as_slice())
        .chain(
            policy
                .suppress
                .iter()
                .flat_map(|s| s.subjects.iter().map(|x| x.field.keys.as_slice())),
        )
        .collect()
}

/// One JSON event, as the values at [`read_paths`]: `Some(reason)` when
/// withheld.
fn decide_event(cx: &Context<'_>, values: &[Option<Value>]) -> Option<Reason> {
    if cx.gpc_applies() {
        return Some(Reason::Gpc);
    }
    let mut at = 0;
    if let Some(c) = &cx.policy.consent {
        at = 1;
        let given = values
            .first()
            .and_then(Option::as_ref)
            .and_then(|v| json_consent(v, &c.purpose));
        if !allowed(c, given) {
            return Some(Reason::Consent);
        }
    }
    let s = cx.policy.suppress.as_ref()?;
    let subjects = &values[at.min(values.len())..];
    suppressed(cx, s, &mut |i, _, found| {
        if let Some(Some(v)) = subjects.get(i) {
            json_ids(v, found);
        }
    })
}

/// One event of parameters (a form body or a query string).
fn decide_params(cx: &Context<'_>, params: &[(String, String)]) -> Option<Reason> {
    if cx.gpc_applies() {
        return Some(Reason::Gpc);
    }
    let named = |field: &crate::policy::aggregate::FieldPath| {
        let name = field.keys.join(".");
        params
            .iter()
            .filter(move |(k, _)| crate::policy::selector::canonical(k) == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(c) = &cx.policy.consent {
        let mut answers = named(&c.field)
            .map(|v| text_consent(v, &c.purpose))
            .peekable();
        // Given twice: every occurrence must grant.
        let given = answers.peek().is_some().then(|| answers.all(|a| a));
        if !allowed(c, given) {
            return Some(Reason::Consent);
        }
    }
    let s = cx.policy.suppress.as_ref()?;
    suppressed(cx, s, &mut |_, subject, found| {
        for v in named(&subject.field) {
            found(v);
        }
    })
}

fn allowed(c: &ConsentRules, given: Option<bool>) -> bool {
    match given {
        Some(g) => g,
        None => c.missing == Missing::Send,
    }
}

/// The consent a JSON value states for `purpose`; `None`: it states none
/// (`null`).
fn json_consent(v: &Value, purpose: &str) -> Option<bool> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => *b,
        Value::String(s) => s.trim().eq_ignore_ascii_case("granted"),
        Value::Array(items) => items.iter().any(|i| {
            i.as_str()
                .is_some_and(|s| s.trim().eq_ignore_ascii_case(purpose))
        }),
        Value::Object(map) => {
            let mut members = map
                .iter()
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(purpose))
                .map(|(_, v)| match v {
                    Value::Bool(b) => *b,
                    Value::String(s) => s.trim().eq_ignore_ascii_case("granted"),
                    _ => false,
                })
                .peekable();
            // Two spellings of the purpose: both must grant.
            members.peek().is_some() && members.all(|g| g)
        }
        Value::Number(_) => false,
    })
}

/// The consent a parameter value states: `granted` or `true`; `denied` or
/// `false`; otherwise a comma-separated list of granted purposes.
fn text_consent(v: &str, purpose: &str) -> bool {
    let v = v.trim();
    if v.eq_ignore_ascii_case("granted") || v.eq_ignore_ascii_case("true") {
        return true;
    }
    v.split(',').any(|p| p.trim().eq_ignore_ascii_case(purpose))
}

/// The identifiers a JSON value holds: a string, a number as written, or
/// the strings and numbers of an array.
fn json_ids(v: &Value, found: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => found(s),
        Value::Number(n) => found(&n.to_string()),
        Value::Array(items) => {
            for i in items {
                match i {
                    Value::String(s) => found(s),
                    Value::Number(n) => found(&n.to_string()),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// Calls its last argument with every identifier a subject (by index in
/// `[suppress] subject`) holds in one event.
type EachId<'a> = &'a mut dyn FnMut(usize, &Subject, &mut dyn FnMut(&str));

/// The first list (in `lists` order) that holds one of the event's
/// subjects, each looked up in the lists made with its normalisation.
fn suppressed(cx: &Context<'_>, s: &SuppressRules, each: EachId<'_>) -> Option<Reason> {
    for (i, name) in s.lists.iter().enumerate() {
        let Some(list) = cx.lists.get(name) else {
            continue;
        };
        if list.data.entries.is_empty() {
            continue;
        }
        let mut hit = false;
        let subjects = s
            .subjects
            .iter()
            .enumerate()
            .filter(|(_, x)| list.any_normalise || x.normalise == list.data.normalise);
        for (j, subject) in subjects {
            let n = subject.normalise;
            each(j, subject, &mut |id| {
                hit |= list.contains(entry_of(&list.key, n, id));
            });
            if hit {
                return Some(Reason::List(i));
            }
        }
    }
    None
}

/// Lists named by `policy` that none of its subjects can be looked up in
/// (made with another normalisation), or whose key is not in the key ring:
/// `(index in lists, message)`.
pub fn unusable_lists(
    policy: &CompiledPolicy,
    lists: &HashMap<String, (String, Normalise)>,
    keys: &crate::pseudonym::KeyRing,
) -> Vec<(usize, String)> {
    let Some(s) = &policy.suppress else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, name) in s.lists.iter().enumerate() {
        let Some((key_id, n)) = lists.get(name) else {
            continue;
        };
        if keys.list_key(key_id).is_none() {
            out.push((
                i,
                format!("list \"{name}\" was made with key id \"{key_id}\", which is not in the key ring"),
            ));
        } else if !s.subjects.iter().any(|x| x.normalise == *n) {
            out.push((
                i,
                format!(
                    "list \"{name}\" holds identifiers normalised as {n}, but no [suppress] subject is normalised so"
                ),
            ));
        }
    }
    out
}

/// A list loaded with the key its entries were made with.
pub fn load_list(
    name: &str,
    data: ListData,
    keys: &crate::pseudonym::KeyRing,
) -> Result<LoadedList, list::ListError> {
    let key = keys
        .list_key(&data.key_id)
        .ok_or_else(|| list::ListError::UnknownKey {
            list: name.to_string(),
            key_id: data.key_id.clone(),
        })?;
    Ok(LoadedList::new(key, data, false))
}

/// Lists holding the `ids` for a rule file's `[[tests]]`: every list of
/// `[suppress] lists`, under the test key, with each subject's
/// normalisation (one list per normalisation would be made in practice;
/// for a test, every list holds them all under each).
pub fn test_lists(policy: &CompiledPolicy, ids: &[String]) -> ListSet {
    let mut set = ListSet::default();
    let Some(s) = &policy.suppress else {
        return set;
    };
    let keys = crate::pseudonym::KeyRing::test_ring();
    let Some(key) = keys.list_key(keys.active_id()) else {
        return set;
    };
    let mut norms: Vec<Normalise> = s.subjects.iter().map(|x| x.normalise).collect();
    norms.dedup();
    for name in &s.lists {
        let n = norms.first().copied().unwrap_or_default();
        let mut data = ListData {
            key_id: key.key_id().to_string(),
            normalise: n,
            entries: Vec::new(),
        };
        let mut all: Vec<u128> = Vec::new();
        for n in &norms {
            all.extend(ids.iter().map(|id| entry_of(&key, *n, id)));
        }
        data.merge(all);
        set.insert(
            name.clone(),
            Arc::new(LoadedList::new(key.clone(), data, true)),
        );
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_index_finds_exactly_the_entries() {
        let keys = crate::pseudonym::KeyRing::test_ring();
        let key = keys.list_key("test").unwrap();
        for n in [0usize, 1, 15, 16, 17, 1000, 5000] {
            let mut s = 0x1234_5678_9abc_def0u64;
            let mut next = || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            };
            let all: Vec<u128> = (0..2 * n)
                .map(|_| (u128::from(next()) << 64) | u128::from(next()))
                .collect();
            let mut data = ListData {
                key_id: "test".into(),
                normalise: Normalise::None,
                entries: Vec::new(),
            };
            data.merge(all[..n].to_vec());
            let list = LoadedList::new(key.clone(), data, false);
            for (i, e) in all.iter().enumerate() {
                assert_eq!(list.contains(*e), i < n, "n = {n}, entry {i}");
            }
            assert!(!list.contains(u128::MAX));
        }
    }
}
