//! `application/x-www-form-urlencoded` bodies and query strings.
//!
//! Each `name=value` parameter is a top-level field: the name is matched
//! after percent-decoding (`em%61il` is `email`), so the same selectors apply
//! as for JSON keys. Kept parameters pass byte for byte; transformed values
//! are re-encoded. A repeated name is rewritten each time it occurs.
//!
//! A raw `;` separates parameters like `&` (some servers split on it, as
//! HTML 4 recommended): otherwise `v=1;email=x` would pass as the value of a
//! kept `v` and reach a partner that splits on `;` as `email=x`. The output
//! always joins with `&`.
//!
//! The raw bytes must be UTF-8, not only the decoded ones: `%C6` followed by
//! a raw 0x96 byte decodes to `Ɩ` for a parser that percent-decodes bytes
//! first, but to `%C6` and U+FFFD for one that reads the text first. What
//! parsers read differently is refused, so a kept parameter (which passes
//! byte for byte) means the same to every parser.
//!
//! A name with `[`, `.` or a space is read the ways a partner's parser may
//! read it (see `decide`): `email[]`, `user[email]` or `user.email` cannot
//! pass under a `*` keep when a rule names `email` or `user_email`.

use super::apply::{self, Out, Scalar};
use super::json::rewrite_embedded;
use super::{Engine, ErrorKind, Explained, Observer, Outcome, RewriteError, Stats};
use crate::policy::dfa::{DEAD, StateId};
use crate::policy::{Action, FieldRules, Segment};

/// Incremental form / query rewriter.
#[derive(Debug)]
pub struct FormRewriter<'e> {
    engine: &'e Engine,
    rules: &'e FieldRules,
    pending: Vec<u8>,
    /// Absolute offset of `pending[0]`.
    base: u64,
    emitted: bool,
    stats: Stats,
    /// `--explain` and per-action counts (command line only).
    pub(super) observe: Option<Box<Observer>>,
    error: Option<RewriteError>,
    /// Reused for the PHP reading of a name (see [`decide`]).
    scratch: Vec<u8>,
    /// Whether the start of the input was screened for a JSON document
    /// (see [`json_prefix`]).
    screened: bool,
}

