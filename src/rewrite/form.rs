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

use super::apply::{self, Out, Scalar};
use super::json::rewrite_embedded;
use super::{
    Engine, ErrorKind, Explained, MAX_DROPPED_PATHS, Observer, Outcome, RewriteError, Stats, Tally,
};
use crate::policy::{Action, FieldRules};

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
    observe: Option<Box<Observer>>,
    error: Option<RewriteError>,
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
        }
    }

    /// Records a decision per parameter.
    pub fn explain(&mut self) {
        self.observe.get_or_insert_default().entries = Some(Vec::new());
    }

    /// The recorded decisions.
    pub fn explained(&self) -> &[Explained] {
        self.observe
            .as_ref()
            .and_then(|o| o.entries.as_deref())
            .unwrap_or(&[])
    }

    /// Counts decisions per action (see [`Tally`]).
    pub fn count(&mut self) {
        self.observe.get_or_insert_default().tally = Some(Tally::default());
    }

    /// The per-action counts so far.
    pub fn tally(&self) -> Option<&Tally> {
        self.observe.as_ref().and_then(|o| o.tally.as_ref())
    }

    /// Parameters completed so far.
    pub fn documents(&self) -> u64 {
        self.stats.documents
    }

    /// Feeds a chunk: every complete parameter (up to the last `&`) is written.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.pending.extend_from_slice(chunk);
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
        let buf = std::mem::take(&mut self.pending);
        self.pairs(&buf, out)
            .inspect_err(|e| self.error = Some(e.clone()))?;
        Ok(std::mem::take(&mut self.stats))
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
        let eq = memchr::memchr(b'=', raw);
        let (name_raw, value_raw) = match eq {
            Some(p) => (&raw[..p], &raw[p + 1..]),
            None => (raw, &raw[raw.len()..]),
        };
        let value_at = offset + eq.map_or(raw.len(), |p| p + 1) as u64;
        let name = decode(name_raw, offset)?;
        if std::str::from_utf8(&name).is_err() {
            return Err(RewriteError {
                kind: ErrorKind::InvalidUtf8,
                offset,
                line: None,
                path: String::new(),
            });
        }
        self.stats.documents += 1;
        let state = self.rules.step(self.rules.root(), &name);
        let info = self.rules.info(state);
        let rule = info.decision;
        let action = rule.map_or(&Action::Drop, |r| &self.rules.rule(r).action);
        // Every value is validated, kept or not: a malformed body is refused
        // whole, never partly forwarded.
        let value = decode(value_raw, value_at)?;
        let value = std::str::from_utf8(&value).map_err(|e| RewriteError {
            kind: ErrorKind::InvalidUtf8,
            offset: value_at + e.valid_up_to() as u64,
            line: None,
            path: self.path_of(&name),
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
        match outcome {
            Outcome::Kept => self.stats.kept += 1,
            Outcome::Transformed => self.stats.transformed += 1,
            _ => {
                self.stats.dropped += 1;
                if outcome == Outcome::NotApplicable {
                    self.stats.not_applicable += 1;
                }
                if self.stats.dropped_paths.len() < MAX_DROPPED_PATHS {
                    let p = self.path_of(&name);
                    self.stats.dropped_paths.push(p);
                }
            }
        }
        if self.observe.is_some() {
            let path = self.path_of(&name);
            let rules = self.rules;
            let name = action.name();
            if let Some(o) = self.observe.as_mut() {
                o.record(
                    || Explained {
                        path: path.clone(),
                        selector: rule.map(|r| rules.rule(r).text.clone()),
                        inherited: false,
                        action: name,
                        outcome,
                    },
                    name,
                    outcome,
                );
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
                        return Err(RewriteError {
                            kind: ErrorKind::InvalidPercentEncoding,
                            offset: offset + i as u64,
                            line: None,
                            path: String::new(),
                        });
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
}
