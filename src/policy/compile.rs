//! From [`RawRuleFile`] to [`CompiledPolicy`]: every check with its location.

pub(super) mod action;

use std::ops::Range;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::action::Action;
use super::dfa::{Dfa, DfaError};
use super::diag;
use super::lint::{self, Allow, LintScope};
use super::paths::{self, ParsedPart, Part, PathParam, PathRules, PathTemplate};
use super::raw::{RawAllow, RawRuleFile, RawTest, RawValue};
use super::selector::{Segment, Selector};
use super::{
    BodyFormat, CompiledPolicy, DEFAULT_MAX_DEPTH, FieldRules, HeaderRules, HeaderValueSource,
    PolicyError, Rule, RuleTest,
};
use action::parse_action;

/// Locates byte offsets in the file text.
struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    fn err(
        &self,
        code: &'static str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> PolicyError {
        PolicyError::at(code, self.file, self.text, span, message)
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

/// The help line for a misspelt name: the nearest valid one, or the list.
pub(crate) fn did_you_mean(name: &str, candidates: &[&str]) -> String {
    match suggest(name, candidates) {
        Some(s) => format!("did you mean \"{s}\"?"),
        None => format!("expected one of: {}", candidates.join(", ")),
    }
}

/// Compiles rule-file text. `file` names it in errors; `stem` is the default
/// recipient name. On problems, the first (in file order) is returned; see
/// [`compile_str_all`] for all of them.
pub fn compile_str(text: &str, file: &str, stem: &str) -> Result<CompiledPolicy, PolicyError> {
    compile_str_all(text, file, stem).map_err(|mut errors| errors.swap_remove(0))
}

/// Keeps the value of a check, or records its error and gives `None`.
fn noted<T>(errors: &mut Vec<PolicyError>, r: Result<T, PolicyError>) -> Option<T> {
    r.map_err(|e| errors.push(e)).ok()
}

/// Compiles rule-file text, collecting every problem: each setting, rule,
/// test and `[[allow]]` entry is checked on its own, so one run shows them
/// all (sorted by place; never empty on `Err`). TOML syntax and shape
/// errors (unknown keys, values of the wrong type) are shown all together
/// ([`super::shape`]), and then nothing more: the settings they touch cannot
/// be checked reliably.
pub fn compile_str_all(
    text: &str,
    file: &str,
    stem: &str,
) -> Result<CompiledPolicy, Vec<PolicyError>> {
    let src = Source { text, file };
    let raw: RawRuleFile = match super::shape::deserialize_all(text) {
        (Some(raw), problems) if problems.is_empty() => raw,
        (_, problems) => {
            return Err(problems
                .into_iter()
                .map(|p| {
                    match p.span {
                        Some(span) => src.err(diag::SYNTAX, span, p.message),
                        None => PolicyError::whole_file(diag::SYNTAX, file, p.message),
                    }
                    .with_help_opt(p.help)
                })
                .collect());
        }
    };
    let mut errors: Vec<PolicyError> = Vec::new();

    let recipient = match &raw.recipient {
        Some(r) => {
            let checked = check_name(r.get_ref()).map_err(|m| src.err(diag::SETTING, r.span(), m));
            noted(&mut errors, checked);
            r.get_ref().clone()
        }
        None => {
            let checked = check_name(stem).map_err(|m| {
                PolicyError::whole_file(diag::SETTING, file, m)
                    .with_help("the recipient name defaults to the file name; set `recipient`")
            });
            noted(&mut errors, checked);
            stem.to_string()
        }
    };

    let upstream = raw.upstream.get_ref().trim_end_matches('/').to_string();
    let checked = check_upstream(&upstream, raw.allow_plain_http).map_err(|(m, help)| {
        src.err(diag::SETTING, raw.upstream.span(), m)
            .with_help_opt(help)
    });
    noted(&mut errors, checked);

    let mut hosts = Vec::new();
    for h in &raw.hosts {
        let host = h.get_ref().to_ascii_lowercase();
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':')
        {
            errors.push(src.err(diag::SETTING, h.span(), "invalid host name in `hosts`"));
            continue;
        }
        hosts.push(host);
    }

    let mut passthrough = Vec::new();
    for t in &raw.passthrough_content_types {
        let ct = t.get_ref().trim().to_ascii_lowercase();
        if !ct.contains('/') || ct.contains(';') || ct.contains(char::is_whitespace) {
            errors.push(src.err(
                diag::SETTING,
                t.span(),
                "content type must be `type/subtype` without parameters",
            ));
            continue;
        }
        if is_rewritable_type(&ct) {
            errors.push(src.err(
                diag::SETTING,
                t.span(),
                format!("\"{ct}\" is always rewritten and cannot pass through untouched"),
            ));
            continue;
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
                    errors.push(src.err(
                        diag::SETTING,
                        r.span(),
                        "rate_limit: per_second and burst must be greater than zero",
                    ));
                    None
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
                errors.push(src.err(
                    diag::SETTING,
                    d.span(),
                    "max_depth must be between 1 and 1024",
                ));
            }
            v.clamp(1, 1024) as usize
        }
    };

    let default_scope = match &raw.scope {
        Some(s) if s.get_ref().is_empty() => {
            errors.push(src.err(diag::SETTING, s.span(), "scope must not be empty"));
            recipient.clone()
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
                diag::SELECTOR,
                k.span(),
                format!("invalid selector \"{}\": {e}", k.get_ref()),
            )
        });
        let Some(sel) = noted(&mut errors, sel) else {
            continue;
        };
        let flat = flatten(&src, sel, k.span(), v, &mut field_entries);
        noted(&mut errors, flat);
    }
    let mut rules = Vec::new();
    for (sel, key_span, value) in field_entries {
        let action = parse_action(&src, value, &mut scopes);
        let Some(action) = noted(&mut errors, action) else {
            continue;
        };
        rules.push(Rule {
            text: sel.to_string(),
            selector: sel,
            action,
            line: line_col(text, key_span.start).0,
            span: key_span,
        });
    }
    let fields = noted(&mut errors, build_rules(&src, rules));

    let mut qrules = Vec::new();
    for (k, v) in &raw.query {
        let name = k.get_ref();
        if name.is_empty() {
            errors.push(src.err(diag::SELECTOR, k.span(), "empty query parameter name"));
            continue;
        }
        let seg = if name == "*" {
            Segment::Star
        } else {
            Segment::Key(name.as_str().into())
        };
        let action = parse_action(&src, v, &mut scopes);
        let Some(action) = noted(&mut errors, action) else {
            continue;
        };
        if !action.spec().in_query {
            errors.push(src.err(
                diag::ACTION,
                action_name_span(v),
                format!("{} is not available for query parameters", action.name()),
            ));
            continue;
        }
        qrules.push(Rule {
            text: name.clone(),
            selector: Selector::from_segments(vec![seg]),
            action,
            line: line_col(text, k.span().start).0,
            span: k.span(),
        });
    }
    let query = noted(&mut errors, build_rules(&src, qrules));

    let paths = compile_paths(&src, &raw, &mut scopes, &mut errors);

    let headers = noted(&mut errors, compile_headers(&src, &raw));
    let tests: Vec<_> = raw
        .tests
        .iter()
        .filter_map(|t| noted(&mut errors, compile_test(&src, t)))
        .collect();
    let allows: Vec<_> = match (&fields, &query) {
        (Some(fields), Some(query)) => raw
            .allow
            .iter()
            .filter_map(|a| noted(&mut errors, compile_allow(&src, a, fields, query)))
            .collect(),
        // Checked once the rules they name are valid.
        _ => Vec::new(),
    };
    let per_event = super::aggregate::compile(text, file, &raw, fields.as_ref(), &mut errors);
    let consent = super::consent::compile(text, file, &raw, &mut errors);
    let (Some(fields), Some(query), Some(headers), true) =
        (fields, query, headers, errors.is_empty())
    else {
        errors.sort_by_key(|e| (e.line, e.col));
        return Err(errors);
    };

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
        paths,
        headers,
        tests,
        allows,
        version,
        mode: per_event.mode,
        records: per_event.records,
        aggregate: per_event.aggregate,
        consent: consent.consent,
        suppress: consent.suppress,
    })
}

