//! The fast path: recursive descent over one document that lies whole in
//! the buffer.
//!
//! The resumable state machine in the parent module can stop at any byte
//! and go on with the next chunk, which costs a dispatch per token and state
//! kept in memory. Most documents arrive whole (a buffered body, an NDJSON
//! line inside a chunk), so each document is first tried here: plain
//! recursion, UTF-8 checked once for the whole buffer (`simdutf8`), strings
//! scanned eight bytes at a time, kept and dropped subtrees only validated
//! (their one piece of bookkeeping is the duplicate-key check), and a
//! container that may turn out empty written speculatively and cut back.
//!
//! The fast path only ever produces output for a document the state machine
//! accepts, and the same bytes and counts. Anything else (an error, a token
//! cut by the end of the buffer, a key with an escaped NUL, observation for
//! `--explain`) makes it give up ([`Bail`]): the caller rolls the output and
//! counts back and the state machine reads the document from its start, so
//! errors keep their exact offsets and paths. `tests/engine.rs` and the
//! `chunking` fuzz target hold the two paths to the same output.

use std::collections::HashSet;

use super::{LINEAR_DUP_LIMIT, MAX_NUMBER_LEN, Memo, needs_attention, unescape};
use crate::policy::dfa::head;
use crate::policy::selector::canonical_key;
use crate::policy::{Action, FieldRules};
use crate::rewrite::apply::{self, Out, Scalar};
use crate::rewrite::{Engine, Outcome, Stats};

use super::Ctx;

/// The fast path gave up on this document; the state machine takes it.
#[derive(Debug)]
pub(super) struct Bail;

type R<T> = Result<T, Bail>;

/// One step of the path to the value being read, linked through the
/// recursion's stack frames: nothing is built unless a dropped path is
/// recorded.
#[derive(Clone, Copy)]
enum Seg {
    /// An object key: its raw bytes in the buffer (between the quotes).
    Key {
        start: usize,
        end: usize,
        escaped: bool,
    },
    /// An array position.
    Index(u64),
}

struct PathNode<'p> {
    parent: Option<&'p PathNode<'p>>,
    seg: Option<Seg>,
}

/// The fast path reads at most this many bytes of a buffer (a key's place
/// in it must fit [`SeenKey`]); a document reaching past it is the state
/// machine's.
pub(super) const MAX_BUF: usize = (1 << 31) - 1;

/// A key seen in an object being read (duplicate checks): the hash of its
/// canonical form and where its raw bytes are. Sixteen bytes, built in
/// registers: a wider struct is assembled on the stack and read back whole,
/// which stalls on every key.
#[derive(Clone, Copy)]
struct SeenKey {
    hash: u64,
    /// Start (bits 0-30), whether it holds escapes (bit 31), end (bits
    /// 32-63).
    at: u64,
}

impl SeenKey {
    #[inline(always)]
    fn new(hash: u64, start: usize, end: usize, escaped: bool) -> SeenKey {
        debug_assert!(end <= MAX_BUF);
        SeenKey {
            hash,
            at: start as u64 | (escaped as u64) << 31 | (end as u64) << 32,
        }
    }

    fn start(self) -> usize {
        (self.at & 0x7fff_ffff) as usize
    }

    fn end(self) -> usize {
        (self.at >> 32) as usize
    }

    fn escaped(self) -> bool {
        self.at & (1 << 31) != 0
    }
}

/// The keys of the open objects, shared by the recursion (each object owns
/// the entries from its start index on).
#[derive(Debug, Default)]
pub(super) struct Seen {
    keys: Vec<SeenKeyRepr>,
}

impl Seen {
    /// Room for the keys of a typical event's open objects, taken once per
    /// body: growing from empty cost five reallocations a body.
    pub(super) fn prepare(&mut self) {
        if self.keys.capacity() == 0 {
            self.keys.reserve(64);
        }
    }
}

// `SeenKey` without `Debug` noise in the rewriter's derive.
#[derive(Clone, Copy)]
struct SeenKeyRepr(SeenKey);

impl std::fmt::Debug for SeenKeyRepr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeenKey")
    }
}

/// The duplicate-key state of one open object.
struct ObjectKeys {
    /// First entry of this object in [`Seen`].
    start: usize,
    /// One bit per hash value (mod 64) seen: most new keys skip the scan.
    bloom: u64,
    /// Large objects: a keyed (SipHash) set of the canonical keys, so
    /// crafted collisions cannot make the check quadratic.
    set: Option<HashSet<Box<[u8]>>>,
}

