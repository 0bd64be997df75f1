//! `[consent]` and `[suppress]`: which events a recipient may receive at
//! all, decided per event before rewriting. Raw TOML in, validated
//! [`ConsentRules`] and [`SuppressRules`] out.
//!
//! Selectors here are exact paths relative to one event (an element of
//! `records`, or the document), read from the event as the caller sent it:
//! a consent field or a subject is usually dropped by `[fields]`, and that
//! is fine, since the decision is taken before `[fields]` applies.

use std::ops::Range;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::PolicyError;
use super::aggregate::FieldPath;
use super::compile::did_you_mean;
use super::diag;
use super::raw::{RawRuleFile, RawValue};
use super::selector::{Segment, Selector, canonical};
use crate::pseudonym::Normalise;

/// The purposes for which `gpc` defaults to `true`: what the CCPA
/// regulations make `Sec-GPC: 1` an opt-out of.
pub const GPC_PURPOSES: &[&str] = &["advertising", "sale", "sharing"];

/// The most lists one rule file may name.
pub const MAX_LISTS: usize = 16;
/// The most subject fields.
pub const MAX_SUBJECTS: usize = 16;

/// `[consent]` as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Consent")]
pub struct RawConsent {
    /// What the partner uses the data for (`advertising`, `analytics`,
    /// `sale`, ...): the purpose an event needs consent for. Compared
    /// case-insensitively; shown by `scrim inventory`.
    #[schemars(with = "String", length(min = 1, max = 64))]
    pub purpose: Spanned<String>,
    /// The exact path (relative to one event) of the event's consent: an
    /// array of granted purposes, an object of purpose to `true` /
    /// `"granted"`, or the answer itself (`true`, `"granted"`, `"denied"`).
    /// For a form body or a request without body, the name of a parameter.
    #[schemars(with = "String")]
    pub field: Spanned<String>,
    /// What happens to an event without the field: `"withhold"` (default)
    /// or `"send"`.
    #[schemars(with = "Option<MissingName>")]
    pub missing: Option<Spanned<String>>,
    /// Whether `Sec-GPC: 1` withholds every event of the request. Default
    /// `true` for the purposes advertising, sale and sharing, `false`
    /// otherwise.
    #[schemars(with = "Option<bool>")]
    pub gpc: Option<Spanned<bool>>,
}

/// `missing` in `[consent]`.
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)] // describes the strings `compile` accepts
enum MissingName {
    /// The event is withheld (the default).
    Withhold,
    /// The event is sent.
    Send,
}

/// `[suppress]` as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Suppress")]
pub struct RawSuppress {
    /// Who an event is about: exact paths relative to one event, each a
    /// string or `{ field = "traits.email", normalise = "email" }` (the
    /// same normalisations as `pseudonymise`). Each is looked up in the
    /// lists made with its normalisation.
    #[schemars(with = "Vec<SubjectRule>", length(min = 1))]
    pub subject: Spanned<Vec<Spanned<RawValue>>>,
    /// The suppression lists that apply (`["optout", "erasure"]`): names of
    /// 1 to 64 characters of `A-Z a-z 0-9 _ -`, kept in `[suppress] dir`
    /// of scrim.toml (or its Redis store).
    #[schemars(with = "Vec<String>", length(min = 1))]
    pub lists: Spanned<Vec<Spanned<String>>>,
}

/// One subject of `[suppress]` (for the schema).
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
enum SubjectRule {
    /// An exact field path, not normalised.
    Path(String),
    /// A field path and its normalisation.
    Table {
        /// The exact field path.
        field: String,
        /// `email`, `lower`, `trim` or `phone`.
        normalise: Option<String>,
    },
}

/// What `missing` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// An event without consent field is withheld.
    Withhold,
    /// An event without consent field is sent.
    Send,
}

/// `[consent]`, validated.
#[derive(Debug, Clone)]
pub struct ConsentRules {
    /// The purpose, lower case.
    pub purpose: String,
    /// The consent field of an event.
    pub field: FieldPath,
    /// Events without the field.
    pub missing: Missing,
    /// `Sec-GPC: 1` withholds the whole request.
    pub gpc: bool,
    /// Where `[consent]` was written.
    pub span: Range<usize>,
}

/// One subject field of `[suppress]`.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The field.
    pub field: FieldPath,
    /// Its normalisation before hashing.
    pub normalise: Normalise,
}

/// `[suppress]`, validated.
#[derive(Debug, Clone)]
pub struct SuppressRules {
    /// Subject fields, in file order.
    pub subjects: Vec<Subject>,
    /// List names, in file order.
    pub lists: Vec<String>,
    /// Where each list name was written (for load errors about a list).
    pub list_spans: Vec<Range<usize>>,
}

