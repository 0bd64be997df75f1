//! `scan`: find personal data and secrets inside free text.
//!
//! Two passes over the text, both linear:
//!
//! 1. an Aho-Corasick automaton finds the literal anchors: `@` and `%40` for
//!    emails, and the secret-token prefixes ([`TOKEN_PREFIXES`]);
//! 2. one byte loop finds the structured numbers (IPv4, IPv6, phone, card,
//!    IBAN), trying each detector only where a token can start.
//!
//! Candidates are validated by hand-written checks (Luhn, ISO 7064 mod-97,
//! `std::net` parsing, domain syntax) and then merged: see [`Scanner::scan`].

use std::fmt;
use std::net::Ipv6Addr;

use aho_corasick::{AhoCorasick, MatchKind};

use super::email::is_valid_domain;

/// One kind of thing [`Scanner`] looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Detector {
    /// An email address, `local@domain.tld` (also with `%40` for `@`).
    Email,
    /// A dotted-quad IPv4 address.
    Ipv4,
    /// An IPv6 address (as accepted by `std::net`).
    Ipv6,
    /// A phone number.
    Phone,
    /// A payment card number (Luhn-valid).
    Card,
    /// An IBAN (ISO 13616, mod-97 valid).
    Iban,
    /// A secret token with a known prefix (API keys, access tokens, JWTs).
    SecretToken,
}

impl Detector {
    /// Every detector, in declaration order.
    pub const ALL: [Detector; 7] = [
        Detector::Email,
        Detector::Ipv4,
        Detector::Ipv6,
        Detector::Phone,
        Detector::Card,
        Detector::Iban,
        Detector::SecretToken,
    ];

    /// The names a rule file may list in `detect` (the same list as
    /// [`DetectorSet::NAMES`]): `"ip"` stands for both IP kinds, `"ipv4"` and
    /// `"ipv6"` select one. Use [`DetectorSet::parse_name`] to read them.
    pub const NAMES: &[&str] = DetectorSet::NAMES;

    /// The kind names, one per detector, as returned by [`Detector::name`]
    /// and accepted by [`Detector::parse`].
    pub const KIND_NAMES: &[&str] = &["email", "ipv4", "ipv6", "phone", "card", "iban", "secret"];

    /// Parses one kind name (see [`Detector::KIND_NAMES`]); exact, lower
    /// case. `"ip"` names two kinds and is therefore only accepted by
    /// [`DetectorSet::parse`] / [`DetectorSet::parse_name`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The kind name: `"email"`, `"ipv4"`, `"ipv6"`, `"phone"`, `"card"`,
    /// `"iban"` or `"secret"`. Suitable for metric labels and placeholders.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Ipv4 => "ipv4",
            Detector::Ipv6 => "ipv6",
            Detector::Phone => "phone",
            Detector::Card => "card",
            Detector::Iban => "iban",
            Detector::SecretToken => "secret",
        }
    }

    const fn index(self) -> usize {
        match self {
            Detector::Email => 0,
            Detector::Ipv4 => 1,
            Detector::Ipv6 => 2,
            Detector::Phone => 3,
            Detector::Card => 4,
            Detector::Iban => 5,
            Detector::SecretToken => 6,
        }
    }

    const fn bit(self) -> u8 {
        1 << self.index()
    }

    /// Tie-break between candidates with the same span: lower wins.
    const fn priority(self) -> u8 {
        match self {
            Detector::SecretToken => 0,
            Detector::Email => 1,
            Detector::Iban => 2,
            Detector::Card => 3,
            Detector::Ipv6 => 4,
            Detector::Ipv4 => 5,
            Detector::Phone => 6,
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`Detector`]s, the configuration of a [`Scanner`]. The default
/// is the empty set; the `scan` action's default is [`DetectorSet::all`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DetectorSet(u8);

impl DetectorSet {
    /// The names accepted by [`DetectorSet::parse`], as written in rule files.
    /// `"ip"` stands for both `"ipv4"` and `"ipv6"`.
    pub const NAMES: &[&str] = &[
        "email", "ip", "ipv4", "ipv6", "phone", "card", "iban", "secret",
    ];

    /// No detector.
    #[must_use]
    pub const fn empty() -> Self {
        DetectorSet(0)
    }

    /// Every detector (the default of the `scan` action).
    #[must_use]
    pub const fn all() -> Self {
        DetectorSet(0b111_1111)
    }

    /// Parses a rule-file name (see [`DetectorSet::NAMES`]) into the set it
    /// enables: `"ip"` gives {Ipv4, Ipv6}, every other name one detector.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        if name == "ip" {
            return Some(Self::empty().with(Detector::Ipv4).with(Detector::Ipv6));
        }
        Detector::parse(name).map(Self::from)
    }

    /// Adds the detectors named by a rule-file name (see
    /// [`DetectorSet::NAMES`]) to the set; returns `false`, leaving the set
    /// unchanged, for an unknown name.
    pub fn parse_name(&mut self, name: &str) -> bool {
        match Self::parse(name) {
            Some(s) => {
                *self = self.union(s);
                true
            }
            None => false,
        }
    }

    /// This set plus `d`.
    #[must_use]
    pub const fn with(self, d: Detector) -> Self {
        DetectorSet(self.0 | d.bit())
    }

    /// Adds `d`.
    pub fn insert(&mut self, d: Detector) {
        self.0 |= d.bit();
    }

    /// The union of two sets.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        DetectorSet(self.0 | other.0)
    }

    /// True when `d` is in the set.
    #[must_use]
    pub const fn contains(self, d: Detector) -> bool {
        self.0 & d.bit() != 0
    }

    /// True when no detector is in the set.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The detectors in the set, in [`Detector::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Detector> {
        Detector::ALL.into_iter().filter(move |d| self.contains(*d))
    }
}