/// The state of one fast run over one document.
pub(super) struct Fast<'a, 'e> {
    pub(super) engine: &'e Engine,
    pub(super) rules: &'e FieldRules,
    pub(super) max_depth: usize,
    pub(super) lines: bool,
    /// The input, cut where UTF-8 validity ends.
    pub(super) buf: &'a [u8],
    pub(super) out: &'a mut Vec<u8>,
    pub(super) stats: &'a mut Stats,
    pub(super) scratch: &'a mut Vec<u8>,
    pub(super) canon: &'a mut Vec<u8>,
    pub(super) seen: &'a mut Seen,
    pub(super) memo: &'a mut Option<Box<Memo>>,
    /// On giving up: the start of every container open at that point,
    /// innermost first (the state machine does not hand those over again).
    pub(super) spine: &'a mut Vec<usize>,
}

impl Fast<'_, '_> {
    /// Reads the document starting at `i` (its first byte, after blanks);
    /// returns where it ends.
    pub(super) fn document(&mut self, i: usize, root: Ctx) -> R<usize> {
        let node = PathNode {
            parent: None,
            seg: None,
        };
        let r = self
            .value(i, root, 0, &node, Prefix::Root)
            .map(|(end, _)| end);
        self.seen.keys.clear();
        r
    }

    /// Reads the container at `i`, a value inside the document with `depth`
    /// containers open around it, in context `ctx`, as the state machine
    /// hands it over. Nothing goes before it (the caller writes its prefix
    /// if it stayed); returns where it ends and whether it was written.
    pub(super) fn inner(&mut self, i: usize, ctx: Ctx, depth: usize) -> R<(usize, bool)> {
        let node = PathNode {
            parent: None,
            seg: None,
        };
        let start = self.seen.keys.len();
        let r = self.value(i, ctx, depth, &node, Prefix::Root);
        self.seen.keys.truncate(start);
        r
    }

    /// Validates the container at `i` (inside a kept or dropped one, with
    /// `depth` containers open around it); returns where it ends.
    pub(super) fn inner_skip(&mut self, i: usize, depth: usize) -> R<usize> {
        let start = self.seen.keys.len();
        let r = self.skip(i, depth);
        self.seen.keys.truncate(start);
        r
    }

    /// Skips JSON blanks; in NDJSON a line break may not occur inside a
    /// document. Running out of bytes gives up: the document is cut.
    #[inline(always)]
    fn ws(&self, i: usize) -> R<usize> {
        // Compact JSON has none: one comparison.
        match self.buf.get(i) {
            Some(&b) if b > b' ' => Ok(i),
            _ => self.blanks(i),
        }
    }

    #[inline(never)]
    fn blanks(&self, mut i: usize) -> R<usize> {
        let buf = self.buf;
        while let Some(&b) = buf.get(i) {
            match b {
                b' ' | b'\t' => i += 1,
                b'\n' | b'\r' if !self.lines => i += 1,
                _ => return Ok(i),
            }
        }
        Err(Bail)
    }

    /// The byte at `i` (giving up past the end).
    #[inline(always)]
    fn at(&self, i: usize) -> R<u8> {
        self.buf.get(i).copied().ok_or(Bail)
    }

    /// Reads one value at `i` in context `ctx`, with `depth` containers open
    /// around it, `before` it what goes in front of it in the output if it
    /// stays; returns where the value ends and whether it was written.
    fn value(
        &mut self,
        i: usize,
        ctx: Ctx,
        depth: usize,
        path: &PathNode,
        before: Prefix,
    ) -> R<(usize, bool)> {
        let rules = self.rules;
        let info = rules.info(ctx.state);
        let (action, rule) = match info.decision {
            Some(r) if !ctx.fresh => (&rules.rule(r).action, Some(r)),
            _ if ctx.keep => (&Action::Keep, None),
            _ => (&Action::Drop, None),
        };
        let at_root = depth == 0;
        let b = self.at(i)?;
        if b != b'{' && b != b'[' {
            return self.scalar_value(i, ctx, depth, action, rule, path, before);
        }
        let obj = b == b'{';
        match action {
            // A kept container is entered, not copied, when any deeper
            // selector (a `drop` included) may say otherwise.
            Action::Keep if !info.descend_any => {
                self.note(action, Outcome::Kept, path);
                let end = self.skip(i, depth)?;
                self.write_kept(before, i, end);
                Ok((end, true))
            }
            Action::Drop if !info.descend => {
                self.note(action, Outcome::Dropped, path);
                self.skipped(i, depth, obj, at_root)
            }
            Action::Keep | Action::Drop if obj => {
                self.note(action, Outcome::Entered, path);
                let keep = matches!(action, Action::Keep);
                let inner = Ctx {
                    state: ctx.state,
                    keep,
                    fresh: false,
                };
                // The root, and a container kept as such, always appear.
                self.container(i, inner, depth, path, before, at_root || keep)
            }
            Action::Redact { with_json, .. } if obj => {
                self.note(action, Outcome::Transformed, path);
                self.write_prefix(before);
                self.out.extend_from_slice(with_json);
                let end = self.skip(i, depth)?;
                Ok((end, true))
            }
            _ if obj => {
                self.note(action, Outcome::NotApplicable, path);
                self.skipped(i, depth, obj, at_root)
            }
            // Arrays are transparent: each element gets the array's context.
            _ => {
                self.note(action, Outcome::Entered, path);
                let shown = at_root || matches!(action, Action::Keep);
                self.container(i, ctx, depth, path, before, shown)
            }
        }
    }

