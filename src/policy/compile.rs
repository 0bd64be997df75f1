//! From [`RawRuleFile`] to [`CompiledPolicy`]: every check with its location.

use std::ops::Range;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::action::{
    ACTION_NAMES, Action, ENCODING_NAMES, SCAN_REPLACE_NAMES, ScanReplace, options_of,
};
use super::dfa::{Dfa, DfaError};
use super::raw::{RawRuleFile, RawTest};
use super::selector::{Segment, Selector};
use super::{
    BodyFormat, CompiledPolicy, DEFAULT_MAX_DEPTH, FieldRules, HeaderRules, HeaderValueSource,
    PolicyError, Rule, RuleTest,
};
use crate::pseudonym::Normalise;
use crate::rewrite::transform::{DetectorSet, Scanner, TimeUnit};

/// Locates byte offsets in the file text.
struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    fn err(&self, at: usize, message: impl Into<String>) -> PolicyError {
        let (line, col) = line_col(self.text, at);
        PolicyError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
        }
    }

    /// The offset of `needle` inside `span` (an option name inside an inline
    /// table), or the span start when it cannot be found.
    fn find_in(&self, span: &Range<usize>, needle: &str) -> usize {
        self.text
            .get(span.clone())
            .and_then(|s| s.find(needle))
            .map_or(span.start, |i| span.start + i)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The nearest candidate to a misspelt name, if one is close enough.
pub(crate) fn suggest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

fn did_you_mean(name: &str, candidates: &[&str]) -> String {
    match suggest(name, candidates) {
        Some(s) => format!(", did you mean \"{s}\"?"),
        None => format!(" (expected one of: {})", candidates.join(", ")),
    }
}

/// Compiles rule-file text. `file` names it in errors; `stem` is the default
/// recipient name.
pub fn compile_str(text: &str, file: &str, stem: &str) -> Result<CompiledPolicy, PolicyError> {
    let src = Source { text, file };
    let raw: RawRuleFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let msg = e.message().trim_end().replace('\n', " ");
        src.err(at, msg)
    })?;

    let recipient = match &raw.recipient {
        Some(r) => {
            check_name(r.get_ref()).map_err(|m| src.err(r.span().start, m))?;
            r.get_ref().clone()
        }
        None => {
            check_name(stem).map_err(|m| {
                src.err(
                    0,
                    format!("{m} (the recipient name defaults to the file name; set `recipient`)"),
                )
            })?;
            stem.to_string()
        }
    };

    let upstream = raw.upstream.get_ref().trim_end_matches('/').to_string();
    check_upstream(&upstream, raw.allow_plain_http)
        .map_err(|m| src.err(raw.upstream.span().start, m))?;

    let mut hosts = Vec::new();
    for h in &raw.hosts {
        let host = h.get_ref().to_ascii_lowercase();
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':')
        {
            return Err(src.err(h.span().start, "invalid host name in `hosts`"));
        }
        hosts.push(host);
    }

    let mut passthrough = Vec::new();
    for t in &raw.passthrough_content_types {
        let ct = t.get_ref().trim().to_ascii_lowercase();
        if !ct.contains('/') || ct.contains(';') || ct.contains(char::is_whitespace) {
            return Err(src.err(
                t.span().start,
                "content type must be `type/subtype` without parameters",
            ));
        }
        if is_rewritable_type(&ct) {
            return Err(src.err(
                t.span().start,
                format!("\"{ct}\" is always rewritten and cannot pass through untouched"),
            ));
        }
        passthrough.push(ct);
    }

    let rate_limit = match &raw.rate_limit {
        None => None,
        Some(r) => {
            let raw_rl = r.get_ref();
            let per_second = std::num::NonZeroU32::new(raw_rl.per_second);
            let burst = std::num::NonZeroU32::new(raw_rl.burst.unwrap_or(raw_rl.per_second));
            match (per_second, burst) {
                (Some(per_second), Some(burst)) => Some(super::RateLimit { per_second, burst }),
                _ => {
                    return Err(src.err(
                        r.span().start,
                        "rate_limit: per_second and burst must be greater than zero",
                    ));
                }
            }
        }
    };
    let ca_file = raw
        .ca_file
        .as_ref()
        .map(|c| std::path::PathBuf::from(c.get_ref()));

    let max_depth = match &raw.max_depth {
        None => DEFAULT_MAX_DEPTH,
        Some(d) => {
            let v = *d.get_ref();
            if !(1..=1024).contains(&v) {
                return Err(src.err(d.span().start, "max_depth must be between 1 and 1024"));
            }
            v as usize
        }
    };

    let default_scope = match &raw.scope {
        Some(s) if s.get_ref().is_empty() => {
            return Err(src.err(s.span().start, "scope must not be empty"));
        }
        Some(s) => s.get_ref().clone(),
        None => recipient.clone(),
    };
    let mut scopes = vec![default_scope];

    // Body fields: flatten nested tables into dotted selectors.
    let mut field_entries = Vec::new();
    for (k, v) in &raw.fields {
        let sel = Selector::parse(k.get_ref()).map_err(|e| {
            src.err(
                k.span().start,
                format!("invalid selector \"{}\": {e}", k.get_ref()),
            )
        })?;
        flatten(
            &src,
            sel,
            k.span(),
            v.get_ref(),
            v.span(),
            &mut field_entries,
        )?;
    }
    let mut rules = Vec::new();
    for (sel, key_span, value, value_span) in field_entries {
        let action = parse_action(&src, &value, &value_span, &mut scopes)?;
        rules.push(Rule {
            text: sel.to_string(),
            selector: sel,
            action,
            line: line_col(text, key_span.start).0,
        });
    }
    let fields = build_rules(&src, rules)?;

    let mut qrules = Vec::new();
    for (k, v) in &raw.query {
        let name = k.get_ref();
        if name.is_empty() {
            return Err(src.err(k.span().start, "empty query parameter name"));
        }
        let seg = if name == "*" {
            Segment::Star
        } else {
            Segment::Key(name.as_str().into())
        };
        let action = parse_action(&src, v.get_ref(), &v.span(), &mut scopes)?;
        if matches!(action, Action::EmbeddedJson { .. }) {
            return Err(src.err(
                v.span().start,
                "embedded_json is not available for query parameters",
            ));
        }
        qrules.push(Rule {
            text: name.clone(),
            selector: Selector::from_segments(vec![seg]),
            action,
            line: line_col(text, k.span().start).0,
        });
    }
    let query = build_rules(&src, qrules)?;

    let headers = compile_headers(&src, &raw)?;
    let tests = raw
        .tests
        .iter()
        .map(|t| compile_test(&src, t))
        .collect::<Result<Vec<_>, _>>()?;

    let digest = Sha256::digest(text.as_bytes());
    let version: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();

    Ok(CompiledPolicy {
        recipient,
        source: file.into(),
        upstream,
        hosts,
        allow_plain_http: raw.allow_plain_http,
        passthrough_content_types: passthrough,
        ca_file,
        rate_limit,
        scopes,
        max_depth,
        fields,
        query,
        headers,
        tests,
        version,
    })
}