impl From<Detector> for DetectorSet {
    fn from(d: Detector) -> Self {
        DetectorSet(d.bit())
    }
}

impl FromIterator<Detector> for DetectorSet {
    fn from_iter<I: IntoIterator<Item = Detector>>(iter: I) -> Self {
        let mut s = DetectorSet::empty();
        for d in iter {
            s.insert(d);
        }
        s
    }
}

impl fmt::Debug for DetectorSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Detector::name))
            .finish()
    }
}

/// Number of replacements per [`Detector`] made by one scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanCounts([u32; 7]);

impl ScanCounts {
    /// Replacements of kind `d`.
    #[must_use]
    pub const fn get(&self, d: Detector) -> u32 {
        self.0[d.index()]
    }

    /// All replacements.
    #[must_use]
    pub fn total(&self) -> u32 {
        self.0.iter().fold(0u32, |a, &b| a.saturating_add(b))
    }

    fn add(&mut self, d: Detector) {
        let c = &mut self.0[d.index()];
        *c = c.saturating_add(1);
    }
}

/// The secret-token prefixes the `secret` detector looks for (case-sensitive):
/// Stripe (`sk_live_`, `sk_test_`, `rk_live_`, `rk_test_`), GitHub (`ghp_`,
/// `gho_`, `ghs_`, `ghu_`, `ghr_`, `github_pat_`), Slack (`xoxb-`, `xoxp-`,
/// `xoxa-`, `xoxr-`, `xoxs-`), AWS access key ids (`AKIA`, `ASIA`), Google API
/// keys (`AIza`), GitLab (`glpat-`), npm (`npm_`) and JWTs (`eyJ`).
pub const TOKEN_PREFIXES: &[&str] = &[
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "ghr_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxr-",
    "xoxs-",
    "AKIA",
    "ASIA",
    "AIza",
    "glpat-",
    "npm_",
    "eyJ",
];

/// Minimum length of a secret token, prefix included.
const MIN_TOKEN_LEN: usize = 16;
/// Longest local part (in bytes) taken in front of an `@`.
const MAX_LOCAL_LEN: usize = 128;
/// Longest text run examined as an IPv6 candidate.
const MAX_IPV6_RUN: usize = 64;
/// Most digits a payment card has.
const MAX_CARD_DIGITS: usize = 19;
/// Fewest digits a payment card has.
const MIN_CARD_DIGITS: usize = 13;
/// Digit-group slots kept per numeric run (enough for 19 one-digit groups).
const MAX_GROUPS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Literal {
    /// `@` or `%40`: an email anchor.
    At,
    /// A generic token prefix.
    Token,
    /// `eyJ`: a JWT.
    Jwt,
}

#[derive(Clone, Copy, Debug)]
struct Cand {
    start: usize,
    end: usize,
    kind: Detector,
}

impl Cand {
    /// The order in which candidates win: earliest start, then longest,
    /// then by kind (see [`Scanner::scan`]).
    fn order(a: &Cand, b: &Cand) -> std::cmp::Ordering {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(a.kind.priority().cmp(&b.kind.priority()))
    }
}

/// A compiled free-text scanner for a fixed [`DetectorSet`].
///
/// Build it once per rule (it holds the Aho-Corasick automaton); it is
/// `Send + Sync` and cheap to share.
#[derive(Clone, Debug)]
pub struct Scanner {
    detectors: DetectorSet,
    /// The anchors, in pattern-id order.
    patterns: Vec<(&'static str, Literal)>,
    /// `None` when there are no literal anchors (or, in theory, when the
    /// automaton could not be built; a plain substring search is used then).
    automaton: Option<AhoCorasick>,
}

impl Scanner {
    /// Builds a scanner for `detectors`.
    #[must_use]
    pub fn new(detectors: DetectorSet) -> Scanner {
        let mut patterns = Vec::new();
        if detectors.contains(Detector::Email) {
            patterns.push(("@", Literal::At));
            patterns.push(("%40", Literal::At));
        }
        if detectors.contains(Detector::SecretToken) {
            for &p in TOKEN_PREFIXES {
                let kind = if p == "eyJ" {
                    Literal::Jwt
                } else {
                    Literal::Token
                };
                patterns.push((p, kind));
            }
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(patterns.iter().map(|(p, _)| p))
                .ok()
        };
        Scanner {
            detectors,
            patterns,
            automaton,
        }
    }

    /// The detectors this scanner runs.
    #[must_use]
    pub const fn detectors(&self) -> DetectorSet {
        self.detectors
    }