    /// Writes what goes before a value that stays.
    #[inline(always)]
    fn write_prefix(&mut self, before: Prefix) {
        before.write(self.buf, self.out);
    }

    /// Writes a kept value (`i..end`) with what goes before it: a member
    /// written as `"key":value` in the input is copied in one piece.
    #[inline(always)]
    fn write_kept(&mut self, before: Prefix, i: usize, end: usize) {
        match before {
            Prefix::Member {
                comma,
                key,
                contiguous: true,
            } => {
                if comma {
                    self.out.push(b',');
                }
                self.out.extend_from_slice(&self.buf[key.0..end]);
            }
            _ => {
                self.write_prefix(before);
                self.out.extend_from_slice(&self.buf[i..end]);
            }
        }
    }

    /// A container skipped whole (validated only); the document root is
    /// always present, as an empty container.
    fn skipped(&mut self, i: usize, depth: usize, obj: bool, at_root: bool) -> R<(usize, bool)> {
        let end = self.skip(i, depth)?;
        if at_root {
            self.out.extend_from_slice(if obj { b"{}" } else { b"[]" });
        }
        Ok((end, at_root))
    }

    /// A scalar, decided by `action`.
    #[allow(clippy::too_many_arguments)]
    fn scalar_value(
        &mut self,
        i: usize,
        ctx: Ctx,
        depth: usize,
        action: &Action,
        rule: Option<u32>,
        path: &PathNode,
        before: Prefix,
    ) -> R<(usize, bool)> {
        let (end, kind) = self.scalar(i)?;
        let buf = self.buf;
        let token = &buf[i..end];
        let outcome = match action {
            Action::Keep => {
                self.write_kept(before, i, end);
                Outcome::Kept
            }
            Action::Drop => Outcome::Dropped,
            Action::EmbeddedJson { base64 } => match kind {
                Kind::Str { escaped } => {
                    let text = unescape(&token[1..token.len() - 1], escaped, self.scratch);
                    let depth_left = self.max_depth.saturating_sub(depth).max(1);
                    match super::rewrite_embedded(
                        self.engine,
                        self.rules,
                        ctx.state,
                        text,
                        *base64,
                        depth_left,
                        None,
                    ) {
                        Some((s, sub, _)) => {
                            self.stats.absorb(&sub);
                            self.write_prefix(before);
                            apply::write_json_str(self.out, &s);
                            Outcome::Transformed
                        }
                        None => Outcome::NotApplicable,
                    }
                }
                _ => Outcome::NotApplicable,
            },
            _ => self.transform(token, kind, action, rule, before),
        };
        self.note(action, outcome, path);
        let stayed = matches!(outcome, Outcome::Kept | Outcome::Transformed);
        if depth == 0 && !stayed {
            // The document root is always present.
            self.out.extend_from_slice(b"null");
            return Ok((end, true));
        }
        Ok((end, stayed))
    }

    /// A value action on a scalar token.
    fn transform(
        &mut self,
        token: &[u8],
        kind: Kind,
        action: &Action,
        rule: Option<u32>,
        before: Prefix,
    ) -> Outcome {
        let scalar = match kind {
            Kind::Str { escaped } => {
                Scalar::Str(unescape(&token[1..token.len() - 1], escaped, self.scratch))
            }
            Kind::Num => Scalar::Num(std::str::from_utf8(token).unwrap_or("")),
            Kind::Lit => Scalar::Other,
        };
        // Pseudonyms and hashes always apply to strings and numbers: they
        // are written straight into the output, and remembered for the rest
        // of the body (one user, many events: one HMAC).
        let direct = apply::writes_json(action);
        match scalar {
            Scalar::Str(text) | Scalar::Num(text) if direct => {
                let is_num = matches!(kind, Kind::Num);
                before.write(self.buf, self.out);
                let memo = self.memo.get_or_insert_with(Box::default);
                let id = rule.unwrap_or(u32::MAX);
                if memo.get(id, is_num, text.as_bytes(), self.out) {
                    return Outcome::Transformed;
                }
                let start = self.out.len();
                apply::apply_scalar(self.engine, action, scalar, Some(self.out));
                memo.put(id, is_num, text.as_bytes(), &self.out[start..]);
                Outcome::Transformed
            }
            _ => match apply::apply_scalar(self.engine, action, scalar, None) {
                None => Outcome::NotApplicable,
                Some(Out::Original) => {
                    before.write(self.buf, self.out);
                    self.out.extend_from_slice(token);
                    Outcome::Kept
                }
                Some(Out::Str(s)) => {
                    before.write(self.buf, self.out);
                    apply::write_json_str(self.out, &s);
                    Outcome::Transformed
                }
                Some(Out::Num(s)) => {
                    before.write(self.buf, self.out);
                    self.out.extend_from_slice(s.as_bytes());
                    Outcome::Transformed
                }
                Some(Out::Written) => Outcome::Transformed,
            },
        }
    }

