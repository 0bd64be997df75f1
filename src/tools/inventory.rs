//! `scrim inventory`: per recipient, which fields leave and in which form,
//! read from the compiled rules (not from data). Markdown for a record of
//! processing or a privacy review, JSON for tooling.
//!
//! Never shows a secret: the upstream is shown as its host only, and a header
//! `set` from a literal is shown as `(literal)`; `env:NAME` by name.

use serde::Serialize;

use super::{describe, upstream_host};
use crate::policy::{Action, CompiledPolicy, FieldRules, HeaderValueSource, Rule, Segment};

/// Version of the JSON shape (bumped on any incompatible change). 2:
/// `everything_else` may be `"leaves"` (see `catch_all`); `catch_all`,
/// `accepted_warnings` and `precedence_notes` added.
pub const JSON_VERSION: u32 = 2;

/// The whole inventory.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// Shape version ([`JSON_VERSION`]).
    pub version: u32,
    /// One entry per recipient, by name.
    pub recipients: Vec<Recipient>,
}

/// One recipient.
#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    /// Recipient name (routing key).
    pub recipient: String,
    /// The rule file.
    pub rule_file: String,
    /// Rule version (hash of the file text).
    pub rule_version: String,
    /// Upstream host (and port): no scheme, path or credentials.
    pub upstream_host: String,
    /// Host names claimed for Host-based routing.
    pub routing_hosts: Vec<String>,
    /// Body field rules, sorted by selector.
    pub fields: Vec<Entry>,
    /// Query parameter rules, sorted by selector.
    pub query: Vec<Entry>,
    /// The URL paths that may leave (`paths`, as written, most specific
    /// first); `None`: any path, screened for personal data.
    pub paths: Option<Vec<String>>,
    /// What is done to each `{name}` placeholder of `paths`.
    pub path_params: Vec<Entry>,
    /// Request headers passed through (lower case).
    pub headers_allowed: Vec<String>,
    /// Headers set on the upstream request.
    pub headers_set: Vec<HeaderSet>,
    /// Content types forwarded untouched (not minimised).
    pub passthrough_content_types: Vec<String>,
    /// What happens to a body field or query parameter that no listed
    /// selector names: `"dropped"`, or `"leaves"` when a catch-all (a
    /// `**` or `*` selector at the root that does not drop) lets it out;
    /// headers not listed are always dropped.
    pub everything_else: &'static str,
    /// The catch-all rules that let unlisted fields or parameters leave.
    pub catch_all: Vec<CatchAll>,
    /// The file's `[[allow]]` entries: lint warnings accepted on review,
    /// with the reason given.
    pub accepted_warnings: Vec<AcceptedWarning>,
    /// Fields a wildcard selector decides although a `**` catch-all also
    /// matches them with another action (the more exact selector wins).
    pub precedence_notes: Vec<PrecedenceNote>,
    /// For an aggregate-only recipient: what its reports hold (no event
    /// leaves; `fields` above only shape what is counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<AggregateReport>,
    /// `[consent]`: what the partner uses the data for, and where each
    /// event states consent to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentView>,
    /// `[suppress]`: the lists whose people's events are withheld.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppress: Option<SuppressView>,
}

/// `[consent]` of a recipient.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentView {
    /// The purpose (lower case).
    pub purpose: String,
    /// The consent field, relative to an event.
    pub field: String,
    /// An event without it: `withhold` or `send`.
    pub missing: &'static str,
    /// `Sec-GPC: 1` withholds the request.
    pub gpc: bool,
}

/// `[suppress]` of a recipient.
#[derive(Debug, Clone, Serialize)]
pub struct SuppressView {
    /// The lists, in file order.
    pub lists: Vec<String>,
    /// The subject fields and their normalisation (`userId`,
    /// `traits.email (email)`).
    pub subjects: Vec<String>,
}