    /// Finds every detected item in `text` and replaces it by
    /// `replace(kind, matched_text)`.
    ///
    /// Returns `None` when nothing was found (the caller keeps the original
    /// bytes), otherwise the rewritten text. `replace` is called once per
    /// replaced span, left to right, so a caller can count per kind there (or
    /// use [`Scanner::scan_counted`]).
    ///
    /// What is detected (all ASCII-based; "word character" means an ASCII
    /// letter, digit or `_`):
    ///
    /// * **Email**: `local@domain` around each `@` (and each `%40`, the
    ///   percent-encoded form common in query strings). The local part is the
    ///   run of `[A-Za-z0-9._%+-]` and non-ASCII letters/digits before the
    ///   anchor (at most 128 bytes, leading dots dropped); the domain is the run
    ///   of letters, digits, `-` and `.` after it (trailing `.`/`-` dropped) and
    ///   must be a host name as for `mask_email` (two or more labels,
    ///   alphabetic TLD).
    /// * **Ipv4**: four dot-separated decimal octets of 1 to 3 digits, each
    ///   <= 255 (leading zeros allowed). Not when glued to a word character on
    ///   either side, nor when part of a longer dotted number: `1.2.3.4.5`,
    ///   `x.1.2.3.4` and version strings with a letter in front (`v10.0.0.1`,
    ///   `build1.2.3.4`) are not IPs. Any other neighbour is a boundary, so
    ///   `10.0.0.1:8080`, `(10.0.0.1)`, `ip=10.0.0.1`, `Chrome/1.2.3.4`,
    ///   `10.0.0.1.nip.io` and `10.0.0.1.` at the end of a sentence are IPs:
    ///   a four-part version after a slash cannot be told from an address,
    ///   and replacing a version is cheaper than leaking an address.
    /// * **Ipv6**: a run of hex digits, `:` and `.` with at least two `:` and
    ///   one hex digit, not glued to a word character, that `std::net` parses as
    ///   an IPv6 address (after dropping trailing dots and one trailing single
    ///   `:`). A zone id (`%eth0`) is left in place after the address; in
    ///   brackets (`[2001:db8::1]:443`) the address alone is matched.
    /// * **Card**: 13 to 19 digits, Luhn-valid, not preceded by `+`: either
    ///   unbroken, or in groups of 4 to 6 digits (the last 2 to 6) joined by
    ///   single spaces or dashes (`4111 1111 1111 1111`, `3782-822463-10005`).
    ///   A card is also found inside a longer run of numbers when it starts
    ///   and ends at a space or dash (`10.1.2.3 4111 1111 1111 1111 2024`),
    ///   but never inside a decimal number. A Luhn-invalid 16-digit number is
    ///   not reported at all (too long for a phone).
    /// * **Phone**: an optional `+`, then 7 to 15 digits in groups separated
    ///   by a space, `-` or `.`, with parentheses allowed around single
    ///   groups (`+44 20 7946 0958`, `(020) 7946 0958`, `+1 (555) 123-4567`,
    ///   `555.123.4567`, `06 12 34 56 78`). Without `+` at least two groups are
    ///   needed (a bare digit string is an id, an amount or an epoch), and
    ///   these shapes are not phones: dates (`2024-05-01`, `01.05.2024`),
    ///   decimal numbers (`3.14159265`), dotted thousands (`1.234.567`), three
    ///   or more dots (versions, IPs) and year ranges (`1990-2024`). A run of
    ///   numbers stops before a time (`12:30`) or date fragment (`12/26`), and
    ///   is no phone when a word character, or `.`/`,` and a digit, follow it.
    ///   Inside a longer run of space-separated numbers a phone is only cut
    ///   out at parts that carry phone structure: it starts at the run start,
    ///   a `(` or a part with inner separators (`555-123-4567`), and ends at
    ///   the run end or such a part (after a leading `+`, anywhere). So
    ///   `ref 123456789 555-123-4567` finds the phone but
    ///   `1234 5678 9012 3456` is not cut into a 12-digit "phone"; a phone
    ///   glued to plain numbers on both sides by single spaces
    ///   (`1234 555 123 4567 99`) is missed. Space-grouped thousands
    ///   (`1 234 567`) do count as phones: they cannot be told apart from
    ///   `612 345 678`, and a false positive is cheaper than a leak.
    /// * **Iban**: a known IBAN country code (either case), two check digits,
    ///   then alphanumerics, 15 to 34 characters in all, either unbroken or in
    ///   groups of four separated by single spaces (the last group 1 to 4
    ///   characters), ISO 7064 mod-97 == 1. When the grouped form is followed
    ///   by another short word, the longest valid prefix is taken.
    /// * **SecretToken**: one of [`TOKEN_PREFIXES`] not preceded by an ASCII
    ///   letter or digit, extended over `[A-Za-z0-9_\-.=+/]` (trailing dots
    ///   dropped), at least 16 bytes in all. `eyJ` only counts as a JWT: three
    ///   or more base64url parts separated by dots, the first two non-empty
    ///   (an empty third part, the unsecured JWT `header.payload.`, is
    ///   accepted).
    ///
    /// Overlaps: candidates are ordered by start (earliest first), then length
    /// (longest first), then kind (secret, email, IBAN, card, IPv6, IPv4,
    /// phone). The first one wins, and any later candidate overlapping it is
    /// merged into it (the span grows to cover both, the kind stays), so no
    /// byte of a detected item survives and nothing is replaced twice.
    pub fn scan(
        &self,
        text: &str,
        replace: &mut dyn FnMut(Detector, &str) -> String,
    ) -> Option<String> {
        let mut cands = Vec::new();
        self.find(text, &mut cands);
        if cands.is_empty() {
            return None;
        }
        cands.sort_unstable_by(Cand::order);
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        let mut emit = |c: Cand, out: &mut String| {
            out.push_str(text.get(last..c.start).unwrap_or_default());
            out.push_str(&replace(
                c.kind,
                text.get(c.start..c.end).unwrap_or_default(),
            ));
            last = c.end;
        };
        let mut cur = cands[0];
        for &c in &cands[1..] {
            if c.start < cur.end {
                cur.end = cur.end.max(c.end);
            } else {
                emit(cur, &mut out);
                cur = c;
            }
        }
        emit(cur, &mut out);
        out.push_str(text.get(last..).unwrap_or_default());
        Some(out)
    }