    /// A container entered: each member decided on its own, every array
    /// element in the array's context. `shown`: written even when nothing
    /// inside stays; otherwise its opening (with `before`) is written on
    /// speculation and taken back.
    fn container(
        &mut self,
        i: usize,
        ctx: Ctx,
        depth: usize,
        path: &PathNode,
        before: Prefix,
        shown: bool,
    ) -> R<(usize, bool)> {
        if depth >= self.max_depth {
            return Err(Bail);
        }
        let mark = self.out.len();
        self.write_prefix(before);
        let open = self.buf[i];
        self.out.push(open);
        let read = if open == b'{' {
            self.members(i, ctx, depth, path)
        } else {
            self.elements(i, ctx, depth, path)
        };
        let (end, emitted) = self.open_at(i, read)?;
        if emitted || shown {
            self.out.push(if open == b'{' { b'}' } else { b']' });
            Ok((end, true))
        } else {
            // Nothing inside stayed: the container leaves no trace.
            self.out.truncate(mark);
            Ok((end, false))
        }
    }

    /// The members of the object at `i`; returns its end and whether any
    /// was written.
    fn members(&mut self, i: usize, ctx: Ctx, depth: usize, path: &PathNode) -> R<(usize, bool)> {
        let mut emitted = false;
        let mut keys = self.open_object();
        let mut j = self.ws(i + 1)?;
        if self.at(j)? == b'}' {
            self.close_object(keys);
            return Ok((j + 1, false));
        }
        loop {
            if self.at(j)? != b'"' {
                return Err(Bail);
            }
            let kstart = j;
            let (kend, escaped, plain) = self.key_token(j)?;
            let rules = self.rules;
            let state = {
                let (canon, head) = self.key(kstart + 1, kend - 1, escaped, plain, &mut keys)?;
                rules.step_canonical_head(ctx.state, canon, head)
            };
            j = self.ws(kend)?;
            if self.at(j)? != b':' {
                return Err(Bail);
            }
            let vstart = self.ws(j + 1)?;
            let node = PathNode {
                parent: Some(path),
                seg: Some(Seg::Key {
                    start: kstart + 1,
                    end: kend - 1,
                    escaped,
                }),
            };
            let child = Ctx {
                state,
                keep: ctx.keep,
                fresh: false,
            };
            let before = Prefix::Member {
                comma: emitted,
                key: (kstart, kend),
                contiguous: vstart == kend + 1,
            };
            let (vend, stayed) = self.value(vstart, child, depth + 1, &node, before)?;
            emitted |= stayed;
            j = self.ws(vend)?;
            match self.at(j)? {
                b',' => j = self.ws(j + 1)?,
                b'}' => {
                    self.close_object(keys);
                    return Ok((j + 1, emitted));
                }
                _ => return Err(Bail),
            }
        }
    }

    /// The elements of the array at `i`; returns its end and whether any
    /// was written.
    fn elements(&mut self, i: usize, ctx: Ctx, depth: usize, path: &PathNode) -> R<(usize, bool)> {
        let mut emitted = false;
        let mut index = 0u64;
        let mut j = self.ws(i + 1)?;
        if self.at(j)? == b']' {
            return Ok((j + 1, false));
        }
        loop {
            let node = PathNode {
                parent: Some(path),
                seg: Some(Seg::Index(index)),
            };
            let before = Prefix::Element { comma: emitted };
            let (vend, stayed) = self.value(j, ctx, depth + 1, &node, before)?;
            emitted |= stayed;
            index += 1;
            j = self.ws(vend)?;
            match self.at(j)? {
                b',' => j = self.ws(j + 1)?,
                b']' => return Ok((j + 1, emitted)),
                _ => return Err(Bail),
            }
        }
    }

    /// Validates the value at `i` (with `depth` containers open around it)
    /// and returns where it ends. Nothing is written.
    #[inline(always)]
    fn skip(&mut self, i: usize, depth: usize) -> R<usize> {
        match self.at(i)? {
            b'"' => Ok(self.string(i)?.0),
            b'{' => self.skip_object(i, depth),
            b'[' => self.skip_array(i, depth),
            _ => Ok(self.scalar(i)?.0),
        }
    }

