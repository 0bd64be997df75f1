//! The URL path is data: screened for dot-segments, encoded separators and
//! personal data, or matched against the rule file's `paths` templates with
//! each placeholder rewritten by its action.
//!
//! Every check runs on each segment as written and as percent-decoded once
//! and twice, since partners' servers differ in how often they decode.

use std::borrow::Cow;
use std::sync::LazyLock;

use crate::policy::Action;
use crate::policy::paths::{Part, PathRules};

use super::apply::{self, Out, Scalar};
use super::{Engine, Outcome, Stats};
use crate::transform::{DetectorSet, Scanner};

/// Every `scan` detector, for paths without templates and for `**` rests.
static SCREEN: LazyLock<Scanner> = LazyLock::new(|| Scanner::new(DetectorSet::all()));

/// A path ready to send.
#[derive(Debug, Clone)]
pub struct RewrittenPath {
    /// The path (percent-encoded, starting with `/`, or empty for the root).
    pub path: String,
    /// The placeholders' decisions, counted like fields.
    pub stats: Stats,
}

/// Why a path is refused. Segments are counted from 1 in the path as the
/// partner would get it; nothing here holds a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `.` or `..` (also percent-encoded, with `;` parameters, or in
    /// full-width dots).
    #[error("path segment {0} is a dot-segment")]
    DotSegment(usize),
    /// `%2F` (or a doubly encoded `/`).
    #[error("path segment {0} holds an encoded slash")]
    EncodedSlash(usize),
    /// `\` raw or encoded.
    #[error("path segment {0} holds a backslash")]
    Backslash(usize),
    /// `%00`.
    #[error("path segment {0} holds a NUL")]
    Nul(usize),
    /// `%` not followed by two hex digits.
    #[error("path segment {0} has an invalid percent-escape")]
    BadEscape(usize),
    /// Percent-decodes to bytes that are not UTF-8.
    #[error("path segment {0} does not decode to UTF-8")]
    NotUtf8(usize),
    /// A detector found personal data.
    #[error("path segment {segment} holds personal data ({kind})")]
    PersonalData {
        /// Which segment.
        segment: usize,
        /// What was found (`email`, `ipv4`, ...).
        kind: &'static str,
    },
    /// No template matches.
    #[error("the path matches none of the paths this recipient accepts")]
    NotAllowed,
    /// A placeholder's action cannot apply to its segment.
    #[error("path segment {segment} ({{{name}}}) cannot be rewritten by {action}")]
    NotApplicable {
        /// Which segment.
        segment: usize,
        /// The placeholder's name, from the rule file.
        name: String,
        /// Its action.
        action: &'static str,
    },
}

impl PathError {
    /// The stable refusal code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            PathError::NotAllowed => "path_not_allowed",
            PathError::PersonalData { .. } => "personal_data_in_path",
            _ => "invalid_path",
        }
    }
}

/// One segment: as written, and percent-decoded once.
struct Seg<'a> {
    raw: &'a str,
    decoded: Cow<'a, str>,
}

impl Engine {
    /// Checks and rewrites a request path (`{rest}` of `/{recipient}/{rest}`,
    /// or the whole path under Host routing) for this recipient.
    pub fn rewrite_path(&self, path: &str) -> Result<RewrittenPath, PathError> {
        let segments = split(path)?;
        match &self.policy().paths {
            None => {
                for (i, s) in segments.iter().enumerate() {
                    screen(&s.decoded, i + 1)?;
                }
                Ok(RewrittenPath {
                    path: path.to_string(),
                    stats: Stats::default(),
                })
            }
            Some(rules) => self.by_template(rules, &segments),
        }
    }

