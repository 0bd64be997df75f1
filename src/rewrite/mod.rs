//! The hot path: bytes in, minimised bytes out.
//!
//! [`Engine`] pairs a [`CompiledPolicy`] with the per-scope keys derived from a
//! key ring. From it come incremental rewriters for JSON, NDJSON
//! ([`json::JsonRewriter`]) and form bodies ([`form::FormRewriter`]); each is fed
//! the body in chunks of any size and gives the same output as fed all at once.
//! Nothing here does I/O: the engine is a pure function of (policy, keys,
//! bytes), so an aggregating stage can sit behind it.

mod apply;
pub mod form;
pub mod json;
pub mod path;
#[cfg(feature = "oracle")]
pub mod reference;

/// The value transforms, also at their former path.
pub use crate::transform;

use std::fmt;
use std::sync::Arc;

use crate::policy::action::{Action, DROP_INDEX};
use crate::policy::{BodyFormat, CompiledPolicy, FieldRules};
use crate::pseudonym::{KeyRing, ScopedKey};

pub use form::FormRewriter;
pub use json::JsonRewriter;

/// How many dropped paths a [`Stats`] remembers (for the audit log).
pub const MAX_DROPPED_PATHS: usize = 16;

/// A compiled policy with its keys: everything a rewrite needs.
#[derive(Debug, Clone)]
pub struct Engine {
    policy: Arc<CompiledPolicy>,
    keys: Vec<ScopedKey>,
}

impl Engine {
    /// Derives the per-scope keys of `policy` from the active key of `ring`.
    pub fn new(policy: Arc<CompiledPolicy>, ring: &KeyRing) -> Engine {
        let keys = policy.scopes.iter().map(|s| ring.scoped(s)).collect();
        Engine { policy, keys }
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<CompiledPolicy> {
        &self.policy
    }

    /// The key of scope `index`.
    #[inline]
    pub(crate) fn key(&self, index: usize) -> &ScopedKey {
        &self.keys[index]
    }

    /// An incremental body rewriter for `format`.
    pub fn body_rewriter(&self, format: BodyFormat) -> BodyRewriter<'_> {
        match format {
            BodyFormat::Json => BodyRewriter::Json(JsonRewriter::new(self, false)),
            BodyFormat::Ndjson => BodyRewriter::Json(JsonRewriter::new(self, true)),
            BodyFormat::Form => BodyRewriter::Form(FormRewriter::new(self, &self.policy.fields)),
        }
    }

    /// A rewriter for a query string (`[query]` rules, form encoding).
    pub fn query_rewriter(&self) -> FormRewriter<'_> {
        FormRewriter::new(self, &self.policy.query)
    }

    /// Rewrites a whole body at once.
    pub fn rewrite(&self, format: BodyFormat, input: &[u8]) -> Result<Rewritten, RewriteError> {
        let mut out = Vec::with_capacity(input.len());
        let mut rw = self.body_rewriter(format);
        rw.feed(input, &mut out)?;
        let stats = rw.finish(&mut out)?;
        Ok(Rewritten { body: out, stats })
    }

    /// Rewrites a query string (without the `?`).
    pub fn rewrite_query(&self, query: &[u8]) -> Result<Rewritten, RewriteError> {
        let mut out = Vec::with_capacity(query.len());
        let mut rw = self.query_rewriter();
        rw.feed(query, &mut out)?;
        let stats = rw.finish(&mut out)?;
        Ok(Rewritten { body: out, stats })
    }
}

/// A finished rewrite.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The minimised bytes.
    pub body: Vec<u8>,
    /// What happened to the fields.
    pub stats: Stats,
}

