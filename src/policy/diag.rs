//! Showing rule-file problems to the people who write rule files.
//!
//! Every [`PolicyError`] has a stable code. [`render`] draws it the way
//! compilers do, with `annotate-snippets`: the title with its code, the
//! offending source line with a caret under the exact span, then the fix
//! (`help`) and any detail (`note`). The one-line `Display` form of
//! [`PolicyError`] (`file:line:col: error[CODE]: message (help: ...)`) is
//! for logs and tools.
//!
//! Error codes (lint warnings are `P...`, see [`super::lint`]):
//!
//! | code | what |
//! |---|---|
//! | `E001` | TOML syntax, an unknown key, a value of the wrong type |
//! | `E002` | a top-level setting (recipient, upstream, hosts, content types, rate limit, depth, scope) |
//! | `E003` | an invalid selector |
//! | `E004` | an unknown action, an unknown or invalid option |
//! | `E005` | one selector written twice, ambiguous selectors |
//! | `E006` | `[headers]` |
//! | `E007` | an invalid `[[tests]]` case |
//! | `E008` | a `[[tests]]` case that fails |
//! | `E009` | an invalid `[[allow]]` entry |
//! | `E010` | files: unreadable, missing, two files for one recipient or host |
//! | `E011` | `paths` and `[path_params]` |
//! | `E012` | `mode`, `records` and `[aggregate]` |
//! | `E013` | `[consent]` and `[suppress]`, and a list a rule cannot use |

use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};

use super::PolicyError;

/// TOML syntax, an unknown key, a value of the wrong type.
pub const SYNTAX: &str = "E001";
/// A top-level setting.
pub const SETTING: &str = "E002";
/// An invalid selector.
pub const SELECTOR: &str = "E003";
/// An unknown action, an unknown or invalid option.
pub const ACTION: &str = "E004";
/// One selector written twice, ambiguous selectors.
pub const CONFLICT: &str = "E005";
/// `[headers]`.
pub const HEADER: &str = "E006";
/// An invalid `[[tests]]` case.
pub const TEST: &str = "E007";
/// A failing `[[tests]]` case.
pub const TEST_FAILED: &str = "E008";
/// An invalid `[[allow]]` entry.
pub const ALLOW: &str = "E009";
/// Files: unreadable, missing, a recipient or host claimed twice.
pub const FILES: &str = "E010";
/// `paths` and `[path_params]`.
pub const PATH: &str = "E011";
/// `mode`, `records` and `[aggregate]`.
pub const AGGREGATE: &str = "E012";
/// `[consent]` and `[suppress]`, and a suppression list whose key or
/// normalisation does not fit the rule that names it.
pub const CONSENT: &str = "E013";

/// Renders one problem for a person: title, the source line with a caret at
/// the span, help and note. `source` is the file's text (the span is looked
/// up in it); without it, or without a span, only the location is shown.
/// `color` adds ANSI styles (use it only when the output is a terminal).
pub fn render(e: &PolicyError, source: Option<&str>, color: bool) -> String {
    let level = if e.is_error() {
        Level::ERROR
    } else {
        Level::WARNING
    };
    let title = level.primary_title(e.message.as_str()).id(e.code);
    let span = match (source, &e.span) {
        (Some(text), Some(span)) => caret_span(text, span.clone()),
        _ => None,
    };
    let mut group: Group<'_> = match (source, span) {
        (Some(text), Some(span)) => title.element(
            Snippet::source(text)
                .path(e.file.as_str())
                .annotation(AnnotationKind::Primary.span(span)),
        ),
        _ => {
            let mut origin = Origin::path(e.file.as_str());
            if e.line > 0 {
                origin = origin.line(e.line).char_column(e.col.saturating_sub(1));
            }
            title.element(origin)
        }
    };
    if let Some(help) = &e.help {
        group = group.element(Level::HELP.message(help.as_str()));
    }
    if let Some(note) = &e.note {
        group = group.element(Level::NOTE.message(note.as_str()));
    }
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    renderer.render(&[group])
}

/// The span clamped to the text, to char boundaries and to its first line
/// (a caret under one line reads better than a bracket over a whole table).
fn caret_span(text: &str, span: std::ops::Range<usize>) -> Option<std::ops::Range<usize>> {
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let mut end = span.end.clamp(start, line_end);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Severity;

    fn error(text: &str, span: std::ops::Range<usize>) -> PolicyError {
        PolicyError::at(
            ACTION,
            "rules/x.toml",
            text,
            span,
            "unknown action \"keeep\"",
        )
    }

    #[test]
    fn caret_is_under_the_span() {
        let text = "upstream = \"https://a.example\"\n[fields]\nemail = \"keeep\"\n";
        let at = text.find("\"keeep\"").unwrap();
        let out = render(
            &error(text, at..at + 7).with_help("did you mean \"keep\"?"),
            Some(text),
            false,
        );
        assert!(
            out.starts_with("error[E004]: unknown action \"keeep\""),
            "{out}"
        );
        assert!(out.contains("--> rules/x.toml:3:9"), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        let src = lines
            .iter()
            .position(|l| l.ends_with("email = \"keeep\""))
            .expect("source line shown");
        let caret_line = lines[src + 1];
        let src_col = lines[src].find("\"keeep\"").unwrap();
        assert_eq!(caret_line.find('^'), Some(src_col), "{out}");
        assert_eq!(caret_line.matches('^').count(), 7, "{out}");
        assert!(out.contains("help: did you mean \"keep\"?"), "{out}");
    }

    #[test]
    fn colour_only_when_asked() {
        let text = "a = 1\n";
        let e = error(text, 0..1);
        assert!(!render(&e, Some(text), false).contains('\u{1b}'));
        assert!(render(&e, Some(text), true).contains('\u{1b}'));
    }

    #[test]
    fn warnings_and_whole_file_problems() {
        let mut e = PolicyError::whole_file(FILES, "rules/x.toml", "no such file");
        let out = render(&e, None, false);
        assert!(out.starts_with("error[E010]: no such file"), "{out}");
        assert!(out.contains("rules/x.toml"), "{out}");
        e.severity = Severity::Warning;
        assert!(render(&e, None, false).starts_with("warning[E010]"));
    }

    #[test]
    fn display_is_one_line() {
        let text = "a = 1\n";
        let e = error(text, 0..1)
            .with_help("first\nsecond")
            .with_note("expected: {\"email\":\"x\"}\nactual: {}");
        let line = e.to_string();
        assert_eq!(
            line,
            "rules/x.toml:1:1: error[E004]: unknown action \"keeep\" (help: first second)"
        );
        assert!(
            !line.contains("email"),
            "the note never reaches the line form"
        );
    }
}