impl<'e> FormRewriter<'e> {
    /// A rewriter applying `rules` (body fields or `[query]`).
    pub fn new(engine: &'e Engine, rules: &'e FieldRules) -> FormRewriter<'e> {
        FormRewriter {
            engine,
            rules,
            pending: Vec::new(),
            base: 0,
            emitted: false,
            stats: Stats::default(),
            observe: None,
            error: None,
            scratch: Vec::new(),
            screened: false,
        }
    }

    /// Records completed so far: 0, as a form body (or query string) is
    /// one record, counted in the [`Stats`] that [`Self::finish`] returns.
    pub fn documents(&self) -> u64 {
        self.stats.documents
    }

    /// Feeds a chunk: every complete parameter (up to the last `&`) is written.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.pending.extend_from_slice(chunk);
        if !self.screened {
            match json_prefix(&self.pending, false) {
                Prefix::NeedMore if self.pending.len() <= MAX_BLANK_PREFIX => return Ok(()),
                Prefix::NotJson => self.screened = true,
                _ => return Err(self.refuse_json()),
            }
        }
        let Some(last_amp) = memchr::memrchr2(b'&', b';', &self.pending) else {
            return Ok(());
        };
        let buf = std::mem::take(&mut self.pending);
        let r = self.pairs(&buf[..last_amp], out);
        self.pending = buf;
        self.pending.drain(..=last_amp);
        self.base += last_amp as u64 + 1;
        r.inspect_err(|e| self.error = Some(e.clone()))
    }

    /// Ends the body.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<Stats, RewriteError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if !self.screened && json_prefix(&self.pending, true) != Prefix::NotJson {
            return Err(self.refuse_json());
        }
        self.screened = true;
        let buf = std::mem::take(&mut self.pending);
        self.pairs(&buf, out)
            .inspect_err(|e| self.error = Some(e.clone()))?;
        // The whole body is one record, however many parameters it holds
        // (an empty one too: it is forwarded as one request).
        self.stats.documents = 1;
        Ok(std::mem::take(&mut self.stats))
    }

    fn refuse_json(&mut self) -> RewriteError {
        let e = RewriteError::at(ErrorKind::JsonAsForm, 0);
        self.error = Some(e.clone());
        e
    }

    fn pairs(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let mut at = 0;
        for pair in buf.split(|&b| b == b'&' || b == b';') {
            self.pair(pair, at, out)?;
            at += pair.len() + 1;
        }
        Ok(())
    }

    fn pair(&mut self, raw: &[u8], at: usize, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if raw.is_empty() {
            return Ok(());
        }
        let offset = self.base + at as u64;
        if let Err(e) = std::str::from_utf8(raw) {
            return Err(RewriteError::at(
                ErrorKind::FormUtf8,
                offset + e.valid_up_to() as u64,
            ));
        }
        let eq = memchr::memchr(b'=', raw);
        let (name_raw, value_raw) = match eq {
            Some(p) => (&raw[..p], &raw[p + 1..]),
            None => (raw, &raw[raw.len()..]),
        };
        let value_at = offset + eq.map_or(raw.len(), |p| p + 1) as u64;
        let name = decode(name_raw, offset)?;
        if name.contains(&0) {
            // Key canonicalisation ignores U+0000; PHP stops the name there.
            return Err(RewriteError::at(ErrorKind::NulInName, offset));
        }
        if std::str::from_utf8(&name).is_err() {
            return Err(RewriteError::at(ErrorKind::FormUtf8, offset));
        }
        let decided = decide(self.rules, &name, &mut self.scratch);
        let rule = decided.map(|(r, _)| r);
        let state = decided.map_or(DEAD, |(_, s)| s);
        let action = rule.map_or(&Action::Drop, |r| &self.rules.rule(r).action);
        // Every value is validated, kept or not: a malformed body is refused
        // whole, never partly forwarded.
        let value = decode(value_raw, value_at)?;
        let value = std::str::from_utf8(&value).map_err(|e| RewriteError {
            path: self.path_of(&name),
            ..RewriteError::at(ErrorKind::FormUtf8, value_at + e.valid_up_to() as u64)
        })?;
        let mut embedded_seen = None;
        let outcome = match action {
            Action::Keep => {
                self.emit(out, raw);
                Outcome::Kept
            }
            Action::Drop => Outcome::Dropped,
            _ => {
                let result = match action {
                    Action::EmbeddedJson { base64 } => {
                        let depth = self.engine.policy().max_depth;
                        rewrite_embedded(
                            self.engine,
                            self.rules,
                            state,
                            value,
                            *base64,
                            depth,
                            self.observe.as_deref(),
                        )
                        .map(|(s, sub, seen)| {
                            self.stats.absorb(&sub);
                            embedded_seen = seen;
                            Out::Str(s)
                        })
                    }
                    _ => apply::apply_scalar(self.engine, action, Scalar::Str(value), None),
                };
                match result {
                    None => Outcome::NotApplicable,
                    Some(Out::Original) => {
                        self.emit(out, raw);
                        Outcome::Kept
                    }
                    Some(Out::Str(s) | Out::Num(s)) => {
                        let mut pair = name_raw.to_vec();
                        pair.push(b'=');
                        encode_into(s.as_bytes(), &mut pair);
                        self.emit(out, &pair);
                        Outcome::Transformed
                    }
                    Some(Out::Written) => Outcome::Transformed,
                }
            }
        };
        if self.stats.note(action, outcome) {
            let p = self.path_of(&name);
            self.stats.dropped_paths.push(p);
        }
        if self.observe.is_some() {
            let path = self.path_of(&name);
            let rules = self.rules;
            let name = action.name();
            if let Some(o) = self.observe.as_mut() {
                o.record(|| Explained {
                    path: path.clone(),
                    selector: rule.map(|r| rules.rule(r).text.clone()),
                    inherited: false,
                    action: name,
                    outcome,
                });
                if let Some(seen) = embedded_seen {
                    o.absorb(&path, *seen);
                }
            }
        }
        Ok(())
    }

    fn emit(&mut self, out: &mut Vec<u8>, pair: &[u8]) {
        if self.emitted {
            out.push(b'&');
        }
        self.emitted = true;
        out.extend_from_slice(pair);
    }

    fn path_of(&self, name: &[u8]) -> String {
        let mut p = String::new();
        super::push_path_key(&mut p, name, self.rules);
        p
    }
}

/// Longest run of blanks, invisible characters and comments accepted
/// before the first parameter (more is refused: a JSON reader might still
/// find a document after it).
const MAX_BLANK_PREFIX: usize = 64 * 1024;

/// What the start of a form body or query is to a JSON reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    /// A JSON reader could read a document here.
    Json,
    /// No JSON reader reads this as a document.
    NotJson,
    /// Only blanks so far: the next bytes decide.
    NeedMore,
}