/// An incremental rewriter of one body.
// One lives per request, on the stack; boxing the larger variant would add
// an allocation to every request for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum BodyRewriter<'e> {
    /// JSON or NDJSON.
    Json(JsonRewriter<'e>),
    /// Form-urlencoded.
    Form(FormRewriter<'e>),
}

impl BodyRewriter<'_> {
    /// Feeds the next chunk; appends whatever output is ready to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        match self {
            BodyRewriter::Json(r) => r.feed(chunk, out),
            BodyRewriter::Form(r) => r.feed(chunk, out),
        }
    }

    /// Ends the body; appends the rest of the output.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<Stats, RewriteError> {
        match self {
            BodyRewriter::Json(r) => r.finish(out),
            BodyRewriter::Form(r) => r.finish(out),
        }
    }

    /// The observer slot of either rewriter (`None`: nothing observed).
    fn observer(&self) -> Option<&Observer> {
        match self {
            BodyRewriter::Json(r) => r.observe.as_deref(),
            BodyRewriter::Form(r) => r.observe.as_deref(),
        }
    }

    fn observer_mut(&mut self) -> &mut Observer {
        match self {
            BodyRewriter::Json(r) => r.observe.get_or_insert_default(),
            BodyRewriter::Form(r) => r.observe.get_or_insert_default(),
        }
    }

    /// JSON: reads with the resumable state machine alone (see
    /// [`JsonRewriter::state_machine_only`]); forms have one reader.
    #[doc(hidden)]
    pub fn state_machine_only(&mut self) {
        if let BodyRewriter::Json(r) = self {
            r.state_machine_only();
        }
    }

    /// Turns on `--explain` recording.
    pub fn explain(&mut self) {
        self.observer_mut().entries = Some(Vec::new());
    }

    /// Keeps the counts as of the last completed JSON document (NDJSON
    /// line), for [`Self::completed`].
    pub fn track_completed(&mut self) {
        if let BodyRewriter::Json(r) = self {
            r.track_completed();
        }
    }

    /// With [`Self::track_completed`] on: the field and per-action counts
    /// of the JSON documents (NDJSON lines) completed so far, leaving out
    /// one in progress or refused. `None` for a form body (one record,
    /// complete only when [`Self::finish`] succeeds) or without tracking.
    pub fn completed(&self) -> Option<Stats> {
        match self {
            BodyRewriter::Json(r) => r.completed(),
            BodyRewriter::Form(_) => None,
        }
    }

    /// Records completed so far: NDJSON lines, 1 for a JSON document; a
    /// form body's one record is counted in what [`Self::finish`] returns.
    pub fn documents(&self) -> u64 {
        match self {
            BodyRewriter::Json(r) => r.documents(),
            BodyRewriter::Form(r) => r.documents(),
        }
    }

    /// The recorded decisions (empty unless [`Self::explain`] was called).
    pub fn explained(&self) -> &[Explained] {
        self.observer()
            .and_then(|o| o.entries.as_deref())
            .unwrap_or(&[])
    }
}

/// Counts of what happened to fields. Never holds a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Values (or whole subtrees) passed verbatim.
    pub kept: u64,
    /// Fields removed (default deny, `drop`, or not applicable).
    pub dropped: u64,
    /// Values replaced by an action's output.
    pub transformed: u64,
    /// Of `dropped`: values an action could not apply to.
    pub not_applicable: u64,
    /// Records: NDJSON lines; 1 for a JSON document or a form body.
    pub documents: u64,
    /// The first [`MAX_DROPPED_PATHS`] dropped field paths.
    pub dropped_paths: Vec<String>,
    /// The same decisions counted per action (see [`ActionCounts`]).
    pub by_action: ActionCounts,
}

/// A [`Stats`] as of some point, to roll back to (see [`Stats::counts`]).
#[derive(Debug, Clone)]
pub(crate) struct Counts {
    kept: u64,
    dropped: u64,
    transformed: u64,
    not_applicable: u64,
    paths: usize,
    by_action: ActionCounts,
    documents: u64,
}

impl Stats {
    /// The counts as they are now.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            kept: self.kept,
            dropped: self.dropped,
            transformed: self.transformed,
            not_applicable: self.not_applicable,
            paths: self.dropped_paths.len(),
            by_action: self.by_action.clone(),
            documents: self.documents,
        }
    }

    /// Counts alone as a `Stats` (no dropped paths).
    pub(crate) fn from_counts(c: &Counts) -> Stats {
        Stats {
            kept: c.kept,
            dropped: c.dropped,
            transformed: c.transformed,
            not_applicable: c.not_applicable,
            documents: c.documents,
            dropped_paths: Vec::new(),
            by_action: c.by_action.clone(),
        }
    }

    /// Back to earlier counts (documents are not touched).
    pub(crate) fn roll_back(&mut self, c: Counts) {
        self.kept = c.kept;
        self.dropped = c.dropped;
        self.transformed = c.transformed;
        self.not_applicable = c.not_applicable;
        self.dropped_paths.truncate(c.paths);
        self.by_action = c.by_action;
    }

    /// Counts one decision; `true` when its path should be added to
    /// `dropped_paths` (a removal, while fewer than [`MAX_DROPPED_PATHS`]
    /// are kept). One place for both rewriters and the fast path.
    #[inline]
    pub(crate) fn note(&mut self, action: &Action, outcome: Outcome) -> bool {
        self.by_action.add(action, outcome);
        match outcome {
            Outcome::Kept => self.kept += 1,
            Outcome::Transformed => self.transformed += 1,
            Outcome::Dropped | Outcome::NotApplicable => {
                self.dropped += 1;
                if outcome == Outcome::NotApplicable {
                    self.not_applicable += 1;
                }
                return self.dropped_paths.len() < MAX_DROPPED_PATHS;
            }
            Outcome::Entered => {}
        }
        false
    }

    /// Adds another body's counts (embedded documents).
    pub fn absorb(&mut self, other: &Stats) {
        self.kept += other.kept;
        self.dropped += other.dropped;
        self.transformed += other.transformed;
        self.not_applicable += other.not_applicable;
        self.by_action.merge(&other.by_action);
    }
}

