//! `scrim diff`: what changes in what leaves between two versions of one
//! recipient's rules, measured by running both over the same sample records
//! and compared statically for `[query]` and `[headers]`.
//!
//! Per record, each version's per-field decisions (the `--explain` records,
//! including those inside `embedded_json` documents) are reduced to: for each
//! field path, with array indices written `[]` and embedded documents entered
//! with `>` (`ctx>locale`), the action under which the field leaves, or
//! nothing when it does not leave. A field inside a container kept whole
//! leaves as `keep`. Containers themselves (entered objects and arrays,
//! `embedded_json` strings) are not compared; their fields are, except
//! where one version turns a container into a leaf that leaves (`"user" =
//! "redact"`): that path is compared as `(container)` against the leaf's
//! action. The two reductions are compared and the differences counted
//! over the records.
//!
//! Nothing here holds on to a value: only paths, action names, options and
//! counts come out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{describe, options_reveal_more, rank};
use crate::policy::{Action, BodyFormat, CompiledPolicy, HeaderValueSource};
use crate::rewrite::{Engine, Explained, Outcome};

/// How a field's fate changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Absent from the old output, present in the new.
    NewlyLeaves,
    /// Leaves under another action.
    ActionChanged,
    /// Same action, other options.
    OptionsChanged,
    /// Present in the old output, absent from the new.
    NewlyDropped,
}

impl Change {
    /// Heading used in text output.
    pub fn label(self) -> &'static str {
        match self {
            Change::NewlyLeaves => "newly leaves",
            Change::ActionChanged => "action changed",
            Change::OptionsChanged => "options changed",
            Change::NewlyDropped => "newly dropped",
        }
    }
}

/// An action as it applies in one version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Applied {
    /// The action name.
    pub action: String,
    /// Its options in plain words.
    pub detail: String,
}

/// One body field whose fate differs, with the records where it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// Field path (`[]` for any array index, `>` into an embedded document).
    pub path: String,
    /// What changed.
    pub change: Change,
    /// How it left under the old rules (`None`: it did not).
    pub old: Option<Applied>,
    /// How it leaves under the new rules (`None`: it does not).
    pub new: Option<Applied>,
    /// Records in which this change happened.
    pub records: u64,
    /// Whether the new rules reveal more of this field.
    pub reveals_more: bool,
}

/// One query parameter or header whose rule changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaticChange {
    /// `query`, `header allow` or `header set`.
    pub section: &'static str,
    /// Selector (query) or header name.
    pub name: String,
    /// What changed.
    pub change: Change,
    /// The old rule (`None`: there was none, so dropped).
    pub old: Option<Applied>,
    /// The new rule (`None`: there is none, so dropped).
    pub new: Option<Applied>,
    /// Whether the new rules let more through.
    pub reveals_more: bool,
}

/// Records refused by each version (nothing leaves for them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// By the old rules.
    pub old: u64,
    /// By the new rules.
    pub new: u64,
}

/// The result of a diff.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// The recipient.
    pub recipient: String,
    /// Records in the sample.
    pub records: u64,
    /// Records refused by either version.
    pub refused: Refused,
    /// Body field changes, by path.
    pub fields: Vec<FieldChange>,
    /// `[query]` changes.
    pub query: Vec<StaticChange>,
    /// `[headers]` changes.
    pub headers: Vec<StaticChange>,
    /// `[consent]` and `[suppress]` changes: the purpose, the consent
    /// field and its options, the lists.
    pub consent: Vec<StaticChange>,
    /// Whether anything newly leaves or is revealed more (exit code 1).
    pub reveals_more: bool,
}

/// The per-path reduction of one record under one version.
struct Reduced<'p> {
    /// Path -> the most revealing action under which it leaves (`None`: seen,
    /// but does not leave).
    leaves: HashMap<String, Option<&'p Action>>,
    /// Paths of entered containers (`false`) and embedded documents
    /// (`true`: always in the output).
    containers: BTreeMap<String, bool>,
}

