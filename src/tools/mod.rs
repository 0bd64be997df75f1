//! Tools for rule authors and reviewers: `scrim diff` (what changes in what
//! leaves between two versions of a rule file, measured on sample data) and
//! `scrim inventory` (what leaves, per recipient, from the compiled rules).
//!
//! Neither ever prints a value: only field paths, action names, options
//! written in the rule files, and counts.

pub mod diff;
pub mod inventory;

use crate::policy::{Action, CompiledPolicy, ScanReplace};

/// How much of a value an action lets through, from least to most:
///
/// | rank | actions |
/// | --- | --- |
/// | 0 | `drop` |
/// | 1 | `redact` (a constant: only the field's presence leaves) |
/// | 2 | `hash_sha256`, `pseudonymise` (a stable token: linkable, not readable) |
/// | 3 | `truncate_ip`, `coarsen_time`, `bucket`, `mask_email`, `strip_query` (part of the value) |
/// | 4 | `scan` (free text with detected personal data replaced) |
/// | 5 | `keep` (the value itself) |
///
/// `embedded_json` has no rank: it is a container, and the fields inside the
/// embedded document are ranked on their own.
pub fn rank(action: &str) -> Option<u8> {
    Some(match action {
        "drop" => 0,
        "redact" => 1,
        "hash_sha256" | "pseudonymise" => 2,
        "truncate_ip" | "coarsen_time" | "bucket" | "mask_email" | "strip_query" => 3,
        "scan" => 4,
        "keep" => 5,
        _ => return None,
    })
}

/// An action and its options in plain words, e.g. `IPv4 /24, IPv6 /48` for
/// `truncate_ip`. Options are configuration, never data.
pub fn describe(action: &Action, policy: &CompiledPolicy) -> String {
    let scope = |i: usize| {
        policy
            .scopes
            .get(i)
            .map_or_else(|| "?".to_string(), |s| format!("{s:?}"))
    };
    let normalised = |n: crate::pseudonym::Normalise| match n {
        crate::pseudonym::Normalise::None => String::new(),
        n => format!(", normalised: {}", n.name()),
    };
    match action {
        Action::Keep => "verbatim".into(),
        Action::Drop => "removed".into(),
        Action::Pseudonymise {
            normalise,
            scope: s,
            bits,
        } => format!(
            "keyed HMAC-SHA256, scope {}, {bits} bits{}",
            scope(*s),
            normalised(*normalise)
        ),
        Action::HashSha256 { normalise } => format!(
            "unkeyed SHA-256, hex (pseudonymous, not anonymous){}",
            normalised(*normalise)
        ),
        Action::TruncateIp {
            v4_prefix,
            v6_prefix,
        } => format!("IPv4 /{v4_prefix}, IPv6 /{v6_prefix}"),
        Action::CoarsenTime { unit } => format!("rounded down to the {}", unit.name()),
        Action::Bucket { bounds } => format!(
            "band with bounds {}",
            bounds
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Action::MaskEmail => "domain only".into(),
        Action::StripQuery { keep_params } => {
            if keep_params.is_empty() {
                "URL without query, fragment or userinfo".into()
            } else {
                format!(
                    "URL without fragment or userinfo, query reduced to {}",
                    keep_params.join(", ")
                )
            }
        }
        Action::Redact { with, .. } => format!("replaced by the constant {with:?}"),
        Action::Scan { scanner, replace } => {
            let detectors: Vec<&str> = scanner.detectors().iter().map(|d| d.name()).collect();
            let each = match replace {
                ScanReplace::Pseudonymise { scope: s, bits } => format!(
                    "pseudonymised (keyed HMAC-SHA256, scope {}, {bits} bits)",
                    scope(*s)
                ),
                ScanReplace::Redact(with) => format!("replaced by {with:?}"),
            };
            format!(
                "free text; finds of {} {each}",
                if detectors.is_empty() {
                    "nothing".to_string()
                } else {
                    detectors.join(", ")
                }
            )
        }
        Action::EmbeddedJson { base64 } => format!(
            "JSON document in a string{}, rewritten by the selectors below it",
            if *base64 { " (base64)" } else { "" }
        ),
    }
}

/// Whether `new` lets more through than `old` when both are the same action
/// with different options: a longer IP prefix, a finer time unit, bucket
/// bounds or kept URL parameters that are not a subset of the old ones, or
/// fewer `scan` detectors. Other option changes (scope, bits, normalisation,
/// replacement text) change the form, not how much is revealed.
pub fn options_reveal_more(old: &Action, new: &Action) -> bool {
    use crate::transform::TimeUnit;
    let fineness = |u: &TimeUnit| match u {
        TimeUnit::Day => 0,
        TimeUnit::Hour => 1,
        TimeUnit::Minute => 2,
    };
    match (old, new) {
        (
            Action::TruncateIp {
                v4_prefix: a4,
                v6_prefix: a6,
            },
            Action::TruncateIp {
                v4_prefix: b4,
                v6_prefix: b6,
            },
        ) => b4 > a4 || b6 > a6,
        (Action::CoarsenTime { unit: a }, Action::CoarsenTime { unit: b }) => {
            fineness(b) > fineness(a)
        }
        (Action::Bucket { bounds: a }, Action::Bucket { bounds: b }) => {
            !b.iter().all(|x| a.contains(x))
        }
        (Action::StripQuery { keep_params: a }, Action::StripQuery { keep_params: b }) => {
            !b.iter().all(|x| a.contains(x))
        }
        (Action::Scan { scanner: a, .. }, Action::Scan { scanner: b, .. }) => {
            !a.detectors().iter().all(|d| b.detectors().contains(d))
        }
        _ => false,
    }
}

/// The host (and port) of an upstream URL: no scheme, path or credentials.
pub fn upstream_host(upstream: &str) -> String {
    let Some((_, rest)) = upstream.split_once("://") else {
        return upstream.trim_end_matches(':').to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_ordered_and_embedded_json_has_none() {
        assert!(rank("drop") < rank("redact"));
        assert!(rank("redact") < rank("pseudonymise"));
        assert_eq!(rank("pseudonymise"), rank("hash_sha256"));
        assert!(rank("pseudonymise") < rank("truncate_ip"));
        assert!(rank("strip_query") < rank("scan"));
        assert!(rank("scan") < rank("keep"));
        assert_eq!(rank("embedded_json"), None);
        for name in crate::policy::action::ACTION_NAMES {
            assert!(rank(name).is_some() || *name == "embedded_json", "{name}");
        }
    }

    #[test]
    fn upstream_host_has_no_path_or_credentials() {
        assert_eq!(
            upstream_host("https://api.example.com:8443/v1/secret-token"),
            "api.example.com:8443"
        );
        assert_eq!(upstream_host("https://u:p@h.example/x"), "h.example");
        assert_eq!(upstream_host("capture:"), "capture");
    }
}