    fn by_template(&self, rules: &PathRules, segs: &[Seg<'_>]) -> Result<RewrittenPath, PathError> {
        let Some(parts) = rules
            .templates
            .iter()
            .map(|t| t.parts.as_slice())
            .find(|parts| matches(parts, segs))
        else {
            return Err(PathError::NotAllowed);
        };
        let mut out = String::with_capacity(segs.iter().map(|s| s.raw.len() + 1).sum());
        let mut stats = Stats::default();
        for (i, part) in parts.iter().enumerate() {
            match part {
                Part::Literal(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                Part::Param(p) => {
                    // `matches` saw a segment here for the template's
                    // placeholder; refuse rather than trust it.
                    let (Some(param), Some(seg)) = (rules.params.get(*p), segs.get(i)) else {
                        return Err(PathError::NotAllowed);
                    };
                    let outcome = self.param(&param.action, seg, &mut out).ok_or_else(|| {
                        PathError::NotApplicable {
                            segment: i + 1,
                            name: param.name.clone(),
                            action: param.action.name(),
                        }
                    })?;
                    stats.note(&param.action, outcome);
                }
                Part::Rest => {
                    for (j, s) in segs.iter().enumerate().skip(i) {
                        screen(&s.decoded, j + 1)?;
                        out.push('/');
                        out.push_str(s.raw);
                    }
                }
            }
        }
        Ok(RewrittenPath { path: out, stats })
    }

    /// Appends `/` and the placeholder's rewritten segment; `None` when the
    /// action cannot apply or yields an empty or dot-only segment.
    fn param(&self, action: &Action, seg: &Seg<'_>, out: &mut String) -> Option<Outcome> {
        let (text, outcome) =
            match apply::apply_scalar(self, action, Scalar::Str(&seg.decoded), None)? {
                Out::Original => (Cow::Borrowed(seg.raw), Outcome::Kept),
                Out::Str(s) | Out::Num(s) => (Cow::Owned(encode(&s)), Outcome::Transformed),
                Out::Written => return None,
            };
        if text.is_empty() || dot_only(&text) {
            return None;
        }
        out.push('/');
        out.push_str(&text);
        Some(outcome)
    }
}

fn matches(parts: &[Part], segs: &[Seg<'_>]) -> bool {
    let mut i = 0;
    for part in parts {
        match part {
            Part::Rest => return true,
            Part::Literal(l) => {
                if segs.get(i).is_none_or(|s| s.decoded.as_ref() != l.as_str()) {
                    return false;
                }
            }
            Part::Param(_) => {
                if segs.get(i).is_none_or(|s| s.raw.is_empty()) {
                    return false;
                }
            }
        }
        i += 1;
    }
    i == segs.len()
}

/// Splits a path into segments, refusing what a reader could take for
/// another path: dot-segments, encoded slashes, backslashes, NUL, bad
/// escapes, bytes that are not UTF-8.
fn split(path: &str) -> Result<Vec<Seg<'_>>, PathError> {
    let body = match path.strip_prefix('/') {
        Some(b) => b,
        None if path.is_empty() => "",
        // Routing only hands over paths that start with `/`.
        None => return Err(PathError::NotAllowed),
    };
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split('/')
        .enumerate()
        .map(|(i, raw)| {
            let n = i + 1;
            let decoded = decode(raw.as_bytes(), n)?;
            let decoded = match decoded {
                Cow::Borrowed(_) => Cow::Borrowed(raw),
                Cow::Owned(bytes) => {
                    Cow::Owned(String::from_utf8(bytes).map_err(|_| PathError::NotUtf8(n))?)
                }
            };
            // Decoding only replaces escapes, so what the raw segment holds
            // the decoded one holds too: one check covers both readings.
            check(&decoded, n)?;
            if decoded.contains('%') {
                // A server that decodes twice reads this.
                if let Ok(twice) = decode(decoded.as_bytes(), n) {
                    check(&String::from_utf8_lossy(&twice), n)?;
                }
            }
            Ok(Seg { raw, decoded })
        })
        .collect()
}

/// The checks on one reading of a segment.
fn check(seg: &str, n: usize) -> Result<(), PathError> {
    if seg.contains('/') {
        return Err(PathError::EncodedSlash(n));
    }
    if seg.contains('\\') {
        return Err(PathError::Backslash(n));
    }
    if seg.contains('\0') {
        return Err(PathError::Nul(n));
    }
    // Servlet containers drop `;` parameters (`..;x` is `..`); some servers
    // trim blanks, and Windows trims trailing dots (`...` is `..`).
    let name = seg.split(';').next().unwrap_or_default();
    let name = name.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    if !name.is_empty() && dot_only(name) {
        return Err(PathError::DotSegment(n));
    }
    Ok(())
}

/// Only dots, also the full-width and other dots that Unicode
/// normalisation (NFKC) turns into `.`.
fn dot_only(s: &str) -> bool {
    s.chars()
        .all(|c| matches!(c, '.' | '\u{FF0E}' | '\u{2024}' | '\u{FE52}'))
}

/// Whether the path screen finds something personal in `text` (an email,
/// a phone or card number, an IP address, a secret token): such text is
/// never echoed, not even in a refusal.
pub fn looks_personal(text: &str) -> bool {
    SCREEN.first(text).is_some()
}

fn screen(decoded: &str, n: usize) -> Result<(), PathError> {
    match SCREEN.first(decoded) {
        Some(kind) => Err(PathError::PersonalData {
            segment: n,
            kind: kind.name(),
        }),
        None => Ok(()),
    }
}

/// Percent-decodes (no `+` to space: this is a path); borrowed when there
/// is no escape.
fn decode(raw: &[u8], n: usize) -> Result<Cow<'_, [u8]>, PathError> {
    if !raw.contains(&b'%') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
            let (Some(h), Some(l)) = (hex(raw.get(i + 1)), hex(raw.get(i + 2))) else {
                return Err(PathError::BadEscape(n));
            };
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Ok(Cow::Owned(out))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile_str;
    use crate::pseudonym::KeyRing;
    use std::sync::Arc;

    fn engine(extra: &str) -> Engine {
        let p = compile_str(
            &format!("recipient = \"t\"\nupstream = \"https://p.example\"\n{extra}\n[fields]\n\"**\" = \"keep\"\n"),
            "t.toml",
            "t",
        )
        .unwrap();
        Engine::new(Arc::new(p), &KeyRing::test_ring())
    }

    #[test]
    fn dot_segments_encoded_separators_and_nul_are_refused_always() {
        for e in [engine(""), engine("paths = [\"/**\"]")] {
            for (path, want) in [
                ("/a/../b", PathError::DotSegment(2)),
                ("/a/./b", PathError::DotSegment(2)),
                ("/..", PathError::DotSegment(1)),
                ("/a/%2e%2E/b", PathError::DotSegment(2)),
                ("/a/.%2e", PathError::DotSegment(2)),
                ("/a/..;x=1/b", PathError::DotSegment(2)),
                ("/a/%252e%252e/b", PathError::DotSegment(2)),
                ("/a/%EF%BC%8E%EF%BC%8E/b", PathError::DotSegment(2)),
                ("/a/...", PathError::DotSegment(2)),
                ("/a/..%20", PathError::DotSegment(2)),
                ("/a%2fb", PathError::EncodedSlash(1)),
                ("/a%2Fb", PathError::EncodedSlash(1)),
                ("/a%252fb", PathError::EncodedSlash(1)),
                ("/a\\b", PathError::Backslash(1)),
                ("/a%5cb", PathError::Backslash(1)),
                ("/x/a%00b", PathError::Nul(2)),
                ("/a%zz", PathError::BadEscape(1)),
                ("/a%2", PathError::BadEscape(1)),
                ("/a%ff", PathError::NotUtf8(1)),
                ("/a%c0%ae", PathError::NotUtf8(1)),
            ] {
                assert_eq!(e.rewrite_path(path).map(|p| p.path), Err(want), "{path}");
            }
            assert_eq!(
                e.rewrite_path("/v1/a.b/.well-known/x..y").unwrap().path,
                "/v1/a.b/.well-known/x..y"
            );
        }
    }

    #[test]
    fn without_templates_personal_data_in_any_segment_is_refused() {
        let e = engine("");
        for (path, segment, kind) in [
            ("/users/alice@example.com", 2, "email"),
            ("/users/alice%40example.com/events", 2, "email"),
            ("/users/alice%2540example.com", 2, "email"),
            ("/ip/10.1.2.3", 2, "ipv4"),
            ("/ip/2001:db8::1", 2, "ipv6"),
            ("/call/+44%2020%207946%200958", 2, "phone"),
            ("/pay/4111111111111111", 2, "card"),
            ("/x/DE89370400440532013000", 2, "iban"),
        ] {
            assert_eq!(
                e.rewrite_path(path).map(|p| p.path),
                Err(PathError::PersonalData { segment, kind }),
                "{path}"
            );
        }
        for path in ["", "/", "/v1/batch", "/v2/track/2024-05-01", "/a/b/c/"] {
            assert_eq!(e.rewrite_path(path).unwrap().path, path);
        }
    }

    #[test]
    fn templates_decide_the_path_and_rewrite_placeholders() {
        let e = engine(
            "paths = [\"/v1/batch\", \"/users/{id}/events\", \"/users/me/events\", \"/v2/**\", \"/\"]\n\
             [path_params]\nid = \"pseudonymise\"\n",
        );
        assert_eq!(e.rewrite_path("/v1/batch").unwrap().path, "/v1/batch");
        assert_eq!(e.rewrite_path("/v1/b%61tch").unwrap().path, "/v1/batch");
        assert_eq!(e.rewrite_path("").unwrap().path, "");
        assert_eq!(e.rewrite_path("/").unwrap().path, "");
        let p = e.rewrite_path("/users/alice%40example.com/events").unwrap();
        assert!(!p.path.contains("alice"), "{}", p.path);
        assert!(p.path.starts_with("/users/") && p.path.ends_with("/events"));
        assert_eq!(p.stats.transformed, 1);
        // The same value, encoded another way, is the same pseudonym.
        assert_eq!(
            e.rewrite_path("/users/alice@example.com/events")
                .unwrap()
                .path,
            p.path
        );
        // The literal wins over the placeholder.
        let me = e.rewrite_path("/users/me/events").unwrap();
        assert_eq!(
            (me.path.as_str(), me.stats.transformed),
            ("/users/me/events", 0)
        );
        assert_eq!(e.rewrite_path("/v2/a/b").unwrap().path, "/v2/a/b");
        assert_eq!(e.rewrite_path("/v2").unwrap().path, "/v2");
        assert_eq!(
            e.rewrite_path("/v2/a/bob@example.com").map(|p| p.path),
            Err(PathError::PersonalData {
                segment: 3,
                kind: "email"
            })
        );
        for path in [
            "/v1/batch/",
            "/V1/batch",
            "/v1",
            "/users//events",
            "/users/a/b/events",
            "/other",
        ] {
            assert_eq!(
                e.rewrite_path(path).map(|p| p.path),
                Err(PathError::NotAllowed),
                "{path}"
            );
        }
    }

    #[test]
    fn a_placeholder_that_cannot_be_rewritten_refuses_the_path() {
        let e = engine(
            "paths = [\"/ip/{addr}\", \"/r/{r}\"]\n[path_params]\naddr = \"truncate_ip\"\nr = { action = \"redact\", with = \"..\" }\n",
        );
        assert_eq!(e.rewrite_path("/ip/10.1.2.3").unwrap().path, "/ip/10.1.2.0");
        assert_eq!(
            e.rewrite_path("/ip/2001:db8::1").unwrap().path,
            "/ip/2001%3Adb8%3A%3A"
        );
        let err = e.rewrite_path("/ip/not-an-ip").unwrap_err();
        assert_eq!(err.code(), "invalid_path");
        assert_eq!(
            err.to_string(),
            "path segment 2 ({addr}) cannot be rewritten by truncate_ip"
        );
        assert!(matches!(
            e.rewrite_path("/r/x"),
            Err(PathError::NotApplicable { .. })
        ));
    }
}
