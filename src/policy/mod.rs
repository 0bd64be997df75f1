//! Rule files: raw TOML in, a validated, compiled policy out.
//!
//! A rule file is parsed into the plain structs of [`raw`] (unknown keys are
//! refused), then compiled: selectors are parsed and merged into one automaton
//! ([`dfa`]), actions and their options are checked, and the file's own
//! `[[tests]]` are kept for `scrim test`. Every error carries
//! `file:line:col` and, for a misspelt name, the nearest valid one.

// A `PolicyError` carries its span, help and note (about 160 bytes). It is
// built once per problem while rules load, never on the request path, so
// boxing it would only add noise to every `?`.
#![allow(clippy::result_large_err)]

pub mod action;
pub mod aggregate;
mod compile;
pub mod consent;
pub mod dfa;
pub mod diag;
pub mod lint;
pub mod paths;
pub mod raw;
pub mod selector;
pub(crate) mod shape;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use action::{Action, ScanReplace};
pub use compile::compile_str;
pub(crate) use compile::{line_col, suggest};
pub use selector::{Segment, Selector};

// Loading with self-tests runs the engine, so it lives above policy and
// rewrite (`crate::selftest`); it stays reachable at its former path.
// Nothing in `policy` calls it.
pub use crate::selftest::{load_verified, test_failures};

use dfa::{Dfa, StateId, StateInfo};

/// Default maximum JSON nesting depth.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// A rule file problem, located: an error, or a lint warning.
///
/// `Display` gives one line, `file:line:col: error[CODE]: message (help)`,
/// for logs and tools; [`diag::render`] shows the source line with a caret
/// for people. Neither the line form nor the label ever holds a value from a
/// `[[tests]]` input; only [`Self::note`] may (a failed test's output), and
/// it is shown to rule authors only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code (`E004`, `P001`), see [`diag`] and [`lint`].
    pub code: &'static str,
    /// The file (as given).
    pub file: String,
    /// 1-based line, 0 when the problem is the whole file.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// Byte range in the file text that the caret underlines, when known.
    pub span: Option<std::ops::Range<usize>>,
    /// What is wrong.
    pub message: String,
    /// The fix, when one is known (`did you mean "pseudonymise"?`).
    pub help: Option<String>,
    /// More detail for the rule author (may span lines; never logged).
    pub note: Option<String>,
}

impl PolicyError {
    /// An error about the whole file (no location).
    pub fn whole_file(
        code: &'static str,
        file: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PolicyError {
            severity: Severity::Error,
            code,
            file: file.into(),
            line: 0,
            col: 0,
            span: None,
            message: message.into(),
            help: None,
            note: None,
        }
    }

    /// An error at a byte range of the file text.
    pub fn at(
        code: &'static str,
        file: impl Into<String>,
        text: &str,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let (line, col) = line_col(text, span.start);
        PolicyError {
            severity: Severity::Error,
            code,
            file: file.into(),
            line,
            col,
            span: Some(span),
            message: message.into(),
            help: None,
            note: None,
        }
    }

    /// The same, with a fix.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The same, with a fix when there is one.
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// The same, with more detail for rule authors.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// The same, as a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// How serious a [`PolicyError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file is refused.
    Error,
    /// The file loads; `scrim check --strict` fails.
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        }
        write!(f, "{}[{}]: ", self.severity.as_str(), self.code)?;
        // One line whatever the message holds: this form goes to logs.
        write_one_line(f, &self.message)?;
        if let Some(help) = &self.help {
            f.write_str(" (help: ")?;
            write_one_line(f, help)?;
            f.write_str(")")?;
        }
        Ok(())
    }
}

fn write_one_line(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    let mut first = true;
    for part in text.lines() {
        if !first {
            f.write_str(" ")?;
        }
        f.write_str(part.trim())?;
        first = false;
    }
    Ok(())
}

impl std::error::Error for PolicyError {}

/// One selector and what it does.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The selector as written (after nesting is flattened).
    pub text: String,
    /// The parsed selector.
    pub selector: Selector,
    /// The action.
    pub action: Action,
    /// 1-based line of the rule in its file.
    pub line: usize,
    /// Byte range of the selector (the innermost key) in its file.
    pub span: std::ops::Range<usize>,
}

/// A set of rules compiled into an automaton: body fields or query parameters.
#[derive(Debug, Clone)]
pub struct FieldRules {
    rules: Vec<Rule>,
    dfa: Dfa,
}

