//! Single-pass, incremental JSON and NDJSON rewriter.
//!
//! No DOM: the input is tokenised once and each value is decided as it is
//! met. State between chunks is kept at token granularity (the stack of open
//! containers and what is expected next); a token cut by a chunk boundary is
//! kept and completed by the next chunk, so memory is bounded by the largest
//! single token plus one chunk. Kept subtrees are copied as one byte range and
//! flushed at each chunk end.
//!
//! What is refused, each a known way around minimisers: duplicate keys (parsers
//! disagree on which wins), lone surrogates, invalid UTF-8, control characters
//! in strings, comments, NaN and other non-JSON tokens, trailing data, and
//! nesting beyond the limit. Keys are compared after unescaping
//! (`"em\u0061il"` is `email`). Kept values pass byte for byte.

use std::collections::HashSet;

mod fast;

use super::apply::{self, Out, Scalar};
use super::{Counts, Engine, ErrorKind, Explained, Observer, Outcome, RewriteError, Stats};
use crate::policy::dfa::{StateId, StateInfo};
use crate::policy::selector::canonical_key;
use crate::policy::{Action, FieldRules};

/// Longest number token accepted, in bytes (a bound on per-token buffering).
pub const MAX_NUMBER_LEN: usize = 4096;

/// Objects with more keys than this check duplicates with a hash set.
const LINEAR_DUP_LIMIT: usize = 32;

/// The path context of a value about to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ctx {
    /// Automaton state at the value's path.
    state: StateId,
    /// Whether an ancestor was kept as a container (the default becomes keep).
    keep: bool,
    /// The root of an embedded document: the state's own decision (the
    /// `embedded_json` rule) is not applied again.
    fresh: bool,
}

/// What the rules say about the value being read: the action, the rule
/// that chose it (`None` for the default), and whether that default is
/// `keep` inherited from a kept container.
#[derive(Clone, Copy)]
struct Decision<'r> {
    action: &'r Action,
    rule: Option<u32>,
    inherited: bool,
}

/// How a container's content is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Kept verbatim: validated, copied as one byte range.
    Copy,
    /// Dropped: validated only.
    Skip,
    /// Entered: each member decided on its own. For arrays, the context of
    /// every element (arrays are transparent).
    Rewrite(Ctx),
}

#[derive(Debug)]
struct Frame {
    obj: bool,
    mode: Mode,
    /// Something was written inside (a comma goes before the next member).
    emitted: bool,
    /// First index of this object's keys in the key arena.
    keys_start: usize,
    /// Array element count (for error paths).
    index: u64,
    /// The keys in a keyed hash set once the object is large.
    set: Option<HashSet<Box<[u8]>>>,
    /// Its opening bytes are in the output (not waiting in `deferred`).
    shown: bool,
    /// Length of `deferred` before this frame's opening bytes.
    deferred_at: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Value,
    /// After `[`.
    ValueOrEnd,
    /// After `{`.
    KeyOrEnd,
    /// After `,` in an object.
    Key,
    Colon,
    CommaOrEnd,
    /// After the root value.
    End,
}

type Step<T> = Result<Option<T>, (ErrorKind, usize)>;

/// Incremental JSON / NDJSON rewriter. Feed chunks with [`JsonRewriter::feed`],
/// end with [`JsonRewriter::finish`]. After an error the rewriter is spent.
#[derive(Debug)]
pub struct JsonRewriter<'e> {
    engine: &'e Engine,
    rules: &'e FieldRules,
    lines: bool,
    max_depth: usize,
    root: Ctx,
    pending: Vec<u8>,
    /// Absolute offset of the first byte of the current buffer.
    base: u64,
    stack: Vec<Frame>,
    expect: Expect,
    /// Context of the object member whose value comes next.
    member: Ctx,
    /// Raw key token of that member, written before its value if it stays.
    member_key: Vec<u8>,
    /// Opening bytes (comma, key, bracket) of entered containers that have
    /// not emitted anything yet: written only once something inside stays,
    /// so nothing a rule did not allow (not even a key name) leaves as an
    /// empty shell.
    deferred: Vec<u8>,
    /// How many frames at the top of the stack are waiting in `deferred`.
    unshown: usize,
    /// Unescaped keys of every open object (duplicate checks, error paths).
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    /// A hash of each key in `keys` (duplicate checks compare these first).
    key_hashes: Vec<u64>,
    scratch: Vec<u8>,
    /// Canonical form of the current key (`canonical_key`), when it differs.
    canon: Vec<u8>,
    /// The fast path's duplicate-key bookkeeping (see [`fast`]).
    seen: fast::Seen,
    /// Pseudonyms already computed for this body.
    memo: Option<Box<Memo>>,
    /// Absolute offset up to which the input is known to be UTF-8.
    utf8_until: u64,
    /// Absolute offset of a document the fast path gave up on: the state
    /// machine reads it.
    slow_from: Option<u64>,
    /// See [`Self::state_machine_only`].
    fast_off: bool,
    /// See [`Self::fast_documents`].
    fast_documents: u64,
    /// Absolute offsets of the containers that were open where the fast
    /// path last gave up: they reach past the buffer (or hold an error), so
    /// they are not handed to it again.
    spine: Vec<u64>,
    /// Start of the kept byte range being copied, in the current buffer.
    copy_from: Option<usize>,
    copy_depth: usize,
    /// How far into a cut string token scanning already got.
    hint: usize,
    hint_high: bool,
    stats: Stats,
    /// `--explain` and per-action counts (command line only).
    pub(super) observe: Option<Box<Observer>>,
    /// 1-based line being read (NDJSON).
    line: u64,
    error: Option<RewriteError>,
    /// With [`Self::track_completed`]: the counts as of the last completed
    /// document (so that a refused one is not counted).
    completed: Option<Box<Counts>>,
}

impl<'e> JsonRewriter<'e> {
    /// A rewriter for the body fields of `engine`'s policy. `lines` selects
    /// NDJSON (one document per line, blank lines skipped).
    pub fn new(engine: &'e Engine, lines: bool) -> JsonRewriter<'e> {
        let rules = &engine.policy().fields;
        let root = Ctx {
            state: rules.root(),
            keep: false,
            fresh: false,
        };
        Self::with_root(engine, rules, root, engine.policy().max_depth, lines)
    }

    fn with_root(
        engine: &'e Engine,
        rules: &'e FieldRules,
        root: Ctx,
        max_depth: usize,
        lines: bool,
    ) -> JsonRewriter<'e> {
        JsonRewriter {
            engine,
            rules,
            lines,
            max_depth,
            root,
            pending: Vec::new(),
            base: 0,
            stack: Vec::new(),
            expect: Expect::Value,
            member: root,
            member_key: Vec::new(),
            deferred: Vec::new(),
            unshown: 0,
            keys: Vec::new(),
            key_ends: Vec::new(),
            key_hashes: Vec::new(),
            scratch: Vec::new(),
            canon: Vec::new(),
            seen: fast::Seen::default(),
            memo: None,
            utf8_until: 0,
            slow_from: None,
            fast_off: false,
            fast_documents: 0,
            spine: Vec::new(),
            copy_from: None,
            copy_depth: 0,
            hint: 0,
            hint_high: false,
            stats: Stats::default(),
            observe: None,
            line: 1,
            error: None,
            completed: None,
        }
    }