    /// The kind of the first item that [`Scanner::scan`] would replace in
    /// `text`, if any: for screening, where a find refuses the whole input.
    #[must_use]
    pub fn first(&self, text: &str) -> Option<Detector> {
        let mut cands = Vec::new();
        self.find(text, &mut cands);
        cands
            .iter()
            .min_by(|a, b| Cand::order(a, b))
            .map(|c| c.kind)
    }

    /// Like [`Scanner::scan`], also returning the number of replacements per
    /// kind.
    pub fn scan_counted(
        &self,
        text: &str,
        replace: &mut dyn FnMut(Detector, &str) -> String,
    ) -> Option<(String, ScanCounts)> {
        let mut counts = ScanCounts::default();
        let out = self.scan(text, &mut |d, m| {
            counts.add(d);
            replace(d, m)
        })?;
        Some((out, counts))
    }

    fn find(&self, text: &str, cands: &mut Vec<Cand>) {
        if self.detectors.is_empty() || text.is_empty() {
            return;
        }
        self.literal_pass(text, cands);
        self.structural_pass(text, cands);
        // Every boundary is produced at an ASCII byte or from char_indices;
        // keep the guarantee explicit so slicing in `scan` can never fail.
        cands.retain(|c| {
            c.start < c.end && text.is_char_boundary(c.start) && text.is_char_boundary(c.end)
        });
    }

    fn literal_pass(&self, text: &str, cands: &mut Vec<Cand>) {
        if self.patterns.is_empty() {
            return;
        }
        let b = text.as_bytes();
        let mut token_cover = 0usize;
        let mut jwt_cover = 0usize;
        let mut on_hit = |lit: Literal, s: usize, e: usize| {
            let found = match lit {
                Literal::At => email_at(text, s, e).map(|(s, e)| (s, e, Detector::Email)),
                Literal::Token => {
                    token_at(b, s, e, &mut token_cover).map(|e| (s, e, Detector::SecretToken))
                }
                Literal::Jwt => jwt_at(b, s, &mut jwt_cover).map(|e| (s, e, Detector::SecretToken)),
            };
            if let Some((start, end, kind)) = found {
                cands.push(Cand { start, end, kind });
            }
        };
        match &self.automaton {
            Some(ac) => {
                for m in ac.find_iter(text) {
                    if let Some(&(_, lit)) = self.patterns.get(m.pattern().as_usize()) {
                        on_hit(lit, m.start(), m.end());
                    }
                }
            }
            None => {
                // Fallback without the automaton: one substring search per
                // pattern, hits in text order.
                let mut hits: Vec<(usize, usize, Literal)> = Vec::new();
                for &(p, lit) in &self.patterns {
                    for s in memchr::memmem::find_iter(b, p.as_bytes()) {
                        hits.push((s, s + p.len(), lit));
                    }
                }
                hits.sort_unstable_by_key(|h| h.0);
                for (s, e, lit) in hits {
                    on_hit(lit, s, e);
                }
            }
        }
    }

    fn structural_pass(&self, text: &str, cands: &mut Vec<Cand>) {
        let d = self.detectors;
        let want_v4 = d.contains(Detector::Ipv4);
        let want_v6 = d.contains(Detector::Ipv6);
        let want_phone = d.contains(Detector::Phone);
        let want_card = d.contains(Detector::Card);
        let want_iban = d.contains(Detector::Iban);
        let want_runs = want_phone || want_card;
        if !(want_v4 || want_v6 || want_runs || want_iban) {
            return;
        }
        let b = text.as_bytes();
        let v6_on = want_v6 && memchr::memchr(b':', b).is_some();
        // Everything but a hex-only IPv6 address contains an ASCII digit, and
        // no token starts more than two bytes before its first digit.
        let first_digit = b.iter().position(u8::is_ascii_digit);
        let start = match first_digit {
            Some(p) if !v6_on => p.saturating_sub(2),
            Some(_) => 0,
            None if v6_on => 0,
            None => return,
        };
        let mut run_cover = 0usize;
        for i in start..b.len() {
            let c = b[i];
            if !c.is_ascii() {
                continue;
            }
            if v6_on
                && (c.is_ascii_hexdigit() || c == b':')
                && ipv6_start_ok(b, i)
                && let Some(e) = ipv6_at(text, i)
            {
                cands.push(Cand {
                    start: i,
                    end: e,
                    kind: Detector::Ipv6,
                });
            }
            if want_v4
                && c.is_ascii_digit()
                && ipv4_start_ok(b, i)
                && let Some(e) = ipv4_at(b, i)
            {
                cands.push(Cand {
                    start: i,
                    end: e,
                    kind: Detector::Ipv4,
                });
            }
            if want_runs
                && i >= run_cover
                && (c.is_ascii_digit() || c == b'+' || c == b'(')
                && run_start_ok(b, i)
                && let Some(run) = scan_run(b, i)
            {
                run_cover = run.end;
                if want_card {
                    cards_in_run(b, &run, cands);
                }
                if want_phone {
                    phones_in_run(b, &run.without_fragment(), cands);
                }
            }
            if want_iban
                && c.is_ascii_alphabetic()
                && (i == 0 || !is_word(b[i - 1]))
                && let Some(e) = iban_at(b, i)
            {
                cands.push(Cand {
                    start: i,
                    end: e,
                    kind: Detector::Iban,
                });
            }
        }
    }
}

/// ASCII letter, digit or underscore.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The byte at `i`, or 0 past the end (0 is never a word or digit byte).
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

fn digit(c: u8) -> bool {
    c.is_ascii_digit()
}

// ---------------------------------------------------------------- email

/// RFC 5322 `atext` punctuation found inside real local parts
/// (`mary.o'neil`, `alice!bob`, `a#b`), but never as their first character:
/// quotes and braces around an address in text are not part of it. `=`,
/// `?`, `/` and `&` are left out: in running text and URLs
/// (`?email=alice@...`) they end a parameter, not begin an address.
const INNER_LOCAL_PUNCT: &[u8] = b"'!#$*^`{|}~";

fn is_local_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '_' | '%' | '+' | '-')
            || INNER_LOCAL_PUNCT.contains(&(c as u8))
    } else {
        c.is_alphanumeric()
    }
}

