//! Applying a value action to one decoded scalar.

use std::borrow::Cow;

use base64::Engine as _;

use crate::policy::{Action, ScanReplace};
use crate::pseudonym::{Normalise, normalise, sha256_hex_into};

use super::Engine;
use crate::transform;

/// The result of a value action.
pub(crate) enum Out {
    /// A new string value (unescaped text).
    Str(String),
    /// A new number (JSON number text).
    Num(String),
    /// The original value stands (e.g. `scan` found nothing).
    Original,
    /// Bytes already written to the output by the action (JSON only).
    Written,
}

/// A scalar as the action sees it.
pub(crate) enum Scalar<'a> {
    /// Unescaped string content.
    Str(&'a str),
    /// JSON number text.
    Num(&'a str),
    /// `true`, `false` or `null`.
    Other,
}

/// Whether `action` always applies to a string or number and can write its
/// output straight into the JSON output (`apply_scalar` with `json_out`):
/// pseudonyms and hashes, except under phone normalisation (which may find
/// no number).
pub(crate) fn writes_json(action: &Action) -> bool {
    match action {
        Action::Pseudonymise { normalise, .. } | Action::HashSha256 { normalise } => {
            *normalise != Normalise::Phone
        }
        _ => false,
    }
}

/// Applies `action` to a scalar. `json_out`, when given, lets pseudonym and
/// hash outputs be written straight into the JSON output (with quotes),
/// avoiding an allocation on the hot path. `None` means the action cannot
/// apply: the caller drops the field and counts it.
pub(crate) fn apply_scalar(
    engine: &Engine,
    action: &Action,
    value: Scalar<'_>,
    json_out: Option<&mut Vec<u8>>,
) -> Option<Out> {
    let text = match value {
        Scalar::Str(s) => s,
        Scalar::Num(n) => n,
        Scalar::Other => {
            return match action {
                Action::Keep => Some(Out::Original),
                Action::Redact { with, .. } => Some(Out::Str(with.to_string())),
                _ => None,
            };
        }
    };
    let is_num = matches!(value, Scalar::Num(_));
    match action {
        Action::Keep => Some(Out::Original),
        Action::Drop => None,
        Action::Pseudonymise {
            normalise: n,
            scope,
            bits,
        } => {
            let norm = hashed_form(*n, text, is_num)?;
            let key = engine.key(*scope);
            match json_out {
                Some(out) => {
                    out.push(b'"');
                    key.pseudonymise_into(norm.as_bytes(), *bits, out);
                    out.push(b'"');
                    Some(Out::Written)
                }
                None => Some(Out::Str(key.pseudonymise(norm.as_bytes(), *bits))),
            }
        }
        Action::HashSha256 { normalise: n } => {
            let norm = hashed_form(*n, text, is_num)?;
            match json_out {
                Some(out) => {
                    out.push(b'"');
                    sha256_hex_into(norm.as_bytes(), out);
                    out.push(b'"');
                    Some(Out::Written)
                }
                None => {
                    let mut hex = Vec::with_capacity(64);
                    sha256_hex_into(norm.as_bytes(), &mut hex);
                    Some(Out::Str(String::from_utf8(hex).ok()?))
                }
            }
        }
        Action::TruncateIp {
            v4_prefix,
            v6_prefix,
        } if !is_num => transform::truncate_ip(text, *v4_prefix, *v6_prefix).map(Out::Str),
        Action::CoarsenTime { unit } => {
            if is_num {
                transform::coarsen_time_number(text, *unit).map(Out::Num)
            } else {
                transform::coarsen_time_str(text, *unit).map(Out::Str)
            }
        }
        Action::Bucket { bounds } => if is_num {
            transform::bucket(text, bounds)
        } else {
            transform::bucket_str(text, bounds)
        }
        .map(Out::Str),
        Action::MaskEmail if !is_num => transform::mask_email(text).map(Out::Str),
        Action::StripQuery { keep_params } if !is_num => {
            transform::strip_query(text, keep_params).map(Out::Str)
        }
        Action::Redact { with, .. } => Some(Out::Str(with.to_string())),
        Action::Scan { scanner, replace } if !is_num => {
            let mut replace_fn = |kind: transform::Detector, found: &str| -> String {
                match replace {
                    ScanReplace::Redact(with) => with.to_string(),
                    ScanReplace::Pseudonymise { scope, bits } => {
                        let norm = match kind {
                            transform::Detector::Email => normalise(Normalise::Email, found),
                            transform::Detector::Phone | transform::Detector::Card => {
                                normalise(Normalise::Phone, found)
                            }
                            // "DE89 3704 ..." and "de893704..." are one IBAN.
                            transform::Detector::Iban => Cow::Owned(
                                found
                                    .chars()
                                    .filter(|c| !c.is_whitespace())
                                    .flat_map(char::to_uppercase)
                                    .collect(),
                            ),
                            _ => Cow::Borrowed(found),
                        };
                        engine.key(*scope).pseudonymise(norm.as_bytes(), *bits)
                    }
                }
            };
            match scanner.scan(text, &mut replace_fn) {
                Some(s) => Some(Out::Str(s)),
                None => Some(Out::Original),
            }
        }
        // Type mismatches, and embedded_json (handled by the caller).
        _ => None,
    }
}

/// The text a pseudonym or hash is computed over: the normalised string, or a
/// number's JSON text as written. A phone number without digits is not a
/// phone number (one shared pseudonym for every such value would be noise):
/// `None`, the action cannot apply.
fn hashed_form(n: Normalise, text: &str, is_num: bool) -> Option<Cow<'_, str>> {
    if is_num {
        return Some(Cow::Borrowed(text));
    }
    let norm = normalise(n, text);
    if norm.is_empty() && n == Normalise::Phone {
        return None;
    }
    Some(norm)
}