/// Content types that scrim always rewrites.
pub fn is_rewritable_type(ct: &str) -> bool {
    matches!(
        ct,
        "application/json"
            | "application/x-ndjson"
            | "application/jsonl"
            | "application/x-www-form-urlencoded"
    )
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "recipient name \"{}\" must be 1-64 characters of [A-Za-z0-9_-] (it is a URL path segment)",
            name.escape_debug()
        ));
    }
    Ok(())
}

fn check_upstream(url: &str, allow_plain_http: bool) -> Result<(), String> {
    if url == "capture:" {
        return Ok(());
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        "upstream must be an absolute URL (https://host[:port][/path]) or \"capture:\"".to_string()
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(
            "upstream needs a host and must not carry credentials (use [headers] set)".into(),
        );
    }
    if rest.contains(['?', '#']) {
        return Err("upstream must not have a query or fragment".into());
    }
    let host = if let Some(h) = authority.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    match scheme {
        "https" => Ok(()),
        "http" => {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback || allow_plain_http {
                Ok(())
            } else {
                Err("plain http:// upstream is only allowed for loopback; use https:// or set allow_plain_http = true for an in-cluster partner".into())
            }
        }
        other => Err(format!(
            "unsupported upstream scheme \"{}\" (use https://)",
            other.escape_debug()
        )),
    }
}

