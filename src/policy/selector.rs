//! Field selectors: `context.ip`, `properties.*`, `**.email`, `props."a.b"`.

use std::fmt;

use crate::chars::is_invisible;

/// The form in which keys are compared with selector literals: case-folded
/// (upper then lower case, so `ſ`, `ﬁ` and `ß` meet `s`, `fi` and `ss`),
/// fullwidth ASCII read as ASCII, with whitespace, control and invisible
/// format characters (zero-width space, soft hyphen, BOM, variation
/// selectors...) removed. So `Email`, `EMAIL`, `"email "` and
/// `"em\u200bail"` all meet a rule for `email`: a case or invisible-character
/// variant of a key cannot slip past a rule under a kept container. Keys
/// are output as they were written.
#[inline(always)]
pub fn canonical_key<'a>(key: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
    // One pass: which kinds of byte the key holds.
    let kinds = key.iter().fold(0u8, |k, &b| k | KEY_BYTE[b as usize]);
    if kinds == PLAIN {
        return key;
    }
    buf.clear();
    if kinds & (OTHER | BLANK) == 0 {
        // Visible ASCII (`userId`): only case to fold.
        buf.extend(key.iter().map(u8::to_ascii_lowercase));
        return buf;
    }
    if kinds & OTHER == 0 {
        // ASCII with blanks or controls (`Google Analytics`): those go, as
        // `fold_unicode_key` removes them.
        buf.extend(
            key.iter()
                .filter(|&&b| KEY_BYTE[b as usize] != BLANK)
                .map(u8::to_ascii_lowercase),
        );
        return buf;
    }
    fold_unicode_key(key, buf)
}

/// [`canonical_key`] for a key with whitespace, control or non-ASCII bytes.
#[cold]
#[inline(never)]
fn fold_unicode_key<'a>(key: &[u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
    let text = String::from_utf8_lossy(key);
    for c in text.chars().filter_map(visible_narrow) {
        // `İ` is `i` under Turkic folding and for Java, but `i` and a
        // combining dot above under full case folding and lower case: both
        // must be `i`, so the dot after an `i` is dropped.
        if c == '\u{307}' && buf.last() == Some(&b'i') {
            continue;
        }
        fold_char(c, buf);
    }
    buf
}

/// The steps before case folding, for one character: `None` for
/// whitespace, control and [`is_invisible`] characters (removed), and
/// fullwidth ASCII (`ｅｍａｉｌ`) read as ASCII.
pub(crate) fn visible_narrow(c: char) -> Option<char> {
    if c.is_whitespace() || c.is_control() || is_invisible(c) {
        return None;
    }
    Some(match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    })
}

/// The case fold of one character, appended to `buf`: upper then lower
/// case, repeated until it no longer changes. That folds what lower case
/// alone leaves apart (`ſ` and `s`, `ﬁ` and `fi`, `ß` and `ss`, and `ẞ`,
/// whose lower case is `ß`), as case-insensitive decoders (Go's
/// encoding/json, .NET, Java) and full Unicode case folding match them.
/// `İ` (U+0130) is `i`: Java's `equalsIgnoreCase` (simple lower case) and
/// Turkic case folding read it so, where full lower case gives `i` and a
/// combining dot.
fn fold_char(c: char, buf: &mut Vec<u8>) {
    if c.is_ascii() {
        buf.push(c.to_ascii_lowercase() as u8);
        return;
    }
    if c == '\u{130}' {
        buf.push(b'i');
        return;
    }
    if let Ok(i) = NEWER_FOLDS.binary_search_by_key(&c, |&(from, _)| from) {
        buf.extend_from_slice(NEWER_FOLDS[i].1.as_bytes());
        return;
    }
    let mut tmp = [0u8; 4];
    let mut cur: Vec<char> = vec![c];
    // Three rounds reach the fixed point for every code point (checked
    // over all of them by `fold_reaches_a_fixed_point`).
    for _ in 0..3 {
        let next: Vec<char> = cur
            .iter()
            .flat_map(|c| c.to_uppercase())
            .flat_map(char::to_lowercase)
            .collect();
        if next == cur {
            break;
        }
        cur = next;
    }
    for l in cur {
        buf.extend_from_slice(l.encode_utf8(&mut tmp).as_bytes());
    }
}