    /// Reads every document with the resumable state machine, never the
    /// fast path (see [`fast`]): for tests and fuzz targets that hold the two
    /// to the same output.
    #[doc(hidden)]
    pub fn state_machine_only(&mut self) {
        self.fast_off = true;
    }

    /// Documents the fast path read whole (the rest went through the state
    /// machine): for tests.
    #[doc(hidden)]
    pub fn fast_documents(&self) -> u64 {
        self.fast_documents
    }

    /// Documents completed so far.
    pub fn documents(&self) -> u64 {
        self.stats.documents
    }

    /// Keeps the counts as of the last completed document, for
    /// [`Self::completed`].
    pub fn track_completed(&mut self) {
        self.completed = Some(Box::new(self.stats.counts()));
    }

    /// With [`Self::track_completed`] on: the field counts (without dropped
    /// paths) and per-action counts of the documents completed so far,
    /// leaving out a document in progress or refused.
    pub fn completed(&self) -> Option<Stats> {
        let c = self.completed.as_deref()?;
        Some(Stats::from_counts(c))
    }

    /// Bytes held back waiting for the rest of a token.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Feeds the next chunk; appends the output that is ready to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = if self.pending.is_empty() {
            let r = self.run(chunk, out, false);
            if let Ok(used) = r {
                self.flush_copy(chunk, used, out);
                self.pending.extend_from_slice(&chunk[used..]);
                self.base += used as u64;
            }
            r.map(|_| ())
        } else {
            let mut buf = std::mem::take(&mut self.pending);
            buf.extend_from_slice(chunk);
            let r = self.run(&buf, out, false);
            if let Ok(used) = r {
                self.flush_copy(&buf, used, out);
                buf.drain(..used);
                self.base += used as u64;
            }
            self.pending = buf;
            r.map(|_| ())
        };
        result.inspect_err(|e| self.error = Some(e.clone()))
    }

    /// Ends the body: everything left must complete the document(s).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<Stats, RewriteError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let buf = std::mem::take(&mut self.pending);
        let result = self.run(&buf, out, true).and_then(|used| {
            let at = self.base + used as u64;
            let done = match self.expect {
                Expect::End => true,
                Expect::Value => self.lines && self.stack.is_empty(),
                _ => false,
            };
            if used < buf.len() || !done {
                Err(self.error_at(ErrorKind::UnexpectedEnd, at))
            } else {
                Ok(std::mem::take(&mut self.stats))
            }
        });
        result.inspect_err(|e| self.error = Some(e.clone()))
    }

    fn flush_copy(&mut self, buf: &[u8], used: usize, out: &mut Vec<u8>) {
        if let Some(from) = self.copy_from {
            out.extend_from_slice(&buf[from..used]);
            self.copy_from = Some(0);
        }
    }

    fn error_at(&self, kind: ErrorKind, offset: u64) -> RewriteError {
        RewriteError {
            kind,
            offset,
            line: self.lines.then_some(self.line),
            path: self.path(),
        }
    }

    /// The path of the value being read (keys shown only when they look like
    /// identifiers or are named by a rule).
    fn path(&self) -> String {
        let mut path = String::new();
        for (d, f) in self.stack.iter().enumerate() {
            if f.obj {
                let end = self
                    .stack
                    .get(d + 1)
                    .map_or(self.key_ends.len(), |n| n.keys_start);
                if end > f.keys_start {
                    let last = end - 1;
                    let ks = if last == 0 {
                        0
                    } else {
                        self.key_ends[last - 1]
                    };
                    super::push_path_key(
                        &mut path,
                        &self.keys[ks..self.key_ends[last]],
                        self.rules,
                    );
                }
            } else {
                path.push_str(&format!("[{}]", f.index));
            }
        }
        path
    }

    /// Runs over `buf` as far as complete tokens go; returns bytes consumed.
    fn run(&mut self, buf: &[u8], out: &mut Vec<u8>, last: bool) -> Result<usize, RewriteError> {
        match self.run_inner(buf, out, last) {
            Ok(used) => Ok(used),
            Err((kind, at)) => Err(self.error_at(kind, self.base + at as u64)),
        }
    }

    fn run_inner(
        &mut self,
        buf: &[u8],
        out: &mut Vec<u8>,
        last: bool,
    ) -> Result<usize, (ErrorKind, usize)> {
        let n = buf.len();
        let mut i = 0;
        loop {
            // Insignificant whitespace (RFC 8259 section 2); in NDJSON a line
            // break ends a document and may not occur inside one.
            while i < n {
                match buf[i] {
                    b' ' | b'\t' => i += 1,
                    b'\r' => {
                        // In NDJSON a CR only ever precedes the LF that ends
                        // a line: readers that split on a lone CR would see
                        // the bytes after it as another document.
                        if self.lines {
                            match buf.get(i + 1) {
                                Some(b'\n') => {}
                                Some(_) => return Err((ErrorKind::BareCarriageReturn, i)),
                                None if !last => return Ok(i),
                                None => {}
                            }
                        }
                        i += 1;
                    }
                    b'\n' => {
                        if self.lines {
                            if self.expect == Expect::End {
                                self.expect = Expect::Value;
                            } else if !(self.stack.is_empty() && self.expect == Expect::Value) {
                                return Err((ErrorKind::LineBreakInDocument, i));
                            }
                            self.line += 1;
                        }
                        i += 1;
                    }
                    _ => break,
                }
            }
            if i == n {
                return Ok(i);
            }
            if self.expect == Expect::Value
                && self.stack.is_empty()
                && self.fast_allowed()
                && self.slow_from != Some(self.base + i as u64)
                && (last || self.lines || may_end_in(buf, i))
            {
                match self.fast_document(buf, i, out) {
                    Some(end) => {
                        self.after_value(out);
                        i = end;
                        continue;
                    }
                    None => self.slow_from = Some(self.base + i as u64),
                }
            }
            let b = buf[i];
            match self.expect {
                Expect::End => {
                    return Err((ErrorKind::TrailingData, i));
                }
                Expect::Value | Expect::ValueOrEnd => {
                    if b == b']' && self.expect == Expect::ValueOrEnd {
                        self.close(buf, i, out);
                        i += 1;
                        continue;
                    }
                    match self.value(buf, i, out, last)? {
                        Some(next) => i = next,
                        None => return Ok(i),
                    }
                }
                Expect::KeyOrEnd | Expect::Key => {
                    if b == b'}' && self.expect == Expect::KeyOrEnd {
                        self.close(buf, i, out);
                        i += 1;
                        continue;
                    }
                    if b != b'"' {
                        return Err((ErrorKind::Syntax("expected a string key"), i));
                    }
                    match self.key(buf, i, last)? {
                        Some(next) => {
                            i = next;
                            self.expect = Expect::Colon;
                        }
                        None => return Ok(i),
                    }
                }
                Expect::Colon => {
                    if b != b':' {
                        return Err((ErrorKind::Syntax("expected ':' after key"), i));
                    }
                    i += 1;
                    self.expect = Expect::Value;
                }
                Expect::CommaOrEnd => {
                    let obj = self.stack.last().is_some_and(|f| f.obj);
                    if b == b',' {
                        i += 1;
                        self.expect = if obj { Expect::Key } else { Expect::Value };
                    } else if b == if obj { b'}' } else { b']' } {
                        self.close(buf, i, out);
                        i += 1;
                    } else {
                        return Err((
                            ErrorKind::Syntax(if obj {
                                "expected ',' or '}' after object member"
                            } else {
                                "expected ',' or ']' after array element"
                            }),
                            i,
                        ));
                    }
                }
            }
        }
    }

    /// Tries the fast path on the document starting at `buf[i]`: its end,
    /// with its output written and counted, or `None` with nothing written
    /// or counted (the state machine then reads it).
    fn fast_document(&mut self, buf: &[u8], i: usize, out: &mut Vec<u8>) -> Option<usize> {
        let root = self.root;
        let end = self.with_fast(buf, i, out, |f| f.document(i, root))?;
        self.fast_documents += 1;
        Some(end)
    }

    /// Runs `read` on a fast path over `buf`, writing to `out`. If it gives
    /// up, what it wrote and counted is taken back: `None`.
    fn with_fast<T>(
        &mut self,
        buf: &[u8],
        i: usize,
        out: &mut Vec<u8>,
        read: impl FnOnce(&mut fast::Fast<'_, 'e>) -> Result<T, fast::Bail>,
    ) -> Option<T> {
        // UTF-8 is checked once for the rest of the buffer; the fast path
        // reads only up to where it holds (a value reaching past that point
        // is the state machine's, which says where and why).
        let from = (self.utf8_until.saturating_sub(self.base) as usize).clamp(i, buf.len());
        let valid = if from < buf.len() {
            match simdutf8::compat::from_utf8(&buf[from..]) {
                Ok(_) => buf.len(),
                Err(e) => from + e.valid_up_to(),
            }
        } else {
            from
        };
        self.utf8_until = self.base + valid as u64;
        if valid <= i || self.spine.contains(&(self.base + i as u64)) {
            return None;
        }
        let mut local: Vec<usize> = Vec::new();
        self.seen.prepare();
        let mark = out.len();
        let counts = self.stats.counts();
        let mut fast = fast::Fast {
            engine: self.engine,
            rules: self.rules,
            max_depth: self.max_depth,
            lines: self.lines,
            buf: &buf[..valid.min(fast::MAX_BUF)],
            out,
            stats: &mut self.stats,
            scratch: &mut self.scratch,
            canon: &mut self.canon,
            seen: &mut self.seen,
            memo: &mut self.memo,
            spine: &mut local,
        };
        match read(&mut fast) {
            Ok(x) => Some(x),
            Err(fast::Bail) => {
                out.truncate(mark);
                self.stats.roll_back(counts);
                let base = self.base;
                self.spine.clear();
                self.spine.extend(local.iter().map(|&p| base + p as u64));
                None
            }
        }
    }

    /// A container inside the document, in context `ctx`, read whole by the
    /// fast path when it lies whole in `buf` (the state machine goes on
    /// after it); `None` when it does not, with nothing written or counted.
    fn fast_inner(&mut self, buf: &[u8], i: usize, ctx: Ctx, out: &mut Vec<u8>) -> Option<usize> {
        let depth = self.stack.len();
        // What goes before the value is written on speculation, and the
        // value straight after it: taken back if nothing stays.
        let mark = out.len();
        self.write_prefix(out);
        let paths = self.stats.dropped_paths.len();
        let done = self.with_fast(buf, i, out, |f| f.inner(i, ctx, depth));
        let Some((end, stayed)) = done else {
            out.truncate(mark);
            return None;
        };
        // Dropped paths inside were written from the container down.
        if self.stats.dropped_paths.len() > paths {
            let outer = self.path();
            for p in &mut self.stats.dropped_paths[paths..] {
                *p = join_path(&outer, p);
            }
        }
        if stayed {
            self.commit_prefix();
        } else {
            out.truncate(mark);
        }
        self.after_value(out);
        Some(end)
    }

    /// A value finished.
    #[inline]
    fn after_value(&mut self, out: &mut Vec<u8>) {
        match self.stack.last_mut() {
            Some(f) => {
                if !f.obj {
                    f.index += 1;
                }
                self.expect = Expect::CommaOrEnd;
            }
            None => {
                self.expect = Expect::End;
                self.stats.documents += 1;
                if let Some(c) = self.completed.as_deref_mut() {
                    *c = self.stats.counts();
                }
                if self.lines {
                    out.push(b'\n');
                }
            }
        }
    }

    fn close(&mut self, buf: &[u8], i: usize, out: &mut Vec<u8>) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        self.key_ends.truncate(frame.keys_start);
        self.key_hashes.truncate(frame.keys_start);
        self.keys
            .truncate(self.key_ends.last().copied().unwrap_or(0));
        match frame.mode {
            Mode::Rewrite(_) if frame.shown => out.push(if frame.obj { b'}' } else { b']' }),
            Mode::Rewrite(_) => {
                // Nothing inside stayed: the container leaves no trace.
                self.deferred.truncate(frame.deferred_at);
                self.unshown -= 1;
            }
            Mode::Copy if self.stack.len() == self.copy_depth => {
                if let Some(from) = self.copy_from.take() {
                    out.extend_from_slice(&buf[from..=i]);
                }
            }
            _ => {}
        }
        self.after_value(out);
    }

    fn push(&mut self, obj: bool, mode: Mode, at: usize) -> Result<(), (ErrorKind, usize)> {
        self.push_frame(obj, mode, at, true)
    }

    fn push_frame(
        &mut self,
        obj: bool,
        mode: Mode,
        at: usize,
        shown: bool,
    ) -> Result<(), (ErrorKind, usize)> {
        if self.stack.len() >= self.max_depth {
            return Err((ErrorKind::TooDeep(self.max_depth), at));
        }
        self.stack.push(Frame {
            obj,
            mode,
            emitted: false,
            keys_start: self.key_ends.len(),
            index: 0,
            set: None,
            shown,
            deferred_at: self.deferred.len(),
        });
        self.expect = if obj {
            Expect::KeyOrEnd
        } else {
            Expect::ValueOrEnd
        };
        Ok(())
    }

    /// Writes what goes before a value that stays: the opening bytes of
    /// containers still waiting, then comma, key, colon.
    #[inline]
    fn emit_prefix(&mut self, out: &mut Vec<u8>) {
        self.write_prefix(out);
        self.commit_prefix();
    }

    /// The bytes [`Self::emit_prefix`] writes, without recording that they
    /// were written.
    #[inline]
    fn write_prefix(&self, out: &mut Vec<u8>) {
        if self.unshown > 0 {
            out.extend_from_slice(&self.deferred);
        }
        if let Some(f) = self.stack.last() {
            if f.emitted {
                out.push(b',');
            }
            if f.obj {
                out.extend_from_slice(&self.member_key);
                out.push(b':');
            }
        }
    }

    /// Records that the prefix of a value was written.
    #[inline]
    fn commit_prefix(&mut self) {
        if self.unshown > 0 {
            self.deferred.clear();
            let n = self.stack.len();
            for idx in n - self.unshown..n {
                self.stack[idx].shown = true;
                if idx > 0 {
                    self.stack[idx - 1].emitted = true;
                }
            }
            self.unshown = 0;
        }
        if let Some(f) = self.stack.last_mut() {
            f.emitted = true;
        }
    }

    fn note(&mut self, rule: Option<u32>, inherited: bool, action: &Action, outcome: Outcome) {
        if self.stats.note(action, outcome) {
            let p = self.path();
            self.stats.dropped_paths.push(p);
        }
        if self.observe.is_some() {
            self.observe_note(rule, inherited, action.name(), outcome);
        }
    }

    #[cold]
    fn observe_note(
        &mut self,
        rule: Option<u32>,
        inherited: bool,
        action: &'static str,
        outcome: Outcome,
    ) {
        let rules = self.rules;
        let path = self.path();
        if let Some(o) = self.observe.as_mut() {
            o.record(|| Explained {
                path,
                selector: rule.map(|r| rules.rule(r).text.clone()),
                inherited,
                action,
                outcome,
            });
        }
    }

    /// Reads one value starting at `i`. `None`: the token is cut, come back
    /// with more bytes.
    fn value(&mut self, buf: &[u8], i: usize, out: &mut Vec<u8>, last: bool) -> Step<usize> {
        let b = buf[i];
        let ctx = match self.stack.last() {
            None => self.root,
            Some(f) => match f.mode {
                Mode::Copy | Mode::Skip => {
                    let mode = f.mode;
                    return self.passive_value(buf, i, mode, last);
                }
                Mode::Rewrite(c) if !f.obj => c,
                Mode::Rewrite(_) => self.member,
            },
        };
        let container = b == b'{' || b == b'[';
        if container
            && !self.stack.is_empty()
            && self.fast_allowed()
            && let Some(end) = self.fast_inner(buf, i, ctx, out)
        {
            return Ok(Some(end));
        }
        let info = self.rules.info(ctx.state);
        let rules = self.rules;
        let (action, rule) = match info.decision {
            Some(r) if !ctx.fresh => (&rules.rule(r).action, Some(r)),
            _ if ctx.keep => (&Action::Keep, None),
            _ => (&Action::Drop, None),
        };
        let decision = Decision {
            action,
            rule,
            inherited: rule.is_none() && ctx.keep,
        };
        if container {
            let obj = b == b'{';
            let mode = self.container_mode(obj, ctx, info, decision, out);
            self.open_container(i, obj, mode, action, out)?;
            return Ok(Some(i + 1));
        }
        self.scalar_value(buf, i, out, last, ctx, decision)
    }

    /// How a container that the rules reach is read: copied, skipped or
    /// entered (a redacted object is replaced here, then skipped).
    #[inline]
    fn container_mode(
        &mut self,
        obj: bool,
        ctx: Ctx,
        info: StateInfo,
        d: Decision<'_>,
        out: &mut Vec<u8>,
    ) -> Mode {
        match d.action {
            // A kept container is entered, not copied, when any deeper
            // selector (a `drop` included) may say otherwise.
            Action::Keep if !info.descend_any => {
                self.note(d.rule, d.inherited, d.action, Outcome::Kept);
                Mode::Copy
            }
            Action::Drop if !info.descend => {
                self.note(d.rule, d.inherited, d.action, Outcome::Dropped);
                Mode::Skip
            }
            Action::Keep | Action::Drop if obj => {
                self.note(d.rule, d.inherited, d.action, Outcome::Entered);
                Mode::Rewrite(Ctx {
                    state: ctx.state,
                    keep: matches!(d.action, Action::Keep),
                    fresh: false,
                })
            }
            Action::Redact { with_json, .. } if obj => {
                self.note(d.rule, d.inherited, d.action, Outcome::Transformed);
                self.emit_prefix(out);
                out.extend_from_slice(with_json);
                Mode::Skip
            }
            _ if obj => {
                self.note(d.rule, d.inherited, d.action, Outcome::NotApplicable);
                Mode::Skip
            }
            // Arrays are transparent: each element gets the array's context.
            _ => {
                self.note(d.rule, d.inherited, d.action, Outcome::Entered);
                Mode::Rewrite(Ctx {
                    fresh: ctx.fresh && !obj,
                    ..ctx
                })
            }
        }
    }

    /// Opens a container at `i` in `mode`: its opening bytes are written,
    /// deferred until something inside stays, or (skipped) left out.
    #[inline]
    fn open_container(
        &mut self,
        i: usize,
        obj: bool,
        mode: Mode,
        action: &Action,
        out: &mut Vec<u8>,
    ) -> Result<(), (ErrorKind, usize)> {
        let b = if obj { b'{' } else { b'[' };
        let at_root = self.stack.is_empty();
        match mode {
            Mode::Copy => {
                self.emit_prefix(out);
                self.copy_from = Some(i);
                self.copy_depth = self.stack.len();
            }
            Mode::Skip => {
                // The document root is always present.
                if at_root && !matches!(action, Action::Redact { .. }) {
                    out.extend_from_slice(if obj { b"{}" } else { b"[]" });
                }
            }
            Mode::Rewrite(_) if at_root || matches!(action, Action::Keep) => {
                // The root, and a container kept as such, always appear.
                self.emit_prefix(out);
                out.push(b);
            }
            Mode::Rewrite(_) => {
                let at = self.deferred.len();
                if let Some(p) = self.stack.last() {
                    if p.emitted {
                        self.deferred.push(b',');
                    }
                    if p.obj {
                        self.deferred.extend_from_slice(&self.member_key);
                        self.deferred.push(b':');
                    }
                }
                self.deferred.push(b);
                self.push_frame(obj, mode, i, false)?;
                if let Some(f) = self.stack.last_mut() {
                    f.deferred_at = at;
                }
                self.unshown += 1;
                return Ok(());
            }
        }
        self.push(obj, mode, i)
    }

    /// Reads a scalar at `i` and writes what its action makes of it.
    #[inline]
    fn scalar_value(
        &mut self,
        buf: &[u8],
        i: usize,
        out: &mut Vec<u8>,
        last: bool,
        ctx: Ctx,
        d: Decision<'_>,
    ) -> Step<usize> {
        let at_root = self.stack.is_empty();
        let (end, kind) = match self.scalar(buf, i, last)? {
            Some(x) => x,
            None => return Ok(None),
        };
        let token = &buf[i..end];
        let mut embedded_seen = None;
        let outcome = match d.action {
            Action::Keep => {
                self.emit_prefix(out);
                out.extend_from_slice(token);
                Outcome::Kept
            }
            Action::Drop => Outcome::Dropped,
            Action::EmbeddedJson { base64 } => match kind {
                ScalarKind::Str { escaped } => {
                    let (outcome, seen) = self.embedded(token, escaped, *base64, ctx.state, out);
                    embedded_seen = seen;
                    outcome
                }
                _ => Outcome::NotApplicable,
            },
            _ => self.transform_scalar(token, kind, d.action, out),
        };
        self.note(d.rule, d.inherited, d.action, outcome);
        if let Some(seen) = embedded_seen {
            let path = self.path();
            if let Some(o) = self.observe.as_mut() {
                o.absorb(&path, *seen);
            }
        }
        if at_root && matches!(outcome, Outcome::Dropped | Outcome::NotApplicable) {
            out.extend_from_slice(b"null");
        }
        self.after_value(out);
        Ok(Some(end))
    }

    /// `embedded_json` on a string token: the document inside rewritten and
    /// written back as a string, with the decisions seen inside (under
    /// `--explain`).
    fn embedded(
        &mut self,
        token: &[u8],
        escaped: bool,
        base64: bool,
        state: StateId,
        out: &mut Vec<u8>,
    ) -> (Outcome, Option<Box<Observer>>) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let text = unescape(&token[1..token.len() - 1], escaped, &mut scratch);
        let depth_left = self.max_depth.saturating_sub(self.stack.len()).max(1);
        let done = rewrite_embedded(
            self.engine,
            self.rules,
            state,
            text,
            base64,
            depth_left,
            self.observe.as_deref(),
        );
        self.scratch = scratch;
        match done {
            Some((s, sub, seen)) => {
                self.stats.absorb(&sub);
                self.emit_prefix(out);
                apply::write_json_str(out, &s);
                (Outcome::Transformed, seen)
            }
            None => (Outcome::NotApplicable, None),
        }
    }

    /// A value transform (everything but `keep`, `drop` and
    /// `embedded_json`) on a scalar token.
    #[inline]
    fn transform_scalar(
        &mut self,
        token: &[u8],
        kind: ScalarKind,
        action: &Action,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let mut scratch = std::mem::take(&mut self.scratch);
        let scalar = match kind {
            ScalarKind::Str { escaped } => {
                Scalar::Str(unescape(&token[1..token.len() - 1], escaped, &mut scratch))
            }
            ScalarKind::Num => Scalar::Num(std::str::from_utf8(token).unwrap_or("")),
            ScalarKind::Lit => Scalar::Other,
        };
        // Pseudonyms and hashes always apply to strings and numbers:
        // they are written straight into the output.
        let direct = apply::writes_json(action) && !matches!(scalar, Scalar::Other);
        let outcome = if direct {
            self.emit_prefix(out);
            apply::apply_scalar(self.engine, action, scalar, Some(out));
            Outcome::Transformed
        } else {
            match apply::apply_scalar(self.engine, action, scalar, None) {
                None => Outcome::NotApplicable,
                Some(Out::Original) => {
                    self.emit_prefix(out);
                    out.extend_from_slice(token);
                    Outcome::Kept
                }
                Some(Out::Str(s)) => {
                    self.emit_prefix(out);
                    apply::write_json_str(out, &s);
                    Outcome::Transformed
                }
                Some(Out::Num(s)) => {
                    self.emit_prefix(out);
                    out.extend_from_slice(s.as_bytes());
                    Outcome::Transformed
                }
                Some(Out::Written) => Outcome::Transformed,
            }
        };
        self.scratch = scratch;
        outcome
    }

    /// A value inside a kept or dropped container: validated, nothing written
    /// (a kept range is copied when it closes or the chunk ends).
    fn passive_value(&mut self, buf: &[u8], i: usize, mode: Mode, last: bool) -> Step<usize> {
        let b = buf[i];
        if b == b'{' || b == b'[' {
            // Validated whole by the fast path when it lies whole in `buf`
            // (a kept one is copied with the range it is in).
            let depth = self.stack.len();
            if self.fast_allowed() {
                let mut none = Vec::new();
                if let Some(end) = self.with_fast(buf, i, &mut none, |f| f.inner_skip(i, depth)) {
                    self.passive_done();
                    return Ok(Some(end));
                }
            }
            self.push(b == b'{', mode, i)?;
            return Ok(Some(i + 1));
        }
        match self.scalar(buf, i, last)? {
            Some((end, _)) => {
                self.passive_done();
                Ok(Some(end))
            }
            None => Ok(None),
        }
    }

    /// A value inside a kept or dropped container finished.
    fn passive_done(&mut self) {
        if let Some(f) = self.stack.last_mut()
            && !f.obj
        {
            f.index += 1;
        }
        self.expect = Expect::CommaOrEnd;
    }

    /// Whether the fast path may read values (not while `--explain`
    /// records every decision, nor when turned off for tests).
    #[inline]
    fn fast_allowed(&self) -> bool {
        self.observe.is_none() && !self.fast_off
    }

    /// Scans one scalar token.
    #[inline]
    fn scalar(&mut self, buf: &[u8], i: usize, last: bool) -> Step<(usize, ScalarKind)> {
        match buf[i] {
            b'"' => Ok(self
                .string(buf, i, last)?
                .map(|(end, escaped)| (end, ScalarKind::Str { escaped }))),
            b'-' | b'0'..=b'9' => Ok(scan_number(buf, i, last)?.map(|end| (end, ScalarKind::Num))),
            b't' => Ok(literal(buf, i, b"true", last)?.map(|end| (end, ScalarKind::Lit))),
            b'f' => Ok(literal(buf, i, b"false", last)?.map(|end| (end, ScalarKind::Lit))),
            b'n' => Ok(literal(buf, i, b"null", last)?.map(|end| (end, ScalarKind::Lit))),
            b'/' => Err((ErrorKind::Syntax("comments are not JSON"), i)),
            b'N' | b'I' | b'+' | b'.' => Err((ErrorKind::Syntax("not a JSON number"), i)),
            0xEF => Err((ErrorKind::Syntax("byte order mark"), i)),
            _ => Err((ErrorKind::Syntax("expected a value"), i)),
        }
    }

    /// Scans a string token, resuming where a cut token left off.
    #[inline]
    fn string(&mut self, buf: &[u8], i: usize, last: bool) -> Step<(usize, bool)> {
        let (resume, high) = if i == 0 && self.hint > 0 {
            (self.hint, self.hint_high)
        } else {
            (1, false)
        };
        match scan_string(buf, i, resume, high)? {
            Scan::Done { end, escaped } => {
                self.hint = 0;
                Ok(Some((end, escaped)))
            }
            Scan::Cut { safe, high } => {
                if last {
                    return Err((ErrorKind::UnexpectedEnd, buf.len()));
                }
                // `safe` is relative to the token start, which will be byte 0
                // of the next buffer.
                self.hint = safe;
                self.hint_high = high;
                Ok(None)
            }
        }
    }

    /// Reads a key starting at `i`, checks it is new in its object and decides
    /// the member's context.
    fn key(&mut self, buf: &[u8], i: usize, last: bool) -> Step<usize> {
        let (end, escaped) = match self.string(buf, i, last)? {
            Some(x) => x,
            None => return Ok(None),
        };
        let raw = &buf[i + 1..end - 1];
        // Keys are compared after unescaping: "em\u0061il" is "email".
        let start = self.keys.len();
        if escaped {
            let mut scratch = std::mem::take(&mut self.scratch);
            let k = unescape(raw, true, &mut scratch);
            self.keys.extend_from_slice(k.as_bytes());
            self.scratch = scratch;
        } else {
            self.keys.extend_from_slice(raw);
        }
        let Some(frame) = self.stack.last_mut() else {
            return Err((ErrorKind::Syntax("key outside an object"), i));
        };
        // Keys that fold to the same key are duplicates too: a partner that
        // reads keys case-insensitively (`{"event":..,"EVENT":..}`) picks
        // one of them by its own rule. So the check compares canonical forms
        // (`canonical_key`, the form rules match in); for the usual lower-case
        // ASCII key that is the key itself and costs nothing.
        let key = canonical_key(&self.keys[start..], &mut self.canon);
        let hash = key_hash(key);
        // Hashes first; bytes only when a hash matches.
        let first = frame.keys_start;
        let keys = &self.keys;
        let key_ends = &self.key_ends;
        let mut other = Vec::new();
        let mut same_key = |k: usize| {
            let s = if k == 0 { 0 } else { key_ends[k - 1] };
            canonical_key(&keys[s..key_ends[k]], &mut other) == key
        };
        let duplicate = if let Some(set) = &mut frame.set {
            // Large objects: a keyed (SipHash) set of the canonical keys, so
            // crafted collisions cannot make the check quadratic.
            !set.insert(key.into())
        } else {
            let hashes = &self.key_hashes[first..];
            let dup = hashes
                .iter()
                .enumerate()
                .any(|(k, &h)| h == hash && same_key(first + k));
            if !dup && hashes.len() >= LINEAR_DUP_LIMIT {
                let mut set: HashSet<Box<[u8]>> = HashSet::with_capacity(hashes.len() * 2);
                for k in first..key_ends.len() {
                    let s = if k == 0 { 0 } else { key_ends[k - 1] };
                    set.insert(canonical_key(&keys[s..key_ends[k]], &mut other).into());
                }
                set.insert(key.into());
                frame.set = Some(set);
            }
            dup
        };
        self.key_hashes.push(hash);
        self.key_ends.push(self.keys.len());
        if duplicate {
            return Err((ErrorKind::DuplicateKey, i));
        }
        if let Mode::Rewrite(ctx) = frame.mode {
            let state = self.rules.step_canonical(
                ctx.state,
                canonical_key(&self.keys[start..], &mut self.canon),
            );
            // Only an escape puts U+0000 in a key. Canonicalisation ignores
            // it (`email\u0000x` is `emailx`), a C-string parser stops at it
            // (`email`): when the two readings are not decided alike, the
            // rewrite cannot be certain.
            if escaped && let Some(nul) = memchr::memchr(0, &self.keys[start..]) {
                let prefix = &self.keys[start..start + nul];
                if self.rules.step_with(ctx.state, prefix, &mut self.scratch) != state {
                    return Err((ErrorKind::NulInKey, i));
                }
            }
            self.member = Ctx {
                state,
                keep: ctx.keep,
                fresh: false,
            };
            self.member_key.clear();
            self.member_key.extend_from_slice(&buf[i..end]);
        }
        Ok(Some(end))
    }
}