/// What an aggregate recipient's reports hold.
#[derive(Debug, Clone, Serialize)]
pub struct AggregateReport {
    /// Window length (`"1h"`).
    pub window: String,
    /// Lateness (`"5m"`).
    pub lateness: String,
    /// Groups with fewer distinct subjects are suppressed.
    pub k: u32,
    /// The fields a group's key holds (relative to an event).
    pub groups: Vec<String>,
    /// Measure name and what it computes (`"sum of revenue, clamped to 0..10000"`).
    pub measures: Vec<(String, String)>,
    /// `"laplace, epsilon 1, at most 10 events per subject"`, if noise is on.
    pub noise: Option<String>,
}

impl AggregateReport {
    fn of(a: &crate::policy::aggregate::AggregateRules) -> AggregateReport {
        use crate::policy::aggregate::{MeasureKind, show_secs};
        AggregateReport {
            window: show_secs(a.window_secs),
            lateness: show_secs(a.lateness_secs),
            k: a.k,
            groups: a.group_by.iter().map(|g| g.text.clone()).collect(),
            measures: a
                .measures
                .iter()
                .map(|m| {
                    let what = match &m.kind {
                        MeasureKind::Count => "events".to_string(),
                        MeasureKind::DistinctSubjects => "distinct subjects".to_string(),
                        k => {
                            let f = k.field().map_or_else(String::new, |f| {
                                let clamp = match (f.min, f.max) {
                                    (None, None) => String::new(),
                                    (lo, hi) => format!(
                                        ", clamped to {}..{}",
                                        lo.map_or(String::new(), |v| v.to_string()),
                                        hi.map_or(String::new(), |v| v.to_string())
                                    ),
                                };
                                format!("{}{clamp}", f.field.text)
                            });
                            format!("{} of {f}", k.label())
                        }
                    };
                    (m.name.clone(), what)
                })
                .collect(),
            noise: a.noise.map(|n| {
                format!(
                    "laplace, epsilon {}, at most {} events per subject and window",
                    n.epsilon, n.max_events_per_subject
                )
            }),
        }
    }

    fn to_markdown(&self, s: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(s, "\n### Aggregate only\n");
        let _ = writeln!(
            s,
            "No event leaves: one report per window of {} (sent {} after it ends) with counts per group; groups with fewer than k = {} distinct subjects are only counted as suppressed.\n",
            self.window, self.lateness, self.k
        );
        let groups = if self.groups.is_empty() {
            "(one group for all events)".to_string()
        } else {
            self.groups
                .iter()
                .map(|g| format!("`{g}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(s, "- Group key: {groups}");
        for (name, what) in &self.measures {
            let _ = writeln!(s, "- Measure `{name}`: {what}");
        }
        if let Some(n) = &self.noise {
            let _ = writeln!(s, "- Noise: {n}");
        }
    }
}

/// A root-level `**` or `*` rule that does not drop.
#[derive(Debug, Clone, Serialize)]
pub struct CatchAll {
    /// `fields` or `query`.
    pub section: &'static str,
    /// `**` or `*`.
    pub selector: String,
    /// The action name.
    pub action: String,
    /// The action with its options, in plain words.
    pub detail: String,
}

/// One `[[allow]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct AcceptedWarning {
    /// The lint code, `P001`.
    pub lint: String,
    /// The lint's short name, `personal-keep`.
    pub name: String,
    /// The selector it applies to (`query:NAME` for a query rule); `None`
    /// for a file-level lint.
    pub selector: Option<String>,
    /// Why it is accepted.
    pub reason: String,
}

/// A field decided by another selector than a `**` catch-all that also
/// matches it: e.g. `properties.email`, decided by `properties.*` (keep),
/// not by `**.email` (pseudonymise).
#[derive(Debug, Clone, Serialize)]
pub struct PrecedenceNote {
    /// An example path (`*` where any key fits).
    pub path: String,
    /// The selector that decides it.
    pub decided_by: String,
    /// Its action.
    pub action: String,
    /// The `**` selector that does not apply there.
    pub not_by: String,
    /// That selector's action.
    pub not_action: String,
}

/// One selector and what it does.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The selector as written.
    pub selector: String,
    /// The action name.
    pub action: String,
    /// The action with its options, in plain words.
    pub detail: String,
    /// Whether anything of the field leaves (`false` for `drop`).
    pub leaves: bool,
}

/// One header set on the upstream request.
#[derive(Debug, Clone, Serialize)]
pub struct HeaderSet {
    /// Header name (lower case).
    pub name: String,
    /// `env:NAME`, or `(literal)`: a literal value is never shown.
    pub source: String,
}

fn entries(rules: &[Rule], p: &CompiledPolicy) -> Vec<Entry> {
    sorted(rules.iter().map(|r| (r.text.clone(), &r.action)), p)
}

/// Entries for (name, action) pairs, sorted by name.
fn sorted<'a>(items: impl Iterator<Item = (String, &'a Action)>, p: &CompiledPolicy) -> Vec<Entry> {
    let mut out: Vec<Entry> = items
        .map(|(selector, action)| Entry {
            selector,
            action: action.name().to_string(),
            detail: describe(action, p),
            leaves: action.allows(),
        })
        .collect();
    out.sort_by(|a, b| a.selector.cmp(&b.selector));
    out
}