/// Case pairs new in Unicode 18, which the standard library's case tables
/// (Unicode 17 as of Rust 1.95) do not know yet: each capital letter with
/// its small letter, and U+1DF95, which folds to `ss` as `ß` does. Sorted.
/// Found by `tests/folding.rs`, which compares every code point with ICU4X;
/// once `char::to_lowercase` knows them, the entries give what it gives.
static NEWER_FOLDS: &[(char, &str)] = &[
    ('\u{A7DD}', "\u{0277}"),
    ('\u{A7E2}', "\u{027C}"),
    ('\u{AB6C}', "\u{AB4B}"),
    ('\u{AB6D}', "\u{AB4C}"),
    ('\u{1DF40}', "\u{1DF41}"),
    ('\u{1DF48}', "\u{1DF49}"),
    ('\u{1DF4A}', "\u{1DF4B}"),
    ('\u{1DF4D}', "\u{1DF4E}"),
    ('\u{1DF51}', "\u{1DF52}"),
    ('\u{1DF68}', "\u{1DF69}"),
    ('\u{1DF6A}', "\u{1DF6B}"),
    ('\u{1DF6C}', "\u{1DF6D}"),
    ('\u{1DF6E}', "\u{1DF6F}"),
    ('\u{1DF72}', "\u{1DF73}"),
    ('\u{1DF74}', "\u{1DF75}"),
    ('\u{1DF76}', "\u{1DF77}"),
    ('\u{1DF78}', "\u{1DF79}"),
    ('\u{1DF7A}', "\u{1DF7B}"),
    ('\u{1DF7C}', "\u{1DF7D}"),
    ('\u{1DF7E}', "\u{1DF7F}"),
    ('\u{1DF95}', "ss"),
];

/// Kinds of key byte for [`canonical_key`]: visible ASCII that is not upper
/// case never changes; upper-case ASCII only folds; ASCII blanks and
/// controls are removed; non-ASCII takes the Unicode path.
const PLAIN: u8 = 0;
const UPPER: u8 = 1;
const OTHER: u8 = 2;
/// ASCII whitespace and controls: removed from keys.
const BLANK: u8 = 4;

static KEY_BYTE: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut b = 0;
    while b <= 0x20 {
        t[b] = BLANK;
        b += 1;
    }
    t[0x7f] = BLANK;
    let mut b = 0x21;
    while b < 0x7f {
        t[b] = if b >= b'A' as usize && b <= b'Z' as usize {
            UPPER
        } else {
            PLAIN
        };
        b += 1;
    }
    t
};

/// [`canonical_key`] of a string.
pub fn canonical(key: &str) -> String {
    let mut buf = Vec::new();
    let c = canonical_key(key.as_bytes(), &mut buf);
    String::from_utf8_lossy(c).into_owned()
}

/// One segment of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An exact object key (compared after JSON unescaping).
    Key(Box<str>),
    /// `*`: any one key.
    Star,
    /// `**`: any number of keys, zero included.
    GlobStar,
}

impl Segment {
    /// Precedence rank of the segment kind: an exact key beats `*`, which beats `**`.
    pub fn rank(&self) -> u8 {
        match self {
            Segment::Key(_) => 2,
            Segment::Star => 1,
            Segment::GlobStar => 0,
        }
    }
}

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    segments: Vec<Segment>,
}

/// Why a selector string is not valid. Offsets are in characters from the
/// start of the selector text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// `a..b`, a leading or trailing dot, or an empty selector.
    #[error("empty segment in selector at character {0}")]
    EmptySegment(usize),
    /// A quote opened and never closed.
    #[error("unterminated quoted segment starting at character {0}")]
    Unterminated(usize),
    /// Something follows a closing quote other than a dot.
    #[error("expected '.' after quoted segment at character {0}")]
    AfterQuote(usize),
    /// `a*` or `**b`: stars only stand alone.
    #[error(
        "'*' must be a whole segment (use a quoted segment for a literal star) at character {0}"
    )]
    PartialStar(usize),
    /// `\x` inside a quoted segment.
    #[error("invalid escape in quoted segment at character {0} (only \\\" and \\\\ are allowed)")]
    BadEscape(usize),
    /// `**.**`: redundant.
    #[error("two consecutive '**' segments")]
    DoubleGlobStar,
}