/// Rewrites an embedded document (`embedded_json`) with the selectors below
/// `state`: the document's root stands at `state`, whose own decision (the
/// `embedded_json` rule) is not applied again. `None` when the text is not a
/// document the rewriter accepts: the caller drops the field. With an
/// `observer`, the embedded document's decisions are recorded the same way and
/// returned for the caller to merge.
pub(crate) fn rewrite_embedded(
    engine: &Engine,
    rules: &FieldRules,
    state: StateId,
    text: &str,
    base64: bool,
    max_depth: usize,
    observer: Option<&Observer>,
) -> Option<(String, Stats, Option<Box<Observer>>)> {
    let (bytes, style) = apply::decode_embedded(text, base64)?;
    let root = Ctx {
        state,
        keep: false,
        fresh: true,
    };
    let mut sub = JsonRewriter::with_root(engine, rules, root, max_depth, false);
    if let Some(o) = observer {
        sub.observe = Some(Box::new(o.fresh()));
    }
    let mut tmp = Vec::with_capacity(bytes.len());
    sub.feed(&bytes, &mut tmp).ok()?;
    let stats = sub.finish(&mut tmp).ok()?;
    let s = match style {
        None => String::from_utf8(tmp).ok()?,
        Some(st) => st.encode(&tmp),
    };
    Some((s, stats, sub.observe))
}

