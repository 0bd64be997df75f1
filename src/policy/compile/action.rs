//! From a rule's value (`"keep"` or `{ action = "bucket", bounds = [...] }`)
//! to an [`Action`]: the name and option names are checked against
//! [`ACTIONS`], then the action's own parser reads its options.

use std::ops::Range;
use std::sync::Arc;

use toml::Spanned;

use super::super::action::{
    ACTION_NAMES, Action, ENCODING_NAMES, SCAN_REPLACE_NAMES, ScanReplace, spec_named,
};
use super::super::raw::RawValue;
use super::{Source, did_you_mean};
use crate::policy::{PolicyError, diag};
use crate::pseudonym::Normalise;
use crate::transform::{Detector, DetectorSet, Scanner, TimeUnit};

/// An action table's entries, each with its location.
type Options = [(Spanned<String>, Spanned<RawValue>)];

/// How an action's row in [`ACTIONS`] builds it from its options.
///
/// [`ACTIONS`]: super::super::action::ACTIONS
pub(crate) type ParseAction = fn(&mut OptionReader<'_>) -> Result<Action, PolicyError>;

/// One action's options, already checked to be ones it accepts, read with
/// located errors.
pub(crate) struct OptionReader<'a> {
    src: &'a Source<'a>,
    /// The whole rule value.
    value: &'a Spanned<RawValue>,
    /// Where the action's name is written.
    name_span: Range<usize>,
    opts: &'a Options,
    /// The file's pseudonym scopes; a new one is added.
    scopes: &'a mut Vec<String>,
}

/// Reads a rule's value as an action.
pub(super) fn parse_action(
    src: &Source<'_>,
    value: &Spanned<RawValue>,
    scopes: &mut Vec<String>,
) -> Result<Action, PolicyError> {
    let (name, name_span, opts) = name_and_options(src, value)?;
    let Some(spec) = spec_named(name) else {
        return Err(src
            .err(
                diag::ACTION,
                name_span,
                format!("unknown action \"{}\"", name.escape_debug()),
            )
            .with_help(did_you_mean(name, ACTION_NAMES)));
    };
    check_option_names(src, name, spec.options, opts)?;
    (spec.parse)(&mut OptionReader {
        src,
        value,
        name_span,
        opts,
        scopes,
    })
}

/// The action's name, where it is written, and the table's entries (none
/// for the name form).
fn name_and_options<'v>(
    src: &Source<'_>,
    value: &'v Spanned<RawValue>,
) -> Result<(&'v str, Range<usize>, &'v Options), PolicyError> {
    match value.get_ref() {
        RawValue::String(s) => Ok((s.as_str(), value.span(), &[])),
        RawValue::Table(t) => match value.get_ref().get("action") {
            Some(a) => match a.get_ref() {
                RawValue::String(s) => Ok((s.as_str(), a.span(), t.as_slice())),
                other => Err(src.err(
                    diag::ACTION,
                    a.span(),
                    format!("`action` must be a string, not {}", other.kind()),
                )),
            },
            // Field tables without `action` were flattened into selectors;
            // anywhere else (a query parameter) the table is a mistake.
            None => Err(src
                .err(diag::ACTION, value.span(), "this table has no `action`")
                .with_help("write `action = \"...\"` in it, or an action name (\"keep\")")),
        },
        other => Err(src
                    .err(
                        diag::ACTION,
                        value.span(),
                        format!("expected an action, found {}", other.kind()),
                    )
                    .with_help("write an action name (\"keep\") or a table with `action = \"...\"` and its options")),
    }
}

/// Refuses the first option the action does not take.
fn check_option_names(
    src: &Source<'_>,
    name: &str,
    allowed: &[&str],
    opts: &Options,
) -> Result<(), PolicyError> {
    for (k, _) in opts {
        let k_name = k.get_ref().as_str();
        if k_name == "action" || allowed.contains(&k_name) {
            continue;
        }
        let e = if allowed.is_empty() {
            src.err(
                diag::ACTION,
                k.span(),
                format!(
                    "action \"{name}\" takes no option \"{}\"",
                    k_name.escape_debug()
                ),
            )
            .with_help(format!("remove \"{}\"", k_name.escape_debug()))
        } else {
            src.err(
                diag::ACTION,
                k.span(),
                format!(
                    "unknown option \"{}\" for action \"{name}\"",
                    k_name.escape_debug()
                ),
            )
            .with_help(did_you_mean(k_name, allowed))
        };
        return Err(e);
    }
    Ok(())
}