/// Compiles `paths` and `[path_params]`: `None` when the file has no
/// `paths` (every path is screened then). Problems go to `errors`.
fn compile_paths(
    src: &Source<'_>,
    raw: &RawRuleFile,
    scopes: &mut Vec<String>,
    errors: &mut Vec<PolicyError>,
) -> Option<PathRules> {
    let mut params = Vec::new();
    for (k, v) in &raw.path_params {
        let name = k.get_ref();
        if !paths::is_param_name(name) {
            errors.push(src.err(
                diag::PATH,
                k.span(),
                format!(
                    "invalid path parameter name \"{}\": 1 to 64 of `A-Z a-z 0-9 _`, not starting with a digit",
                    name.escape_debug()
                ),
            ));
            continue;
        }
        let Some(action) = noted(errors, parse_action(src, v, scopes)) else {
            continue;
        };
        if matches!(action, Action::Drop | Action::EmbeddedJson { .. }) {
            errors.push(
                src.err(
                    diag::PATH,
                    action_name_span(v),
                    format!(
                        "path parameter `{name}`: `{}` yields no value, and a path cannot lose a segment",
                        action.name()
                    ),
                )
                .with_help("pseudonymise, redact or keep the segment; or leave the template out of `paths` to refuse such paths"),
            );
            continue;
        }
        params.push(PathParam {
            name: name.clone(),
            action,
            line: line_col(src.text, k.span().start).0,
        });
    }
    let Some(list) = &raw.paths else {
        if let Some((k, _)) = raw.path_params.iter().next() {
            errors.push(
                src.err(
                    diag::PATH,
                    k.span(),
                    "[path_params] without `paths`: no template uses it",
                )
                .with_help("add `paths = [\"/.../{name}/...\"]`, or remove [path_params]"),
            );
        }
        return None;
    };
    if list.get_ref().is_empty() {
        errors.push(
            src.err(diag::PATH, list.span(), "`paths` is empty: every path would be refused")
                .with_help("list the paths the partner accepts, or remove `paths` to screen every path for personal data"),
        );
    }
    let mut used = vec![false; params.len()];
    let mut rules = PathRules {
        templates: Vec::new(),
        params: Vec::new(),
    };
    for t in list.get_ref() {
        let text = t.get_ref();
        let parsed = match paths::parse_template(text) {
            Ok(p) => p,
            Err(e) => {
                errors.push(src.err(
                    diag::PATH,
                    t.span(),
                    format!("invalid path template \"{}\": {e}", text.escape_debug()),
                ));
                continue;
            }
        };
        let mut parts = Vec::with_capacity(parsed.len());
        let mut complete = true;
        for p in parsed {
            parts.push(match p {
                ParsedPart::Literal(l) => Part::Literal(l),
                ParsedPart::Rest => Part::Rest,
                ParsedPart::Param(n) => match params.iter().position(|p| p.name == n) {
                    Some(i) => {
                        used[i] = true;
                        Part::Param(i)
                    }
                    None => {
                        complete = false;
                        // A declared parameter with a bad action was
                        // reported already.
                        if !raw.path_params.keys().any(|k| *k.get_ref() == n) {
                            errors.push(
                                src.err(
                                    diag::PATH,
                                    t.span(),
                                    format!("placeholder {{{n}}} has no entry in [path_params]"),
                                )
                                .with_help(format!(
                                    "add `{n} = \"pseudonymise\"` (or another action that yields a value) under [path_params]"
                                )),
                            );
                        }
                        continue;
                    }
                },
            });
        }
        if !complete {
            continue;
        }
        let line = line_col(src.text, t.span().start).0;
        if let Some(prev) = rules
            .templates
            .iter()
            .find(|p| paths::same_shape(&p.parts, &parts))
        {
            errors.push(
                src.err(
                    diag::PATH,
                    t.span(),
                    format!(
                        "path template \"{}\" matches the same paths as \"{}\" on line {}",
                        text.escape_debug(),
                        prev.text.escape_debug(),
                        prev.line
                    ),
                )
                .with_help("keep one of them"),
            );
            continue;
        }
        rules.templates.push(PathTemplate {
            text: text.clone(),
            parts,
            line,
        });
    }
    for (i, p) in params.iter().enumerate() {
        let key = raw.path_params.keys().find(|k| *k.get_ref() == p.name);
        if let (false, Some(key)) = (used[i], key) {
            errors.push(
                src.err(
                    diag::PATH,
                    key.span(),
                    format!(
                        "path parameter `{}` is used by no template in `paths`",
                        p.name
                    ),
                )
                .with_help(format!(
                    "use it as `{{{}}}` in a template, or remove it",
                    p.name
                )),
            );
        }
    }
    rules.params = params;
    rules.sort();
    Some(rules)
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

/// The message and, where there is one, the fix.
type Problem = (String, Option<String>);

fn check_upstream(url: &str, allow_plain_http: bool) -> Result<(), Problem> {
    if url == "capture:" {
        return Ok(());
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        (
            "upstream must be an absolute URL (https://host[:port][/path]) or \"capture:\"".into(),
            None,
        )
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err((
            "upstream needs a host and must not carry credentials".into(),
            Some("inject credentials with [headers] set".into()),
        ));
    }
    if rest.contains(['?', '#']) {
        return Err(("upstream must not have a query or fragment".into(), None));
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
                Err((
                    "plain http:// upstream is only allowed for loopback".into(),
                    Some(
                        "use https://, or set allow_plain_http = true for an in-cluster partner"
                            .into(),
                    ),
                ))
            }
        }
        other => Err((
            format!("unsupported upstream scheme \"{}\"", other.escape_debug()),
            Some("use https://".into()),
        )),
    }
}