/// Whether `name` is a valid list name: 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn is_list_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What [`compile`] gives.
#[derive(Debug, Default)]
pub struct Compiled {
    /// `[consent]`.
    pub consent: Option<ConsentRules>,
    /// `[suppress]`.
    pub suppress: Option<SuppressRules>,
}

struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
    errors: &'a mut Vec<PolicyError>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) -> &mut PolicyError {
        self.errors.push(PolicyError::at(
            diag::CONSENT,
            self.file,
            self.text,
            span,
            message,
        ));
        let last = self.errors.len() - 1;
        &mut self.errors[last]
    }
}

/// Checks `[consent]` and `[suppress]`. Problems go to `errors`.
pub fn compile(
    text: &str,
    file: &str,
    raw: &RawRuleFile,
    errors: &mut Vec<PolicyError>,
) -> Compiled {
    let mut cx = Ctx { text, file, errors };
    let mut out = Compiled::default();
    if let Some(c) = &raw.consent {
        out.consent = compile_consent(&mut cx, c);
    }
    if let Some(s) = &raw.suppress {
        out.suppress = compile_suppress(&mut cx, s.get_ref());
    }
    if (raw.consent.is_some() || raw.suppress.is_some())
        && let Some(t) = raw.passthrough_content_types.first()
    {
        cx.err(
            t.span(),
            "a recipient with [consent] or [suppress] decides on every body: nothing passes through untouched",
        );
    }
    out
}

fn compile_consent(cx: &mut Ctx<'_>, raw: &Spanned<RawConsent>) -> Option<ConsentRules> {
    let c = raw.get_ref();
    let before = cx.errors.len();
    let purpose = c.purpose.get_ref().trim().to_lowercase();
    if purpose.is_empty()
        || purpose.len() > 64
        || !purpose
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        cx.err(
            c.purpose.span(),
            "a purpose is 1 to 64 characters of `A-Z a-z 0-9 _ -`",
        );
    }
    let field = exact_path(cx, &c.field, "consent field");
    let missing = match c.missing.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("withhold", _)) => Missing::Withhold,
        Some(("send", _)) => Missing::Send,
        Some((other, span)) => {
            let help = did_you_mean(other, &["withhold", "send"]);
            cx.err(span, "unknown value of missing").help = Some(help);
            Missing::Withhold
        }
    };
    let gpc = match &c.gpc {
        Some(g) => *g.get_ref(),
        None => GPC_PURPOSES.contains(&purpose.as_str()),
    };
    if cx.errors.len() > before {
        return None;
    }
    Some(ConsentRules {
        purpose,
        field: field?,
        missing,
        gpc,
        span: raw.span(),
    })
}

fn compile_suppress(cx: &mut Ctx<'_>, s: &RawSuppress) -> Option<SuppressRules> {
    let before = cx.errors.len();
    let mut subjects: Vec<Subject> = Vec::new();
    if s.subject.get_ref().is_empty() {
        cx.err(
            s.subject.span(),
            "[suppress] subject is empty: nothing to look up",
        )
        .help = Some("name the field that identifies the person: subject = [\"userId\"]".into());
    }
    if s.subject.get_ref().len() > MAX_SUBJECTS {
        cx.err(
            s.subject.span(),
            format!("at most {MAX_SUBJECTS} subject fields"),
        );
    }
    for v in s.subject.get_ref() {
        let (path, normalise) = match v.get_ref() {
            RawValue::String(p) => (Spanned::new(v.span(), p.clone()), Normalise::None),
            RawValue::Table(entries) => {
                let mut field = None;
                let mut normalise = Normalise::None;
                for (k, val) in entries {
                    match (k.get_ref().as_str(), val.get_ref()) {
                        ("field", RawValue::String(p)) => {
                            field = Some(Spanned::new(val.span(), p.clone()));
                        }
                        ("normalise", RawValue::String(n)) => match Normalise::parse(n) {
                            Some(n) => normalise = n,
                            None if n == "none" => {}
                            None => {
                                let help = did_you_mean(n, Normalise::NAMES);
                                cx.err(val.span(), "unknown normalisation").help = Some(help);
                            }
                        },
                        ("field" | "normalise", other) => {
                            cx.err(
                                val.span(),
                                format!("{} is a string, not {}", k.get_ref(), other.kind()),
                            );
                        }
                        (other, _) => {
                            let help = did_you_mean(other, &["field", "normalise"]);
                            cx.err(k.span(), format!("unknown subject option `{other}`"))
                                .help = Some(help);
                        }
                    }
                }
                let Some(field) = field else {
                    cx.err(v.span(), "a subject table needs `field`");
                    continue;
                };
                (field, normalise)
            }
            other => {
                cx.err(
                    v.span(),
                    format!("a subject is a field path or a table, not {}", other.kind()),
                );
                continue;
            }
        };
        if let Some(field) = exact_path(cx, &path, "subject") {
            if subjects
                .iter()
                .any(|o| o.field.keys == field.keys && o.normalise == normalise)
            {
                cx.err(field.span.clone(), "this subject is named twice");
                continue;
            }
            subjects.push(Subject { field, normalise });
        }
    }
    let mut lists = Vec::new();
    let mut list_spans = Vec::new();
    if s.lists.get_ref().is_empty() {
        cx.err(
            s.lists.span(),
            "[suppress] lists is empty: nothing would be suppressed",
        )
        .help = Some("lists = [\"optout\", \"erasure\"]".into());
    }
    if s.lists.get_ref().len() > MAX_LISTS {
        cx.err(s.lists.span(), format!("at most {MAX_LISTS} lists"));
    }
    for l in s.lists.get_ref() {
        let name = l.get_ref();
        if !is_list_name(name) {
            cx.err(
                l.span(),
                "a list name is 1 to 64 characters of `A-Z a-z 0-9 _ -`",
            );
            continue;
        }
        if lists.contains(name) {
            cx.err(l.span(), format!("list \"{name}\" is named twice"));
            continue;
        }
        lists.push(name.clone());
        list_spans.push(l.span());
    }
    if cx.errors.len() > before {
        return None;
    }
    Some(SuppressRules {
        subjects,
        lists,
        list_spans,
    })
}

