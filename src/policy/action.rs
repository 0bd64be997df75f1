//! Actions: what happens to a selected value, and [`ACTIONS`], the one list
//! of them.

use std::sync::Arc;

use super::compile::action as parse;
use super::raw;
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
    /// Which action this is: its row in [`ACTIONS`].
    #[inline]
    pub const fn kind(&self) -> ActionKind {
        match self {
            Action::Keep => ActionKind::Keep,
            Action::Drop => ActionKind::Drop,
            Action::Pseudonymise { .. } => ActionKind::Pseudonymise,
            Action::HashSha256 { .. } => ActionKind::HashSha256,
            Action::TruncateIp { .. } => ActionKind::TruncateIp,
            Action::CoarsenTime { .. } => ActionKind::CoarsenTime,
            Action::Bucket { .. } => ActionKind::Bucket,
            Action::MaskEmail => ActionKind::MaskEmail,
            Action::StripQuery { .. } => ActionKind::StripQuery,
            Action::Redact { .. } => ActionKind::Redact,
            Action::Scan { .. } => ActionKind::Scan,
            Action::EmbeddedJson { .. } => ActionKind::EmbeddedJson,
        }
    }

    /// The action's name as written in rule files.
    pub fn name(&self) -> &'static str {
        self.spec().name
    }

    /// The action's place in [`ACTIONS`] and [`ACTION_NAMES`] (counting per
    /// action on the rewrite path without comparing names).
    #[inline]
    pub const fn index(&self) -> usize {
        self.kind() as usize
    }

    /// The action's row in [`ACTIONS`].
    pub fn spec(&self) -> &'static ActionSpec {
        &ACTIONS[self.index()]
    }

    /// Whether this action can let something leave (everything but `drop`).
    pub fn allows(&self) -> bool {
        !matches!(self, Action::Drop)
    }
}

/// The actions, without their options; the discriminant is the place in
/// [`ACTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// `keep`.
    Keep,
    /// `drop`.
    Drop,
    /// `pseudonymise`.
    Pseudonymise,
    /// `hash_sha256`.
    HashSha256,
    /// `truncate_ip`.
    TruncateIp,
    /// `coarsen_time`.
    CoarsenTime,
    /// `bucket`.
    Bucket,
    /// `mask_email`.
    MaskEmail,
    /// `strip_query`.
    StripQuery,
    /// `redact`.
    Redact,
    /// `scan`.
    Scan,
    /// `embedded_json`.
    EmbeddedJson,
}

/// One action as rule files write it. [`ACTIONS`] holds one per action, and
/// every other list of actions (names, options, the parser's dispatch, the
/// rule-file schema, per-action counters) is read from it.
pub struct ActionSpec {
    /// Which action; its discriminant is this row's place in [`ACTIONS`].
    pub kind: ActionKind,
    /// The name in rule files.
    pub name: &'static str,
    /// The options the table form accepts (besides `action`).
    pub options: &'static [&'static str],
    /// Whether `[query]` accepts it (`embedded_json` is for bodies only).
    pub in_query: bool,
    /// Builds the action from its checked options.
    pub(crate) parse: parse::ParseAction,
    /// The table form's schema, documented for rule-file editors; the
    /// options' descriptions are the doc comments of the `*Table` types.
    pub(crate) schema: raw::ActionSchema,
}