    fn skip_object(&mut self, i: usize, depth: usize) -> R<usize> {
        let read = self.skip_members(i, depth);
        self.open_at(i, read)
    }

    fn skip_array(&mut self, i: usize, depth: usize) -> R<usize> {
        let read = self.skip_elements(i, depth);
        self.open_at(i, read)
    }

    /// `read` of the container at `i`; if it gave up, the container was
    /// open at that point.
    #[inline(always)]
    fn open_at<T>(&mut self, i: usize, read: R<T>) -> R<T> {
        if read.is_err() {
            self.spine.push(i);
        }
        read
    }

    fn skip_members(&mut self, i: usize, depth: usize) -> R<usize> {
        if depth >= self.max_depth {
            return Err(Bail);
        }
        let mut keys = self.open_object();
        let mut j = self.ws(i + 1)?;
        if self.at(j)? == b'}' {
            self.close_object(keys);
            return Ok(j + 1);
        }
        loop {
            if self.at(j)? != b'"' {
                return Err(Bail);
            }
            let (kend, escaped, plain) = self.key_token(j)?;
            self.skipped_key(j + 1, kend - 1, escaped, plain, &mut keys)?;
            j = self.ws(kend)?;
            if self.at(j)? != b':' {
                return Err(Bail);
            }
            j = self.ws(j + 1)?;
            j = self.skip(j, depth + 1)?;
            j = self.ws(j)?;
            match self.at(j)? {
                b',' => j = self.ws(j + 1)?,
                b'}' => break,
                _ => return Err(Bail),
            }
        }
        self.close_object(keys);
        Ok(j + 1)
    }

    fn skip_elements(&mut self, i: usize, depth: usize) -> R<usize> {
        if depth >= self.max_depth {
            return Err(Bail);
        }
        let mut j = self.ws(i + 1)?;
        if self.at(j)? == b']' {
            return Ok(j + 1);
        }
        loop {
            j = self.skip(j, depth + 1)?;
            j = self.ws(j)?;
            match self.at(j)? {
                b',' => j = self.ws(j + 1)?,
                b']' => return Ok(j + 1),
                _ => return Err(Bail),
            }
        }
    }

    fn open_object(&self) -> ObjectKeys {
        ObjectKeys {
            start: self.seen.keys.len(),
            bloom: 0,
            set: None,
        }
    }

    fn close_object(&mut self, keys: ObjectKeys) {
        self.seen.keys.truncate(keys.start);
    }

    /// A key (raw bytes `start..end`) of an object being entered: checked
    /// to be new in canonical form (keys that fold alike are duplicates);
    /// returns the canonical form and its first eight bytes as a number
    /// (for the automaton step).
    #[inline(always)]
    fn key(
        &mut self,
        start: usize,
        end: usize,
        escaped: bool,
        plain: Option<AsciiKey>,
        keys: &mut ObjectKeys,
    ) -> R<(&[u8], u64)> {
        let buf = self.buf;
        // The usual key (`userId`): visible ASCII, no escape. Its canonical
        // form is its lower case, hashed as it was scanned.
        let Some(k) = plain else {
            return self.unusual_key(start, end, escaped, keys);
        };
        let raw = &buf[start..end];
        let canon: &[u8] = if k.upper {
            self.canon.clear();
            self.canon.extend(raw.iter().map(u8::to_ascii_lowercase));
            &self.canon[..]
        } else {
            raw
        };
        let seen = SeenKey::new(k.hash, start, end, false);
        remember(self.seen, buf, keys, seen, Some(canon))?;
        Ok((canon, k.head))
    }

    /// A key of an object that is only validated: checked to be new.
    #[inline(always)]
    fn skipped_key(
        &mut self,
        start: usize,
        end: usize,
        escaped: bool,
        plain: Option<AsciiKey>,
        keys: &mut ObjectKeys,
    ) -> R<()> {
        if let Some(k) = plain {
            let seen = SeenKey::new(k.hash, start, end, false);
            // The canonical form is only needed when hashes meet.
            return remember(self.seen, self.buf, keys, seen, None);
        }
        self.unusual_key(start, end, escaped, keys).map(|_| ())
    }

    /// A key with escapes or beyond visible ASCII: folded in full.
    #[inline(never)]
    fn unusual_key(
        &mut self,
        start: usize,
        end: usize,
        escaped: bool,
        keys: &mut ObjectKeys,
    ) -> R<(&[u8], u64)> {
        let buf = self.buf;
        let raw = &buf[start..end];
        let text: &[u8] = if escaped {
            let k = unescape(raw, true, self.scratch).as_bytes();
            // U+0000 only comes from an escape: the state machine decides
            // whether the readings before and after it agree.
            if memchr::memchr(0, k).is_some() {
                return Err(Bail);
            }
            k
        } else {
            raw
        };
        let canon = canonical_key(text, self.canon);
        let seen = SeenKey::new(folded_hash(canon), start, end, escaped);
        remember(self.seen, buf, keys, seen, Some(canon))?;
        Ok((canon, head(canon)))
    }