fn exact_path(cx: &mut Ctx<'_>, s: &Spanned<String>, what: &str) -> Option<FieldPath> {
    let sel = match Selector::parse(s.get_ref()) {
        Ok(sel) => sel,
        Err(e) => {
            cx.err(s.span(), format!("invalid {what} path: {e}"));
            return None;
        }
    };
    let mut keys = Vec::new();
    for seg in sel.segments() {
        match seg {
            Segment::Key(k) => keys.push(canonical(k)),
            Segment::Star | Segment::GlobStar => {
                cx.err(
                    s.span(),
                    format!("the {what} must be an exact field path, without `*` or `**`"),
                );
                return None;
            }
        }
    }
    Some(FieldPath {
        text: s.get_ref().clone(),
        keys,
        span: s.span(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_text(text: &str) -> Result<crate::policy::CompiledPolicy, Vec<PolicyError>> {
        crate::policy::compile::compile_str_all(text, "t.toml", "t")
    }

    const HEAD: &str = "upstream = \"https://x.example\"\n[fields]\n\"event\" = \"keep\"\n";

    #[test]
    fn consent_defaults_follow_the_purpose() {
        let p = compile_text(&format!(
            "{HEAD}[consent]\npurpose = \"Advertising\"\nfield = \"consent\"\n"
        ))
        .unwrap();
        let c = p.consent.unwrap();
        assert_eq!(c.purpose, "advertising");
        assert!(c.gpc);
        assert_eq!(c.missing, Missing::Withhold);
        let p = compile_text(&format!(
            "{HEAD}[consent]\npurpose = \"analytics\"\nfield = \"c\"\nmissing = \"send\"\n"
        ))
        .unwrap();
        let c = p.consent.unwrap();
        assert!(!c.gpc);
        assert_eq!(c.missing, Missing::Send);
    }

    #[test]
    fn errors_are_located_and_coded() {
        let text = format!(
            "{HEAD}[consent]\npurpose = \"ads\"\nfield = \"consent.*\"\nmissing = \"sned\"\n"
        );
        let errs = compile_text(&text).unwrap_err();
        assert!(errs.iter().all(|e| e.code == "E013"), "{errs:?}");
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].line, 6);
        assert!(errs[1].help.as_deref().unwrap().contains("send"));
        let text = format!(
            "{HEAD}[suppress]\nsubject = [\"userId\", {{ field = \"email\", normalise = \"emial\" }}]\nlists = [\"opt out\"]\n"
        );
        let errs = compile_text(&text).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs.iter()
                .all(|e| e.code == "E013" && e.line == 5 || e.line == 6)
        );
    }

    #[test]
    fn suppress_compiles_subjects_and_lists() {
        let p = compile_text(&format!(
            "{HEAD}[suppress]\nsubject = [\"userId\", {{ field = \"traits.email\", normalise = \"email\" }}]\nlists = [\"optout\", \"erasure\"]\n"
        ))
        .unwrap();
        let s = p.suppress.unwrap();
        assert_eq!(s.lists, ["optout", "erasure"]);
        assert_eq!(s.subjects.len(), 2);
        assert_eq!(s.subjects[1].normalise, Normalise::Email);
        assert_eq!(s.subjects[1].field.keys.len(), 2);
    }
}
