//! Actions: what happens to a selected value.

use std::sync::Arc;

use crate::pseudonym::Normalise;
use crate::transform::{DetectorSet, Scanner, TimeUnit};

/// A compiled action. Options are validated; the hot path only reads them.
#[derive(Debug, Clone)]
pub enum Action {
    /// Passes the value verbatim (a container with its subtree, except where a
    /// deeper selector says otherwise).
    Keep,
    /// Removes the field (the default for anything no selector allows).
    Drop,
    /// Keyed HMAC-SHA256 of the normalised value, truncated, base64url.
    Pseudonymise {
        /// Normalisation before hashing.
        normalise: Normalise,
        /// Index into [`super::CompiledPolicy::scopes`].
        scope: usize,
        /// Output length in bits (multiple of 8, 64..=256).
        bits: u16,
    },
    /// Unkeyed SHA-256 hex of the normalised value (pseudonymous, not anonymous).
    HashSha256 {
        /// Normalisation before hashing.
        normalise: Normalise,
    },
    /// Zeroes the host bits of an IP address.
    TruncateIp {
        /// IPv4 prefix kept (default 24).
        v4_prefix: u8,
        /// IPv6 prefix kept (default 48).
        v6_prefix: u8,
    },
    /// Rounds a timestamp down.
    CoarsenTime {
        /// The unit rounded to.
        unit: TimeUnit,
    },
    /// A number into a band.
    Bucket {
        /// Strictly increasing band bounds.
        bounds: Arc<[i64]>,
    },
    /// Keeps only the domain of an email address.
    MaskEmail,
    /// Removes query, fragment and userinfo from a URL.
    StripQuery {
        /// Query parameters that stay.
        keep_params: Arc<[String]>,
    },
    /// Replaces the value by a constant string.
    Redact {
        /// The replacement, already JSON-encoded with its quotes.
        with_json: Arc<[u8]>,
        /// The replacement as text (for form and query values).
        with: Arc<str>,
    },
    /// Finds personal data inside free text and replaces each find.
    Scan {
        /// The compiled scanner.
        scanner: Arc<Scanner>,
        /// What each find is replaced by.
        replace: ScanReplace,
    },
    /// The string holds a JSON document; it is rewritten by the selectors
    /// below this path and encoded back.
    EmbeddedJson {
        /// `true` for base64 (standard or url-safe alphabet, padding optional).
        base64: bool,
    },
}

/// Replacement for a `scan` find.
#[derive(Debug, Clone)]
pub enum ScanReplace {
    /// A pseudonym of the find (normalised per detector: emails lowercased).
    Pseudonymise {
        /// Scope index.
        scope: usize,
        /// Output bits.
        bits: u16,
    },
    /// A constant.
    Redact(Arc<str>),
}

impl Action {
    /// The action's name as written in rule files.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::Pseudonymise { .. } => "pseudonymise",
            Action::HashSha256 { .. } => "hash_sha256",
            Action::TruncateIp { .. } => "truncate_ip",
            Action::CoarsenTime { .. } => "coarsen_time",
            Action::Bucket { .. } => "bucket",
            Action::MaskEmail => "mask_email",
            Action::StripQuery { .. } => "strip_query",
            Action::Redact { .. } => "redact",
            Action::Scan { .. } => "scan",
            Action::EmbeddedJson { .. } => "embedded_json",
        }
    }

    /// The action's place in [`ACTION_NAMES`] (counting per action on the
    /// rewrite path without comparing names).
    #[inline]
    pub const fn index(&self) -> usize {
        match self {
            Action::Keep => 0,
            Action::Drop => DROP_INDEX,
            Action::Pseudonymise { .. } => 2,
            Action::HashSha256 { .. } => 3,
            Action::TruncateIp { .. } => 4,
            Action::CoarsenTime { .. } => 5,
            Action::Bucket { .. } => 6,
            Action::MaskEmail => 7,
            Action::StripQuery { .. } => 8,
            Action::Redact { .. } => 9,
            Action::Scan { .. } => 10,
            Action::EmbeddedJson { .. } => 11,
        }
    }

    /// Whether this action can let something leave (everything but `drop`).
    pub fn allows(&self) -> bool {
        !matches!(self, Action::Drop)
    }
}

/// Every action name, for suggestions. The rule-file schema describes each
/// one (`policy::raw`); `tests/schema.rs` checks that both list the same
/// actions and options.
pub const ACTION_NAMES: &[&str] = &[
    "keep",
    "drop",
    "pseudonymise",
    "hash_sha256",
    "truncate_ip",
    "coarsen_time",
    "bucket",
    "mask_email",
    "strip_query",
    "redact",
    "scan",
    "embedded_json",
];

/// `drop` in [`ACTION_NAMES`]: where every removed field is counted.
pub const DROP_INDEX: usize = 1;

/// The options each action accepts (besides `action`).
pub fn options_of(action: &str) -> &'static [&'static str] {
    match action {
        "pseudonymise" => &["normalise", "scope", "bits"],
        "hash_sha256" => &["normalise"],
        "truncate_ip" => &["v4_prefix", "v6_prefix"],
        "coarsen_time" => &["unit"],
        "bucket" => &["bounds"],
        "strip_query" => &["keep_params"],
        "redact" => &["with"],
        "scan" => &["detect", "replace", "with", "scope", "bits"],
        "embedded_json" => &["encoding"],
        _ => &[],
    }
}

/// The values of `scan`'s `replace` option.
pub const SCAN_REPLACE_NAMES: &[&str] = &["pseudonymise", "redact"];

/// The values of `embedded_json`'s `encoding` option.
pub const ENCODING_NAMES: &[&str] = &["plain", "base64"];

/// Default detector set for `scan`.
pub fn all_detectors() -> DetectorSet {
    DetectorSet::all()
}