/// Decisions per action: fields that left kept or transformed are counted
/// under their action's name, every field removed (default deny, `drop`, an
/// action that could not apply) under `drop`. Containers entered are not
/// counted; a kept container copied whole counts once. Never holds a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionCounts([u64; crate::policy::action::ACTION_NAMES.len()]);

impl ActionCounts {
    /// Counts one decision by `action` (see [`Action::index`]).
    #[inline]
    pub fn add(&mut self, action: &Action, outcome: Outcome) {
        let i = match outcome {
            Outcome::Entered => return,
            Outcome::Kept | Outcome::Transformed => action.index(),
            Outcome::Dropped | Outcome::NotApplicable => DROP_INDEX,
        };
        self.0[i] += 1;
    }

    /// Adds other counts.
    pub fn merge(&mut self, other: &ActionCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// The count of one action (`drop`: every field removed).
    pub fn get(&self, action: &str) -> u64 {
        action_index(action).map_or(0, |i| self.0[i])
    }

    /// Non-zero counts, in the order of
    /// [`crate::policy::action::ACTION_NAMES`].
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        self.iter().filter(|(_, c)| *c > 0).collect()
    }

    /// Every action with its count, in the order of
    /// [`crate::policy::action::ACTION_NAMES`] (zeros included).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        crate::policy::action::ACTION_NAMES
            .iter()
            .copied()
            .zip(self.0.iter().copied())
    }
}

fn action_index(name: &str) -> Option<usize> {
    crate::policy::action::ACTION_NAMES
        .iter()
        .position(|n| *n == name)
}

/// What happened to a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Passed verbatim.
    Kept,
    /// Removed.
    Dropped,
    /// Replaced by the action's output.
    Transformed,
    /// The action could not apply (wrong type or form): removed.
    NotApplicable,
    /// A container entered; its fields are listed separately.
    Entered,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Kept => "kept",
            Outcome::Dropped => "dropped",
            Outcome::Transformed => "transformed",
            Outcome::NotApplicable => "dropped (action not applicable)",
            Outcome::Entered => "entered",
        })
    }
}

/// One `--explain` line: path, deciding selector, action, outcome. No value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    /// Field path (keys that do not look like identifiers are shown as `<key>`).
    pub path: String,
    /// The deciding selector; `None` for the default deny.
    pub selector: Option<String>,
    /// Whether the decision was inherited from a kept container.
    pub inherited: bool,
    /// The action name.
    pub action: &'static str,
    /// What happened.
    pub outcome: Outcome,
}

/// Opt-in recording of what the rewriters decide: `--explain` lines and
/// per-action counts, for the command line. The gateway never turns it on;
/// a rewriter without one tests a single `Option` per field, as before.
#[derive(Debug, Clone, Default)]
pub struct Observer {
    /// Per-field decisions, when recorded.
    pub entries: Option<Vec<Explained>>,
}

impl Observer {
    /// An empty observer recording what `self` records (for an embedded
    /// document, merged back with [`Self::absorb`]).
    pub(crate) fn fresh(&self) -> Observer {
        Observer {
            entries: self.entries.as_ref().map(|_| Vec::new()),
        }
    }

    /// Records one decision.
    pub(crate) fn record(&mut self, entry: impl FnOnce() -> Explained) {
        if let Some(e) = self.entries.as_mut() {
            e.push(entry());
        }
    }