/// Root-level `**` and `*` rules that let something leave.
fn catch_alls(section: &'static str, rules: &[Rule], p: &CompiledPolicy) -> Vec<CatchAll> {
    let mut out: Vec<CatchAll> = rules
        .iter()
        .filter(|r| {
            r.action.allows()
                && matches!(r.selector.segments(), [Segment::GlobStar] | [Segment::Star])
        })
        .map(|r| CatchAll {
            section,
            selector: r.text.clone(),
            action: r.action.name().to_string(),
            detail: describe(&r.action, p),
        })
        .collect();
    out.sort_by(|a, b| a.selector.cmp(&b.selector));
    out
}

/// Stands for "any key" in an example path: no selector names it.
const ANY: &str = "\u{1}any";

/// Finds fields that a `**.key...` catch-all matches but a wildcard selector
/// with another action that lets the field leave decides, because it is
/// more exact from the left (docs/rules.md, Precedence). Example paths are
/// built from each pair of selectors and checked against the automaton.
fn precedence_notes(fields: &FieldRules, p: &CompiledPolicy) -> Vec<PrecedenceNote> {
    let rules = fields.rules();
    let mut out: Vec<PrecedenceNote> = Vec::new();
    for a in rules {
        let segs = a.selector.canonical();
        let segs = segs.segments();
        let Some(last_gs) = segs.iter().rposition(|s| *s == Segment::GlobStar) else {
            continue;
        };
        let tail: Vec<&str> = segs[last_gs + 1..]
            .iter()
            .filter_map(|s| match s {
                Segment::Key(k) => Some(&**k),
                _ => None,
            })
            .collect();
        if tail.is_empty() || tail.len() != segs.len() - last_gs - 1 {
            continue;
        }
        for b in rules {
            let bsel = b.selector.canonical();
            let bsegs = bsel.segments();
            if std::ptr::eq(a, b)
                || !b.action.allows()
                || bsegs.iter().all(|s| matches!(s, Segment::Key(_)))
            {
                continue;
            }
            // B's keys, with `**` as no key or as one key.
            let mut candidates = Vec::new();
            for globstar in [None, Some(ANY)] {
                let base: Vec<&str> = bsegs
                    .iter()
                    .filter_map(|s| match s {
                        Segment::Key(k) => Some(&**k),
                        Segment::Star => Some(ANY),
                        Segment::GlobStar => globstar,
                    })
                    .collect();
                candidates.push([base.as_slice(), tail.as_slice()].concat());
                for k in 1..=tail.len().min(base.len()) {
                    candidates.push([&base[..base.len() - k], tail.as_slice()].concat());
                }
            }
            for path in candidates {
                if !bsel.matches(&path) || !a.selector.canonical().matches(&path) {
                    continue;
                }
                let mut state = fields.root();
                for key in &path {
                    state = fields.step(state, key.as_bytes());
                }
                let Some(d) = fields.info(state).decision else {
                    continue;
                };
                let d = fields.rule(d);
                if !std::ptr::eq(d, b)
                    || (d.action.name() == a.action.name()
                        && describe(&d.action, p) == describe(&a.action, p))
                {
                    continue;
                }
                let shown = path
                    .iter()
                    .map(|k| if *k == ANY { "*" } else { k })
                    .collect::<Vec<_>>()
                    .join(".");
                if out
                    .iter()
                    .any(|n| n.decided_by == b.text && n.not_by == a.text)
                {
                    break;
                }
                out.push(PrecedenceNote {
                    path: shown,
                    decided_by: b.text.clone(),
                    action: b.action.name().to_string(),
                    not_by: a.text.clone(),
                    not_action: a.action.name().to_string(),
                });
                break;
            }
        }
    }
    out.sort_by(|x, y| (&x.path, &x.decided_by).cmp(&(&y.path, &y.decided_by)));
    out
}