fn is_domain_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
    } else {
        c.is_alphanumeric()
    }
}

/// The email around an anchor (`@` or `%40`) at `[at_s, at_e)`.
fn email_at(text: &str, at_s: usize, at_e: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let mut ls = at_s;
    for (idx, c) in text.get(..at_s)?.char_indices().rev() {
        if at_s - idx > MAX_LOCAL_LEN || !is_local_char(c) {
            break;
        }
        ls = idx;
    }
    while ls < at_s && (b[ls] == b'.' || INNER_LOCAL_PUNCT.contains(&b[ls])) {
        ls += 1;
    }
    if ls == at_s {
        return None;
    }
    let mut de = at_e;
    for (idx, c) in text.get(at_e..)?.char_indices() {
        if !is_domain_char(c) {
            break;
        }
        de = at_e + idx + c.len_utf8();
    }
    while de > at_e && matches!(b[de - 1], b'.' | b'-') {
        de -= 1;
    }
    is_valid_domain(text.get(at_e..de)?).then_some((ls, de))
}

// ---------------------------------------------------------------- tokens

fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'=' | b'+' | b'/')
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-')
}

/// A generic secret token whose prefix is at `[s, prefix_end)`. `cover` is the
/// end of the last token run examined: a prefix inside it cannot start a
/// different token, which keeps the pass linear.
fn token_at(b: &[u8], s: usize, prefix_end: usize, cover: &mut usize) -> Option<usize> {
    if s < *cover || (s > 0 && b[s - 1].is_ascii_alphanumeric()) {
        return None;
    }
    let mut e = prefix_end;
    while e < b.len() && is_token_byte(b[e]) {
        e += 1;
    }
    *cover = e;
    while e > s && b[e - 1] == b'.' {
        e -= 1;
    }
    (e - s >= MIN_TOKEN_LEN).then_some(e)
}

/// A JWT (JWS/JWE compact form) starting with `eyJ` at `s`.
fn jwt_at(b: &[u8], s: usize, cover: &mut usize) -> Option<usize> {
    if s < *cover || (s > 0 && b[s - 1].is_ascii_alphanumeric()) {
        return None;
    }
    let run_end = |from: usize| {
        let mut e = from;
        while e < b.len() && is_b64url(b[e]) {
            e += 1;
        }
        e
    };
    let mut e = run_end(s + 3);
    let mut parts = 1;
    while at(b, e) == b'.' {
        let r = run_end(e + 1);
        if r > e + 1 {
            parts += 1;
            e = r;
        } else {
            if parts == 2 {
                // Unsecured JWT: empty signature.
                parts = 3;
                e += 1;
            }
            break;
        }
    }
    *cover = e;
    (parts >= 3 && e - s >= MIN_TOKEN_LEN).then_some(e)
}

// ---------------------------------------------------------------- IPs

fn ipv4_start_ok(b: &[u8], i: usize) -> bool {
    if i == 0 {
        return true;
    }
    let p = b[i - 1];
    !(is_word(p) || (p == b'.' && i >= 2 && is_word(b[i - 2])))
}

fn ipv4_at(b: &[u8], i: usize) -> Option<usize> {
    let mut p = i;
    for k in 0..4 {
        if k > 0 {
            if at(b, p) != b'.' {
                return None;
            }
            p += 1;
        }
        let s = p;
        let mut v = 0u32;
        while p - s < 3 && digit(at(b, p)) {
            v = v * 10 + u32::from(b[p] - b'0');
            p += 1;
        }
        if p == s || v > 255 || digit(at(b, p)) {
            return None;
        }
    }
    let c = at(b, p);
    if is_word(c) || (c == b'.' && digit(at(b, p + 1))) {
        return None;
    }
    Some(p)
}

fn ipv6_start_ok(b: &[u8], i: usize) -> bool {
    if i == 0 {
        return true;
    }
    let p = b[i - 1];
    if p == b':' {
        // `ip:2001:db8::1`, `src:fe80::1`: a colon after a word that is not
        // all hex digits labels the address. After hex digits (`12:34`,
        // `2001:db8`) or another colon it is part of one, which a start
        // further left finds.
        let mut j = i - 1;
        while j > 0 && b[j - 1].is_ascii_hexdigit() {
            j -= 1;
        }
        return j > 0 && is_word(b[j - 1]);
    }
    !(is_word(p) || (p == b'.' && i >= 2 && is_word(b[i - 2])))
}

fn ipv6_at(text: &str, i: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut e = i;
    let mut colons = 0;
    let mut hex = false;
    while e < b.len() {
        match b[e] {
            b':' => colons += 1,
            b'.' => {}
            c if c.is_ascii_hexdigit() => hex = true,
            _ => break,
        }
        e += 1;
        if e - i > MAX_IPV6_RUN {
            return None;
        }
    }
    if colons < 2 || !hex || is_word(at(b, e)) {
        return None;
    }
    while e > i && b[e - 1] == b'.' {
        e -= 1;
    }
    if e >= i + 2 && b[e - 1] == b':' && b[e - 2] != b':' {
        e -= 1;
    }
    text.get(i..e)?.parse::<Ipv6Addr>().ok()?;
    Some(e)
}