type Entry<'v> = (Selector, Range<usize>, &'v Spanned<RawValue>);

/// A table without `action` is a nested group of selectors
/// (`[fields.context] ip = "keep"` is `"context.ip" = "keep"`).
fn flatten<'v>(
    src: &Source<'_>,
    prefix: Selector,
    key_span: Range<usize>,
    value: &'v Spanned<RawValue>,
    out: &mut Vec<Entry<'v>>,
) -> Result<(), PolicyError> {
    if let RawValue::Table(t) = value.get_ref()
        && value.get_ref().get("action").is_none()
    {
        if t.is_empty() {
            return Err(src
                .err(diag::ACTION, key_span, "empty table: expected an action")
                .with_help("write `action = \"...\"` in it, or remove it"));
        }
        for (k, v) in t {
            let mut segs = prefix.segments().to_vec();
            let sub = Selector::parse(k.get_ref()).map_err(|e| {
                src.err(
                    diag::SELECTOR,
                    k.span(),
                    format!("invalid selector \"{}\": {e}", k.get_ref()),
                )
            })?;
            segs.extend(sub.segments().iter().cloned());
            flatten(src, Selector::from_segments(segs), k.span(), v, out)?;
        }
        return Ok(());
    }
    out.push((prefix, key_span, value));
    Ok(())
}