    /// Scans a key token at the quote `buf[i]`: where it ends, whether it
    /// holds escapes, and for a key of visible ASCII without escapes its
    /// [`AsciiKey`], found in the same pass (most keys are read once).
    #[inline(always)]
    fn key_token(&self, i: usize) -> R<(usize, bool, Option<AsciiKey>)> {
        let buf = self.buf;
        let start = i + 1;
        let mut j = start;
        let mut k = KeyWords::new();
        while let Some(word) = buf.get(j..j + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            let w = u64::from_le_bytes(w);
            let stop = needs_attention(w);
            if stop == 0 {
                k.take(w, u64::MAX);
                j += 8;
                continue;
            }
            let n = (stop.trailing_zeros() / 8) as usize;
            if buf[j + n] != b'"' {
                break;
            }
            if n > 0 {
                let keep = u64::MAX >> (8 * (8 - n));
                k.take(w & keep, keep);
            }
            return Ok((j + n + 1, false, k.finish(j + n - start)));
        }
        // An escape, a control character, or the end of the buffer near.
        let (end, escaped) = self.string(i)?;
        let plain = if escaped {
            None
        } else {
            ascii_key(buf, start, end - 1)
        };
        Ok((end, escaped, plain))
    }

    /// Scans one scalar token.
    #[inline]
    fn scalar(&self, i: usize) -> R<(usize, Kind)> {
        match self.at(i)? {
            b'"' => self
                .string(i)
                .map(|(end, escaped)| (end, Kind::Str { escaped })),
            b'-' | b'0'..=b'9' => self.number(i).map(|end| (end, Kind::Num)),
            b't' => self.literal(i, b"true"),
            b'f' => self.literal(i, b"false"),
            b'n' => self.literal(i, b"null"),
            _ => Err(Bail),
        }
    }

    #[inline(always)]
    fn literal(&self, i: usize, word: &[u8]) -> R<(usize, Kind)> {
        match self.buf.get(i..i + word.len()) {
            // Byte by byte: a call to `memcmp` costs more than four bytes.
            Some(w) if w.iter().zip(word).all(|(a, b)| a == b) => Ok((i + word.len(), Kind::Lit)),
            _ => Err(Bail),
        }
    }

    /// Scans a string token at the quote `buf[i]` (UTF-8 is already known to
    /// be valid); returns its end and whether it holds escapes.
    #[inline(always)]
    fn string(&self, i: usize) -> R<(usize, bool)> {
        let buf = self.buf;
        let n = buf.len();
        let mut j = i + 1;
        let mut escaped = false;
        loop {
            // Eight bytes at a time until one is a quote, a backslash or a
            // control character.
            loop {
                match buf.get(j..j + 8) {
                    Some(word) => {
                        let mut w = [0u8; 8];
                        w.copy_from_slice(word);
                        let mask = needs_attention(u64::from_le_bytes(w));
                        if mask != 0 {
                            j += (mask.trailing_zeros() / 8) as usize;
                            break;
                        }
                        j += 8;
                    }
                    None => {
                        while j < n && !matches!(buf[j], b'"' | b'\\' | 0..0x20) {
                            j += 1;
                        }
                        break;
                    }
                }
            }
            match buf.get(j) {
                Some(b'"') => return Ok((j + 1, escaped)),
                Some(b'\\') => {
                    escaped = true;
                    j = self.escape(j)?;
                }
                // A control character, or the end of the buffer.
                _ => return Err(Bail),
            }
        }
    }

    /// Validates the escape at `buf[i]` (a backslash); returns the byte
    /// after it.
    #[inline]
    fn escape(&self, i: usize) -> R<usize> {
        let buf = self.buf;
        match buf.get(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
            Some(b'u') => {
                let cp = buf.get(i + 2..i + 6).and_then(super::hex4).ok_or(Bail)?;
                match cp {
                    // A high surrogate must be followed by a low one.
                    0xD800..=0xDBFF => {
                        if buf.get(i + 6..i + 8) != Some(b"\\u") {
                            return Err(Bail);
                        }
                        match buf.get(i + 8..i + 12).and_then(super::hex4) {
                            Some(0xDC00..=0xDFFF) => Ok(i + 12),
                            _ => Err(Bail),
                        }
                    }
                    0xDC00..=0xDFFF => Err(Bail),
                    _ => Ok(i + 6),
                }
            }
            _ => Err(Bail),
        }
    }

