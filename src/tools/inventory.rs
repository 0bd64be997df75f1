//! `scrim inventory`: per recipient, which fields leave and in which form,
//! read from the compiled rules (not from data). Markdown for a record of
//! processing or a privacy review, JSON for tooling.
//!
//! Never shows a secret: the upstream is shown as its host only, and a header
//! `set` from a literal is shown as `(literal)`; `env:NAME` by name.

use serde::Serialize;

use super::{describe, upstream_host};
use crate::policy::{CompiledPolicy, HeaderValueSource, Rule};

/// Version of the JSON shape (bumped on any incompatible change).
pub const JSON_VERSION: u32 = 1;

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
    /// Request headers passed through (lower case).
    pub headers_allowed: Vec<String>,
    /// Headers set on the upstream request.
    pub headers_set: Vec<HeaderSet>,
    /// Content types forwarded untouched (not minimised).
    pub passthrough_content_types: Vec<String>,
    /// What happens to anything not listed: always `"dropped"`.
    pub everything_else: &'static str,
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
    let mut rules: Vec<&Rule> = rules.iter().collect();
    rules.sort_by(|a, b| a.text.cmp(&b.text));
    rules
        .into_iter()
        .map(|r| Entry {
            selector: r.text.clone(),
            action: r.action.name().to_string(),
            detail: describe(&r.action, p),
            leaves: r.action.allows(),
        })
        .collect()
}

/// The inventory of compiled policies (sorted by recipient).
pub fn build(policies: &[std::sync::Arc<CompiledPolicy>]) -> Inventory {
    let mut recipients: Vec<Recipient> = policies
        .iter()
        .map(|p| Recipient {
            recipient: p.recipient.clone(),
            rule_file: p.source.display().to_string(),
            rule_version: p.version.clone(),
            upstream_host: upstream_host(&p.upstream),
            routing_hosts: p.hosts.clone(),
            fields: entries(p.fields.rules(), p),
            query: entries(p.query.rules(), p),
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
            everything_else: "dropped",
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

impl Inventory {
    /// Markdown: a heading per recipient, tables of fields, query parameters
    /// and headers, and the default deny spelt out.
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        s.push_str("# Data leaving through scrim, per recipient\n\n");
        s.push_str(
            "Generated from the compiled rule files by `scrim inventory`. For each \
             recipient: what may leave and in which form. Anything not listed is \
             dropped before the request leaves.\n",
        );
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
            for (title, items, what) in [
                ("Body fields", &r.fields, "body field"),
                ("Query parameters", &r.query, "query parameter"),
            ] {
                let _ = writeln!(s, "\n### {title}\n");
                if items.is_empty() {
                    let _ = writeln!(s, "No {what} leaves.");
                    continue;
                }
                let _ = writeln!(s, "| Selector | Action | In plain words |");
                let _ = writeln!(s, "| --- | --- | --- |");
                for e in items {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} |",
                        cell(&e.selector, true),
                        cell(&e.action, false),
                        cell(&e.detail, false)
                    );
                }
                if what == "body field" && items.iter().any(|e| e.action == "keep") {
                    let _ = writeln!(
                        s,
                        "\n`keep` passes the value verbatim; on an object or array, everything \
                         inside it too, except where a deeper selector says otherwise."
                    );
                }
                let _ = writeln!(s, "\nEverything else is dropped: every other {what}.");
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
        }
        s
    }

    /// Pretty-printed JSON (see docs/cli.md for the shape).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