impl Reduced<'_> {
    /// Whether the container at `path` is in the output: the root and an
    /// embedded document always are, an entered object or array when
    /// something inside it leaves.
    fn container_present(&self, path: &str) -> bool {
        if path.is_empty() || self.containers.get(path) == Some(&true) {
            return true;
        }
        self.leaves.iter().any(|(p, a)| {
            a.is_some()
                && p.len() > path.len()
                && p.starts_with(path)
                && matches!(p.as_bytes()[path.len()], b'.' | b'[' | b'>')
        })
    }
}

/// How a path leaves under one version, for the comparison.
#[derive(Clone, Copy)]
enum Fate<'p> {
    /// Does not leave.
    Absent,
    /// Leaves under this action (its own, or `keep` from a kept ancestor).
    Leaves(&'p Action),
    /// An object or array in the output, its fields compared on their own.
    Container,
}

/// The action shown for a container that a selector turns into a leaf, or
/// the other way round.
const CONTAINER: &str = "(container)";

static KEEP: Action = Action::Keep;

/// A path and how it left under the old and the new rules.
type Transition = (String, Option<Applied>, Option<Applied>);

/// Runs both versions over records and accumulates the differences.
pub struct Differ<'p> {
    old: &'p CompiledPolicy,
    new: &'p CompiledPolicy,
    old_engine: Engine,
    new_engine: Engine,
    old_rules: HashMap<&'p str, &'p Action>,
    new_rules: HashMap<&'p str, &'p Action>,
    format: BodyFormat,
    records: u64,
    refused: Refused,
    counts: BTreeMap<Transition, (u64, bool)>,
}