// ---------------------------------------------------------------- phone & card

/// Separator in front of a digit group of a numeric run.
#[derive(Clone, Copy, Debug, Default)]
struct Sep {
    /// `b' '`, `b'-'`, `b'.'`, `b'/'` (after a trunk prefix), or 0 for none.
    plain: u8,
    /// The group is opened by `(` (closed right after it).
    open: bool,
    /// The previous group was closed by `)`.
    close: bool,
}

/// A run of digit groups: `[+] [(] digits ( sep digits )*`, where a separator
/// is `[)] [space|-|.] [(]` and parentheses enclose exactly one group.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// First byte (`+`, `(` or a digit).
    start: usize,
    /// End of the last group (after its closing `)` if any).
    end: usize,
    plus: bool,
    /// Groups `[start, end)` of digits.
    groups: [(usize, usize); MAX_GROUPS],
    /// `seps[k]` precedes `groups[k]` (`seps[0].open` is a leading `(`).
    seps: [Sep; MAX_GROUPS],
    n: usize,
    /// More groups followed but were not taken (`MAX_GROUPS` reached).
    truncated: bool,
    /// The last group was opened by `(` but not closed.
    bad_paren: bool,
    /// The last group is followed by `:` or `/` and a digit (`12:30`): a
    /// card may end with it (`4111 1111 1111 1111:123`), a phone may not.
    fragment: bool,
}

impl Run {
    /// The run without a last group that begins a time or date fragment.
    fn without_fragment(&self) -> Run {
        let mut r = *self;
        if r.fragment && r.n > 1 {
            r.n -= 1;
            r.fragment = false;
            r.truncated = false;
            r.end = r.groups[r.n - 1].1 + usize::from(r.seps[r.n].close);
        }
        r
    }

    fn len(&self, k: usize) -> usize {
        self.groups[k].1 - self.groups[k].0
    }

    fn digits(&self, from: usize, to: usize) -> usize {
        (from..=to).map(|k| self.len(k)).sum()
    }

    fn value(&self, b: &[u8], k: usize) -> u64 {
        let (s, e) = self.groups[k];
        b[s..e]
            .iter()
            .take(18)
            .fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'))
    }

    /// True when the chunk (space-separated part) of groups `k..=chunk_end`
    /// can begin a phone number inside a longer run: it has several groups,
    /// or starts with `(` or the run's `+`.
    fn can_begin_phone(&self, k: usize, chunk_end: usize) -> bool {
        chunk_end > k || self.seps[k].open || (k == 0 && self.plus)
    }
}

/// Where a numeric run may start: not glued to a word, not in the middle of
/// `abc-123`, `v1.2`, `12:30` or `12/26`.
fn run_start_ok(b: &[u8], i: usize) -> bool {
    if i == 0 {
        return true;
    }
    let p = b[i - 1];
    if is_word(p) {
        return false;
    }
    if b[i] == b'+' || i < 2 {
        return true;
    }
    let pp = b[i - 2];
    match p {
        b'-' | b'.' | b',' | b'/' if is_word(pp) => false,
        b':' if digit(pp) => false,
        _ => true,
    }
}

fn scan_run(b: &[u8], s: usize) -> Option<Run> {
    let mut p = s;
    let plus = at(b, p) == b'+';
    if plus {
        p += 1;
    }
    let leading_paren = at(b, p) == b'(';
    if leading_paren {
        p += 1;
    }
    if !digit(at(b, p)) {
        return None;
    }
    let mut run = Run {
        start: s,
        end: p,
        plus,
        groups: [(0, 0); MAX_GROUPS],
        seps: [Sep::default(); MAX_GROUPS],
        n: 0,
        truncated: false,
        bad_paren: false,
        fragment: false,
    };
    let mut sep = Sep {
        plain: 0,
        open: leading_paren,
        close: false,
    };
    loop {
        let k = run.n;
        if k == MAX_GROUPS {
            run.truncated = true;
            break;
        }
        let gs = p;
        while digit(at(b, p)) {
            p += 1;
        }
        let ge = p;
        // `0171/1234567`, `030/12345678`: a trunk prefix and a slash, as
        // German-speaking countries write phone numbers. No date has a
        // leading-zero group of 3 to 5 digits and then 5 or more digits.
        let trunk_slash = k == 0
            && at(b, ge) == b'/'
            && at(b, gs) == b'0'
            && (3..=5).contains(&(ge - gs))
            && b.get(ge + 1..)
                .is_some_and(|r| r.iter().take_while(|c| c.is_ascii_digit()).count() >= 5);
        // A short group before `:` or `/` and a digit is a time or date
        // fragment (`12:30`, `12/26`): it cannot start a run, and it ends
        // one (kept as its last group, so `4111 1111 1111 1111:123` is still
        // a whole card). A longer group (`4111111111111111:123`) is a number
        // that ends there.
        let fragment = !trunk_slash && matches!(at(b, ge), b':' | b'/') && digit(at(b, ge + 1));
        if fragment && k == 0 && ge - gs <= 4 {
            return None;
        }
        let mut closed = false;
        if sep.open {
            if at(b, ge) == b')' {
                p = ge + 1;
                closed = true;
            } else if k == 0 && leading_paren {
                // "(555-1234": let the digits start their own run.
                return None;
            } else {
                run.bad_paren = true;
            }
        }
        run.groups[k] = (gs, ge);
        run.seps[k] = sep;
        run.n = k + 1;
        run.end = p;
        if run.bad_paren {
            break;
        }
        if fragment {
            run.fragment = true;
            break;
        }
        let q0 = p;
        let mut q = p;
        sep = Sep {
            plain: 0,
            open: false,
            close: closed,
        };
        if matches!(at(b, q), b' ' | b'-' | b'.') || (trunk_slash && at(b, q) == b'/') {
            sep.plain = b[q];
            q += 1;
        }
        if at(b, q) == b'(' {
            sep.open = true;
            q += 1;
        }
        if (q == q0 && !closed) || !digit(at(b, q)) {
            break;
        }
        p = q;
    }
    Some(run)
}