type Entry = (Selector, Range<usize>, toml::Value, Range<usize>);

/// A table without `action` is a nested group of selectors
/// (`[fields.context] ip = "keep"` is `"context.ip" = "keep"`).
fn flatten(
    src: &Source<'_>,
    prefix: Selector,
    key_span: Range<usize>,
    value: &toml::Value,
    value_span: Range<usize>,
    out: &mut Vec<Entry>,
) -> Result<(), PolicyError> {
    if let toml::Value::Table(t) = value
        && !t.contains_key("action")
    {
        if t.is_empty() {
            return Err(src.err(value_span.start, "empty table: expected an action"));
        }
        for (k, v) in t {
            let mut segs = prefix.segments().to_vec();
            let sub = Selector::parse(k).map_err(|e| {
                src.err(
                    src.find_in(&value_span, k),
                    format!("invalid selector \"{k}\": {e}"),
                )
            })?;
            segs.extend(sub.segments().iter().cloned());
            let at = src.find_in(&value_span, k);
            flatten(
                src,
                Selector::from_segments(segs),
                at..at,
                v,
                value_span.clone(),
                out,
            )?;
        }
        return Ok(());
    }
    out.push((prefix, key_span, value.clone(), value_span));
    Ok(())
}

fn build_rules(src: &Source<'_>, rules: Vec<Rule>) -> Result<FieldRules, PolicyError> {
    // The same selector written twice (e.g. `a.b` and `a."b"`).
    for (i, a) in rules.iter().enumerate() {
        if let Some(b) = rules[..i]
            .iter()
            .find(|b| b.selector.canonical() == a.selector.canonical())
        {
            return Err(PolicyError {
                file: src.file.into(),
                line: a.line,
                col: 1,
                message: format!("selector \"{}\" is also written on line {}", a.text, b.line),
            });
        }
    }
    let sels: Vec<&Selector> = rules.iter().map(|r| &r.selector).collect();
    let allows: Vec<bool> = rules.iter().map(|r| r.action.allows()).collect();
    let same = |i: usize, j: usize| same_action(&rules[i].action, &rules[j].action);
    let dfa = Dfa::build(&sels, &allows, &same).map_err(|e| match e {
        DfaError::Ambiguous(a) => {
            let (ra, rb) = (&rules[a.a as usize], &rules[a.b as usize]);
            PolicyError {
                file: src.file.into(),
                line: ra.line.max(rb.line),
                col: 1,
                message: format!(
                    "selectors \"{}\" (line {}) and \"{}\" (line {}) match some field with equal precedence and different actions; make one more specific",
                    ra.text, ra.line, rb.text, rb.line
                ),
            }
        }
        DfaError::TooLarge => PolicyError {
            file: src.file.into(),
            line: 0,
            col: 0,
            message: "too many combinations of `**` selectors; simplify the rule file".into(),
        },
    })?;
    Ok(FieldRules { rules, dfa })
}

fn same_action(a: &Action, b: &Action) -> bool {
    // Debug output covers every option; actions are small.
    format!("{a:?}") == format!("{b:?}")
}