impl<'p> Differ<'p> {
    /// A differ for two versions of one recipient's rules. `format` is the
    /// format of each record (NDJSON samples are fed one line at a time as
    /// [`BodyFormat::Json`]).
    pub fn new(
        old: &'p std::sync::Arc<CompiledPolicy>,
        new: &'p std::sync::Arc<CompiledPolicy>,
        format: BodyFormat,
    ) -> Differ<'p> {
        // Pseudonyms are never looked at: the fixed test key will do.
        let ring = crate::pseudonym::KeyRing::test_ring();
        let by_text = |p: &'p CompiledPolicy| {
            p.fields
                .rules()
                .iter()
                .map(|r| (r.text.as_str(), &r.action))
                .collect::<HashMap<_, _>>()
        };
        Differ {
            old,
            new,
            old_engine: Engine::new(old.clone(), &ring),
            new_engine: Engine::new(new.clone(), &ring),
            old_rules: by_text(old),
            new_rules: by_text(new),
            format,
            records: 0,
            refused: Refused::default(),
            counts: BTreeMap::new(),
        }
    }

    /// Compares one record.
    pub fn record(&mut self, body: &[u8]) {
        self.records += 1;
        let old = reduce(&self.old_engine, &self.old_rules, self.format, body);
        let new = reduce(&self.new_engine, &self.new_rules, self.format, body);
        if old.is_none() {
            self.refused.old += 1;
        }
        if new.is_none() {
            self.refused.new += 1;
        }
        let empty = || Reduced {
            leaves: HashMap::new(),
            containers: BTreeMap::new(),
        };
        let old = old.unwrap_or_else(empty);
        let new = new.unwrap_or_else(empty);
        let paths: BTreeSet<&String> = old
            .leaves
            .keys()
            .chain(new.leaves.keys())
            .chain(old.containers.keys())
            .chain(new.containers.keys())
            .collect();
        for path in paths {
            let (oc, nc) = (
                old.containers.contains_key(path),
                new.containers.contains_key(path),
            );
            // A container in both: its fields are compared on their own.
            if oc && nc {
                continue;
            }
            let fate = |r: &Reduced<'p>, container: bool| match state(r, path) {
                Some(a) => Fate::Leaves(a),
                None if container && r.container_present(path) => Fate::Container,
                None => Fate::Absent,
            };
            let (a, b) = (fate(&old, oc), fate(&new, nc));
            // A container in one version and a leaf that does not leave in
            // the other: the container's fields say it all.
            if (oc && !matches!(b, Fate::Leaves(_))) || (nc && !matches!(a, Fate::Leaves(_))) {
                continue;
            }
            // An object or array in the output in one version, kept whole in
            // the other: the same container, its fields compared one by one.
            if matches!(
                (a, b),
                (Fate::Container, Fate::Leaves(Action::Keep))
                    | (Fate::Leaves(Action::Keep), Fate::Container)
            ) {
                continue;
            }
            let same = match (a, b) {
                (Fate::Absent, Fate::Absent) | (Fate::Container, Fate::Container) => true,
                (Fate::Leaves(x), Fate::Leaves(y)) => {
                    x.name() == y.name() && describe(x, self.old) == describe(y, self.new)
                }
                _ => false,
            };
            if same {
                continue;
            }
            // A container becoming a leaf (or back) while both are in the
            // output reveals nothing new by itself: what changes inside it
            // is counted field by field.
            let more = match (a, b) {
                (_, Fate::Absent) | (_, Fate::Container) | (Fate::Container, _) => false,
                (Fate::Absent, Fate::Leaves(_)) => true,
                (Fate::Leaves(x), Fate::Leaves(y)) if x.name() == y.name() => {
                    options_reveal_more(x, y)
                }
                (Fate::Leaves(x), Fate::Leaves(y)) => rank(y.name()) > rank(x.name()),
            };
            let applied = |x: Fate, p: &CompiledPolicy| match x {
                Fate::Absent => None,
                Fate::Leaves(x) => Some(Applied {
                    action: x.name().to_string(),
                    detail: describe(x, p),
                }),
                Fate::Container => Some(Applied {
                    action: CONTAINER.to_string(),
                    detail: "an object or array; its fields are compared on their own".into(),
                }),
            };
            let key = (path.clone(), applied(a, self.old), applied(b, self.new));
            let e = self.counts.entry(key).or_insert((0, more));
            e.0 += 1;
        }
    }

    /// The accumulated differences, with the static `[query]` and `[headers]`
    /// comparison.
    pub fn finish(self) -> Diff {
        let mut fields: Vec<FieldChange> = self
            .counts
            .into_iter()
            .map(|((path, old, new), (records, reveals_more))| {
                let change = match (&old, &new) {
                    (None, _) => Change::NewlyLeaves,
                    (_, None) => Change::NewlyDropped,
                    (Some(a), Some(b)) if a.action == b.action => Change::OptionsChanged,
                    _ => Change::ActionChanged,
                };
                FieldChange {
                    path,
                    change,
                    old,
                    new,
                    records,
                    reveals_more,
                }
            })
            .collect();
        fields.sort_by(|a, b| (a.change, &a.path).cmp(&(b.change, &b.path)));
        let query = compare_query(self.old, self.new);
        let headers = compare_headers(self.old, self.new);
        let consent = compare_consent(self.old, self.new);
        let reveals_more = fields.iter().any(|f| f.reveals_more)
            || consent.iter().any(|c| c.reveals_more)
            || query.iter().any(|q| q.reveals_more)
            || headers.iter().any(|h| h.reveals_more);
        Diff {
            recipient: self.new.recipient.clone(),
            records: self.records,
            refused: self.refused,
            fields,
            query,
            headers,
            consent,
            reveals_more,
        }
    }
}