/// FxHash-style hash of a key, eight bytes at a time. Not keyed: it only
/// filters the exact comparisons in small objects (at most
/// `LINEAR_DUP_LIMIT` of them); large objects use a keyed set.
#[inline]
fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Assembled in a register: a copy through memory here stalls on
        // store forwarding.
        let mut w = 0u64;
        for (k, &b) in rest.iter().enumerate() {
            w |= (b as u64) << (8 * k);
        }
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    h
}

/// `inner` (a path from a container down, as the fast path writes it)
/// below `outer` (the container's own path).
fn join_path(outer: &str, inner: &str) -> String {
    if inner.is_empty() {
        outer.to_string()
    } else if outer.is_empty() || inner.starts_with('[') {
        format!("{outer}{inner}")
    } else {
        format!("{outer}.{inner}")
    }
}

/// Pseudonyms and hashes already written in this body, by rule and input:
/// one user's identifier repeated over a batch costs one HMAC. Scoped to
/// one rewriter (one body), so nothing identifying outlives the request, and
/// zeroed when dropped. A small direct-mapped table: a collision only costs
/// the HMAC again, so crafted inputs gain nothing.
#[derive(Debug)]
pub(crate) struct Memo {
    slots: [MemoSlot; MEMO_SLOTS],
    /// Inputs and outputs of the slots, appended; bounded by [`MEMO_BYTES`].
    arena: Vec<u8>,
}