/// Every action, in [`ActionKind`] order.
pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        kind: ActionKind::Keep,
        name: "keep",
        options: &[],
        in_query: true,
        parse: |_| Ok(Action::Keep),
        schema: raw::ActionEntry::of::<raw::KeepTable>,
    },
    ActionSpec {
        kind: ActionKind::Drop,
        name: "drop",
        options: &[],
        in_query: true,
        parse: |_| Ok(Action::Drop),
        schema: raw::ActionEntry::of::<raw::DropTable>,
    },
    ActionSpec {
        kind: ActionKind::Pseudonymise,
        name: "pseudonymise",
        options: &["normalise", "scope", "bits"],
        in_query: true,
        parse: parse::pseudonymise,
        schema: raw::ActionEntry::of::<raw::PseudonymiseTable>,
    },
    ActionSpec {
        kind: ActionKind::HashSha256,
        name: "hash_sha256",
        options: &["normalise"],
        in_query: true,
        parse: parse::hash_sha256,
        schema: raw::ActionEntry::of::<raw::HashSha256Table>,
    },
    ActionSpec {
        kind: ActionKind::TruncateIp,
        name: "truncate_ip",
        options: &["v4_prefix", "v6_prefix"],
        in_query: true,
        parse: parse::truncate_ip,
        schema: raw::ActionEntry::of::<raw::TruncateIpTable>,
    },
    ActionSpec {
        kind: ActionKind::CoarsenTime,
        name: "coarsen_time",
        options: &["unit"],
        in_query: true,
        parse: parse::coarsen_time,
        schema: raw::ActionEntry::of::<raw::CoarsenTimeTable>,
    },
    ActionSpec {
        kind: ActionKind::Bucket,
        name: "bucket",
        options: &["bounds"],
        in_query: true,
        parse: parse::bucket,
        schema: raw::ActionEntry::of::<raw::BucketTable>,
    },
    ActionSpec {
        kind: ActionKind::MaskEmail,
        name: "mask_email",
        options: &[],
        in_query: true,
        parse: |_| Ok(Action::MaskEmail),
        schema: raw::ActionEntry::of::<raw::MaskEmailTable>,
    },
    ActionSpec {
        kind: ActionKind::StripQuery,
        name: "strip_query",
        options: &["keep_params"],
        in_query: true,
        parse: parse::strip_query,
        schema: raw::ActionEntry::of::<raw::StripQueryTable>,
    },
    ActionSpec {
        kind: ActionKind::Redact,
        name: "redact",
        options: &["with"],
        in_query: true,
        parse: parse::redact,
        schema: raw::ActionEntry::of::<raw::RedactTable>,
    },
    ActionSpec {
        kind: ActionKind::Scan,
        name: "scan",
        options: &["detect", "replace", "with", "scope", "bits"],
        in_query: true,
        parse: parse::scan,
        schema: raw::ActionEntry::of::<raw::ScanTable>,
    },
    ActionSpec {
        kind: ActionKind::EmbeddedJson,
        name: "embedded_json",
        options: &["encoding"],
        in_query: false,
        parse: parse::embedded_json,
        schema: raw::ActionEntry::of::<raw::EmbeddedJsonTable>,
    },
];

// A row out of place would count one action under another's name.
const _: () = {
    let mut i = 0;
    while i < ACTIONS.len() {
        assert!(
            ACTIONS[i].kind as usize == i,
            "ACTIONS is in ActionKind order"
        );
        i += 1;
    }
};

/// Every action name, in [`ACTIONS`] order (for suggestions and per-action
/// counters).
pub const ACTION_NAMES: &[&str] = &{
    let mut names = [""; ACTIONS.len()];
    let mut i = 0;
    while i < ACTIONS.len() {
        names[i] = ACTIONS[i].name;
        i += 1;
    }
    names
};

/// `drop` in [`ACTION_NAMES`]: where every removed field is counted.
pub const DROP_INDEX: usize = ActionKind::Drop as usize;

/// The action called `name`, if there is one.
pub fn spec_named(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// The options each action accepts (besides `action`).
pub fn options_of(action: &str) -> &'static [&'static str] {
    spec_named(action).map_or(&[], |a| a.options)
}

/// The values of `scan`'s `replace` option.
pub const SCAN_REPLACE_NAMES: &[&str] = &["pseudonymise", "redact"];

/// The values of `embedded_json`'s `encoding` option.
pub const ENCODING_NAMES: &[&str] = &["plain", "base64"];

/// Default detector set for `scan`.
pub fn all_detectors() -> DetectorSet {
    DetectorSet::all()
}