/// `[consent]` and `[suppress]` compared: a change of purpose, of the
/// consent field or its options, and lists added or removed. Fewer events
/// withheld (no `[consent]` any more, `missing = "send"`, GPC off, a list
/// removed) reveals more.
fn compare_consent(old: &CompiledPolicy, new: &CompiledPolicy) -> Vec<StaticChange> {
    use crate::policy::consent::Missing;
    let mut out = Vec::new();
    let applied = |action: String, detail: String| Some(Applied { action, detail });
    let (a, b) = (old.consent.as_ref(), new.consent.as_ref());
    let show = |c: Option<&crate::policy::consent::ConsentRules>| {
        c.and_then(|c| {
            applied(
                c.purpose.clone(),
                format!(
                    "consent in {}, missing: {}, gpc: {}",
                    c.field.text,
                    if c.missing == Missing::Send {
                        "send"
                    } else {
                        "withhold"
                    },
                    c.gpc
                ),
            )
        })
    };
    let (sa, sb) = (show(a), show(b));
    if sa != sb {
        let fewer_withheld = match (a, b) {
            (Some(_), None) => true,
            (Some(x), Some(y)) => {
                (x.missing == Missing::Withhold && y.missing == Missing::Send)
                    || (x.gpc && !y.gpc)
                    || x.purpose != y.purpose
                    || x.field.keys != y.field.keys
            }
            _ => false,
        };
        let change = match (a, b) {
            (None, Some(_)) => Change::NewlyDropped,
            (Some(_), None) => Change::NewlyLeaves,
            (Some(x), Some(y)) if x.purpose != y.purpose => Change::ActionChanged,
            _ => Change::OptionsChanged,
        };
        out.push(StaticChange {
            section: "consent",
            name: "purpose".into(),
            change,
            old: sa,
            new: sb,
            reveals_more: fewer_withheld,
        });
    }
    let lists = |p: &CompiledPolicy| {
        p.suppress
            .iter()
            .flat_map(|s| s.lists.iter().cloned())
            .collect::<BTreeSet<String>>()
    };
    let (la, lb) = (lists(old), lists(new));
    let on = || {
        applied(
            "suppress".into(),
            "events of people on the list are withheld".into(),
        )
    };
    for name in la.union(&lb) {
        let (x, y) = (la.contains(name), lb.contains(name));
        if x == y {
            continue;
        }
        out.push(StaticChange {
            section: "suppress list",
            name: name.clone(),
            // A list added withholds more (its people's events no longer
            // leave); a list removed lets them leave again.
            change: if y {
                Change::NewlyDropped
            } else {
                Change::NewlyLeaves
            },
            old: if x { on() } else { None },
            new: if y { on() } else { None },
            reveals_more: x,
        });
    }
    out
}

/// Normalises array indices: `items[3].sku` is `items[].sku`.
pub fn normalise_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' if in_index => {
                in_index = false;
                out.push(']');
            }
            c if in_index && c.is_ascii_digit() => {}
            c => out.push(c),
        }
    }
    out
}

fn reduce<'p>(
    engine: &Engine,
    rules: &HashMap<&'p str, &'p Action>,
    format: BodyFormat,
    body: &[u8],
) -> Option<Reduced<'p>> {
    let mut rw = engine.body_rewriter(format);
    rw.explain();
    let mut sink = Vec::new();
    rw.feed(body, &mut sink).ok()?;
    rw.finish(&mut sink).ok()?;
    drop(sink);
    let mut r = Reduced {
        leaves: HashMap::new(),
        containers: BTreeMap::new(),
    };
    for e in rw.explained() {
        let path = normalise_path(&e.path);
        if is_container(e) {
            *r.containers.entry(path).or_default() |= e.action == "embedded_json";
            continue;
        }
        let action = match e.outcome {
            Outcome::Kept | Outcome::Transformed => Some(action_of(e, rules)),
            _ => None,
        };
        let slot = r.leaves.entry(path).or_insert(None);
        if let Some(a) = action
            && slot.is_none_or(|s| rank(a.name()) > rank(s.name()))
        {
            *slot = Some(a);
        }
    }
    Some(r)
}

fn is_container(e: &Explained) -> bool {
    e.outcome == Outcome::Entered
        || (e.action == "embedded_json" && e.outcome == Outcome::Transformed)
}

fn action_of<'p>(e: &Explained, rules: &HashMap<&'p str, &'p Action>) -> &'p Action {
    match &e.selector {
        Some(s) => rules.get(s.as_str()).copied().unwrap_or(&KEEP),
        None => &KEEP,
    }
}

/// How `path` leaves in a reduction: its own decision, or `keep` when an
/// ancestor was kept whole.
fn state<'p>(r: &Reduced<'p>, path: &str) -> Option<&'p Action> {
    if let Some(Some(a)) = r.leaves.get(path) {
        return Some(a);
    }
    // Ancestors: every prefix ending before a `.`, `[` or `>`, and the root.
    let mut cuts: Vec<usize> = path
        .char_indices()
        .filter(|(_, c)| matches!(c, '.' | '[' | '>'))
        .map(|(i, _)| i)
        .collect();
    cuts.insert(0, 0);
    for cut in cuts {
        if let Some(Some(a)) = r.leaves.get(&path[..cut])
            && matches!(a, Action::Keep)
        {
            return Some(a);
        }
    }
    None
}