const MEMO_SLOTS: usize = 32;
/// Longest input remembered, in bytes.
const MEMO_INPUT: usize = 128;
/// Bytes of inputs and outputs remembered per body.
const MEMO_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
struct MemoSlot {
    /// The deciding rule; `u32::MAX` marks an empty slot.
    rule: u32,
    is_num: bool,
    /// Where the input starts in the arena; the output follows it.
    at: u32,
    input_len: u16,
    output_len: u16,
}

const EMPTY_SLOT: MemoSlot = MemoSlot {
    rule: u32::MAX,
    is_num: false,
    at: 0,
    input_len: 0,
    output_len: 0,
};

impl Default for Memo {
    fn default() -> Memo {
        Memo {
            slots: [EMPTY_SLOT; MEMO_SLOTS],
            arena: Vec::new(),
        }
    }
}

impl Memo {
    #[inline]
    fn slot(rule: u32, is_num: bool, input: &[u8]) -> usize {
        let h = key_hash(input) ^ (u64::from(rule) << 1 | u64::from(is_num));
        (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as usize
    }

    /// Appends the remembered output for `input` under `rule` to `out`;
    /// `false` when there is none.
    #[inline]
    pub(crate) fn get(&self, rule: u32, is_num: bool, input: &[u8], out: &mut Vec<u8>) -> bool {
        if input.len() > MEMO_INPUT {
            return false;
        }
        let s = self.slots[Self::slot(rule, is_num, input)];
        let at = s.at as usize;
        let mid = at + s.input_len as usize;
        if s.rule == rule && s.is_num == is_num && &self.arena[at..mid] == input {
            out.extend_from_slice(&self.arena[mid..mid + s.output_len as usize]);
            return true;
        }
        false
    }

    /// Remembers `output` for `input` under `rule` (while there is room).
    #[inline]
    pub(crate) fn put(&mut self, rule: u32, is_num: bool, input: &[u8], output: &[u8]) {
        if input.len() > MEMO_INPUT
            || output.len() > usize::from(u16::MAX)
            || self.arena.len() + input.len() + output.len() > MEMO_BYTES
        {
            return;
        }
        if self.arena.capacity() == 0 {
            self.arena.reserve(1024);
        }
        let at = self.arena.len();
        self.arena.extend_from_slice(input);
        self.arena.extend_from_slice(output);
        self.slots[Self::slot(rule, is_num, input)] = MemoSlot {
            rule,
            is_num,
            at: at as u32,
            input_len: input.len() as u16,
            output_len: output.len() as u16,
        };
    }
}

impl Drop for Memo {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.arena.zeroize();
    }
}