/// Whether a JSON reader could read `raw` (the start of a form body or a
/// query) as a JSON document. Such input is refused: under `"*" = "keep"`
/// the whole document would pass as one parameter name, and a partner that
/// parses JSON whatever the Content-Type says (or that percent-decodes the
/// body first) would read every field in it.
///
/// Readers skip more than JSON's four blanks before a document: a BOM,
/// form feeds and other Unicode white space, format characters (zero-width
/// space, bidi marks), control characters, comments (JSON5, lenient Gson,
/// Jackson's `ALLOW_COMMENTS`) and the `)]}'` anti-hijacking prefix (Gson,
/// Angular). All of them are skipped, as written and percent-decoded
/// (`+` is a space), before looking for `{` or `[`.
fn json_prefix(raw: &[u8], complete: bool) -> Prefix {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Blank,
        /// After a `/`: a comment may start.
        Slash,
        Line,
        Block,
        /// In a block comment, after a `*`.
        BlockStar,
        /// This many characters of `)]}'` seen.
        Xssi(usize),
    }
    const XSSI: [char; 4] = [')', ']', '}', '\''];
    let mut state = State::Blank;
    let mut unit = [0u8; 4];
    let mut len = 0;
    let mut i = 0;
    while i < raw.len() {
        let b = match raw[i] {
            b'%' => match raw.get(i + 1..i + 3) {
                Some(&[h, l]) => match (hex(h), hex(l)) {
                    (Some(h), Some(l)) => {
                        i += 2;
                        h << 4 | l
                    }
                    // A malformed escape is refused by `decode` anyway.
                    _ => return Prefix::NotJson,
                },
                _ if complete => return Prefix::NotJson,
                _ => return Prefix::NeedMore,
            },
            b'+' => b' ',
            b => b,
        };
        i += 1;
        if len == unit.len() {
            return Prefix::NotJson;
        }
        unit[len] = b;
        len += 1;
        let c = match std::str::from_utf8(&unit[..len]) {
            Ok(s) => s.chars().next().unwrap_or(' '),
            Err(e) if e.error_len().is_none() => continue,
            Err(_) => return Prefix::NotJson,
        };
        len = 0;
        state = match (state, c) {
            (State::Line, '\n' | '\r') => State::Blank,
            (State::Line, _) => State::Line,
            (State::Block | State::BlockStar, '*') => State::BlockStar,
            (State::BlockStar, '/') => State::Blank,
            (State::Block | State::BlockStar, _) => State::Block,
            (State::Slash, '/') => State::Line,
            (State::Slash, '*') => State::Block,
            (State::Slash, _) => return Prefix::NotJson,
            (State::Xssi(n), c) if c == XSSI[n] => {
                if n + 1 == XSSI.len() {
                    State::Blank
                } else {
                    State::Xssi(n + 1)
                }
            }
            (State::Xssi(_), _) => return Prefix::NotJson,
            (State::Blank, '{' | '[') => return Prefix::Json,
            (State::Blank, '/') => State::Slash,
            (State::Blank, ')') => State::Xssi(1),
            // Gson and Angular strip `)]}',` and a line break.
            (State::Blank, ',') => State::Blank,
            (State::Blank, c) if skipped_before_json(c) => State::Blank,
            (State::Blank, _) => return Prefix::NotJson,
        };
    }
    if complete {
        Prefix::NotJson
    } else {
        Prefix::NeedMore
    }
}