    /// Scans a number (RFC 8259 section 6). One that reaches the end of the
    /// buffer may go on in the next chunk: the state machine decides.
    #[inline]
    fn number(&self, start: usize) -> R<usize> {
        let buf = self.buf;
        let digits = |mut i: usize| {
            while buf.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = start;
        if buf.get(i) == Some(&b'-') {
            i += 1;
        }
        i = match buf.get(i) {
            Some(b'0') => i + 1,
            Some(b'1'..=b'9') => digits(i + 1),
            _ => return Err(Bail),
        };
        if buf.get(i) == Some(&b'.') {
            if !buf.get(i + 1).is_some_and(u8::is_ascii_digit) {
                return Err(Bail);
            }
            i = digits(i + 1);
        }
        if matches!(buf.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(buf.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !buf.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(Bail);
            }
            i = digits(i);
        }
        if i >= buf.len() || i - start > MAX_NUMBER_LEN {
            return Err(Bail);
        }
        Ok(i)
    }

    /// Counts one decision, as the state machine's `note` does.
    #[inline]
    fn note(&mut self, action: &Action, outcome: Outcome, path: &PathNode) {
        if self.stats.note(action, outcome) {
            let p = self.path(path);
            self.stats.dropped_paths.push(p);
        }
    }

    /// The path of a value, as the state machine writes it.
    #[cold]
    fn path(&mut self, node: &PathNode) -> String {
        // Root first: the nodes are linked from the leaf.
        fn walk(f: &mut Fast<'_, '_>, node: &PathNode, path: &mut String) {
            if let Some(parent) = node.parent {
                walk(f, parent, path);
            }
            match node.seg {
                None => {}
                Some(Seg::Key {
                    start,
                    end,
                    escaped,
                }) => {
                    let raw = &f.buf[start..end];
                    let k = if escaped {
                        unescape(raw, true, f.scratch).as_bytes()
                    } else {
                        raw
                    };
                    crate::rewrite::push_path_key(path, k, f.rules);
                }
                Some(Seg::Index(i)) => {
                    path.push('[');
                    path.push_str(itoa(i, &mut [0u8; 20]));
                    path.push(']');
                }
            }
        }
        let mut path = String::with_capacity(48);
        walk(self, node, &mut path);
        path
    }
}

/// `n` in decimal, written into `buf`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;
const HASH_K: u64 = 0x517c_c1b7_2722_0a95;

/// Up to eight bytes of `key` from `at`, zero-padded, and the high bit of
/// each byte that is the key's.
#[inline(always)]
fn word(key: &[u8], at: usize) -> (u64, u64) {
    let rest = &key[at..];
    if rest.len() >= 8 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&rest[..8]);
        return (u64::from_le_bytes(w), HIGH);
    }
    // Assembled in a register: a copy through memory here stalls on store
    // forwarding.
    let mut w = 0u64;
    for (k, &b) in rest.iter().enumerate() {
        w |= (b as u64) << (8 * k);
    }
    (w, HIGH >> (8 * (8 - rest.len())))
}

#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(HASH_K)
}

/// A key of visible ASCII only (what [`canonical_key`] only case-folds).
struct AsciiKey {
    /// The hash of its canonical (lower-case) form.
    hash: u64,
    /// Whether it has upper-case letters.
    upper: bool,
    /// The first eight bytes of the canonical form as a number.
    head: u64,
}

/// [`AsciiKey`] built a word at a time.
struct KeyWords {
    hash: u64,
    bad: u64,
    upper: u64,
    head: u64,
    words: usize,
}

impl KeyWords {
    #[inline(always)]
    fn new() -> KeyWords {
        KeyWords {
            hash: 0,
            bad: 0,
            upper: 0,
            head: 0,
            words: 0,
        }
    }

    /// Takes the next (up to) eight bytes of the key: `w` with only the
    /// key's bytes kept (`keep`), the rest zero.
    #[inline(always)]
    fn take(&mut self, w: u64, keep: u64) {
        let real = HIGH & keep;
        // Below 0x21 (blanks, controls), or 0x7f and above.
        self.bad |= ((w.wrapping_sub(LOW * 0x21) & !w) | w.wrapping_add(LOW) | w) & real;
        // 'A'..='Z' (exact for bytes below 0x80, the only case that counts).
        let up = (w.wrapping_add(LOW * 0x3f) ^ w.wrapping_add(LOW * 0x25)) & !w & real;
        self.upper |= up;
        let lower = w | (up >> 2);
        if self.words == 0 {
            self.head = lower;
        }
        self.words += 1;
        self.hash = mix(self.hash, lower);
    }

    /// The key, `len` bytes long, if it was visible ASCII.
    #[inline(always)]
    fn finish(self, len: usize) -> Option<AsciiKey> {
        (self.bad == 0).then_some(AsciiKey {
            hash: mix(self.hash, len as u64),
            upper: self.upper != 0,
            head: self.head,
        })
    }
}

