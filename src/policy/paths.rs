//! URL path templates: the paths a partner accepts (`paths`), and the action
//! for each placeholder (`[path_params]`).
//!
//! A template is a list of segments: a literal, `{name}` (one segment,
//! rewritten by the action of `name`) or a final `**` (any rest, screened
//! for personal data). Templates are kept most specific first (a literal
//! before a placeholder before `**`, segment by segment), so the first one
//! that matches a path is the one that decides it.

use super::Action;

/// The compiled `paths` and `[path_params]` of a rule file.
#[derive(Debug, Clone)]
pub struct PathRules {
    /// Templates, most specific first.
    pub templates: Vec<PathTemplate>,
    /// Placeholder actions; [`Part::Param`] indexes this.
    pub params: Vec<PathParam>,
}

/// One placeholder's action.
#[derive(Debug, Clone)]
pub struct PathParam {
    /// The name written in `{...}`.
    pub name: String,
    /// What is done to the segment (an action that yields a value).
    pub action: Action,
    /// 1-based line of its `[path_params]` entry.
    pub line: usize,
}

/// One entry of `paths`.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    /// As written.
    pub text: String,
    /// Its segments.
    pub parts: Vec<Part>,
    /// 1-based line where it is written.
    pub line: usize,
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// This exact segment (compared after percent-decoding).
    Literal(String),
    /// One non-empty segment, rewritten by `params[i]`.
    Param(usize),
    /// Any number of remaining segments, zero included (last only).
    Rest,
}

/// A template's segment as parsed, before placeholders are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedPart {
    /// A literal segment.
    Literal(String),
    /// `{name}`.
    Param(String),
    /// `**`.
    Rest,
}

/// Longest placeholder name.
const MAX_NAME: usize = 64;

/// Parses one template. The error says what is wrong, for the rule author.
pub fn parse_template(text: &str) -> Result<Vec<ParsedPart>, String> {
    let Some(body) = text.strip_prefix('/') else {
        return Err("a path template starts with `/`".into());
    };
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let segments: Vec<&str> = body.split('/').collect();
    let mut parts = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let part = if *seg == "**" {
            if !last {
                return Err("`**` may only be the last segment".into());
            }
            ParsedPart::Rest
        } else if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if !is_param_name(name) {
                return Err(format!(
                    "invalid placeholder name \"{}\": 1 to {MAX_NAME} of `A-Z a-z 0-9 _`, not starting with a digit",
                    name.escape_debug()
                ));
            }
            if parts
                .iter()
                .any(|p| matches!(p, ParsedPart::Param(n) if n == name))
            {
                return Err(format!("placeholder {{{name}}} is used twice"));
            }
            ParsedPart::Param(name.to_string())
        } else {
            if seg.contains(['{', '}']) {
                return Err("a placeholder is a whole segment: `/{name}/`".into());
            }
            if seg.contains('*') {
                return Err(
                    "`*` is not a wildcard inside a segment; use `{name}` for one segment or a final `**`"
                        .into(),
                );
            }
            if *seg == "." || *seg == ".." {
                return Err("dot-segments (`.`, `..`) are never allowed in a path".into());
            }
            if let Some(c) = seg.chars().find(|&c| !is_literal_char(c)) {
                return Err(format!(
                    "{} is not allowed in a literal segment (write segments decoded, with letters, digits and `-._~!$&'()+,;=:@`)",
                    describe(c)
                ));
            }
            ParsedPart::Literal((*seg).to_string())
        };
        parts.push(part);
    }
    Ok(parts)
}

pub(crate) fn is_param_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// RFC 3986 `pchar` without `%` (literals are written decoded) and without
/// `*` (kept for wildcards).
fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()+,;=:@".contains(c)
}

fn describe(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("`{c}`")
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

impl PathRules {
    /// Sorts templates most specific first: segment by segment, a literal
    /// before a placeholder before `**`; at equal shape, the shorter first.
    pub fn sort(&mut self) {
        self.templates
            .sort_by_cached_key(|t| t.parts.iter().map(rank).collect::<Vec<u8>>());
    }
}

fn rank(p: &Part) -> u8 {
    match p {
        Part::Literal(_) => 0,
        Part::Param(_) => 1,
        Part::Rest => 2,
    }
}

/// Whether two templates describe the same paths (placeholder names aside).
pub fn same_shape(a: &[Part], b: &[Part]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Part::Literal(x), Part::Literal(y)) => x == y,
            (Part::Param(_), Part::Param(_)) | (Part::Rest, Part::Rest) => true,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        assert_eq!(parse_template("/"), Ok(vec![]));
        assert_eq!(
            parse_template("/users/{id}/events"),
            Ok(vec![
                ParsedPart::Literal("users".into()),
                ParsedPart::Param("id".into()),
                ParsedPart::Literal("events".into()),
            ])
        );
        assert_eq!(
            parse_template("/v2/**"),
            Ok(vec![ParsedPart::Literal("v2".into()), ParsedPart::Rest])
        );
        assert_eq!(
            parse_template("/v1/batch/"),
            Ok(vec![
                ParsedPart::Literal("v1".into()),
                ParsedPart::Literal("batch".into()),
                ParsedPart::Literal(String::new()),
            ])
        );
    }

    #[test]
    fn bad_templates_say_why() {
        for (t, says) in [
            ("v1/batch", "starts with `/`"),
            ("/**/x", "last segment"),
            ("/u{id}", "whole segment"),
            ("/{id}/{id}", "used twice"),
            ("/{1d}", "invalid placeholder name"),
            ("/{}", "invalid placeholder name"),
            ("/v*", "not a wildcard"),
            ("/*", "not a wildcard"),
            ("/a/../b", "dot-segments"),
            ("/a/./b", "dot-segments"),
            ("/a%2fb", "`%`"),
            ("/a b", "U+0020"),
            ("/a?x=1", "`?`"),
            ("/a#x", "`#`"),
            ("/a\\b", "`\\`"),
            ("/é", "U+00E9"),
        ] {
            let e = parse_template(t).expect_err(t);
            assert!(e.contains(says), "{t}: {e}");
        }
    }

    #[test]
    fn most_specific_first() {
        let t = |text: &str, parts: Vec<Part>| PathTemplate {
            text: text.into(),
            parts,
            line: 1,
        };
        let lit = |s: &str| Part::Literal(s.into());
        let mut rules = PathRules {
            templates: vec![
                t("/**", vec![Part::Rest]),
                t("/users/{id}", vec![lit("users"), Part::Param(0)]),
                t("/users/me", vec![lit("users"), lit("me")]),
                t("/", vec![]),
            ],
            params: Vec::new(),
        };
        rules.sort();
        let order: Vec<&str> = rules.templates.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(order, ["/", "/users/me", "/users/{id}", "/**"]);
        assert!(same_shape(
            &[lit("a"), Part::Param(0)],
            &[lit("a"), Part::Param(1)]
        ));
        assert!(!same_shape(&[lit("a")], &[lit("b")]));
    }
}