#[derive(Clone, Copy)]
enum ScalarKind {
    Str { escaped: bool },
    Num,
    Lit,
}

enum Scan {
    Done { end: usize, escaped: bool },
    Cut { safe: usize, high: bool },
}

const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each of eight bytes that is a quote, a backslash or below
/// 0x20; zero when none is. Bytes after a true one may be marked too, so the
/// lowest mark is exact and the rest are hints.
#[inline(always)]
fn needs_attention(w: u64) -> u64 {
    let has_zero = |v: u64| v.wrapping_sub(LOW_BITS) & !v & HIGH_BITS;
    let quote = has_zero(w ^ (LOW_BITS * b'"' as u64));
    let backslash = has_zero(w ^ (LOW_BITS * b'\\' as u64));
    let control = w.wrapping_sub(LOW_BITS * 0x20) & !w & HIGH_BITS;
    quote | backslash | control
}

/// Bytes that end the fast scan of a string: quote, backslash, controls.
static STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

pub(super) fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// Scans a string token starting at the quote `buf[start]`, from `resume`
/// bytes in. Validates escapes, surrogate pairs, control characters and UTF-8.
#[inline]
fn scan_string(
    buf: &[u8],
    start: usize,
    resume: usize,
    mut high: bool,
) -> Result<Scan, (ErrorKind, usize)> {
    let n = buf.len();
    let mut i = start + resume;
    let mut escaped = resume > 1;
    loop {
        // Eight bytes at a time while none needs attention (quote,
        // backslash, control character); non-ASCII only sets `high`.
        let mut hi = 0u64;
        while i + 8 <= n {
            let mut word = [0u8; 8];
            word.copy_from_slice(&buf[i..i + 8]);
            let w = u64::from_le_bytes(word);
            if needs_attention(w) != 0 {
                break;
            }
            hi |= w & HIGH_BITS;
            i += 8;
        }
        let seg = i;
        while i < n && !STOP[buf[i] as usize] {
            i += 1;
        }
        if !high && (hi != 0 || buf[seg..i].iter().any(|&b| b >= 0x80)) {
            high = true;
        }
        if i >= n {
            return Ok(Scan::Cut {
                safe: i - start,
                high,
            });
        }
        match buf[i] {
            b'"' => {
                let end = i + 1;
                if high && let Err(e) = std::str::from_utf8(&buf[start + 1..i]) {
                    return Err((ErrorKind::InvalidUtf8, start + 1 + e.valid_up_to()));
                }
                return Ok(Scan::Done { end, escaped });
            }
            b'\\' => {
                escaped = true;
                let Some(&e) = buf.get(i + 1) else {
                    return Ok(Scan::Cut {
                        safe: i - start,
                        high,
                    });
                };
                match e {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        if i + 6 > n {
                            return Ok(Scan::Cut {
                                safe: i - start,
                                high,
                            });
                        }
                        let cp = hex4(&buf[i + 2..i + 6])
                            .ok_or((ErrorKind::Syntax("invalid \\u escape"), i))?;
                        match cp {
                            0xD800..=0xDBFF => {
                                // A high surrogate must be followed by a low one.
                                if i + 12 > n {
                                    let after = &buf[i + 6..];
                                    if !b"\\u".starts_with(&after[..after.len().min(2)]) {
                                        return Err((ErrorKind::LoneSurrogate, i));
                                    }
                                    return Ok(Scan::Cut {
                                        safe: i - start,
                                        high,
                                    });
                                }
                                if &buf[i + 6..i + 8] != b"\\u" {
                                    return Err((ErrorKind::LoneSurrogate, i));
                                }
                                match hex4(&buf[i + 8..i + 12]) {
                                    Some(0xDC00..=0xDFFF) => i += 12,
                                    Some(_) => return Err((ErrorKind::LoneSurrogate, i)),
                                    None => {
                                        return Err((
                                            ErrorKind::Syntax("invalid \\u escape"),
                                            i + 6,
                                        ));
                                    }
                                }
                            }
                            0xDC00..=0xDFFF => return Err((ErrorKind::LoneSurrogate, i)),
                            _ => i += 6,
                        }
                    }
                    _ => return Err((ErrorKind::Syntax("invalid escape in string"), i)),
                }
            }
            _ => return Err((ErrorKind::Syntax("control character in string"), i)),
        }
    }
}