fn compare_query(old: &CompiledPolicy, new: &CompiledPolicy) -> Vec<StaticChange> {
    let map = |p: &CompiledPolicy| -> BTreeMap<String, Applied> {
        p.query
            .rules()
            .iter()
            .filter(|r| r.action.allows())
            .map(|r| {
                (
                    r.text.clone(),
                    Applied {
                        action: r.action.name().to_string(),
                        detail: describe(&r.action, p),
                    },
                )
            })
            .collect()
    };
    let actions = |p: &CompiledPolicy| -> HashMap<String, Action> {
        p.query
            .rules()
            .iter()
            .map(|r| (r.text.clone(), r.action.clone()))
            .collect()
    };
    let (a, b) = (map(old), map(new));
    let (aa, ba) = (actions(old), actions(new));
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let (x, y) = (a.get(name), b.get(name));
        let (change, more) = match (x, y) {
            (None, Some(_)) => (Change::NewlyLeaves, true),
            (Some(_), None) => (Change::NewlyDropped, false),
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) if x.action == y.action => (
                Change::OptionsChanged,
                options_reveal_more(&aa[name], &ba[name]),
            ),
            (Some(x), Some(y)) => (Change::ActionChanged, rank(&y.action) > rank(&x.action)),
            (None, None) => continue,
        };
        out.push(StaticChange {
            section: "query",
            name: name.clone(),
            change,
            old: x.cloned(),
            new: y.cloned(),
            reveals_more: more,
        });
    }
    out
}

/// Header `set` sources by name only: `env:NAME`, or `(literal)` (a literal
/// may be a credential and is never shown; a changed literal shows as an
/// options change).
fn source_label(s: &HeaderValueSource) -> String {
    match s {
        HeaderValueSource::Env(n) => format!("env:{n}"),
        HeaderValueSource::Literal(_) => "(literal)".into(),
    }
}