    /// Merges the observations of an embedded document found at `path`: its
    /// paths become `path>inner` (see docs/cli.md).
    pub(crate) fn absorb(&mut self, path: &str, sub: Observer) {
        if let (Some(e), Some(se)) = (self.entries.as_mut(), sub.entries) {
            for mut x in se {
                x.path = if x.path.is_empty() {
                    format!("{path}>")
                } else {
                    format!("{path}>{}", x.path)
                };
                e.push(x);
            }
        }
    }
}

/// Why a body was refused. Says what and where (byte offset, field path),
/// never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Absolute byte offset in the (decoded) body.
    pub offset: u64,
    /// 1-based NDJSON line, when the body is NDJSON.
    pub line: Option<u64>,
    /// Field path where it happened (may be empty).
    pub path: String,
}

impl RewriteError {
    /// An error of `kind` at byte `offset`, outside NDJSON and any field.
    pub(crate) fn at(kind: ErrorKind, offset: u64) -> RewriteError {
        RewriteError {
            kind,
            offset,
            line: None,
            path: String::new(),
        }
    }
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind, self.offset)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        if !self.path.is_empty() {
            write!(f, " in field {}", self.path)?;
        }
        Ok(())
    }
}

impl std::error::Error for RewriteError {}

/// The kinds of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// Bytes that are not JSON where JSON was expected.
    #[error("invalid JSON: {0}")]
    Syntax(&'static str),
    /// An object with the same key twice (parsers disagree on which wins).
    #[error("duplicate key in object")]
    DuplicateKey,
    /// `\uD800` without its pair, or a low surrogate alone.
    #[error("lone surrogate in string escape")]
    LoneSurrogate,
    /// Not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// Nesting beyond the limit.
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// Data after the document.
    #[error("trailing data after the JSON document")]
    TrailingData,
    /// The body ended inside a document.
    #[error("unexpected end of body")]
    UnexpectedEnd,
    /// A number longer than [`json::MAX_NUMBER_LEN`] bytes.
    #[error("number too long")]
    NumberTooLong,
    /// An NDJSON document that continues on the next line.
    #[error("NDJSON document spans more than one line")]
    LineBreakInDocument,
    /// A malformed `%XX` in a form body or query.
    #[error("invalid percent-encoding")]
    InvalidPercentEncoding,
    /// A JSON key holding U+0000 where the rules decide the part before the
    /// NUL differently: parsers that stop at NUL (C strings) read that part.
    #[error(
        "a key holds a NUL character, and the rules decide the part before it differently (some parsers read only that part)"
    )]
    NulInKey,
    /// A form or query parameter name holding `%00`: PHP and C-string
    /// parsers stop the name there.
    #[error("a parameter name holds a NUL character (some parsers read only what comes before it)")]
    NulInName,
    /// A form or query parameter that is not UTF-8, as written or once
    /// percent-decoded.
    #[error("invalid UTF-8 in a form parameter")]
    FormUtf8,
    /// In NDJSON, a carriage return not followed by a line feed: line
    /// readers that split on a lone CR would see another document.
    #[error("NDJSON: a carriage return not followed by a line feed")]
    BareCarriageReturn,
    /// A form body or query that a JSON reader could read as a document
    /// (`{` or `[` after blanks, invisible characters or comments, as written
    /// or percent-decoded): a partner that reads JSON whatever the
    /// Content-Type would see its fields, which the form rules read as one
    /// parameter name.
    #[error(
        "a form body or query that a JSON reader could read as JSON (`{{` or `[` after blanks or invisible characters): sent with the wrong Content-Type?"
    )]
    JsonAsForm,
}

impl ErrorKind {
    /// Stable machine-readable code (the `code` of the JSON error body).
    pub fn code(&self) -> &'static str {
        match self {
            ErrorKind::TooDeep(_) => "too_deep",
            ErrorKind::InvalidPercentEncoding
            | ErrorKind::JsonAsForm
            | ErrorKind::NulInName
            | ErrorKind::FormUtf8 => "invalid_form",
            ErrorKind::LineBreakInDocument | ErrorKind::BareCarriageReturn => "invalid_ndjson",
            _ => "invalid_json",
        }
    }
}