/// Scans a number (RFC 8259 section 6). At the end of a buffer that is not
/// the last, the number may continue: `None`.
#[inline]
fn scan_number(buf: &[u8], start: usize, last: bool) -> Step<usize> {
    let n = buf.len();
    let mut i = start;
    let cut = |i: usize| -> Step<usize> {
        if last {
            Err((ErrorKind::UnexpectedEnd, i))
        } else if i - start > MAX_NUMBER_LEN {
            Err((ErrorKind::NumberTooLong, start))
        } else {
            Ok(None)
        }
    };
    let digits = |i: &mut usize| {
        while *i < n && buf[*i].is_ascii_digit() {
            *i += 1;
        }
    };
    if buf[i] == b'-' {
        i += 1;
    }
    match buf.get(i) {
        None => return cut(i),
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => digits(&mut i),
        Some(_) => return Err((ErrorKind::Syntax("invalid number"), i)),
    }
    if i < n && buf[i] == b'.' {
        i += 1;
        match buf.get(i) {
            None => return cut(i),
            Some(b'0'..=b'9') => digits(&mut i),
            Some(_) => return Err((ErrorKind::Syntax("invalid number"), i)),
        }
    }
    if i < n && (buf[i] == b'e' || buf[i] == b'E') {
        i += 1;
        if i < n && (buf[i] == b'+' || buf[i] == b'-') {
            i += 1;
        }
        match buf.get(i) {
            None => return cut(i),
            Some(b'0'..=b'9') => digits(&mut i),
            Some(_) => return Err((ErrorKind::Syntax("invalid number"), i)),
        }
    }
    if i - start > MAX_NUMBER_LEN {
        return Err((ErrorKind::NumberTooLong, start));
    }
    if i == n && !last {
        return Ok(None);
    }
    Ok(Some(i))
}