impl FieldRules {
    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The state at the document root.
    #[inline]
    pub fn root(&self) -> StateId {
        self.dfa.root()
    }

    /// The state after one unescaped key (compared in canonical form:
    /// case and invisible characters do not matter).
    #[inline]
    pub fn step(&self, state: StateId, key: &[u8]) -> StateId {
        let mut buf = Vec::new();
        self.dfa.step(state, selector::canonical_key(key, &mut buf))
    }

    /// Like [`Self::step`], reusing `buf` for the canonical form.
    #[inline]
    pub fn step_with(&self, state: StateId, key: &[u8], buf: &mut Vec<u8>) -> StateId {
        self.dfa.step(state, selector::canonical_key(key, buf))
    }

    /// Like [`Self::step`] for a key already in canonical form
    /// ([`selector::canonical_key`]).
    #[inline]
    pub fn step_canonical(&self, state: StateId, canonical: &[u8]) -> StateId {
        self.dfa.step(state, canonical)
    }

    /// [`Self::step_canonical`] with the key's first eight bytes as a
    /// little-endian number, zero-padded (the JSON fast path has them in a
    /// register already).
    #[inline(always)]
    pub fn step_canonical_head(&self, state: StateId, canonical: &[u8], head: u64) -> StateId {
        self.dfa.step_head(state, canonical, head)
    }

    /// What is known at a state.
    #[inline]
    pub fn info(&self, state: StateId) -> StateInfo {
        self.dfa.info(state)
    }

    /// The rule with this index.
    #[inline]
    pub fn rule(&self, index: u32) -> &Rule {
        &self.rules[index as usize]
    }

    /// Number of automaton states.
    pub fn states(&self) -> usize {
        self.dfa.len()
    }
}

/// Where a header value set on the upstream request comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum HeaderValueSource {
    /// `env:NAME`: read from the environment when the rules load.
    Env(String),
    /// A literal value written in the rule file.
    Literal(String),
}

impl fmt::Debug for HeaderValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderValueSource::Env(name) => write!(f, "env:{name}"),
            // Literal values may be credentials: never printed.
            HeaderValueSource::Literal(_) => f.write_str("literal(redacted)"),
        }
    }
}

/// `[headers]`, validated.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    /// Lower-case names of request headers that may pass.
    pub allow: Vec<String>,
    /// Lower-case header names set on the upstream request.
    pub set: Vec<(String, HeaderValueSource)>,
}

/// A per-recipient rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second (> 0).
    pub per_second: std::num::NonZeroU32,
    /// Burst size (> 0).
    pub burst: std::num::NonZeroU32,
}

/// Body format of a test case or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON document.
    Json,
    /// One JSON document per line.
    Ndjson,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// One `[[tests]]` case, validated.
#[derive(Debug, Clone)]
pub struct RuleTest {
    /// Its name.
    pub name: String,
    /// 1-based line where it starts.
    pub line: usize,
    /// Input body.
    pub input: String,
    /// Body format.
    pub format: BodyFormat,
    /// The input is a URL path (`format = "path"`), not a body.
    pub url_path: bool,
    /// Exact expected output, if given.
    pub expect: Option<String>,
    /// Paths that must be absent.
    pub absent: Vec<String>,
    /// Paths that must be present.
    pub present: Vec<String>,
    /// Paths that must be present and changed.
    pub transformed: Vec<String>,
    /// The input must be refused.
    pub refused: bool,
    /// The expected aggregate report(s), as JSON.
    pub report: Option<serde_json::Value>,
    /// Request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Identifiers on every suppression list for this case.
    pub suppressed: Vec<String>,
    /// Expected number of withheld events.
    pub withheld: Option<u64>,
}