fn compare_headers(old: &CompiledPolicy, new: &CompiledPolicy) -> Vec<StaticChange> {
    let mut out = Vec::new();
    let allowed = |p: &CompiledPolicy| p.headers.allow.iter().cloned().collect::<BTreeSet<_>>();
    let (a, b) = (allowed(old), allowed(new));
    let passed = || {
        Some(Applied {
            action: "keep".into(),
            detail: "passed from the request".into(),
        })
    };
    for name in a.union(&b) {
        let (x, y) = (a.contains(name), b.contains(name));
        if x == y {
            continue;
        }
        out.push(StaticChange {
            section: "header allow",
            name: name.clone(),
            change: if y {
                Change::NewlyLeaves
            } else {
                Change::NewlyDropped
            },
            old: if x { passed() } else { None },
            new: if y { passed() } else { None },
            reveals_more: y,
        });
    }
    let set = |p: &CompiledPolicy| {
        p.headers
            .set
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let (a, b) = (set(old), set(new));
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let applied = |s: &HeaderValueSource| Applied {
        action: "set".into(),
        detail: source_label(s),
    };
    for name in names {
        let (x, y) = (a.get(name), b.get(name));
        let change = match (x, y) {
            (None, Some(_)) => Change::NewlyLeaves,
            (Some(_), None) => Change::NewlyDropped,
            (Some(x), Some(y)) if x == y => continue,
            _ => Change::OptionsChanged,
        };
        let mut new = y.map(applied);
        if let (Some(HeaderValueSource::Literal(_)), Some(HeaderValueSource::Literal(_)), Some(n)) =
            (x, y, new.as_mut())
        {
            // Both literal: say that the value changed, without either value.
            n.detail = "(literal, changed)".into();
        }
        out.push(StaticChange {
            section: "header set",
            name: name.clone(),
            change,
            old: x.map(applied),
            new,
            reveals_more: change == Change::NewlyLeaves,
        });
    }
    out
}

/// Widest path (or query parameter, header) column in text output.
const PATH_COLUMN: usize = 40;
/// Widest change column in text output.
const WHAT_COLUMN: usize = 72;
/// Text lines are wrapped before this column where words allow.
const WRAP_AT: usize = 100;

/// Splits `text` at spaces into lines of at most `width` characters (a
/// longer word stays whole on its own line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

impl Diff {
    /// Text for humans: grouped by section and kind of change, aligned.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "recipient {}: {} record(s) compared",
            self.recipient, self.records
        );
        if self.refused.old > 0 || self.refused.new > 0 {
            let _ = writeln!(
                s,
                "refused records: {} by the old rules, {} by the new",
                self.refused.old, self.refused.new
            );
        }
        let fmt_applied = |a: &Option<Applied>| match a {
            Some(a) => a.action.clone(),
            None => "(absent)".to_string(),
        };
        let what = |c: Change, old: &Option<Applied>, new: &Option<Applied>| match c {
            Change::NewlyLeaves => fmt_applied(new),
            Change::NewlyDropped => format!("was {}", fmt_applied(old)),
            Change::ActionChanged => format!("{} -> {}", fmt_applied(old), fmt_applied(new)),
            Change::OptionsChanged => format!(
                "{}: {} -> {}",
                fmt_applied(new),
                old.as_ref().map_or("", |a| &a.detail),
                new.as_ref().map_or("", |a| &a.detail)
            ),
        };
        s.push_str("\nBody fields\n");
        if self.fields.is_empty() {
            s.push_str("  no change\n");
        }
        let rows: Vec<(Change, String, String, String, bool)> = self
            .fields
            .iter()
            .map(|f| {
                (
                    f.change,
                    f.path.clone(),
                    what(f.change, &f.old, &f.new),
                    format!("{} record(s)", f.records),
                    f.reveals_more,
                )
            })
            .collect();
        // Columns are as wide as their widest cell that fits; a row with a
        // longer path or change is written over several lines instead of
        // widening every row.
        let fits = |r: &(Change, String, String, String, bool)| {
            r.1.chars().count() <= PATH_COLUMN && r.2.chars().count() <= WHAT_COLUMN
        };
        let pw = rows
            .iter()
            .filter(|r| fits(r))
            .map(|r| r.1.chars().count())
            .max()
            .unwrap_or(0);
        let ww = rows
            .iter()
            .filter(|r| fits(r))
            .map(|r| r.2.chars().count())
            .max()
            .unwrap_or(0);
        let mut last = None;
        for r in &rows {
            let (change, path, w, count, more) = r;
            if last != Some(*change) {
                let _ = writeln!(s, "  {}:", change.label());
                last = Some(*change);
            }
            let more = if *more { "  (reveals more)" } else { "" };
            if fits(r) {
                let _ = writeln!(s, "    {path:<pw$}  {w:<ww$}  {count}{more}");
            } else {
                let _ = writeln!(s, "    {path}  {count}{more}");
                for line in wrap(w, WRAP_AT - 8) {
                    let _ = writeln!(s, "        {line}");
                }
            }
        }
        for (title, items) in [
            ("Query parameters", &self.query),
            ("Headers", &self.headers),
            ("Consent and suppression", &self.consent),
        ] {
            // Shown only when it changed: most rule files have neither.
            if title == "Consent and suppression" && items.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n{title}");
            if items.is_empty() {
                s.push_str("  no change\n");
                continue;
            }
            let label = |i: &StaticChange| {
                if title != "Query parameters" {
                    format!("{} {}", i.section, i.name)
                } else {
                    i.name.clone()
                }
            };
            let nw = items
                .iter()
                .map(|i| label(i).chars().count())
                .filter(|n| *n <= PATH_COLUMN)
                .max()
                .unwrap_or(0);
            for i in items {
                let label = label(i);
                let w = what(i.change, &i.old, &i.new);
                let more = if i.reveals_more {
                    "  (reveals more)"
                } else {
                    ""
                };
                let head = format!("{}:", i.change.label());
                if label.chars().count() <= nw && w.chars().count() <= WHAT_COLUMN {
                    let _ = writeln!(s, "  {head:<16} {label:<nw$}  {w}{more}");
                } else {
                    let _ = writeln!(s, "  {head:<16} {label}{more}");
                    for line in wrap(&w, WRAP_AT - 8) {
                        let _ = writeln!(s, "        {line}");
                    }
                }
            }
        }
        let _ = writeln!(
            s,
            "\n{}",
            if self.reveals_more {
                "result: the new rules let more leave (exit 1)"
            } else {
                "result: nothing newly leaves (exit 0)"
            }
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn policy(fields: &str) -> Arc<CompiledPolicy> {
        let text =
            format!("recipient = \"r\"\nupstream = \"https://r.example\"\n[fields]\n{fields}");
        Arc::new(crate::policy::compile_str(&text, "r.toml", "r").unwrap())
    }

    #[test]
    fn a_change_of_purpose_or_lists_is_reported_and_fewer_withheld_reveals_more() {
        let with = |purpose: &str, lists: &str| {
            policy(&format!(
                "\"event\" = \"keep\"\n[consent]\npurpose = \"{purpose}\"\nfield = \"consent\"\n[suppress]\nsubject = [\"userId\"]\nlists = [{lists}]\n"
            ))
        };
        let (a, b) = (
            with("advertising", "\"optout\", \"erasure\""),
            with("analytics", "\"optout\""),
        );
        let d = Differ::new(&a, &b, BodyFormat::Json).finish();
        let names: Vec<(&str, &str)> = d
            .consent
            .iter()
            .map(|c| (c.section, c.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [("consent", "purpose"), ("suppress list", "erasure")]
        );
        assert!(d.consent.iter().all(|c| c.reveals_more));
        assert!(d.reveals_more);
        assert!(
            d.to_text().contains("advertising -> analytics"),
            "{}",
            d.to_text()
        );
        // Adding a list withholds more: reported, not revealing.
        let d = Differ::new(&b, &a, BodyFormat::Json).finish();
        let list = d.consent.iter().find(|c| c.name == "erasure").unwrap();
        assert!(!list.reveals_more);
        // No [consent] and no [suppress]: nothing to say, no section.
        let p = policy("\"event\" = \"keep\"\n");
        let d = Differ::new(&p, &p, BodyFormat::Json).finish();
        assert!(d.consent.is_empty());
        assert!(!d.to_text().contains("Consent and suppression"));
    }

    fn diff(old: &str, new: &str, records: &[&str]) -> Diff {
        let (old, new) = (policy(old), policy(new));
        let mut d = Differ::new(&old, &new, BodyFormat::Json);
        for r in records {
            d.record(r.as_bytes());
        }
        d.finish()
    }

    fn find<'a>(d: &'a Diff, path: &str) -> &'a FieldChange {
        d.fields
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("{path} not in {:?}", d.fields))
    }

    const USER: &str = r#"{"user":{"id":"u1","name":"N","email":"e@x.example"}}"#;

    #[test]
    fn keeping_a_container_whole_reveals_what_a_deeper_drop_held_back() {
        let d = diff(
            "\"user\" = \"keep\"\n\"user.email\" = \"drop\"\n",
            "\"user\" = \"keep\"\n",
            &[USER],
        );
        assert!(d.reveals_more);
        let e = find(&d, "user.email");
        assert_eq!(e.change, Change::NewlyLeaves);
        assert_eq!(e.new.as_ref().unwrap().action, "keep");
        assert_eq!(d.fields.len(), 1, "{:?}", d.fields);
    }

    #[test]
    fn narrowing_a_kept_container_only_drops() {
        let d = diff(
            "\"user\" = \"keep\"\n",
            "\"user.id\" = \"pseudonymise\"\n",
            &[USER],
        );
        assert!(!d.reveals_more, "{:?}", d.fields);
        assert_eq!(find(&d, "user.id").change, Change::ActionChanged);
        assert_eq!(find(&d, "user.name").change, Change::NewlyDropped);
        assert_eq!(find(&d, "user.email").change, Change::NewlyDropped);
    }

    #[test]
    fn same_rank_is_not_more_and_counts_are_per_record() {
        let d = diff(
            "\"a\" = \"hash_sha256\"\n",
            "\"a\" = \"pseudonymise\"\n",
            &[r#"{"a":"x"}"#, r#"{"a":"y"}"#, r#"{"b":1}"#],
        );
        let a = find(&d, "a");
        assert_eq!(a.change, Change::ActionChanged);
        assert_eq!(a.records, 2);
        assert!(!d.reveals_more);
    }

    #[test]
    fn array_indices_are_normalised() {
        assert_eq!(normalise_path("items[12].tags[0]"), "items[].tags[]");
        assert_eq!(normalise_path("ctx>list[3].x"), "ctx>list[].x");
        let d = diff(
            "\"items.sku\" = \"keep\"\n",
            "\"items.sku\" = \"keep\"\n\"items.price\" = \"keep\"\n",
            &[r#"{"items":[{"sku":"a","price":1},{"sku":"b","price":2}]}"#],
        );
        assert_eq!(d.fields.len(), 1);
        assert_eq!(find(&d, "items[].price").records, 1);
    }

    #[test]
    fn a_container_that_becomes_a_leaf_is_compared() {
        let (old, new) = (
            "\"user.id\" = \"keep\"\n",
            "\"user.id\" = \"keep\"\n\"user\" = \"redact\"\n",
        );
        // `user` was in the output (with its id), now as "[redacted]".
        let d = diff(old, new, &[r#"{"user":{"id":"u1"}}"#]);
        let u = find(&d, "user");
        assert_eq!(u.change, Change::ActionChanged);
        assert_eq!(u.old.as_ref().unwrap().action, CONTAINER);
        assert_eq!(u.new.as_ref().unwrap().action, "redact");
        assert_eq!(find(&d, "user.id").change, Change::NewlyDropped);
        assert!(!d.reveals_more, "{:?}", d.fields);
        // `user` was not in the output at all (nothing inside it left).
        let d = diff(old, new, &[r#"{"user":{"name":"x"}}"#]);
        let u = find(&d, "user");
        assert_eq!(u.change, Change::NewlyLeaves);
        assert!(u.reveals_more && d.reveals_more);
        // And back: a leaf that becomes a container.
        let d = diff(new, old, &[r#"{"user":{"name":"x"}}"#]);
        assert_eq!(find(&d, "user").change, Change::NewlyDropped);
        assert!(!d.reveals_more);
        // A leaf side that does not leave says nothing about the container.
        let d = diff(
            "\"user.id\" = \"keep\"\n",
            "\"user\" = \"drop\"\n",
            &[r#"{"user":{"id":"u1"}}"#],
        );
        assert_eq!(d.fields.len(), 1, "{:?}", d.fields);
    }

    #[test]
    fn text_lines_stay_short_when_one_change_is_long() {
        let d = diff(
            "\"a\" = \"keep\"\n\"b\" = \"keep\"\n\"note\" = { action = \"scan\", detect = [\"email\", \"phone\", \"iban\", \"card\", \"ip\"], replace = \"redact\" }\n",
            "\"b\" = \"pseudonymise\"\n\"note\" = { action = \"scan\", detect = [\"email\"], replace = \"redact\", with = \"[a much longer replacement text]\" }\n",
            &[r#"{"a":1,"b":"x","note":"hi"}"#],
        );
        let text = d.to_text();
        assert!(text.contains("scan"), "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= WRAP_AT, "{}: {line}", line.len());
        }
        // Short rows are not padded to the long one.
        let a = text
            .lines()
            .find(|l| l.trim_start().starts_with("a "))
            .unwrap();
        assert!(a.len() < 60, "{a:?}");
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("", 5), [""]);
    }

    #[test]
    fn a_refused_record_is_one_where_nothing_leaves() {
        let d = diff(
            "\"a\" = \"keep\"\n",
            "\"a\" = \"keep\"\n",
            &[r#"{"a":1,"a":2}"#],
        );
        assert_eq!(d.refused, Refused { old: 1, new: 1 });
        assert!(d.fields.is_empty());
    }
}