/// The inventory of compiled policies (sorted by recipient).
pub fn build(policies: &[std::sync::Arc<CompiledPolicy>]) -> Inventory {
    let mut recipients: Vec<Recipient> = policies
        .iter()
        .map(|p| {
            let mut catch_all = catch_alls("fields", p.fields.rules(), p);
            catch_all.extend(catch_alls("query", p.query.rules(), p));
            Recipient {
                recipient: p.recipient.clone(),
                rule_file: p.source.display().to_string(),
                rule_version: p.version.clone(),
                upstream_host: upstream_host(&p.upstream),
                routing_hosts: p.hosts.clone(),
                fields: entries(p.fields.rules(), p),
                query: entries(p.query.rules(), p),
                paths: p
                    .paths
                    .as_ref()
                    .map(|r| r.templates.iter().map(|t| t.text.clone()).collect()),
                path_params: p.paths.as_ref().map_or_else(Vec::new, |r| {
                    sorted(
                        r.params
                            .iter()
                            .map(|pp| (format!("{{{}}}", pp.name), &pp.action)),
                        p,
                    )
                }),
                headers_allowed: p.headers.allow.clone(),
                headers_set: p
                    .headers
                    .set
                    .iter()
                    .map(|(n, s)| HeaderSet {
                        name: n.clone(),
                        source: match s {
                            HeaderValueSource::Env(v) => format!("env:{v}"),
                            HeaderValueSource::Literal(_) => "(literal)".into(),
                        },
                    })
                    .collect(),
                passthrough_content_types: p.passthrough_content_types.clone(),
                everything_else: if catch_all.is_empty() {
                    "dropped"
                } else {
                    "leaves"
                },
                catch_all,
                accepted_warnings: p
                    .allows
                    .iter()
                    .map(|a| AcceptedWarning {
                        lint: a.code.to_string(),
                        name: crate::policy::lint::find(a.code)
                            .map_or("", |l| l.name)
                            .to_string(),
                        selector: a.selector.clone(),
                        reason: a.reason.clone(),
                    })
                    .collect(),
                precedence_notes: precedence_notes(&p.fields, p),
                aggregate: p.aggregate.as_deref().map(AggregateReport::of),
                consent: p.consent.as_ref().map(|c| ConsentView {
                    purpose: c.purpose.clone(),
                    field: c.field.text.clone(),
                    missing: match c.missing {
                        crate::policy::consent::Missing::Withhold => "withhold",
                        crate::policy::consent::Missing::Send => "send",
                    },
                    gpc: c.gpc,
                }),
                suppress: p.suppress.as_ref().map(|s| SuppressView {
                    lists: s.lists.clone(),
                    subjects: s
                        .subjects
                        .iter()
                        .map(|x| match x.normalise {
                            crate::pseudonym::Normalise::None => x.field.text.clone(),
                            n => format!("{} ({n})", x.field.text),
                        })
                        .collect(),
                }),
            }
        })
        .collect();
    recipients.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    Inventory {
        version: JSON_VERSION,
        recipients,
    }
}