/// Characters a JSON reader may skip before a document: Unicode white
/// space, control and format characters (the BOM among them), and the
/// other characters that render as nothing.
fn skipped_before_json(c: char) -> bool {
    c.is_whitespace() || c.is_control() || crate::chars::is_invisible(c)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A decision for one parameter: the deciding rule and the state it was
/// decided in (for `embedded_json`), or `None` to drop.
pub(crate) type Decision = Option<(u32, StateId)>;

/// Decides a parameter by its percent-decoded `name`.
///
/// A plain name (no `[`, `.` or space) is one key, decided as a JSON key at
/// the root. Any other name may be read differently by the partner: PHP,
/// Rack/Rails and Node `qs` read `email[]` and `email[0]` as `email`,
/// `user[email]` as `email` inside `user`; `qs` (with `allowDots`) reads
/// `user.email` as `email` inside `user`; PHP turns `.` and spaces in the
/// base name into `_` (`user.email` is `user_email`). So the name as written
/// decides first, then each of these readings may only restrict it:
///
/// * every piece of the name between `[`, `]` and `.`, as a single key;
/// * the PHP base name (before the first `[`, leading spaces removed, spaces
///   and `.` turned into `_`; an unclosed `[` becomes `_` too, and after it
///   PHP 8 also turns spaces, `.` and `[` into `_`, PHP 7 does not);
/// * the paths `base[a][b]`, `a.b[c]` and `php_base[a][b]` as nested keys
///   (empty and all-digit segments are array positions and skipped), with
///   `keep` and `drop` on a container inherited below it as in JSON.
///
/// A reading counts only when a rule naming a key decides it (not `*`, `**`
/// or the default deny: those already decided the name as written). Readings
/// combine like this: equal actions agree, `keep` gives way to any other
/// action, `drop` wins, and two different transforms drop the parameter. A
/// reading can therefore only make the outcome stricter than the name as
/// written.
pub(crate) fn decide(rules: &FieldRules, name: &[u8], scratch: &mut Vec<u8>) -> Decision {
    let d = readings(rules, name, scratch);
    // Spring binds `!email` to `email` when no `email` is sent (a default
    // value): that name is one more reading.
    match name.strip_prefix(b"!") {
        Some(rest) if !rest.is_empty() => restrict(rules, d, readings(rules, rest, scratch)),
        _ => d,
    }
}

/// `d` met with another reading, when a rule naming a key decides that one
/// (`*`, `**` and the default deny already decided the name as written).
fn restrict(rules: &FieldRules, d: Decision, other: Decision) -> Decision {
    match other {
        Some((r, _)) if is_named(rules, r) => meet(rules, d, other),
        _ => d,
    }
}

/// [`decide`] without Spring's `!` prefix.
fn readings(rules: &FieldRules, name: &[u8], scratch: &mut Vec<u8>) -> Decision {
    let full = single(rules, name);
    if !name.iter().any(|&b| matches!(b, b'[' | b']' | b'.' | b' ')) {
        return full;
    }
    let mut d = full;
    let consider = |d: &mut Decision, other: Decision| *d = restrict(rules, *d, other);
    // Spring reads quoted map keys: `user['email']` is `email` in `user`.
    let quoted = name.iter().any(|&b| matches!(b, b'\'' | b'"'));
    for piece in name.split(|&b| matches!(b, b'[' | b']' | b'.')) {
        consider(&mut d, single(rules, piece));
        if quoted && unquote(piece) != piece {
            consider(&mut d, single(rules, unquote(piece)));
        }
    }
    let unclosed = php_base(name, scratch, true);
    consider(&mut d, single(rules, scratch));
    let base = &name[..memchr::memchr(b'[', name).unwrap_or(name.len())];
    let brackets = |b: u8| matches!(b, b'[' | b']');
    let brackets_and_dots = |b: u8| matches!(b, b'[' | b']' | b'.');
    // Digits are array positions to PHP, qs and Spring, but hash keys to
    // Rack (`user[0]` is `{"user":{"0":..}}`): both readings count.
    for digits_are_keys in [false, true] {
        let nested = |keys: &mut dyn Iterator<Item = &[u8]>| walk(rules, keys, digits_are_keys);
        // qs and Spring: the base, then every `[...]` group.
        consider(
            &mut d,
            nested(&mut std::iter::once(base).chain(bracket_segments(name))),
        );
        // PHP: the base, then `[...]` groups up to the first `]` that is not
        // followed by `[` (PHP ignores the rest: `a[b]c[d]` is `a.b`).
        consider(
            &mut d,
            nested(&mut std::iter::once(base).chain(php_segments(name))),
        );
        // qs with `allowDots`, .NET and Spring: dots in the base nest too.
        consider(
            &mut d,
            nested(&mut base.split(|&b| b == b'.').chain(bracket_segments(name))),
        );
        consider(
            &mut d,
            nested(&mut std::iter::once(&scratch[..]).chain(bracket_segments(name))),
        );
        // Rack 2 reads every run of `[` and `]` as a separator, whether or
        // not it pairs up: `user]email` is `user.email`, `]]password` is
        // `password`, `a[b]c` is `a.b.c`.
        consider(&mut d, nested(&mut name.split(|&b| brackets(b))));
        consider(&mut d, nested(&mut name.split(|&b| brackets_and_dots(b))));
    }
    // PHP 7 reads the rest after an unclosed `[` differently (it has no
    // bracket segments, so its single name is the whole reading).
    if unclosed {
        php_base(name, scratch, false);
        consider(&mut d, single(rules, scratch));
    }
    if quoted {
        consider(
            &mut d,
            walk(
                rules,
                &mut std::iter::once(base).chain(bracket_segments(name).map(unquote)),
                false,
            ),
        );
    }
    d
}

/// A bracket segment without one pair of enclosing quotes (`'a'`, `"a"`).
fn unquote(seg: &[u8]) -> &[u8] {
    match seg {
        [q @ (b'\'' | b'"'), inner @ .., e] if e == q => inner,
        _ => seg,
    }
}

/// `key` decided as one key at the root.
fn single(rules: &FieldRules, key: &[u8]) -> Decision {
    let s = rules.step(rules.root(), key);
    rules.info(s).decision.map(|r| (r, s))
}

/// Whether rule `r` names a key (is not only `*` and `**`).
fn is_named(rules: &FieldRules, r: u32) -> bool {
    rules
        .rule(r)
        .selector
        .segments()
        .iter()
        .any(|s| matches!(s, Segment::Key(_)))
}

/// The decision for a value at the nested path `keys`, as the JSON rewriter
/// would make it for a scalar there: a container's `keep` or `drop` is
/// inherited below it; another action on a container decides the value
/// unless some rule reaches below (then it is dropped).
fn walk(
    rules: &FieldRules,
    keys: &mut dyn Iterator<Item = &[u8]>,
    digits_are_keys: bool,
) -> Decision {
    let mut keys = keys
        .filter(|k| !k.is_empty() && (digits_are_keys || !k.iter().all(u8::is_ascii_digit)))
        .peekable();
    let mut state = rules.root();
    let mut inherited: Decision = None;
    while let Some(k) = keys.next() {
        state = rules.step(state, k);
        let info = rules.info(state);
        let last = keys.peek().is_none();
        match info.decision {
            Some(r) if last => return Some((r, state)),
            Some(r) => match rules.rule(r).action {
                Action::Keep | Action::Drop => inherited = Some((r, state)),
                _ if info.descend_any => return None,
                _ => return Some((r, state)),
            },
            None if last => return inherited,
            None if state == DEAD => return inherited,
            None => {}
        }
    }
    inherited
}

/// The `[...]` groups of a name after its base, as `qs` finds them: each `[`
/// followed by a run without `[` or `]` and a `]`.
fn bracket_segments(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    let start = memchr::memchr(b'[', name).unwrap_or(name.len());
    let mut rest = &name[start..];
    std::iter::from_fn(move || {
        loop {
            let open = memchr::memchr(b'[', rest)?;
            let after = &rest[open + 1..];
            match after.iter().position(|&b| b == b'[' || b == b']') {
                Some(i) if after[i] == b']' => {
                    rest = &after[i + 1..];
                    return Some(&after[..i]);
                }
                Some(i) => rest = &after[i..],
                None => return None,
            }
        }
    })
}

/// The `[...]` groups of a name after its base, as PHP reads them: they
/// must follow one another; after a `]` that is not followed by `[`, PHP
/// ignores the rest of the name.
fn php_segments(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    let start = memchr::memchr(b'[', name).unwrap_or(name.len());
    let mut rest = &name[start..];
    std::iter::from_fn(move || {
        let after = rest.strip_prefix(b"[")?;
        let close = memchr::memchr(b']', after)?;
        rest = &after[close + 1..];
        Some(&after[..close])
    })
}

/// The base name as PHP registers it, into `out`: leading spaces removed,
/// then up to the first `[` that has a `]` after it, spaces and `.` become
/// `_`; an unclosed `[` becomes `_`, and the rest is taken as it is by PHP 7
/// while PHP 8 also turns its spaces, `.` and `[` into `_`
/// (`php_register_variable_ex`). Returns whether there was an unclosed `[`
/// (the only case where the two versions differ).
fn php_base(name: &[u8], out: &mut Vec<u8>, php8: bool) -> bool {
    out.clear();
    let name = &name[name.iter().take_while(|&&b| b == b' ').count()..];
    for (i, &b) in name.iter().enumerate() {
        match b {
            b'[' if memchr::memchr(b']', &name[i..]).is_some() => return false,
            b'[' => {
                out.push(b'_');
                out.extend(name[i + 1..].iter().map(|&b| match b {
                    b' ' | b'.' | b'[' if php8 => b'_',
                    _ => b,
                }));
                return true;
            }
            b' ' | b'.' => out.push(b'_'),
            _ => out.push(b),
        }
    }
    false
}

/// Two decisions combined: the stricter one, or a drop when neither is.
fn meet(rules: &FieldRules, a: Decision, b: Decision) -> Decision {
    let ((ra, _), (rb, _)) = (a?, b?);
    let (x, y) = (&rules.rule(ra).action, &rules.rule(rb).action);
    if ra == rb || same_effect(x, y) {
        return a;
    }
    match (x, y) {
        (Action::Drop, _) | (_, Action::Keep) => a,
        (_, Action::Drop) | (Action::Keep, _) => b,
        _ => None,
    }
}

/// Whether two actions give the same output for every value. Conservative:
/// `scan` and `embedded_json` only as the same rule.
fn same_effect(a: &Action, b: &Action) -> bool {
    use Action as A;
    match (a, b) {
        (A::Keep, A::Keep) | (A::Drop, A::Drop) | (A::MaskEmail, A::MaskEmail) => true,
        (
            A::Pseudonymise {
                normalise: n1,
                scope: s1,
                bits: b1,
            },
            A::Pseudonymise {
                normalise: n2,
                scope: s2,
                bits: b2,
            },
        ) => n1 == n2 && s1 == s2 && b1 == b2,
        (A::HashSha256 { normalise: n1 }, A::HashSha256 { normalise: n2 }) => n1 == n2,
        (
            A::TruncateIp {
                v4_prefix: a4,
                v6_prefix: a6,
            },
            A::TruncateIp {
                v4_prefix: b4,
                v6_prefix: b6,
            },
        ) => a4 == b4 && a6 == b6,
        (A::CoarsenTime { unit: u1 }, A::CoarsenTime { unit: u2 }) => u1 == u2,
        (A::Bucket { bounds: b1 }, A::Bucket { bounds: b2 }) => b1 == b2,
        (A::StripQuery { keep_params: k1 }, A::StripQuery { keep_params: k2 }) => k1 == k2,
        (A::Redact { with: w1, .. }, A::Redact { with: w2, .. }) => w1 == w2,
        _ => false,
    }
}

/// Percent-decodes a form component (`+` is a space). A `%` not followed by
/// two hex digits is refused: parsers disagree on what it means.
pub fn decode(raw: &[u8], offset: u64) -> Result<Vec<u8>, RewriteError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .filter(|_| raw[i + 1].is_ascii_hexdigit() && raw[i + 2].is_ascii_hexdigit());
                match hex {
                    Some(b) => out.push(b),
                    None => {
                        return Err(RewriteError::at(
                            ErrorKind::InvalidPercentEncoding,
                            offset + i as u64,
                        ));
                    }
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

/// Form-encodes bytes (WHATWG application/x-www-form-urlencoded serializer).
pub fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b),
            b' ' => out.push(b'+'),
            _ => {
                out.push(b'%');
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(decode(b"em%61il+x", 0).unwrap(), b"email x");
        let e = decode(b"ab%zz", 10).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidPercentEncoding);
        assert_eq!(e.offset, 12);
        assert!(decode(b"%4", 0).is_err());
        assert!(decode(b"%+1", 0).is_err());
    }

    #[test]
    fn encoding_round_trips() {
        let mut out = Vec::new();
        encode_into("a b&c=d/é".as_bytes(), &mut out);
        assert_eq!(out, b"a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(decode(&out, 0).unwrap(), "a b&c=d/é".as_bytes());
    }

    fn engine(rules: &str) -> Engine {
        let text = format!("upstream = \"https://p.example\"\n{rules}");
        let policy = crate::policy::compile_str(&text, "t.toml", "t").unwrap();
        Engine::new(
            std::sync::Arc::new(policy),
            &crate::pseudonym::KeyRing::test_ring(),
        )
    }

    fn form(e: &Engine, body: &str) -> String {
        let out = e.rewrite(crate::policy::BodyFormat::Form, body.as_bytes());
        String::from_utf8(out.unwrap().body).unwrap()
    }

    #[test]
    fn raw_bytes_that_are_not_utf8_are_refused_even_when_they_decode_to_utf8() {
        // `%C6` + raw 0x96 decodes to "Ɩ" but is not UTF-8 as written: a
        // kept parameter passes byte for byte, so it must be refused.
        let e = engine("[query]\nv = \"keep\"\n[fields]\nv = \"keep\"\n");
        for (input, at) in [(&b"a=1&V=%c6\x96&d=x"[..], 9), (&b"v\xff=1"[..], 1)] {
            let err = e.rewrite_query(input).unwrap_err();
            assert_eq!(err.kind, ErrorKind::FormUtf8, "{input:?}");
            assert_eq!(err.offset, at, "{input:?}");
            let err = e
                .rewrite(crate::policy::BodyFormat::Form, input)
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::FormUtf8, "{input:?}");
        }
        // Raw UTF-8 (as some clients send it) still passes as written.
        let out = e.rewrite_query("v=é%C3%A9".as_bytes()).unwrap();
        assert_eq!(out.body, "v=é%C3%A9".as_bytes());
    }

    const STAR_KEEP: &str = r#"