impl<'a> OptionReader<'a> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        self.src.err(diag::ACTION, span, message)
    }

    fn opt(&self, k: &str) -> Option<&'a Spanned<RawValue>> {
        self.opts
            .iter()
            .find(|(key, _)| key.get_ref() == k)
            .map(|(_, v)| v)
    }

    /// Where an option's value is written (errors about a value point at
    /// it), or the whole rule when it is absent.
    fn at(&self, k: &str) -> Range<usize> {
        self.opt(k).map_or(self.value.span(), |v| v.span())
    }

    fn str_opt(&self, k: &str) -> Result<Option<&'a str>, PolicyError> {
        match self.opt(k) {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                RawValue::String(s) => Ok(Some(s.as_str())),
                other => Err(self.err(
                    v.span(),
                    format!("option \"{k}\" must be a string, not {}", other.kind()),
                )),
            },
        }
    }

    fn int_opt(&self, k: &str, range: Range<i64>) -> Result<Option<i64>, PolicyError> {
        match self.opt(k) {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                RawValue::Integer(i) if range.contains(i) => Ok(Some(*i)),
                _ => Err(self.err(
                    v.span(),
                    format!(
                        "option \"{k}\" must be an integer from {} to {}",
                        range.start,
                        range.end - 1
                    ),
                )),
            },
        }
    }

    fn normalise(&self) -> Result<Normalise, PolicyError> {
        match self.str_opt("normalise")? {
            None | Some("none") => Ok(Normalise::None),
            Some(n) => Normalise::parse(n).ok_or_else(|| {
                self.err(
                    self.at("normalise"),
                    format!("unknown normalise \"{}\"", n.escape_debug()),
                )
                .with_help(did_you_mean(n, Normalise::NAMES))
            }),
        }
    }

    /// The index of the `scope` option in the file's scopes (added if new);
    /// 0, the file's own, when absent.
    fn scope(&mut self) -> Result<usize, PolicyError> {
        match self.str_opt("scope")? {
            None => Ok(0),
            Some("") => Err(self.err(self.at("scope"), "scope must not be empty")),
            Some(s) => Ok(match self.scopes.iter().position(|x| x == s) {
                Some(i) => i,
                None => {
                    self.scopes.push(s.to_string());
                    self.scopes.len() - 1
                }
            }),
        }
    }

    fn bits(&self) -> Result<u16, PolicyError> {
        // Shorter pseudonyms collide and are easier to enumerate: 64 bits
        // is the floor, not a lint.
        let b = self.int_opt("bits", 64..257)?.unwrap_or(128);
        if b % 8 != 0 {
            return Err(self
                .err(self.at("bits"), "option \"bits\" must be a multiple of 8")
                .with_help(format!("use {} or {}", b / 8 * 8, b / 8 * 8 + 8)));
        }
        Ok(b as u16)
    }
}

pub(crate) fn pseudonymise(o: &mut OptionReader<'_>) -> Result<Action, PolicyError> {
    Ok(Action::Pseudonymise {
        normalise: o.normalise()?,
        scope: o.scope()?,
        bits: o.bits()?,
    })
}

pub(crate) fn hash_sha256(o: &mut OptionReader<'_>) -> Result<Action, PolicyError> {
    Ok(Action::HashSha256 {
        normalise: o.normalise()?,
    })
}

pub(crate) fn truncate_ip(o: &mut OptionReader<'_>) -> Result<Action, PolicyError> {
    Ok(Action::TruncateIp {
        v4_prefix: o.int_opt("v4_prefix", 0..33)?.unwrap_or(24) as u8,
        v6_prefix: o.int_opt("v6_prefix", 0..129)?.unwrap_or(48) as u8,
    })
}

pub(crate) fn coarsen_time(o: &mut OptionReader<'_>) -> Result<Action, PolicyError> {
    let unit = match o.str_opt("unit")? {
        None => TimeUnit::Hour,
        Some(u) => TimeUnit::parse(u).ok_or_else(|| {
            o.err(
                o.at("unit"),
                format!("unknown unit \"{}\"", u.escape_debug()),
            )
            .with_help(did_you_mean(u, TimeUnit::NAMES))
        })?,
    };
    Ok(Action::CoarsenTime { unit })
}

pub(crate) fn bucket(o: &mut OptionReader<'_>) -> Result<Action, PolicyError> {
    let items = match o.opt("bounds").map(|v| v.get_ref()) {
        Some(RawValue::Array(items)) => items,
        _ => {
            return Err(o
                .err(
                    o.opt("bounds").map_or(o.name_span.clone(), |v| v.span()),
                    "bucket needs `bounds`, an array of increasing integers",
                )
                .with_help("e.g. bounds = [18, 25, 35, 45, 55, 65]"));
        }
    };
    let bounds: Option<Vec<i64>> = items.iter().map(|v| v.get_ref().as_integer()).collect();
    let bounds = bounds
        .filter(|b| !b.is_empty() && b.windows(2).all(|w| w[0] < w[1]))
        .ok_or_else(|| {
            o.err(
                o.at("bounds"),
                "`bounds` must be a non-empty array of strictly increasing integers",
            )
        })?;
    Ok(Action::Bucket {
        bounds: bounds.into(),
    })
}