fn parse_action(
    src: &Source<'_>,
    value: &toml::Value,
    span: &Range<usize>,
    scopes: &mut Vec<String>,
) -> Result<Action, PolicyError> {
    let empty = toml::Table::new();
    let (name, opts) = match value {
        toml::Value::String(s) => (s.as_str(), &empty),
        toml::Value::Table(t) => match t.get("action") {
            Some(toml::Value::String(s)) => (s.as_str(), t),
            _ => {
                return Err(src.err(span.start, "`action` must be a string"));
            }
        },
        _ => {
            return Err(src.err(
                span.start,
                "expected an action name or a table with `action = \"...\"`",
            ));
        }
    };
    if !ACTION_NAMES.contains(&name) {
        return Err(src.err(
            src.find_in(span, name),
            format!(
                "unknown action \"{}\"{}",
                name.escape_debug(),
                did_you_mean(name, ACTION_NAMES)
            ),
        ));
    }
    let allowed = options_of(name);
    for k in opts.keys() {
        if k == "action" || allowed.contains(&k.as_str()) {
            continue;
        }
        let msg = if allowed.is_empty() {
            format!("action \"{name}\" takes no option \"{}\"", k.escape_debug())
        } else {
            format!(
                "unknown option \"{}\" for action \"{name}\"{}",
                k.escape_debug(),
                did_you_mean(k, allowed)
            )
        };
        return Err(src.err(src.find_in(span, k), msg));
    }
    let at = |k: &str| src.find_in(span, k);
    let str_opt = |k: &str| -> Result<Option<&str>, PolicyError> {
        match opts.get(k) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(src.err(at(k), format!("option \"{k}\" must be a string"))),
        }
    };
    let int_opt = |k: &str, range: Range<i64>| -> Result<Option<i64>, PolicyError> {
        match opts.get(k) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if range.contains(i) => Ok(Some(*i)),
            Some(_) => Err(src.err(
                at(k),
                format!(
                    "option \"{k}\" must be an integer from {} to {}",
                    range.start,
                    range.end - 1
                ),
            )),
        }
    };
    let normalise = || -> Result<Normalise, PolicyError> {
        match str_opt("normalise")? {
            None | Some("none") => Ok(Normalise::None),
            Some(n) => Normalise::parse(n).ok_or_else(|| {
                src.err(
                    at("normalise"),
                    format!(
                        "unknown normalise \"{}\"{}",
                        n.escape_debug(),
                        did_you_mean(n, Normalise::NAMES)
                    ),
                )
            }),
        }
    };
    let scope_of = |scopes: &mut Vec<String>| -> Result<usize, PolicyError> {
        match str_opt("scope")? {
            None => Ok(0),
            Some("") => Err(src.err(at("scope"), "scope must not be empty")),
            Some(s) => Ok(match scopes.iter().position(|x| x == s) {
                Some(i) => i,
                None => {
                    scopes.push(s.to_string());
                    scopes.len() - 1
                }
            }),
        }
    };
    let bits = || -> Result<u16, PolicyError> {
        let b = int_opt("bits", 64..257)?.unwrap_or(128);
        if b % 8 != 0 {
            return Err(src.err(at("bits"), "option \"bits\" must be a multiple of 8"));
        }
        Ok(b as u16)
    };
    Ok(match name {
        "keep" => Action::Keep,
        "drop" => Action::Drop,
        "mask_email" => Action::MaskEmail,
        "pseudonymise" => Action::Pseudonymise {
            normalise: normalise()?,
            scope: scope_of(scopes)?,
            bits: bits()?,
        },
        "hash_sha256" => Action::HashSha256 {
            normalise: normalise()?,
        },
        "truncate_ip" => Action::TruncateIp {
            v4_prefix: int_opt("v4_prefix", 0..33)?.unwrap_or(24) as u8,
            v6_prefix: int_opt("v6_prefix", 0..129)?.unwrap_or(48) as u8,
        },
        "coarsen_time" => {
            let unit = match str_opt("unit")? {
                None => TimeUnit::Hour,
                Some(u) => TimeUnit::parse(u).ok_or_else(|| {
                    src.err(
                        at("unit"),
                        format!(
                            "unknown unit \"{}\"{}",
                            u.escape_debug(),
                            did_you_mean(u, TimeUnit::NAMES)
                        ),
                    )
                })?,
            };
            Action::CoarsenTime { unit }
        }
        "bucket" => {
            let Some(toml::Value::Array(items)) = opts.get("bounds") else {
                return Err(src.err(
                    span.start,
                    "bucket needs `bounds`, an array of increasing integers, e.g. bounds = [18, 25, 35, 45, 55, 65]",
                ));
            };
            let bounds: Option<Vec<i64>> = items.iter().map(|v| v.as_integer()).collect();
            let bounds = bounds
                .filter(|b| !b.is_empty() && b.windows(2).all(|w| w[0] < w[1]))
                .ok_or_else(|| {
                    src.err(
                        at("bounds"),
                        "`bounds` must be a non-empty array of strictly increasing integers",
                    )
                })?;
            Action::Bucket {
                bounds: bounds.into(),
            }
        }
        "strip_query" => {
            let keep_params = match opts.get("keep_params") {
                None => Vec::new(),
                Some(toml::Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        src.err(
                            at("keep_params"),
                            "`keep_params` must be an array of strings",
                        )
                    })?,
                Some(_) => {
                    return Err(src.err(
                        at("keep_params"),
                        "`keep_params` must be an array of strings",
                    ));
                }
            };
            Action::StripQuery {
                keep_params: keep_params.into(),
            }
        }
        "redact" => {
            let with = str_opt("with")?.unwrap_or("[redacted]");
            let with_json = serde_json::to_vec(with).unwrap_or_else(|_| b"\"[redacted]\"".to_vec());
            Action::Redact {
                with_json: with_json.into(),
                with: with.into(),
            }
        }
        "scan" => {
            let detectors = match opts.get("detect") {
                None => DetectorSet::all(),
                Some(toml::Value::Array(items)) => {
                    let mut set = DetectorSet::default();
                    for item in items {
                        let n = item.as_str().unwrap_or("");
                        if !set.parse_name(n) {
                            return Err(src.err(
                                at("detect"),
                                format!(
                                    "unknown detector \"{}\"{}",
                                    n.escape_debug(),
                                    did_you_mean(n, crate::rewrite::transform::Detector::NAMES)
                                ),
                            ));
                        }
                    }
                    set
                }
                Some(_) => {
                    return Err(
                        src.err(at("detect"), "`detect` must be an array of detector names")
                    );
                }
            };
            let replace = match str_opt("replace")?.unwrap_or("pseudonymise") {
                "pseudonymise" => {
                    if opts.contains_key("with") {
                        return Err(
                            src.err(at("with"), "`with` only applies to replace = \"redact\"")
                        );
                    }
                    ScanReplace::Pseudonymise {
                        scope: scope_of(scopes)?,
                        bits: bits()?,
                    }
                }
                "redact" => ScanReplace::Redact(str_opt("with")?.unwrap_or("[redacted]").into()),
                other => {
                    return Err(src.err(
                        at("replace"),
                        format!(
                            "unknown replace \"{}\"{}",
                            other.escape_debug(),
                            did_you_mean(other, SCAN_REPLACE_NAMES)
                        ),
                    ));
                }
            };
            Action::Scan {
                scanner: Arc::new(Scanner::new(detectors)),
                replace,
            }
        }
        "embedded_json" => {
            let base64 = match str_opt("encoding")?.unwrap_or("plain") {
                "plain" => false,
                "base64" => true,
                other => {
                    return Err(src.err(
                        at("encoding"),
                        format!(
                            "unknown encoding \"{}\"{}",
                            other.escape_debug(),
                            did_you_mean(other, ENCODING_NAMES)
                        ),
                    ));
                }
            };
            Action::EmbeddedJson { base64 }
        }
        _ => unreachable!("checked against ACTION_NAMES"),
    })
}