fn build_rules(src: &Source<'_>, rules: Vec<Rule>) -> Result<FieldRules, PolicyError> {
    // The same selector written twice (e.g. `a.b` and `a."b"`).
    for (i, a) in rules.iter().enumerate() {
        if let Some(b) = rules[..i]
            .iter()
            .find(|b| b.selector.canonical() == a.selector.canonical())
        {
            return Err(src
                .err(
                    diag::CONFLICT,
                    a.span.clone(),
                    format!("selector \"{}\" is also written on line {}", a.text, b.line),
                )
                .with_help("keys are compared in canonical form (case, quotes and invisible characters do not matter); keep one of them"));
        }
    }
    let sels: Vec<&Selector> = rules.iter().map(|r| &r.selector).collect();
    let allows: Vec<bool> = rules.iter().map(|r| r.action.allows()).collect();
    let same = |i: usize, j: usize| same_action(&rules[i].action, &rules[j].action);
    let dfa = Dfa::build(&sels, &allows, &same).map_err(|e| match e {
        DfaError::Ambiguous(a) => {
            let (ra, rb) = (&rules[a.a as usize], &rules[a.b as usize]);
            let (later, earlier) = if ra.span.start >= rb.span.start {
                (ra, rb)
            } else {
                (rb, ra)
            };
            src.err(
                diag::CONFLICT,
                later.span.clone(),
                format!(
                    "selectors \"{}\" (line {}) and \"{}\" (line {}) match some field with equal precedence and different actions",
                    ra.text, ra.line, rb.text, rb.line
                ),
            )
            .with_help(format!(
                "make one more specific, or give \"{}\" and \"{}\" the same action",
                later.text, earlier.text
            ))
        }
        DfaError::TooLarge => PolicyError::whole_file(
            diag::CONFLICT,
            src.file,
            "too many combinations of `**` selectors",
        )
        .with_help("simplify the rule file: fewer selectors with `**`"),
    })?;
    Ok(FieldRules { rules, dfa })
}