/// [`AsciiKey`] for the key `buf[start..end]`; `None` for any other key.
#[inline(always)]
fn ascii_key(buf: &[u8], start: usize, end: usize) -> Option<AsciiKey> {
    let mut k = KeyWords::new();
    let mut at = start;
    while at < end {
        // A whole word from the buffer where it has one (the closing quote
        // at least follows the key), the key's bytes kept.
        let n = (end - at).min(8);
        let keep = u64::MAX >> (8 * (8 - n));
        let w = match buf.get(at..at + 8) {
            Some(word) => {
                let mut w = [0u8; 8];
                w.copy_from_slice(word);
                u64::from_le_bytes(w) & keep
            }
            None => word(&buf[start..end], at - start).0,
        };
        k.take(w, keep);
        at += 8;
    }
    k.finish(end - start)
}

/// The same hash as [`ascii_key`] gives, of a key already in canonical form.
#[inline]
fn folded_hash(canon: &[u8]) -> u64 {
    let mut h = 0;
    let mut at = 0;
    while at < canon.len() {
        h = mix(h, word(canon, at).0);
        at += 8;
    }
    mix(h, canon.len() as u64)
}

/// The canonical form of a key seen earlier (rare paths: a hash matched,
/// or an object grew large).
fn canonical_of(buf: &[u8], k: SeenKey) -> Vec<u8> {
    let (mut tmp, mut out) = (Vec::new(), Vec::new());
    let text = unescape(&buf[k.start()..k.end()], k.escaped(), &mut tmp);
    canonical_key(text.as_bytes(), &mut out).to_vec()
}

/// Checks that `key` is new in its object (`keys`) and remembers it.
/// `canon`: its canonical form, when the caller has it at hand (it is
/// rebuilt from the buffer when two hashes meet).
#[inline(always)]
fn remember(
    seen: &mut Seen,
    buf: &[u8],
    keys: &mut ObjectKeys,
    key: SeenKey,
    canon: Option<&[u8]>,
) -> R<()> {
    let bit = 1u64 << (key.hash & 63);
    if keys.bloom & bit == 0
        && keys.set.is_none()
        && seen.keys.len() - keys.start < LINEAR_DUP_LIMIT
    {
        keys.bloom |= bit;
        seen.keys.push(SeenKeyRepr(key));
        return Ok(());
    }
    remember_slow(seen, buf, keys, key, canon)
}

/// [`remember`] when the filter says "maybe", or the object is large.
#[inline(never)]
fn remember_slow(
    seen: &mut Seen,
    buf: &[u8],
    keys: &mut ObjectKeys,
    key: SeenKey,
    canon: Option<&[u8]>,
) -> R<()> {
    let canon_of_new = || canon.map_or_else(|| canonical_of(buf, key), <[u8]>::to_vec);
    if let Some(set) = &mut keys.set {
        return if set.insert(canon_of_new().into()) {
            Ok(())
        } else {
            Err(Bail)
        };
    }
    let bit = 1u64 << (key.hash & 63);
    let here = &seen.keys[keys.start..];
    // Possibly seen: compare the canonical forms of equal hashes.
    if keys.bloom & bit != 0 && here.iter().any(|k| k.0.hash == key.hash) {
        let new = canon_of_new();
        if here
            .iter()
            .any(|k| k.0.hash == key.hash && canonical_of(buf, k.0) == new)
        {
            return Err(Bail);
        }
    }
    keys.bloom |= bit;
    if here.len() >= LINEAR_DUP_LIMIT {
        let mut set: HashSet<Box<[u8]>> = HashSet::with_capacity(here.len() * 2);
        for k in here {
            set.insert(canonical_of(buf, k.0).into());
        }
        set.insert(canon_of_new().into());
        keys.set = Some(set);
    }
    seen.keys.push(SeenKeyRepr(key));
    Ok(())
}

/// What goes before a value in the output, if it stays.
#[derive(Clone, Copy)]
enum Prefix {
    /// Nothing: the document root.
    Root,
    /// An array element: a comma after an earlier one.
    Element { comma: bool },
    /// An object member: a comma, the key token (`key` is its range in the
    /// input, quotes included) and a colon. `contiguous`: the input has the
    /// value right after `"key":`, so a kept member is one copy.
    Member {
        comma: bool,
        key: (usize, usize),
        contiguous: bool,
    },
}

impl Prefix {
    /// Writes it to `out` (`buf`: the input, where the key is).
    #[inline(always)]
    fn write(self, buf: &[u8], out: &mut Vec<u8>) {
        match self {
            Prefix::Root | Prefix::Element { comma: false } => {}
            Prefix::Element { comma: true } => out.push(b','),
            Prefix::Member { comma, key, .. } => {
                if comma {
                    out.push(b',');
                }
                out.extend_from_slice(&buf[key.0..key.1]);
                out.push(b':');
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str { escaped: bool },
    Num,
    Lit,
}