impl Selector {
    /// Parses selector text. Segments are separated by dots; `*` and `**` stand
    /// alone; a double-quoted segment holds dots or stars literally (`\"` and
    /// `\\` escape a quote and a backslash inside it).
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let chars: Vec<char> = text.chars().collect();
        let mut segments = Vec::new();
        let mut i = 0;
        loop {
            let start = i;
            if i < chars.len() && chars[i] == '"' {
                let mut lit = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(SelectorError::Unterminated(start)),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => match chars.get(i + 1) {
                            Some(c @ ('"' | '\\')) => {
                                lit.push(*c);
                                i += 2;
                            }
                            _ => return Err(SelectorError::BadEscape(i)),
                        },
                        Some(c) => {
                            lit.push(*c);
                            i += 1;
                        }
                    }
                }
                if lit.is_empty() {
                    return Err(SelectorError::EmptySegment(start));
                }
                segments.push(Segment::Key(lit.into()));
                match chars.get(i) {
                    None => break,
                    Some('.') => i += 1,
                    Some(_) => return Err(SelectorError::AfterQuote(i)),
                }
                continue;
            }
            while i < chars.len() && chars[i] != '.' {
                i += 1;
            }
            let seg: String = chars[start..i].iter().collect();
            if seg.is_empty() {
                return Err(SelectorError::EmptySegment(start));
            }
            let segment = match seg.as_str() {
                "*" => Segment::Star,
                "**" => Segment::GlobStar,
                s if s.contains('*') => {
                    return Err(SelectorError::PartialStar(start + s.find('*').unwrap_or(0)));
                }
                s => Segment::Key(s.into()),
            };
            if segment == Segment::GlobStar && segments.last() == Some(&Segment::GlobStar) {
                return Err(SelectorError::DoubleGlobStar);
            }
            segments.push(segment);
            if i == chars.len() {
                break;
            }
            i += 1; // the dot
            if i == chars.len() {
                return Err(SelectorError::EmptySegment(i));
            }
        }
        Ok(Selector { segments })
    }

    /// The selector with every literal in [`canonical`] form (what matching
    /// compares).
    pub fn canonical(&self) -> Selector {
        Selector {
            segments: self
                .segments
                .iter()
                .map(|s| match s {
                    Segment::Key(k) => Segment::Key(canonical(k).into()),
                    other => other.clone(),
                })
                .collect(),
        }
    }

    /// Builds a selector from segments (used for nested tables and tests).
    pub fn from_segments(segments: Vec<Segment>) -> Selector {
        Selector { segments }
    }

    /// The segments, left to right.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Number of `**` segments (fewer wins a precedence tie).
    pub fn globstars(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| **s == Segment::GlobStar)
            .count()
    }

    /// Whether this selector matches `path` exactly (not an ancestor of it).
    /// Slow and obviously correct: used by the reference rewriter and tests.
    pub fn matches(&self, path: &[&str]) -> bool {
        self.best_ranks(path).is_some()
    }

    /// The best (lexicographically greatest) per-key rank vector over all the
    /// ways this selector can match `path`, or `None` when it does not match.
    /// Each key of the path is consumed by one segment; its rank is the
    /// segment's ([`Segment::rank`]). This is the precedence order documented
    /// in docs/rules.md.
    pub fn best_ranks(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.best_ranks_with(path, &|literal, key| canonical(literal) == canonical(key))
    }

    /// [`Self::best_ranks`] with another key equality: `same(literal, key)`
    /// says whether a selector literal meets a key of the path. The
    /// reference rewriter passes its own, independent of [`canonical`].
    pub fn best_ranks_with(
        &self,
        path: &[&str],
        same: &dyn Fn(&str, &str) -> bool,
    ) -> Option<Vec<u8>> {
        fn go(
            segs: &[Segment],
            path: &[&str],
            same: &dyn Fn(&str, &str) -> bool,
        ) -> Option<Vec<u8>> {
            match segs.first() {
                None => path.is_empty().then(Vec::new),
                Some(Segment::GlobStar) => {
                    // `**` consumes zero keys, or one key and stays.
                    let zero = go(&segs[1..], path, same);
                    let more = if path.is_empty() {
                        None
                    } else {
                        go(segs, &path[1..], same).map(|mut v| {
                            v.insert(0, 0);
                            v
                        })
                    };
                    match (zero, more) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    }
                }
                Some(seg) => {
                    let (key, rest) = path.split_first()?;
                    if let Segment::Key(k) = seg
                        && !same(k, key)
                    {
                        return None;
                    }
                    go(&segs[1..], rest, same).map(|mut v| {
                        v.insert(0, seg.rank());
                        v
                    })
                }
            }
        }
        go(&self.segments, path, same)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match seg {
                Segment::Star => f.write_str("*")?,
                Segment::GlobStar => f.write_str("**")?,
                Segment::Key(k) => {
                    if k.contains(['.', '*', '"', '\\']) {
                        f.write_str("\"")?;
                        for c in k.chars() {
                            if c == '"' || c == '\\' {
                                f.write_str("\\")?;
                            }
                            write!(f, "{c}")?;
                        }
                        f.write_str("\"")?;
                    } else {
                        f.write_str(k)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &Selector) -> Vec<String> {
        s.segments()
            .iter()
            .map(|s| match s {
                Segment::Key(k) => k.to_string(),
                Segment::Star => "<*>".into(),
                Segment::GlobStar => "<**>".into(),
            })
            .collect()
    }

    #[test]
    fn parses_plain_star_globstar_and_quoted() {
        let s = Selector::parse(r#"properties."a.b".*.**.x"#).unwrap();
        assert_eq!(keys(&s), ["properties", "a.b", "<*>", "<**>", "x"]);
        let s = Selector::parse(r#""*""#).unwrap();
        assert_eq!(keys(&s), ["*"]);
        assert_eq!(s.to_string(), r#""*""#);
        let s = Selector::parse(r#""say \"hi\"".b"#).unwrap();
        assert_eq!(keys(&s), ["say \"hi\"", "b"]);
    }

    #[test]
    fn refuses_malformed_selectors() {
        assert_eq!(Selector::parse(""), Err(SelectorError::EmptySegment(0)));
        assert_eq!(Selector::parse("a..b"), Err(SelectorError::EmptySegment(2)));
        assert_eq!(Selector::parse("a."), Err(SelectorError::EmptySegment(2)));
        assert_eq!(Selector::parse("a*"), Err(SelectorError::PartialStar(1)));
        assert_eq!(Selector::parse("\"ab"), Err(SelectorError::Unterminated(0)));
        assert_eq!(Selector::parse("\"a\"b"), Err(SelectorError::AfterQuote(3)));
        assert_eq!(Selector::parse("**.**"), Err(SelectorError::DoubleGlobStar));
        assert_eq!(
            Selector::parse(r#""a\x""#),
            Err(SelectorError::BadEscape(2))
        );
    }

    #[test]
    fn keys_match_in_canonical_form() {
        let s = Selector::parse("user.email").unwrap();
        assert!(s.matches(&["User", "EMAIL"]));
        assert!(s.matches(&["user", "em\u{200b}ail "]));
        assert!(s.matches(&["user", "email\u{0}"]));
        assert!(!s.matches(&["user", "e-mail"]));
        let mut buf = Vec::new();
        assert_eq!(canonical_key(b"userid", &mut buf), b"userid");
        assert_eq!(
            canonical_key("ÉMAIL".as_bytes(), &mut buf),
            "émail".as_bytes()
        );
        // Case folds that lower case alone misses, fullwidth letters, and
        // format characters outside the usual zero-width set.
        let p = Selector::parse("user.password").unwrap();
        for variant in [
            "pa\u{17f}\u{17f}word",
            "\u{ff50}\u{ff41}\u{ff53}\u{ff53}\u{ff57}\u{ff4f}\u{ff52}\u{ff44}",
            "pass\u{e0100}word",
            "pass\u{1d173}word",
            "pass\u{fff9}word",
            "pass\u{1bca0}word",
            "PASSWORD",
        ] {
            assert!(p.matches(&["user", variant]), "{variant:?}");
        }
        // İ is `i` (Turkic folding, Java) and `i` with a combining dot
        // above (full folding, lower case): all three are one key.
        assert_eq!(canonical("EMA\u{130}L"), "email");
        assert_eq!(canonical("emai\u{307}l"), "email");
        assert_eq!(canonical("EMAI\u{307}L"), "email");
        // Unicode 18 case pairs that `char::to_lowercase` does not know yet.
        assert_eq!(canonical("\u{A7DD}"), canonical("\u{277}"));
        assert_eq!(canonical("\u{AB6C}"), canonical("\u{AB4B}"));
        assert_eq!(canonical("\u{1DF40}"), canonical("\u{1DF41}"));
        assert_eq!(canonical("\u{1DF7E}"), canonical("\u{1DF7F}"));
        assert_eq!(canonical("pa\u{1DF95}word"), "password");
        assert!(NEWER_FOLDS.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        let f = Selector::parse("first").unwrap();
        assert!(f.matches(&["\u{fb01}rst"]), "ligature fi");
        assert!(
            Selector::parse("strasse")
                .unwrap()
                .matches(&["stra\u{df}e"])
        );
    }

    #[test]
    fn matching_and_ranks() {
        let g = Selector::parse("**.email").unwrap();
        assert!(g.matches(&["email"]));
        assert!(g.matches(&["a", "b", "email"]));
        assert!(!g.matches(&["email", "x"]));
        assert_eq!(g.best_ranks(&["a", "email"]), Some(vec![0, 2]));
        let a = Selector::parse("a.**").unwrap();
        assert_eq!(a.best_ranks(&["a"]), Some(vec![2]));
        assert_eq!(a.best_ranks(&["a", "b", "c"]), Some(vec![2, 0, 0]));
        let s = Selector::parse("a.*").unwrap();
        assert!(!s.matches(&["a"]));
        assert_eq!(s.best_ranks(&["a", "z"]), Some(vec![2, 1]));
        // Several alignments: the best one counts.
        let m = Selector::parse("**.a.**").unwrap();
        assert_eq!(m.best_ranks(&["a", "a"]), Some(vec![2, 0]));
    }
}