fn same_action(a: &Action, b: &Action) -> bool {
    // Debug output covers every option; actions are small.
    format!("{a:?}") == format!("{b:?}")
}

/// Where the action's name is written (for errors about the action as a whole).
fn action_name_span(value: &Spanned<RawValue>) -> Range<usize> {
    match value.get_ref().get("action") {
        Some(a) => a.span(),
        None => value.span(),
    }
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
            return Err(src.err(diag::HEADER, a.span(), "invalid header name in `allow`"));
        }
        rules.allow.push(name);
    }
    for (k, v) in &raw.headers.set {
        let name = k.get_ref().to_ascii_lowercase();
        if !valid(&name) {
            return Err(src.err(diag::HEADER, k.span(), "invalid header name in `set`"));
        }
        let value = v.get_ref();
        let source = if let Some(var) = value.strip_prefix("env:") {
            if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(src.err(
                    diag::HEADER,
                    v.span(),
                    "`env:` must be followed by an environment variable name ([A-Za-z0-9_])",
                ));
            }
            HeaderValueSource::Env(var.to_string())
        } else {
            if !value
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
            {
                return Err(src.err(diag::HEADER, v.span(), "header value must be visible ASCII"));
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
    let (format, url_path) = match raw
        .format
        .as_ref()
        .map(|f| (f.get_ref().as_str(), f.span()))
    {
        None | Some(("json", _)) => (BodyFormat::Json, false),
        Some(("ndjson", _)) => (BodyFormat::Ndjson, false),
        Some(("form", _)) => (BodyFormat::Form, false),
        Some(("path", span)) => {
            if !(raw.absent.is_empty() && raw.present.is_empty() && raw.transformed.is_empty()) {
                return Err(src
                    .err(
                        diag::TEST,
                        span,
                        "a path test asserts with `expect` or `refused` only",
                    )
                    .with_help("give the expected path in `expect`, or `refused = true`"));
            }
            (BodyFormat::Json, true)
        }
        Some((other, span)) => {
            return Err(src
                .err(
                    diag::TEST,
                    span,
                    format!("unknown test format \"{}\"", other.escape_debug()),
                )
                .with_help(did_you_mean(other, &["json", "ndjson", "form", "path"])));
        }
    };
    if raw.expect.is_none()
        && raw.absent.is_empty()
        && raw.present.is_empty()
        && raw.transformed.is_empty()
        && !raw.refused
        && raw.report.is_none()
        && raw.withheld.is_none()
    {
        return Err(src
            .err(
                diag::TEST,
                raw.name.span(),
                format!("test \"{}\" asserts nothing", raw.name.get_ref()),
            )
            .with_help(
                "give `expect`, `absent`, `present`, `transformed`, `withheld` or `refused = true`",
            ));
    }
    let report = match &raw.report {
        None => None,
        Some(r) => match serde_json::from_str::<serde_json::Value>(r.get_ref()) {
            Ok(v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => Some(v),
            _ => {
                return Err(src.err(
                    diag::TEST,
                    r.span(),
                    "`report` must be a JSON object (or an array of them)",
                ));
            }
        },
    };
    Ok(RuleTest {
        name: raw.name.get_ref().clone(),
        line,
        input: raw.input.clone(),
        format,
        url_path,
        expect: raw.expect.clone(),
        absent: raw.absent.clone(),
        present: raw.present.clone(),
        transformed: raw.transformed.clone(),
        refused: raw.refused,
        report,
        headers: raw
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        suppressed: raw.suppressed.clone(),
        withheld: raw.withheld,
    })
}

/// Checks one `[[allow]]` entry: a known lint, a reason, and a selector
/// that is in the file when the lint is about selectors (none otherwise).
fn compile_allow(
    src: &Source<'_>,
    a: &Spanned<RawAllow>,
    fields: &FieldRules,
    query: &FieldRules,
) -> Result<Allow, PolicyError> {
    let raw = a.get_ref();
    let code = raw.lint.get_ref();
    let Some(info) = lint::find(code) else {
        let names: Vec<&str> = lint::LINTS.iter().flat_map(|l| [l.code, l.name]).collect();
        return Err(src
            .err(
                diag::ALLOW,
                raw.lint.span(),
                format!("unknown lint \"{}\"", code.escape_debug()),
            )
            .with_help(did_you_mean(code, &names)));
    };
    if info.code == lint::STALE_ALLOW {
        return Err(src
            .err(
                diag::ALLOW,
                raw.lint.span(),
                format!("lint {} ({}) cannot be allowed", info.code, info.name),
            )
            .with_help("remove the stale [[allow]] entry it reports instead"));
    }
    if raw.reason.get_ref().trim().is_empty() {
        return Err(src
            .err(diag::ALLOW, raw.reason.span(), "the reason must not be empty")
            .with_help("say why this recipient needs it (contract, DPA clause, partner requirement): reviewers read it"));
    }
    let selector = match (&raw.selector, info.scope) {
        (None, LintScope::File) => None,
        (Some(s), LintScope::File) => {
            return Err(src
                .err(
                    diag::ALLOW,
                    s.span(),
                    format!(
                        "lint {} ({}) is about the whole file and takes no selector",
                        info.code, info.name
                    ),
                )
                .with_help("remove `selector`"));
        }
        (None, LintScope::Selector) => {
            return Err(src
                .err(
                    diag::ALLOW,
                    raw.lint.span(),
                    format!("lint {} ({}) needs the `selector` it allows", info.code, info.name),
                )
                .with_help("add selector = \"...\" as written under [fields], or \"query:NAME\" for a [query] rule"));
        }
        (Some(s), LintScope::Selector) => {
            let text = s.get_ref();
            let found = match text.strip_prefix("query:") {
                Some(name) => lint::find_query_rule(query, name).is_some(),
                None => lint::find_field_rule(fields, text).is_some(),
            };
            if !found {
                let mut known: Vec<String> =
                    fields.rules().iter().map(|r| r.text.clone()).collect();
                known.extend(query.rules().iter().map(|r| format!("query:{}", r.text)));
                let known: Vec<&str> = known.iter().map(String::as_str).collect();
                // The same name in the other table: `email` where only a
                // [query] rule `email` exists, or `query:a` for a field `a`.
                let other = match text.strip_prefix("query:") {
                    Some(name) => lint::find_field_rule(fields, name).map(|r| r.text.clone()),
                    None => lint::find_query_rule(query, text).map(|r| format!("query:{}", r.text)),
                };
                let help = match other.as_deref().or_else(|| suggest(text, &known)) {
                    Some(k) => format!("did you mean \"{k}\"?"),
                    None => "name a selector written under [fields], or \"query:NAME\" for a [query] rule".into(),
                };
                return Err(src
                    .err(
                        diag::ALLOW,
                        s.span(),
                        format!("selector \"{}\" is not in this file", text.escape_debug()),
                    )
                    .with_help(help));
            }
            Some(text.clone())
        }
    };
    Ok(Allow {
        code: info.code,
        selector,
        reason: raw.reason.get_ref().clone(),
        span: raw.lint.span(),
        line: line_col(src.text, a.span().start).0,
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
    fn action_index_is_the_place_of_its_name() {
        let mut text = format!("{HEAD}[fields]\n");
        for (i, a) in crate::policy::action::ACTION_NAMES.iter().enumerate() {
            let options = match *a {
                "bucket" => ", bounds = [1, 2]",
                "coarsen_time" => ", unit = \"hour\"",
                _ => "",
            };
            text.push_str(&format!("f{i} = {{ action = \"{a}\"{options} }}\n"));
        }
        let p = compile(&text).unwrap();
        assert_eq!(
            p.fields.rules().len(),
            crate::policy::action::ACTION_NAMES.len()
        );
        for r in p.fields.rules() {
            let a = &r.action;
            assert_eq!(
                crate::policy::action::ACTION_NAMES[a.index()],
                a.name(),
                "{}",
                r.text
            );
        }
        assert_eq!(
            crate::policy::action::ACTION_NAMES[crate::policy::action::DROP_INDEX],
            "drop"
        );
    }

    #[test]
    fn a_query_table_without_action_is_an_error_not_a_panic() {
        // Field tables without `action` are nested selectors; a query
        // parameter has no children, so the same table there is refused.
        for value in ["{ email = \"keep\" }", "{ a.b = \"keep\" }", "{}"] {
            let e = compile(&format!("{HEAD}[query]\nuid = {value}\n")).unwrap_err();
            assert_eq!(e.code, diag::ACTION, "{value}: {e}");
            assert_eq!(e.message, "this table has no `action`", "{value}");
            assert_eq!((e.line, e.col), (3, 7), "{value}: {e}");
        }
    }

    #[test]
    fn unknown_action_suggests_the_nearest() {
        let e = compile(&format!(
            "{HEAD}[fields]\n\"user.email\" = \"pseudonymize\"\n"
        ))
        .unwrap_err();
        // The caret is under the whole string, quotes included.
        assert_eq!(e.line, 3);
        assert_eq!(e.col, 16);
        assert_eq!(e.code, diag::ACTION);
        assert_eq!(e.message, "unknown action \"pseudonymize\"");
        assert_eq!(e.help.as_deref(), Some("did you mean \"pseudonymise\"?"));
        assert!(
            e.to_string()
                .starts_with("rules/x.toml:3:16: error[E004]: unknown action"),
            "{e}"
        );
    }

    #[test]
    fn unknown_option_suggests_the_nearest() {
        let e = compile(&format!(
            "{HEAD}[fields]\nip = {{ action = \"truncate_ip\", v4_prefx = 16 }}\n"
        ))
        .unwrap_err();
        assert_eq!((e.line, e.col), (3, 32), "{e}");
        assert_eq!(e.help.as_deref(), Some("did you mean \"v4_prefix\"?"));
    }

    #[test]
    fn unknown_top_level_key_is_refused_with_location() {
        let e = compile(&format!("{HEAD}upstrem = \"x\"\n")).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("upstrem"), "{e}");
        assert_eq!(e.help.as_deref(), Some("did you mean \"upstream\"?"), "{e}");
    }

    #[test]
    fn errors_in_a_table_form_action_point_at_the_offending_line() {
        let text = format!(
            "{HEAD}[fields.\"user.age\"]\naction = \"bucket\"\nbounds = [30, 20]\n\n[fields.\"user.ip\"]\naction = \"truncate_ip\"\nv4_prefx = 16\n"
        );
        let e = compile(&text).unwrap_err();
        // `bounds` is on line 4, its value at column 10; the header is line 2.
        assert_eq!((e.line, e.col), (4, 10), "{e}");
        let fixed = text.replace("[30, 20]", "[20, 30]");
        let e = compile(&fixed).unwrap_err();
        assert_eq!((e.line, e.col), (8, 1), "{e}");
        assert_eq!(e.help.as_deref(), Some("did you mean \"v4_prefix\"?"));
        let e = compile(&format!(
            "{HEAD}[fields.\"user.email\"]\nnormalise = \"email\"\naction = \"pseudonymize\"\n"
        ))
        .unwrap_err();
        assert_eq!((e.line, e.col), (4, 10), "{e}");
    }

    #[test]
    fn type_errors_name_the_kind_never_the_value() {
        let e = compile(&format!(
            "{HEAD}[[tests]]\nname = \"t\"\ninput = '{{}}'\nrefused = \"alice@example.com\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.code, diag::SYNTAX);
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("string"), "{e}");
        assert!(!e.to_string().contains("alice"), "{e}");
    }

    #[test]
    fn a_date_is_refused_at_its_place() {
        let e = compile(&format!(
            "{HEAD}[fields]\na = {{ action = \"keep\", x = 1979-05-27 }}\n"
        ))
        .unwrap_err();
        assert_eq!((e.code, e.line, e.col), (diag::SYNTAX, 3, 28), "{e}");
        assert_eq!(e.message, "a date or time is not valid here");
    }

    #[test]
    fn allow_entries_are_checked() {
        let base = format!("{HEAD}[fields]\n\"user.ip\" = \"keep\"\n");
        let ok = compile(&format!(
            "{base}[[allow]]\nlint = \"personal-keep\"\nselector = \"user.ip\"\nreason = \"fraud checks (DPA s.3)\"\n"
        ))
        .unwrap();
        assert_eq!(ok.allows.len(), 1);
        assert_eq!(ok.allows[0].code, "P001");

        let e = compile(&format!(
            "{base}[[allow]]\nlint = \"P01\"\nselector = \"user.ip\"\nreason = \"r\"\n"
        ))
        .unwrap_err();
        assert_eq!((e.code, e.line), (diag::ALLOW, 5), "{e}");
        assert!(e.message.contains("unknown lint \"P01\""), "{e}");
        assert!(
            e.help.as_deref().unwrap_or("").contains("did you mean"),
            "{e}"
        );

        let e = compile(&format!(
            "{base}[[allow]]\nlint = \"P001\"\nselector = \"user.ip\"\nreason = \" \"\n"
        ))
        .unwrap_err();
        assert_eq!((e.code, e.line), (diag::ALLOW, 7), "{e}");

        let e = compile(&format!(
            "{base}[[allow]]\nlint = \"P001\"\nselector = \"user.ipp\"\nreason = \"r\"\n"
        ))
        .unwrap_err();
        assert_eq!((e.code, e.line), (diag::ALLOW, 6), "{e}");
        assert_eq!(e.help.as_deref(), Some("did you mean \"user.ip\"?"), "{e}");

        // The name of a [query] rule, or a field written as a query rule.
        let both = format!("{HEAD}[query]\nemail = \"keep\"\n[fields]\nuid = \"keep\"\n");
        let e = compile(&format!(
            "{both}[[allow]]\nlint = \"P001\"\nselector = \"email\"\nreason = \"r\"\n"
        ))
        .unwrap_err();
        assert_eq!(
            e.help.as_deref(),
            Some("did you mean \"query:email\"?"),
            "{e}"
        );
        let e = compile(&format!(
            "{both}[[allow]]\nlint = \"P001\"\nselector = \"query:uid\"\nreason = \"r\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean \"uid\"?"), "{e}");

        let e = compile(&format!(
            "{base}[[allow]]\nlint = \"P006\"\nreason = \"r\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("cannot be allowed"), "{e}");

        let e = compile(&format!(
            "{base}[[allow]]\nlint = \"P001\"\nreason = \"r\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("needs the `selector`"), "{e}");

        let e = compile(&format!(
            "{base}[[allow]]\nlint = \"no-tests\"\nselector = \"user.ip\"\nreason = \"r\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("takes no selector"), "{e}");

        let e = compile(&format!(
            "{base}[[allow]]\nlint = \"P001\"\nselector = \"user.ip\"\nreason = \"r\"\nextra = 1\n"
        ))
        .unwrap_err();
        assert_eq!(e.code, diag::SYNTAX, "{e}");
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
        assert!(
            e.help.as_deref().unwrap_or("").contains("allow_plain_http"),
            "{e}"
        );
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
        assert_eq!(e.help.as_deref(), Some("did you mean \"hour\"?"), "{e}");
        let e = compile(&format!(
            "{HEAD}[fields]\na = {{ action = \"keep\", with = 1 }}\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("takes no option"), "{e}");
    }

    #[test]
    fn scan_must_detect_something() {
        let e = compile(&format!(
            "{HEAD}[fields]\nnote = {{ action = \"scan\", detect = [] }}\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("at least one detector"), "{e}");
        assert_eq!((e.line, e.col, e.code), (3, 36, diag::ACTION), "{e}");
        assert!(
            compile(&format!(
                "{HEAD}[fields]\nnote = {{ action = \"scan\", detect = [\"email\"] }}\n"
            ))
            .is_ok()
        );
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
        // At the test's name, the line that says which case it is.
        assert_eq!(e.line, 3);
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