/// An identifier-shaped key that is more likely data than a name: a token
/// (`sk_live_...`, `ghp_...`, a long run of capitals or digits), an IBAN, a
/// UUID or hex id, a number. Such keys show as `<key>`.
fn looks_like_a_value(key: &[u8]) -> bool {
    const SECRET_PREFIXES: &[&[u8]] = &[
        b"sk_",
        b"pk_",
        b"rk_",
        b"ghp_",
        b"gho_",
        b"ghu_",
        b"ghs_",
        b"ghr_",
        b"github_pat_",
        b"xox",
        b"AKIA",
        b"ASIA",
        b"AIza",
        b"eyJ",
        b"glpat-",
        b"tok_",
    ];
    // Every prefix starts with one of these letters: most keys skip the list.
    let may_be_secret = matches!(
        key.first(),
        Some(b's' | b'p' | b'r' | b'g' | b'x' | b'A' | b'e' | b't')
    );
    if may_be_secret && SECRET_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return true;
    }
    // IBAN: country letters, check digits, then the account.
    if key.len() >= 15
        && key[..2].iter().all(u8::is_ascii_uppercase)
        && key[2..4].iter().all(u8::is_ascii_digit)
    {
        return true;
    }
    // One pass: a run of 5 digits, a run of 8 hex digits holding a digit,
    // or a word (between `_`, `-`, `$`) of 12 or more mostly of capitals and
    // digits.
    let mut digits = 0usize;
    let mut hex_run = (0usize, false);
    let mut word = (0usize, 0usize);
    for &b in key {
        let class = NAME_BYTE[b as usize];
        let digit = class & DIGIT != 0;
        digits = if digit { digits + 1 } else { 0 };
        hex_run = if class & HEX != 0 {
            (hex_run.0 + 1, hex_run.1 || digit)
        } else {
            (0, false)
        };
        if digits >= 5 || (hex_run.0 >= 8 && hex_run.1) {
            return true;
        }
        if class & SEPARATOR != 0 {
            if loud_word(word) {
                return true;
            }
            word = (0, 0);
        } else {
            word = (word.0 + 1, word.1 + usize::from(class & LOUD != 0));
        }
    }
    loud_word(word)
}

/// A word of at least 12 bytes, at least half of them capitals or digits
/// (`(length, capitals and digits)`).
#[inline]
fn loud_word((len, loud): (usize, usize)) -> bool {
    len >= 12 && loud * 2 >= len
}

const DIGIT: u8 = 1;
const HEX: u8 = 2;
/// A capital or a digit.
const LOUD: u8 = 4;
const SEPARATOR: u8 = 8;
/// May appear in a key shown as it is (after a letter, `_` or `$` first).
const NAME: u8 = 16;

/// What [`looks_like_a_value`] and [`push_path_key`] ask of a key's bytes.
static NAME_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut k = 0;
        if c.is_ascii_digit() {
            k |= DIGIT | LOUD;
        }
        if c.is_ascii_hexdigit() {
            k |= HEX;
        }
        if c.is_ascii_uppercase() {
            k |= LOUD;
        }
        if c == b'_' || c == b'-' || c == b'$' {
            k |= SEPARATOR;
        }
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'$' {
            k |= NAME;
        }
        t[b] = k;
        b += 1;
    }
    t
};

/// Renders a field path from its keys: identifier-like keys verbatim, any
/// other key as `<key>` (keys can themselves be personal, e.g. a map keyed by
/// email address, and must not reach a log).
pub(crate) fn push_path_key(path: &mut String, key: &[u8], rules: &FieldRules) {
    if !path.is_empty() {
        path.push('.');
    }
    let ident = !key.is_empty()
        && key.len() <= 40
        && (key[0].is_ascii_alphabetic() || key[0] == b'_' || key[0] == b'$')
        && key.iter().all(|&b| NAME_BYTE[b as usize] & NAME != 0)
        && !looks_like_a_value(key);
    if ident {
        // Identifier bytes are ASCII, and none needs quoting.
        path.push_str(std::str::from_utf8(key).unwrap_or("<key>"));
        return;
    }
    let named = || {
        rules.rules().iter().any(|r| {
            r.selector
                .segments()
                .iter()
                .any(|s| matches!(s, crate::policy::Segment::Key(k) if k.as_bytes() == key))
        })
    };
    match std::str::from_utf8(key) {
        Ok(k) if named() => {
            if k.contains(['.', '"', '*']) {
                path.push_str(&format!("{k:?}"));
            } else {
                path.push_str(k);
            }
        }
        _ => path.push_str("<key>"),
    }
}