pub(crate) fn strip_query(o: &mut OptionReader<'_>) -> Result<Action, PolicyError> {
    let bad = || {
        o.err(
            o.at("keep_params"),
            "`keep_params` must be an array of strings",
        )
    };
    let keep_params = match o.opt("keep_params").map(|v| v.get_ref()) {
        None => Vec::new(),
        Some(RawValue::Array(items)) => items
            .iter()
            .map(|v| v.get_ref().as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?,
        Some(_) => return Err(bad()),
    };
    Ok(Action::StripQuery {
        keep_params: keep_params.into(),
    })
}

pub(crate) fn redact(o: &mut OptionReader<'_>) -> Result<Action, PolicyError> {
    let with = o.str_opt("with")?.unwrap_or("[redacted]");
    let with_json = serde_json::to_vec(with).unwrap_or_else(|_| b"\"[redacted]\"".to_vec());
    Ok(Action::Redact {
        with_json: with_json.into(),
        with: with.into(),
    })
}

pub(crate) fn scan(o: &mut OptionReader<'_>) -> Result<Action, PolicyError> {
    let detectors = scan_detectors(o)?;
    let replace = scan_replace(o)?;
    Ok(Action::Scan {
        scanner: Arc::new(Scanner::new(detectors)),
        replace,
    })
}

/// `scan`'s `detect`: every detector when absent.
fn scan_detectors(o: &OptionReader<'_>) -> Result<DetectorSet, PolicyError> {
    match o.opt("detect").map(|v| v.get_ref()) {
        None => Ok(DetectorSet::all()),
        Some(RawValue::Array(items)) if items.is_empty() => {
            // Finding nothing would send the text verbatim: a `keep`
            // that escapes review.
            Err(o
                .err(o.at("detect"), "`detect` must name at least one detector")
                .with_help(format!(
                    "leave `detect` out to use all of them ({}), or use `keep` if the text may leave as it is",
                    Detector::NAMES.join(", ")
                )))
        }
        Some(RawValue::Array(items)) => {
            let mut set = DetectorSet::default();
            for item in items {
                let n = item.get_ref().as_str().unwrap_or("");
                if !set.parse_name(n) {
                    return Err(o
                        .err(
                            item.span(),
                            format!("unknown detector \"{}\"", n.escape_debug()),
                        )
                        .with_help(did_you_mean(n, Detector::NAMES)));
                }
            }
            Ok(set)
        }
        Some(_) => Err(o.err(
            o.at("detect"),
            "`detect` must be an array of detector names",
        )),
    }
}

/// `scan`'s `replace` with `with`, or `scope` and `bits`.
fn scan_replace(o: &mut OptionReader<'_>) -> Result<ScanReplace, PolicyError> {
    match o.str_opt("replace")?.unwrap_or("pseudonymise") {
        "pseudonymise" => {
            if let Some((k, _)) = o.opts.iter().find(|(k, _)| k.get_ref() == "with") {
                return Err(o
                    .err(k.span(), "`with` only applies to replace = \"redact\"")
                    .with_help("remove `with`, or set replace = \"redact\""));
            }
            Ok(ScanReplace::Pseudonymise {
                scope: o.scope()?,
                bits: o.bits()?,
            })
        }
        "redact" => Ok(ScanReplace::Redact(
            o.str_opt("with")?.unwrap_or("[redacted]").into(),
        )),
        other => Err(o
            .err(
                o.at("replace"),
                format!("unknown replace \"{}\"", other.escape_debug()),
            )
            .with_help(did_you_mean(other, SCAN_REPLACE_NAMES))),
    }
}

pub(crate) fn embedded_json(o: &mut OptionReader<'_>) -> Result<Action, PolicyError> {
    let base64 = match o.str_opt("encoding")?.unwrap_or("plain") {
        "plain" => false,
        "base64" => true,
        other => {
            return Err(o
                .err(
                    o.at("encoding"),
                    format!("unknown encoding \"{}\"", other.escape_debug()),
                )
                .with_help(did_you_mean(other, ENCODING_NAMES)));
        }
    };
    Ok(Action::EmbeddedJson { base64 })
}