/// After a number: not glued to a word, not followed by a decimal part.
fn after_ok(b: &[u8], end: usize) -> bool {
    let c = at(b, end);
    !(is_word(c) || (matches!(c, b'.' | b',') && digit(at(b, end + 1))))
}

/// The span of groups `gi..=gj` as a phone number, if it is one.
fn phone_window(b: &[u8], run: &Run, gi: usize, gj: usize) -> Option<(usize, usize)> {
    let last = gj + 1 == run.n;
    if !(7..=15).contains(&run.digits(gi, gj)) || (last && run.bad_paren) {
        return None;
    }
    if last && !run.truncated && !after_ok(b, run.end) {
        return None;
    }
    let start = if gi == 0 {
        run.start
    } else if run.seps[gi].open {
        run.groups[gi].0 - 1
    } else {
        run.groups[gi].0
    };
    let end = if last {
        run.end
    } else if run.seps[gj + 1].close {
        run.groups[gj].1 + 1
    } else {
        run.groups[gj].1
    };
    if gi == 0 && run.plus {
        return Some((start, end));
    }
    let n = gj - gi + 1;
    if n < 2 {
        return None;
    }
    let seps = &run.seps[gi + 1..=gj];
    let len = |k: usize| run.len(gi + k);
    let dots = seps.iter().filter(|s| s.plain == b'.').count();
    let all_dotted = dots == seps.len() && !seps.iter().any(|s| s.open || s.close);
    if dots >= 3 {
        return None; // versions, IPs
    }
    if all_dotted && (n == 2 || (len(0) <= 3 && len(1) == 3 && len(2) == 3)) {
        return None; // a decimal number, dotted thousands
    }
    if n >= 3 {
        let (s1, s2) = (seps[0], seps[1]);
        let shape = (len(0), len(1), len(2));
        if s1.plain == s2.plain
            && matches!(s1.plain, b'-' | b'.')
            && !(s1.open || s1.close || s2.open || s2.close)
            && (shape == (4, 2, 2) || shape == (2, 2, 4))
        {
            return None; // a date
        }
    }
    if n == 2
        && seps[0].plain == b'-'
        && !seps[0].open
        && !seps[0].close
        && len(0) == 4
        && len(1) == 4
    {
        let years = 1000..=2999;
        if years.contains(&run.value(b, gi)) && years.contains(&run.value(b, gi + 1)) {
            return None; // a year range
        }
    }
    Some((start, end))
}

/// Phone numbers in a run: the run is cut into chunks at spaces; a phone is
/// a sequence of whole chunks that starts at the run's start or at a chunk
/// that can begin one (several groups, `(` or `+`), and ends at the run's end
/// or at a chunk of several groups (or anywhere after a leading `+`). The
/// longest such window wins per start, so a phone is never cut out of a run
/// of plain space-separated numbers (`1234 5678 9012 3456`).
fn phones_in_run(b: &[u8], run: &Run, out: &mut Vec<Cand>) {
    let mut starts = [0usize; MAX_GROUPS];
    let mut chunks = 0;
    for k in 0..run.n {
        if k == 0 || run.seps[k].plain == b' ' {
            starts[chunks] = k;
            chunks += 1;
        }
    }
    let chunk_end = |c: usize| {
        if c + 1 < chunks {
            starts[c + 1] - 1
        } else {
            run.n - 1
        }
    };
    let mut ci = 0;
    while ci < chunks {
        let gi = starts[ci];
        let mut next = ci + 1;
        if ci == 0 || run.can_begin_phone(gi, chunk_end(ci)) {
            for cj in (ci..chunks).rev() {
                let gj = chunk_end(cj);
                let end_ok = cj + 1 == chunks || gj > starts[cj] || (ci == 0 && run.plus);
                if !end_ok {
                    continue;
                }
                if let Some((start, end)) = phone_window(b, run, gi, gj) {
                    out.push(Cand {
                        start,
                        end,
                        kind: Detector::Phone,
                    });
                    next = cj + 1;
                    break;
                }
            }
        }
        ci = next;
    }
}

fn luhn(b: &[u8], groups: &[(usize, usize)]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for &(s, e) in groups.iter().rev() {
        for &d in b[s..e].iter().rev() {
            let mut v = u32::from(d - b'0');
            if double {
                v *= 2;
                if v > 9 {
                    v -= 9;
                }
            }
            sum += v;
            double = !double;
        }
    }
    sum.is_multiple_of(10)
}