/// Writes `s` as a JSON string with quotes: `"` `\` and control characters
/// escaped, everything else as UTF-8.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Decodes the content of an `embedded_json` string: plain, or base64 in the
/// standard or URL-safe alphabet, padded or not. Returns the bytes and how to
/// encode the result back (`None` for plain).
pub(crate) fn decode_embedded(text: &str, base64: bool) -> Option<(Vec<u8>, Option<B64Style>)> {
    if !base64 {
        return Some((text.as_bytes().to_vec(), None));
    }
    let url = text.contains(['-', '_']);
    let padded = text.ends_with('=');
    let engine = match (url, padded) {
        (false, true) => &base64::engine::general_purpose::STANDARD,
        (false, false) => &base64::engine::general_purpose::STANDARD_NO_PAD,
        (true, true) => &base64::engine::general_purpose::URL_SAFE,
        (true, false) => &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    };
    let bytes = engine.decode(text.trim()).ok()?;
    Some((bytes, Some(B64Style { url, padded })))
}

/// How an embedded base64 document was written.
#[derive(Clone, Copy)]
pub(crate) struct B64Style {
    url: bool,
    padded: bool,
}

impl B64Style {
    /// Encodes in the same style.
    pub(crate) fn encode(self, bytes: &[u8]) -> String {
        match (self.url, self.padded) {
            (false, true) => base64::engine::general_purpose::STANDARD.encode(bytes),
            (false, false) => base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
            (true, true) => base64::engine::general_purpose::URL_SAFE.encode(bytes),
            (true, false) => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\"".as_bytes());
    }

    #[test]
    fn base64_styles_round_trip() {
        for s in ["eyJhIjoxfQ==", "eyJhIjoxfQ", "eyJhIjoxfQ"] {
            let (bytes, style) = decode_embedded(s, true).unwrap();
            assert_eq!(bytes, b"{\"a\":1}");
            assert_eq!(style.unwrap().encode(&bytes), s);
        }
        assert!(decode_embedded("not base64!", true).is_none());
    }
}