[fields]
"*" = "keep"
"email" = "pseudonymise"
"user_email" = "pseudonymise"
"password" = "drop"
"user.phone" = "drop"
"#;

    #[test]
    fn bracket_dot_and_php_names_meet_the_named_rule() {
        let e = engine(STAR_KEEP);
        for (name, kept) in [
            ("email[]", false),
            ("email%5B%5D", false),
            ("email[0]", false),
            ("user[email]", false),
            ("user[email][]", false),
            ("a[b][email]", false),
            ("user.email", false),
            ("user+email", false),
            ("user%20email", false),
            ("+user.email", false),
            ("user.email[x]", false),
            ("user[email", false),
            ("user[phone]", false),
            ("user.phone", false),
            // Rack 2 reads runs of `[` and `]` as separators, paired or not.
            ("user]phone", false),
            ("user]]phone", false),
            ("]email", false),
            ("]]email", false),
            ("user[]phone", false),
            ("x[user]phone", true),
            ("user[x]phone", true),
            ("user]x[phone", true),
            // PHP stops after a `]` not followed by `[`: `user[phone]x`.
            ("user[phone]x", false),
            ("user[phone]x[y]", false),
            // Rack: digits are hash keys, qs and PHP: positions.
            ("user[0]", true),
            ("user[phone][0]", false),
            // Nothing named: `*` decides as before.
            ("event[]", true),
            ("a.b", true),
            ("items[0][sku]", true),
        ] {
            let out = form(&e, &format!("{name}=alice%40example.com&x=1"));
            assert_eq!(out.contains("alice"), kept, "{name}: {out}");
            assert!(out.ends_with("x=1"), "{name}: {out}");
        }
        for name in [
            "password[]",
            "password[0]",
            "user[password]",
            "pass.word",
            "]password",
            "]]password",
            "user]password",
            "a]b[password",
        ] {
            let out = form(&e, &format!("{name}=hunter2"));
            if name == "pass.word" {
                assert_eq!(out, "pass.word=hunter2");
            } else {
                assert_eq!(out, "", "{name}");
            }
        }
        // `[email]` first in a body starts like JSON; later it reads as `email`.
        let out = form(&e, "x=1&[email]=alice%40example.com&%5Bpassword%5D=p");
        assert!(out.starts_with("x=1&[email]=test."), "{out}");
        assert!(!out.contains("alice") && !out.contains("password"), "{out}");
        // One named rule: applied (the name stays as written).
        let out = form(&e, "email[]=alice%40example.com");
        assert!(
            out.starts_with("email[]=") && !out.contains("alice"),
            "{out}"
        );
    }

    #[test]
    fn disagreeing_readings_drop() {
        let e = engine(
            r#"
[fields]
"*" = "keep"
"email" = "pseudonymise"
"user" = { action = "redact", with = "x" }
"ip" = "truncate_ip"
"note" = "pseudonymise"
"#,
        );
        // email (pseudonymise) and user (redact) disagree: dropped.
        assert_eq!(form(&e, "user[email]=a&k=1"), "k=1");
        // Same action from two rules: applied.
        let out = form(&e, "email[note]=a");
        assert!(
            out.starts_with("email[note]=") && !out.ends_with("=a"),
            "{out}"
        );
        assert_eq!(form(&e, "ip[email]=1.2.3.4"), "");
    }

    #[test]
    fn readings_never_loosen_the_name_as_written() {
        // No `*`: a bracketed name is not allowed by a rule for its base.
        let e = engine(
            r#"
[fields]
"email" = "pseudonymise"
"user" = "keep"
'"a.b"' = "keep"
"#,
        );
        assert_eq!(form(&e, "email[]=x&user[email]=y&x[user]=z"), "");
        assert_eq!(form(&e, "a.b=1"), "a.b=1");
    }

    #[test]
    fn php_8_and_php_7_readings_after_an_unclosed_bracket_both_count() {
        let e = engine(
            "[fields]\n\"*\" = \"keep\"\n\"billing_address_line\" = \"drop\"\n'\"a_b.c\"' = \"drop\"\n",
        );
        // PHP 8: billing_address_line; PHP 7: billing_address.line etc.
        for name in [
            "billing[address.line",
            "billing[address+line",
            "billing[address[line",
        ] {
            assert_eq!(form(&e, &format!("{name}=1+Main+St&k=1")), "k=1", "{name}");
        }
        // PHP 7 reading only: `a[b.c` is `a_b.c` there (`a_b_c` in PHP 8).
        assert_eq!(form(&e, "a[b.c=1&k=1"), "k=1");
        assert_eq!(form(&e, "billing[other=1"), "billing[other=1");
    }

    #[test]
    fn spring_default_prefix_and_quoted_map_keys_meet_the_named_rule() {
        let e = engine(STAR_KEEP);
        let out = form(
            &e,
            "!email=a%40b.c&user['email']=x&user[\"email\"]=y&!password=p&!x=1&!=2",
        );
        assert!(
            !out.contains("a%40b.c") && !out.contains("=x&") && !out.contains("=y"),
            "{out}"
        );
        assert!(out.contains("!email=test."), "{out}");
        assert!(out.contains("user['email']=test."), "{out}");
        assert!(!out.contains("password"), "{out}");
        assert!(out.contains("!x=1") && out.contains("!=2"), "{out}");
        // Readings never loosen: without `*`, `!email` is dropped.
        let strict = engine("[fields]\n\"email\" = \"pseudonymise\"\n");
        assert_eq!(form(&strict, "!email=a&user['email']=b"), "");
    }

    #[test]
    fn a_form_body_or_query_that_a_json_reader_could_read_is_refused() {
        let e = engine(STAR_KEEP);
        for body in [
            r#"{"email":"a@b.c","password":"p"}"#,
            " [1,2]",
            "+{\"a\":1}&b=2",
            // What JSON readers skip before a document, raw and encoded.
            "\u{feff}{\"email\":1}",
            "%EF%BB%BF{\"email\":1}",
            "\x0c{\"email\":1}",
            "%0C%7B%22email%22:1}",
            "\u{a0}\u{2028}\u{3000}[1]",
            "\u{200b}\u{2060}\u{202e}\u{e0001}{}",
            "%E2%80%8B%7B%7D",
            "\x00\x01\x1f\x7f{}",
            "%00{}",
            // Comments (JSON5, lenient readers) and the `)]}'` prefix.
            "/* x&y */{\"email\":1}",
            "// a\n{}",
            "%2F%2A%2A%2F{}",
            ")]}',\n{\"email\":1}",
            ")]}'\n[1]",
        ] {
            let err = e
                .rewrite(crate::policy::BodyFormat::Form, body.as_bytes())
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::JsonAsForm, "{body:?}");
            assert_eq!(err.kind.code(), "invalid_form");
            // The same bytes fed one at a time decide the same.
            let mut w = FormRewriter::new(&e, &e.policy().fields);
            let mut out = Vec::new();
            let fed = body
                .as_bytes()
                .chunks(1)
                .try_for_each(|c| w.feed(c, &mut out))
                .and_then(|()| w.finish(&mut out).map(|_| ()));
            assert_eq!(fed.unwrap_err().kind, ErrorKind::JsonAsForm, "{body:?}");
            assert!(out.is_empty(), "{body:?}");
            assert_eq!(
                e.rewrite_query(body.as_bytes())
                    .map(|_| ())
                    .unwrap_err()
                    .kind,
                ErrorKind::JsonAsForm,
                "{body:?}"
            );
        }
        // Only at the start: a JSON reader stops at the first parameter.
        assert_eq!(form(&e, "a=1&{b}=2"), "a=1&{b}=2");
        for fine in ["a=1", "%20a=1", "/a=1", ")a=1", "+,a=1", "\u{200b}a=1"] {
            assert!(
                e.rewrite(crate::policy::BodyFormat::Form, fine.as_bytes())
                    .is_ok(),
                "{fine:?}"
            );
        }
    }

    #[test]
    fn a_nul_in_a_name_is_refused() {
        // Canonicalisation would read `email%00x` as `emailx` (kept by `*`);
        // PHP stops the name at the NUL and reads `email`.
        let e = engine(
            "[fields]\n\"*\" = \"keep\"\n\"email\" = \"pseudonymise\"\n[query]\n\"*\" = \"keep\"\n",
        );
        for input in [
            "a=1&email%00x=alice@example.com",
            "user[email%00x]=a",
            "%00=1",
        ] {
            let err = e
                .rewrite(crate::policy::BodyFormat::Form, input.as_bytes())
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::NulInName, "{input}");
            let err = e.rewrite_query(input.as_bytes()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::NulInName, "{input}");
        }
        // A NUL in a value is data, not a name.
        assert_eq!(form(&e, "note=a%00b"), "note=a%00b");
    }

    #[test]
    fn php_base_and_brackets() {
        let mut b = Vec::new();
        assert!(!php_base(b" user.e mail[x]", &mut b, true));
        assert_eq!(b, b"user_e_mail");
        assert!(php_base(b"a.b[c", &mut b, true));
        assert_eq!(b, b"a_b_c");
        php_base(b"billing[address.li ne[x", &mut b, true);
        assert_eq!(b, b"billing_address_li_ne_x");
        php_base(b"billing[address.li ne[x", &mut b, false);
        assert_eq!(b, b"billing_address.li ne[x");
        let segs: Vec<&[u8]> = bracket_segments(b"a[b][][c[d]x[e]").collect();
        assert_eq!(segs, [&b"b"[..], b"", b"d", b"e"]);
    }
}