/// A recipient's rule file, validated and compiled. Immutable; shared behind
/// an `Arc` by every request that started while it was current.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// Recipient name (routing key).
    pub recipient: String,
    /// The file it came from.
    pub source: PathBuf,
    /// Upstream base URL.
    pub upstream: String,
    /// Host names claimed for Host-based routing (lower case).
    pub hosts: Vec<String>,
    /// Whether `http://` is allowed to a non-loopback upstream.
    pub allow_plain_http: bool,
    /// Content types passed through untouched (lower case, no parameters).
    pub passthrough_content_types: Vec<String>,
    /// Extra CA bundle for this recipient's upstream (relative to the rule file).
    pub ca_file: Option<PathBuf>,
    /// Rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// Pseudonym scopes; index 0 is the recipient's default scope.
    pub scopes: Vec<String>,
    /// Maximum JSON nesting depth.
    pub max_depth: usize,
    /// Body field rules.
    pub fields: FieldRules,
    /// Query parameter rules (one-segment selectors).
    pub query: FieldRules,
    /// URL path templates; `None`: every path is screened for personal data.
    pub paths: Option<paths::PathRules>,
    /// Header rules.
    pub headers: HeaderRules,
    /// The file's self-tests.
    pub tests: Vec<RuleTest>,
    /// The file's `[[allow]]` entries: lint warnings accepted, with reasons.
    pub allows: Vec<lint::Allow>,
    /// SHA-256 (hex, first 16 chars) of the file text: the rule version.
    pub version: String,
    /// Forward or aggregate.
    pub mode: aggregate::Mode,
    /// `records`: the array whose elements are a body's events.
    pub records: Option<aggregate::FieldPath>,
    /// `[aggregate]`, in aggregate mode.
    pub aggregate: Option<Arc<aggregate::AggregateRules>>,
    /// `[consent]`: events without consent for the purpose are withheld.
    pub consent: Option<consent::ConsentRules>,
    /// `[suppress]`: events whose subject is on a list are withheld.
    pub suppress: Option<consent::SuppressRules>,
}

impl CompiledPolicy {
    /// Whether events are decided one by one before rewriting (`[consent]`
    /// or `[suppress]`): such a body is read whole, never streamed.
    pub fn decides_events(&self) -> bool {
        self.consent.is_some() || self.suppress.is_some()
    }
}

/// Loads one rule file; on problems, the first one (see [`load_file_all`]).
pub fn load_file(path: &Path) -> Result<CompiledPolicy, PolicyError> {
    load_file_all(path).map_err(|mut errors| errors.swap_remove(0))
}

/// Loads one rule file; on problems, all of them, in file order.
pub fn load_file_all(path: &Path) -> Result<CompiledPolicy, Vec<PolicyError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![PolicyError::whole_file(
            diag::FILES,
            path.display().to_string(),
            format!("cannot read rule file: {e}"),
        )]
    })?;
    let mut policy = compile::compile_str_all(&text, &path.display().to_string(), file_stem(path))?;
    policy.source = path.to_path_buf();
    if let Some(ca) = policy.ca_file.as_mut()
        && ca.is_relative()
        && let Some(dir) = path.parent()
    {
        *ca = dir.join(&*ca);
    }
    Ok(policy)
}

fn file_stem(path: &Path) -> &str {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("")
}

/// Expands the command-line `RULES...` arguments: files as given, directories
/// to their `*.toml` files (sorted). Missing paths are errors.
pub fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, PolicyError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| {
                PolicyError::whole_file(
                    diag::FILES,
                    p.display().to_string(),
                    format!("cannot read rules directory: {e}"),
                )
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml") && f.is_file())
                .collect();
            files.sort();
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(PolicyError::whole_file(
                diag::FILES,
                p.display().to_string(),
                "no such file or directory",
            ));
        }
    }
    Ok(out)
}

/// Loads every rule file of a directory (or list of files). Every file is
/// validated; all errors are returned together. Two files claiming the same
/// recipient or host are refused.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Arc<CompiledPolicy>>, Vec<PolicyError>> {
    let files = rule_files(paths).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut policies: Vec<Arc<CompiledPolicy>> = Vec::new();
    for f in files {
        match load_file_all(&f) {
            Ok(p) => {
                if let Some(other) = policies.iter().find(|o| o.recipient == p.recipient) {
                    errors.push(PolicyError::whole_file(
                        diag::FILES,
                        f.display().to_string(),
                        format!(
                            "recipient \"{}\" is already defined by {}",
                            p.recipient,
                            other.source.display()
                        ),
                    ));
                    continue;
                }
                for h in &p.hosts {
                    if let Some(other) = policies.iter().find(|o| o.hosts.contains(h)) {
                        errors.push(PolicyError::whole_file(
                            diag::FILES,
                            f.display().to_string(),
                            format!(
                                "host \"{h}\" is already claimed by recipient \"{}\"",
                                other.recipient
                            ),
                        ));
                    }
                }
                policies.push(Arc::new(p));
            }
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}