fn literal(buf: &[u8], start: usize, word: &[u8], last: bool) -> Step<usize> {
    let avail = &buf[start..];
    if avail.len() >= word.len() {
        if &avail[..word.len()] == word {
            return Ok(Some(start + word.len()));
        }
    } else if !last && word.starts_with(avail) {
        return Ok(None);
    }
    Err((ErrorKind::Syntax("expected a value"), start))
}

/// Unescapes validated string content. Without escapes, no copy is made.
pub(crate) fn unescape<'a>(raw: &'a [u8], escaped: bool, scratch: &'a mut Vec<u8>) -> &'a str {
    if !escaped {
        // Validated by `scan_string`.
        return std::str::from_utf8(raw).unwrap_or("");
    }
    scratch.clear();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' {
            scratch.push(b);
            i += 1;
            continue;
        }
        let e = raw.get(i + 1).copied().unwrap_or(b'\\');
        let simple = match e {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            scratch.push(c);
            i += 2;
            continue;
        }
        let cp = raw.get(i + 2..i + 6).and_then(hex4).unwrap_or(0xFFFD);
        let (ch, used) = if (0xD800..0xDC00).contains(&cp) {
            let lo = raw.get(i + 8..i + 12).and_then(hex4).unwrap_or(0);
            let c = 0x10000 + ((cp - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
            (char::from_u32(c).unwrap_or('\u{FFFD}'), 12)
        } else {
            (char::from_u32(cp).unwrap_or('\u{FFFD}'), 6)
        };
        let mut tmp = [0u8; 4];
        scratch.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
        i += used;
    }
    std::str::from_utf8(scratch).unwrap_or("")
}

/// Whether a document starting at `buf[i]` can end inside `buf`: a root
/// container needs its closing bracket, the last byte before trailing
/// blanks. A body that arrives in pieces (HTTP/2 DATA frames, 16 KiB by
/// default) has its first pieces cut inside the root: reading them with the
/// fast path would run to the cut and throw the work away, so the state
/// machine takes the root at once and hands each inner container that lies
/// whole in the piece to the fast path.
fn may_end_in(buf: &[u8], i: usize) -> bool {
    if !matches!(buf.get(i), Some(b'{' | b'[')) {
        return true;
    }
    let tail = buf[i..]
        .iter()
        .rev()
        .find(|&&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    matches!(tail, Some(b'}' | b']'))
}