fn compile_headers(src: &Source<'_>, raw: &RawRuleFile) -> Result<HeaderRules, PolicyError> {
    let mut rules = HeaderRules::default();
    let valid = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    for a in &raw.headers.allow {
        let name = a.get_ref().to_ascii_lowercase();
        if !valid(&name) {
            return Err(src.err(a.span().start, "invalid header name in `allow`"));
        }
        rules.allow.push(name);
    }
    for (k, v) in &raw.headers.set {
        let name = k.get_ref().to_ascii_lowercase();
        if !valid(&name) {
            return Err(src.err(k.span().start, "invalid header name in `set`"));
        }
        let value = v.get_ref();
        let source = if let Some(var) = value.strip_prefix("env:") {
            if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(src.err(
                    v.span().start,
                    "`env:` must be followed by an environment variable name ([A-Za-z0-9_])",
                ));
            }
            HeaderValueSource::Env(var.to_string())
        } else {
            if !value
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
            {
                return Err(src.err(v.span().start, "header value must be visible ASCII"));
            }
            HeaderValueSource::Literal(value.clone())
        };
        rules.set.push((name, source));
    }
    Ok(rules)
}

fn compile_test(src: &Source<'_>, t: &Spanned<RawTest>) -> Result<RuleTest, PolicyError> {
    let raw = t.get_ref();
    let line = line_col(src.text, t.span().start).0;
    let format = match raw.format.as_deref() {
        None | Some("json") => BodyFormat::Json,
        Some("ndjson") => BodyFormat::Ndjson,
        Some("form") => BodyFormat::Form,
        Some(other) => {
            return Err(src.err(
                src.find_in(&t.span(), "format"),
                format!(
                    "unknown test format \"{}\"{}",
                    other.escape_debug(),
                    did_you_mean(other, &["json", "ndjson", "form"])
                ),
            ));
        }
    };
    if raw.expect.is_none()
        && raw.absent.is_empty()
        && raw.present.is_empty()
        && raw.transformed.is_empty()
        && !raw.refused
    {
        return Err(src.err(
            t.span().start,
            format!(
                "test \"{}\" asserts nothing: give `expect`, `absent`, `present`, `transformed` or `refused = true`",
                raw.name
            ),
        ));
    }
    Ok(RuleTest {
        name: raw.name.clone(),
        line,
        input: raw.input.clone(),
        format,
        expect: raw.expect.clone(),
        absent: raw.absent.clone(),
        present: raw.present.clone(),
        transformed: raw.transformed.clone(),
        refused: raw.refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<CompiledPolicy, PolicyError> {
        compile_str(text, "rules/x.toml", "x")
    }

    const HEAD: &str = "upstream = \"https://api.example\"\n";

    #[test]
    fn unknown_action_suggests_the_nearest() {
        let e = compile(&format!(
            "{HEAD}[fields]\n\"user.email\" = \"pseudonymize\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.col, 17);
        assert!(e.message.contains("did you mean \"pseudonymise\""), "{e}");
        assert!(
            e.to_string()
                .starts_with("rules/x.toml:3:17: unknown action")
        );
    }

    #[test]
    fn unknown_option_suggests_the_nearest() {
        let e = compile(&format!(
            "{HEAD}[fields]\nip = {{ action = \"truncate_ip\", v4_prefx = 16 }}\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("did you mean \"v4_prefix\""), "{e}");
    }

    #[test]
    fn unknown_top_level_key_is_refused_with_location() {
        let e = compile(&format!("{HEAD}upstrem = \"x\"\n")).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("upstrem"), "{e}");
    }

    #[test]
    fn nested_tables_are_dotted_selectors() {
        let p = compile(&format!(
            "{HEAD}[fields.context]\nip = \"truncate_ip\"\n\"page.url\" = \"keep\"\n"
        ))
        .unwrap();
        let texts: Vec<&str> = p.fields.rules().iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["context.ip", "context.page.url"]);
    }

    #[test]
    fn same_selector_twice_is_refused() {
        let e = compile(&format!(
            "{HEAD}[fields]\n\"a.b\" = \"keep\"\n'a.\"b\"' = \"drop\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("also written"), "{e}");
    }

    #[test]
    fn ambiguous_selectors_are_refused() {
        // "a.*" [2,1] beats "*.b" [1,2] (compared from the left): not ambiguous.
        assert!(
            compile(&format!(
                "{HEAD}[fields]\n\"*.b\" = \"keep\"\n\"a.*\" = \"drop\"\n"
            ))
            .is_ok()
        );
        // At the path `a` both give [2] with one `**` each.
        let e = compile(&format!(
            "{HEAD}[fields]\n\"a.**\" = \"keep\"\n\"**.a\" = \"drop\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("equal precedence"), "{e}");
    }

    #[test]
    fn upstream_rules() {
        assert!(compile("upstream = \"http://127.0.0.1:9\"\n").is_ok());
        assert!(compile("upstream = \"capture:\"\n").is_ok());
        let e = compile("upstream = \"http://partner.example\"\n").unwrap_err();
        assert!(e.message.contains("allow_plain_http"), "{e}");
        assert!(
            compile("upstream = \"http://partner.example\"\nallow_plain_http = true\n").is_ok()
        );
        assert!(compile("upstream = \"https://u:p@partner.example\"\n").is_err());
        assert!(compile("upstream = \"ftp://partner.example\"\n").is_err());
    }

    #[test]
    fn options_are_validated() {
        assert!(
            compile(&format!(
                "{HEAD}[fields]\na = {{ action = \"pseudonymise\", bits = 60 }}\n"
            ))
            .is_err()
        );
        assert!(
            compile(&format!(
                "{HEAD}[fields]\na = {{ action = \"pseudonymise\", bits = 72 }}\n"
            ))
            .is_ok()
        );
        assert!(
            compile(&format!(
                "{HEAD}[fields]\na = {{ action = \"bucket\", bounds = [3, 2] }}\n"
            ))
            .is_err()
        );
        assert!(
            compile(&format!(
                "{HEAD}[fields]\na = {{ action = \"truncate_ip\", v4_prefix = 33 }}\n"
            ))
            .is_err()
        );
        let e = compile(&format!(
            "{HEAD}[fields]\na = {{ action = \"coarsen_time\", unit = \"hours\" }}\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("did you mean \"hour\""), "{e}");
        let e = compile(&format!(
            "{HEAD}[fields]\na = {{ action = \"keep\", with = 1 }}\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("takes no option"), "{e}");
    }

    #[test]
    fn scopes_are_collected() {
        let p = compile(&format!(
            "{HEAD}[fields]\na = \"pseudonymise\"\nb = {{ action = \"pseudonymise\", scope = \"shared\" }}\n"
        ))
        .unwrap();
        assert_eq!(p.scopes, ["x", "shared"]);
    }

    #[test]
    fn tests_must_assert_something() {
        let e = compile(&format!("{HEAD}[[tests]]\nname = \"t\"\ninput = '{{}}'\n")).unwrap_err();
        assert!(e.message.contains("asserts nothing"), "{e}");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn header_literals_never_print() {
        let p = compile(&format!(
            "{HEAD}[headers]\nset = {{ authorization = \"Bearer s3cr3t\", x-key = \"env:KEY\" }}\n"
        ))
        .unwrap();
        let dbg = format!("{:?}", p.headers);
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert!(dbg.contains("env:KEY"));
    }
}