/// A Markdown table cell: no line breaks, `|` escaped, in code style when asked.
fn cell(s: &str, code: bool) -> String {
    let s = s.replace('|', "\\|").replace(['\n', '\r'], " ");
    if code {
        if s.contains('`') {
            format!("`` {s} ``")
        } else {
            format!("`{s}`")
        }
    } else {
        s
    }
}

/// A Markdown table of entries: what each names, its action, in plain words.
fn entry_table(s: &mut String, what: &str, entries: &[Entry]) {
    use std::fmt::Write;
    let _ = writeln!(s, "| {what} | Action | In plain words |");
    let _ = writeln!(s, "| --- | --- | --- |");
    for e in entries {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            cell(&e.selector, true),
            cell(&e.action, false),
            cell(&e.detail, false)
        );
    }
}

impl Inventory {
    /// Markdown: a heading per recipient, tables of fields, query parameters
    /// and headers, and the default deny spelt out.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        s.push_str("# Data leaving through scrim, per recipient\n\n");
        s.push_str(
            "Generated from the compiled rule files by `scrim inventory`. For each \
             recipient: what may leave and in which form.",
        );
        if self.recipients.iter().all(|r| r.catch_all.is_empty()) {
            s.push_str(" Anything not listed is dropped before the request leaves.\n");
        } else {
            s.push_str(
                " What is not listed is dropped before the request leaves unless a \
                 recipient's catch-all (`**` or `*`) lets it leave: see \"Everything \
                 else\" under each section.\n",
            );
        }
        for r in &self.recipients {
            let _ = writeln!(s, "\n## Recipient `{}`\n", r.recipient);
            let _ = writeln!(s, "- Upstream host: `{}`", r.upstream_host);
            if !r.routing_hosts.is_empty() {
                let _ = writeln!(
                    s,
                    "- Routing hosts: {}",
                    r.routing_hosts
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let _ = writeln!(
                s,
                "- Rule file: `{}` (version `{}`)",
                r.rule_file, r.rule_version
            );
            if !r.passthrough_content_types.is_empty() {
                let _ = writeln!(
                    s,
                    "- Forwarded untouched (not minimised): {}",
                    r.passthrough_content_types
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if let Some(c) = &r.consent {
                let _ = writeln!(
                    s,
                    "- Purpose: **{}**; consent per event in `{}` (an event without it is {}{})",
                    c.purpose,
                    c.field,
                    if c.missing == "send" {
                        "sent"
                    } else {
                        "withheld"
                    },
                    if c.gpc {
                        "; `Sec-GPC: 1` withholds the whole request"
                    } else {
                        ""
                    }
                );
            }
            if let Some(x) = &r.suppress {
                let _ = writeln!(
                    s,
                    "- Suppression lists: {} (subject: {})",
                    x.lists
                        .iter()
                        .map(|l| format!("`{l}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    x.subjects
                        .iter()
                        .map(|l| format!("`{l}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if let Some(a) = &r.aggregate {
                a.to_markdown(&mut s);
            }
            let _ = writeln!(s, "\n### URL paths\n");
            match &r.paths {
                None => {
                    let _ = writeln!(
                        s,
                        "Any path leaves as written once no segment holds an email, phone \
                         number, IP address, card number, IBAN or secret token."
                    );
                }
                Some(paths) => {
                    let _ = writeln!(
                        s,
                        "Only these paths leave (any other is refused): {}.",
                        paths
                            .iter()
                            .map(|p| cell(p, true))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    if !r.path_params.is_empty() {
                        s.push('\n');
                        entry_table(&mut s, "Placeholder", &r.path_params);
                    }
                }
            }
            for (title, items, what) in [
                ("Body fields", &r.fields, "body field"),
                ("Query parameters", &r.query, "query parameter"),
            ] {
                let _ = writeln!(s, "\n### {title}\n");
                if items.is_empty() {
                    let _ = writeln!(s, "No {what} leaves.");
                    continue;
                }
                entry_table(&mut s, "Selector", items);
                if what == "body field" && items.iter().any(|e| e.action == "keep") {
                    let _ = writeln!(
                        s,
                        "\n`keep` passes the value verbatim; on an object or array, everything \
                         inside it too, except where a deeper selector says otherwise."
                    );
                }
                if what == "body field"
                    && items.iter().any(|e| e.selector.contains('*'))
                    && items.len() > 1
                {
                    let _ = writeln!(
                        s,
                        "\nWhen several selectors match a field, the one with the more exact \
                         keys, compared from the left, decides (an exact key beats `*`, which \
                         beats `**`): `properties.*` decides `properties.email`, not `**.email`."
                    );
                    for n in &r.precedence_notes {
                        let _ = writeln!(
                            s,
                            "- {} is decided by {} ({}), not by {} ({}).",
                            cell(&n.path, true),
                            cell(&n.decided_by, true),
                            cell(&n.action, false),
                            cell(&n.not_by, true),
                            cell(&n.not_action, false)
                        );
                    }
                }
                let section = if what == "body field" {
                    "fields"
                } else {
                    "query"
                };
                let catch: Vec<&CatchAll> = r
                    .catch_all
                    .iter()
                    .filter(|c| c.section == section)
                    .collect();
                if catch.is_empty() {
                    let _ = writeln!(s, "\nEverything else is dropped: every other {what}.");
                } else {
                    let _ = writeln!(
                        s,
                        "\nEverything else leaves: no other {what} is dropped by default."
                    );
                    for c in catch {
                        let scope = match (section, c.selector.as_str()) {
                            ("fields", "*") => format!("Every other top-level {what}"),
                            ("fields", _) => format!("Every other {what} (at any depth)"),
                            _ => format!("Every other {what}"),
                        };
                        let _ = writeln!(
                            s,
                            "- {scope} leaves under {} as {} ({}).",
                            cell(&c.selector, true),
                            cell(&c.action, false),
                            cell(&c.detail, false)
                        );
                    }
                }
            }
            let _ = writeln!(s, "\n### Headers\n");
            if r.headers_allowed.is_empty() && r.headers_set.is_empty() {
                let _ = writeln!(s, "No request header leaves; none is set.");
            } else {
                let _ = writeln!(s, "| Header | Value |");
                let _ = writeln!(s, "| --- | --- |");
                for h in &r.headers_allowed {
                    let _ = writeln!(s, "| {} | passed from the request |", cell(h, true));
                }
                for h in &r.headers_set {
                    let _ = writeln!(
                        s,
                        "| {} | set by the gateway: {} |",
                        cell(&h.name, true),
                        cell(&h.source, true)
                    );
                }
            }
            let _ = writeln!(
                s,
                "\nEverything else is dropped: every other request header."
            );
            if !r.accepted_warnings.is_empty() {
                let _ = writeln!(s, "\n### Lint warnings accepted on review\n");
                let _ = writeln!(s, "| Lint | Selector | Reason |");
                let _ = writeln!(s, "| --- | --- | --- |");
                for a in &r.accepted_warnings {
                    let _ = writeln!(
                        s,
                        "| {} {} | {} | {} |",
                        cell(&a.lint, false),
                        cell(&a.name, false),
                        a.selector
                            .as_deref()
                            .map_or_else(|| "(whole file)".to_string(), |x| cell(x, true)),
                        cell(&a.reason, false)
                    );
                }
            }
        }
        s
    }

    /// Pretty-printed JSON (see docs/cli.md for the shape).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