/// Card numbers in a run: 13 to 19 digits, Luhn-valid, either one group or
/// groups of 4 to 6 digits (the last 2 to 6) joined by single spaces or
/// dashes (`4111 1111 1111 1111`, `3782 822463 10005`); the longest per
/// starting group.
fn cards_in_run(b: &[u8], run: &Run, out: &mut Vec<Cand>) {
    // A card is cut out of a longer run only at a space or dash: never out of
    // a decimal number or a parenthesised group.
    let joins = |k: usize| {
        let s = run.seps[k];
        !s.open && !s.close && matches!(s.plain, b' ' | b'-')
    };
    let mut i = usize::from(run.plus);
    while i < run.n {
        if i > 0 && !joins(i) {
            i += 1;
            continue;
        }
        let mut digits = 0;
        let mut best = None;
        for j in i..run.n {
            if j > i && !joins(j) {
                break;
            }
            digits += run.len(j);
            if digits > MAX_CARD_DIGITS || (j > i && !(4..=6).contains(&run.len(j - 1))) {
                break;
            }
            if j > i && !(2..=6).contains(&run.len(j)) {
                continue;
            }
            // A comma after a card number starts the next field
            // (`4111111111111111,12/25,123`), not a decimal part: no amount
            // has 13 or more integer digits.
            let end = run.groups[j].1;
            let end_ok = if j + 1 < run.n {
                joins(j + 1)
            } else {
                run.truncated || after_ok(b, end) || (at(b, end) == b',' && digit(at(b, end + 1)))
            };
            if digits >= MIN_CARD_DIGITS && end_ok && luhn(b, &run.groups[i..=j]) {
                best = Some(j);
            }
        }
        match best {
            Some(j) => {
                out.push(Cand {
                    start: run.groups[i].0,
                    end: run.groups[j].1,
                    kind: Detector::Card,
                });
                i = j + 1;
            }
            None => i += 1,
        }
    }
}

// ---------------------------------------------------------------- IBAN

/// Countries using IBANs (SWIFT registry, plus the countries with IBAN-like
/// formats in use), upper case.
const IBAN_COUNTRIES: &[&[u8; 2]] = &[
    b"AD", b"AE", b"AL", b"AO", b"AT", b"AZ", b"BA", b"BE", b"BF", b"BG", b"BH", b"BI", b"BJ",
    b"BR", b"BY", b"CF", b"CG", b"CH", b"CI", b"CM", b"CR", b"CV", b"CY", b"CZ", b"DE", b"DJ",
    b"DK", b"DO", b"DZ", b"EE", b"EG", b"ES", b"FI", b"FK", b"FO", b"FR", b"GA", b"GB", b"GE",
    b"GI", b"GL", b"GQ", b"GR", b"GT", b"GW", b"HN", b"HR", b"HU", b"IE", b"IL", b"IQ", b"IR",
    b"IS", b"IT", b"JO", b"KM", b"KW", b"KZ", b"LB", b"LC", b"LI", b"LT", b"LU", b"LV", b"LY",
    b"MA", b"MC", b"MD", b"ME", b"MG", b"MK", b"ML", b"MN", b"MR", b"MT", b"MU", b"MZ", b"NE",
    b"NI", b"NL", b"NO", b"OM", b"PK", b"PL", b"PS", b"PT", b"QA", b"RO", b"RS", b"RU", b"SA",
    b"SC", b"SD", b"SE", b"SI", b"SK", b"SM", b"SN", b"SO", b"ST", b"SV", b"TD", b"TG", b"TL",
    b"TN", b"TR", b"UA", b"VA", b"VG", b"XK", b"YE",
];

/// ISO 7064 mod 97-10 over the alphanumerics of `s` (spaces skipped), with the
/// first four characters moved to the end.
fn iban_mod97(s: &[u8]) -> bool {
    let chars = s.iter().copied().filter(|c| *c != b' ');
    let mut rem = 0u32;
    let mut feed = |c: u8| {
        if c.is_ascii_digit() {
            rem = (rem * 10 + u32::from(c - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(c.to_ascii_uppercase() - b'A') + 10) % 97;
        }
    };
    for c in chars.clone().skip(4) {
        feed(c);
    }
    for c in chars.take(4) {
        feed(c);
    }
    rem == 1
}

fn iban_at(b: &[u8], i: usize) -> Option<usize> {
    let (c0, c1) = (at(b, i), at(b, i + 1));
    if !c0.is_ascii_alphabetic()
        || !c1.is_ascii_alphabetic()
        || !digit(at(b, i + 2))
        || !digit(at(b, i + 3))
    {
        return None;
    }
    let cc = [c0.to_ascii_uppercase(), c1.to_ascii_uppercase()];
    if !IBAN_COUNTRIES.iter().any(|c| **c == cc) {
        return None;
    }
    let e = i + 4;
    if at(b, e).is_ascii_alphanumeric() {
        // Electronic form, no spaces.
        let mut q = e;
        while at(b, q).is_ascii_alphanumeric() && q - i <= 34 {
            q += 1;
        }
        let len = q - i;
        if !(15..=34).contains(&len) || is_word(at(b, q)) {
            return None;
        }
        return iban_mod97(&b[i..q]).then_some(q);
    }
    // Print form: groups of four separated by single spaces.
    let mut ends = [(0usize, 0usize); 8];
    let mut n = 0;
    let mut chars = 4;
    let mut p = e;
    while at(b, p) == b' ' && n < ends.len() {
        let gs = p + 1;
        let mut q = gs;
        while q - gs < 5 && at(b, q).is_ascii_alphanumeric() {
            q += 1;
        }
        let gl = q - gs;
        if gl == 0 || gl > 4 || chars + gl > 34 {
            break;
        }
        chars += gl;
        ends[n] = (q, chars);
        n += 1;
        p = q;
        if gl < 4 {
            break;
        }
    }
    ends[..n]
        .iter()
        .rev()
        .find(|&&(end, len)| len >= 15 && !is_word(at(b, end)) && iban_mod97(&b[i..end]))
        .map(|&(end, _)| end)
}

#[cfg(test)]
mod tests;
