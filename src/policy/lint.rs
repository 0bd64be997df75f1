//! Privacy lint: rules that are valid but deserve a second look.
//!
//! A lint warning does not stop a file from loading; `scrim check --strict`
//! fails on any. Each warning can be accepted for one selector (or, for a
//! file-level lint, for the file) with an `[[allow]]` entry that keeps the
//! reason in the file:
//!
//! ```toml
//! [[allow]]
//! lint = "P001"
//! selector = "user.ip"
//! reason = "Fraud partner needs the full address (DPA 2024-07, s.3)"
//! ```
//!
//! [`lint`] is a pure function of a compiled policy and its text. It runs
//! when rules are checked or loaded, never on the request path.

use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use super::action::Action;
use super::selector::{self, Segment, Selector};
use super::{CompiledPolicy, FieldRules, PolicyError, Rule};

/// What an `[[allow]]` entry for a lint names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LintScope {
    /// One selector (`selector = "..."` required).
    Selector,
    /// The whole file (no `selector`).
    File,
}

/// A lint: stable code, short name, what it is about.
#[derive(Debug)]
pub struct LintInfo {
    /// Stable code, `P001`.
    pub code: &'static str,
    /// Short name, `personal-keep`.
    pub name: &'static str,
    /// What an `[[allow]]` for it names.
    pub scope: LintScope,
    /// One line: what it warns about.
    pub summary: &'static str,
}

/// `keep` on a key that looks like personal data.
pub const PERSONAL_KEEP: &str = "P001";
/// `hash_sha256`: an unkeyed hash.
pub const UNKEYED_HASH: &str = "P002";
/// `keep` on a selector with `**`.
pub const KEEP_UNDER_GLOBSTAR: &str = "P003";
/// `truncate_ip` keeping more than /24 (IPv4) or /48 (IPv6).
pub const WIDE_IP_PREFIX: &str = "P004";
/// A file without `[[tests]]`.
pub const NO_TESTS: &str = "P005";
/// An `[[allow]]` entry that suppresses nothing.
pub const STALE_ALLOW: &str = "P006";
/// A file without `paths`.
pub const NO_PATHS: &str = "P007";
/// An aggregate `k` below 5.
pub const SMALL_K: &str = "P008";
/// An aggregate group that is not generalised and looks personal.
pub const PERSONAL_GROUP: &str = "P009";
/// Aggregate noise with epsilon above 10.
pub const WEAK_NOISE: &str = "P010";

/// Every lint.
pub const LINTS: &[LintInfo] = &[
    LintInfo {
        code: PERSONAL_KEEP,
        name: "personal-keep",
        scope: LintScope::Selector,
        summary: "`keep` on a key that looks like personal data (email, phone, ip, name, address, user or device id, birth date, location, a personal container...), a credential, a payment or a tracking identifier",
    },
    LintInfo {
        code: UNKEYED_HASH,
        name: "unkeyed-hash",
        scope: LintScope::Selector,
        summary: "`hash_sha256`: anyone with a list of candidate values can reverse it",
    },
    LintInfo {
        code: KEEP_UNDER_GLOBSTAR,
        name: "keep-under-globstar",
        scope: LintScope::Selector,
        summary: "`keep` on a selector with `**`: passes matching fields at any depth, also ones added later",
    },
    LintInfo {
        code: WIDE_IP_PREFIX,
        name: "wide-ip-prefix",
        scope: LintScope::Selector,
        summary: "`truncate_ip` keeping more than /24 of an IPv4 or /48 of an IPv6 address",
    },
    LintInfo {
        code: NO_TESTS,
        name: "no-tests",
        scope: LintScope::File,
        summary: "a rule file without `[[tests]]`",
    },
    LintInfo {
        code: STALE_ALLOW,
        name: "stale-allow",
        scope: LintScope::File,
        summary: "an `[[allow]]` entry that suppresses nothing",
    },
    LintInfo {
        code: NO_PATHS,
        name: "no-paths",
        scope: LintScope::File,
        summary: "a rule file without `paths`: every URL path is only screened for personal data",
    },
    LintInfo {
        code: SMALL_K,
        name: "small-k",
        scope: LintScope::File,
        summary: "an aggregate `k` below 5: a reported group may hide too few people",
    },
    LintInfo {
        code: PERSONAL_GROUP,
        name: "personal-group",
        scope: LintScope::File,
        summary: "an aggregate `group_by` field that is not generalised and looks personal (an IP, a timestamp to the second, an email, a pseudonym)",
    },
    LintInfo {
        code: WEAK_NOISE,
        name: "weak-noise",
        scope: LintScope::File,
        summary: "aggregate noise with `epsilon` above 10: next to no protection",
    },
];

/// The lint with this code or short name (`P001`, `p001`, `personal-keep`).
pub fn find(code_or_name: &str) -> Option<&'static LintInfo> {
    LINTS.iter().find(|l| {
        l.code.eq_ignore_ascii_case(code_or_name) || l.name.eq_ignore_ascii_case(code_or_name)
    })
}

/// One `[[allow]]` entry, checked.
#[derive(Debug, Clone)]
pub struct Allow {
    /// The lint's code.
    pub code: &'static str,
    /// The selector as written (`query:NAME` for a query rule); `None` for a
    /// file-level lint.
    pub selector: Option<String>,
    /// Why it is accepted.
    pub reason: String,
    /// Byte range of the `lint = ...` value.
    pub span: Range<usize>,
    /// 1-based line of the entry.
    pub line: usize,
}

/// The body-field rule written as `text` (compared in canonical form).
pub fn find_field_rule<'r>(fields: &'r FieldRules, text: &str) -> Option<&'r Rule> {
    let sel = Selector::parse(text).ok()?.canonical();
    fields
        .rules()
        .iter()
        .find(|r| r.selector.canonical() == sel)
}

/// The query rule for parameter `name` (compared in canonical form).
pub fn find_query_rule<'r>(query: &'r FieldRules, name: &str) -> Option<&'r Rule> {
    let name = selector::canonical(name);
    query
        .rules()
        .iter()
        .find(|r| selector::canonical(&r.text) == name)
}

/// Where a warning is: a field rule, a query rule, or the file.
#[derive(Clone, Copy)]
enum Target<'r> {
    Field(&'r Rule),
    Query(&'r Rule),
}

impl Target<'_> {
    fn rule(&self) -> &Rule {
        match self {
            Target::Field(r) | Target::Query(r) => r,
        }
    }

    /// How an `[[allow]]` entry names it.
    fn allow_name(&self) -> String {
        match self {
            Target::Field(r) => r.text.clone(),
            Target::Query(r) => format!("query:{}", r.text),
        }
    }

    fn is(&self, allow_selector: &str) -> bool {
        match (self, allow_selector.strip_prefix("query:")) {
            (Target::Query(r), Some(name)) => {
                selector::canonical(&r.text) == selector::canonical(name)
            }
            (Target::Field(r), None) => Selector::parse(allow_selector)
                .is_ok_and(|s| s.canonical() == r.selector.canonical()),
            _ => false,
        }
    }
}

/// Lints a compiled policy; `text` is its file's text (for locations).
/// Returns the warnings that no `[[allow]]` entry accepts, in file order,
/// and a `stale-allow` warning for each entry that accepted nothing.
pub fn lint(policy: &CompiledPolicy, text: &str) -> Vec<PolicyError> {
    let file = policy.source.display().to_string();
    let mut found: Vec<(Option<Target<'_>>, PolicyError)> = Vec::new();
    let targets = policy
        .fields
        .rules()
        .iter()
        .map(Target::Field)
        .chain(policy.query.rules().iter().map(Target::Query));
    for t in targets {
        for (code, message, help) in rule_warnings(t) {
            let allow = format!(
                "or accept it: [[allow]] lint = \"{code}\", selector = \"{}\", reason = \"...\"",
                t.allow_name()
            );
            let e = PolicyError::at(code, &file, text, t.rule().span.clone(), message)
                .with_help(format!("{help}; {allow}"))
                .warning();
            found.push((Some(t), e));
        }
    }
    // File-level lints: (applies, code, message, how to fix).
    let file_lints = [
        (
            policy.tests.is_empty(),
            NO_TESTS,
            "no [[tests]]: nothing shows what this file lets out",
            "add a [[tests]] case with an `input` and an `expect`",
        ),
        (
            // An aggregate recipient sends no path: its reports go to
            // `upstream` exactly.
            policy.paths.is_none() && policy.aggregate.is_none(),
            NO_PATHS,
            "no `paths`: every URL path goes out as written once it passes the personal-data screening, which cannot see user names or internal ids",
            "list the paths the partner documents: paths = [\"/v1/batch\", \"/users/{id}/events\"] with [path_params] id = \"pseudonymise\"",
        ),
    ];
    for (applies, code, message, help) in file_lints {
        if applies {
            let e = PolicyError::whole_file(code, &file, message)
                .with_help(format!(
                    "{help}; or accept it: [[allow]] lint = \"{code}\", reason = \"...\""
                ))
                .warning();
            found.push((None, e));
        }
    }
    found.extend(
        super::aggregate::lints(policy, text)
            .into_iter()
            .map(|e| (None, e)),
    );
    let mut used = vec![false; policy.allows.len()];
    let mut out = Vec::new();
    for (target, e) in found {
        let by = policy.allows.iter().position(|a| {
            a.code == e.code
                && match (&a.selector, target) {
                    (None, None) => true,
                    (Some(s), Some(t)) => t.is(s),
                    _ => false,
                }
        });
        match by {
            Some(i) => used[i] = true,
            None => out.push(e),
        }
    }
    for (i, (a, used)) in policy.allows.iter().zip(used).enumerate() {
        if used {
            continue;
        }
        let what = match &a.selector {
            Some(s) => format!("{} on \"{s}\"", a.code),
            None => a.code.to_string(),
        };
        // A later entry for the same lint and selector never gets to
        // accept anything: the first one does.
        let earlier = policy.allows[..i]
            .iter()
            .find(|b| b.code == a.code && allow_key(b) == allow_key(a));
        let (message, help) = match earlier {
            Some(b) => (
                format!(
                    "[[allow]] for {what} duplicates the entry on line {}",
                    b.line
                ),
                format!(
                    "remove this entry: the one on line {} already accepts it",
                    b.line
                ),
            ),
            None => (
                format!("[[allow]] for {what} suppresses nothing"),
                "remove the entry: the warning it accepted no longer occurs".to_string(),
            ),
        };
        out.push(
            PolicyError::at(STALE_ALLOW, &file, text, a.span.clone(), message)
                .with_help(help)
                .warning(),
        );
    }
    out.sort_by_key(|e| (e.line, e.col));
    out
}

/// What an `[[allow]]` entry names, in canonical form, to compare entries.
#[derive(PartialEq)]
enum AllowKey {
    File,
    Query(String),
    Field(Selector),
    Unparsed(String),
}

fn allow_key(a: &Allow) -> AllowKey {
    match a.selector.as_deref() {
        None => AllowKey::File,
        Some(s) => match s.strip_prefix("query:") {
            Some(name) => AllowKey::Query(selector::canonical(name)),
            None => Selector::parse(s)
                .map(|sel| AllowKey::Field(sel.canonical()))
                .unwrap_or_else(|_| AllowKey::Unparsed(s.to_string())),
        },
    }
}

/// The warnings for one rule: (code, message, how to fix).
fn rule_warnings(t: Target<'_>) -> Vec<(&'static str, String, String)> {
    let rule = t.rule();
    let shown = t.allow_name();
    let mut w = Vec::new();
    match &rule.action {
        Action::Keep => {
            let segments = rule.selector.segments();
            if let Some(term) = personal_selector(segments) {
                w.push((
                    PERSONAL_KEEP,
                    format!("`keep` sends \"{shown}\" verbatim, and it looks like {term}"),
                    match term {
                        CREDENTIAL => "drop it; a credential the partner needs belongs in [headers] set = { NAME = \"env:VAR\" }",
                        CONTAINER => "name the fields to send, each with its action, instead of keeping the container",
                        _ => "pseudonymise, generalise (mask_email, truncate_ip, bucket...) or drop it",
                    }
                    .to_string(),
                ));
            }
            if segments.contains(&Segment::GlobStar) {
                w.push((
                    KEEP_UNDER_GLOBSTAR,
                    format!("`keep` on \"{shown}\" passes matching fields at any depth, also ones added later"),
                    "name the paths to keep without `**`".to_string(),
                ));
            } else if matches!(t, Target::Query(_)) && segments == [Segment::Star] {
                // A query catch-all is the query string's `**`.
                w.push((
                    KEEP_UNDER_GLOBSTAR,
                    format!("`keep` on \"{shown}\" passes every query parameter not named, also ones added later"),
                    "name the parameters to keep".to_string(),
                ));
            }
        }
        Action::HashSha256 { .. } => w.push((
            UNKEYED_HASH,
            format!("\"{shown}\" is hashed without a key: anyone with a list of candidate values can reverse it"),
            "use pseudonymise (keyed HMAC) unless the partner's matching requires plain SHA-256".to_string(),
        )),
        Action::TruncateIp {
            v4_prefix,
            v6_prefix,
        } if *v4_prefix > 24 || *v6_prefix > 48 => {
            let mut kept = Vec::new();
            if *v4_prefix > 24 {
                kept.push(format!("/{v4_prefix} of IPv4 (more than /24)"));
            }
            if *v6_prefix > 48 {
                kept.push(format!("/{v6_prefix} of IPv6 (more than /48)"));
            }
            w.push((
                WIDE_IP_PREFIX,
                format!(
                    "truncate_ip on \"{shown}\" keeps {}: close to the household or device",
                    kept.join(" and ")
                ),
                "use v4_prefix = 24 and v6_prefix = 48 or less".to_string(),
            ));
        }
        _ => {}
    }
    w
}

/// Whether a selector ends on a personal-looking key, and the label of what
/// it looks like. The key checked is the selector's last key: for `a.*` and
/// `a.**`, `a` (the container those keep). The keys above it matter too: a
/// short `em` is an email only under `user_data`, `city` is part of an
/// address only under `address`, a bare `name` under `event` is an event's.
fn personal_selector(segments: &[Segment]) -> Option<&'static str> {
    let keys: Vec<&str> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Key(k) => Some(&**k),
            _ => None,
        })
        .collect();
    let (key, ancestors) = keys.split_last()?;
    personal_key(key, ancestors)
}

/// The personal-data label of `key`, if it looks personal. `ancestors` are
/// the keys it sits under, outermost first. In order:
///
/// 1. under `user_data` (Meta's customer information, at any depth): Meta's
///    short match keys (`em`, `ph`, `fn`, `zp`, `fbp`...);
/// 2. a bare `name` (unless its parent names a thing: `event`, `product`...),
///    `cid`, or an `id` directly under `user`, `customer`, `profile`...;
/// 3. a personal term among the key's words (see [`TERMS`]), unless a
///    qualifier says the key is about the data, not the data
///    (`email_verified`, `is_mobile`, `ip_country`);
/// 4. a whole personal container (`traits`, `user`, `address`, `user_data`...);
/// 5. a field of an address container (`address.city`), except its country
///    and qualifiers (`address.type`).
pub fn personal_key(key: &str, ancestors: &[&str]) -> Option<&'static str> {
    let words = words(key);
    if words.is_empty() {
        return None;
    }
    let joined = words.join("_");
    let above: Vec<Vec<String>> = ancestors.iter().map(|a| self::words(a)).collect();
    let above_joined: Vec<String> = above.iter().map(|w| w.join("_")).collect();

    if above_joined
        .iter()
        .any(|a| a == "user_data" || a == "userdata")
        && let Some(label) = lookup(USER_DATA_KEYS, &joined)
    {
        return Some(label);
    }
    let parent = above.last().map(Vec::as_slice).unwrap_or_default();
    if words.len() == 1 {
        match words[0].as_str() {
            "name" => return (!names_a_thing(parent)).then_some(NAME),
            "cid" => return Some(CLIENT_ID),
            "id" | "uuid" | "guid"
                if parent.len() == 1 && PERSON_CONTAINERS.contains(&parent[0].as_str()) =>
            {
                return Some(USER_ID);
            }
            _ => {}
        }
    }
    if let Some(label) = term(&words) {
        return Some(label);
    }
    if CONTAINERS.contains(&joined.as_str()) {
        return Some(CONTAINER);
    }
    if above_joined
        .iter()
        .any(|a| ADDRESS_CONTAINERS.contains(&a.as_str()))
        && !address_attribute(&words)
    {
        return Some(ADDRESS_PART);
    }
    None
}

fn lookup(table: &[(&str, &'static str)], key: &str) -> Option<&'static str> {
    table.iter().find(|(k, _)| *k == key).map(|(_, l)| *l)
}

/// Whether a parent key names a thing, so a bare `name` under it is the
/// thing's name: `event`, `products`, and `event_properties` (a thing's
/// properties), but not `properties`, `user_properties` or `device` (device
/// names are often the owner's: "Alice's iPhone").
fn names_a_thing(parent: &[String]) -> bool {
    let Some((last, before)) = parent.split_last() else {
        return false;
    };
    if NOT_A_PERSON.contains(&last.as_str()) {
        return true;
    }
    ATTRIBUTE_BAGS.contains(&last.as_str())
        && before.iter().any(|w| NOT_A_PERSON.contains(&w.as_str()))
}

/// Whether a key under an address container is not itself part of the
/// address: its country (coarse) or a qualifier (`type`, `is_default`...).
fn address_attribute(words: &[String]) -> bool {
    let first = words[0].as_str();
    first == "country"
        || PREFIX_QUALIFIERS.contains(&first)
        || (words.len() == 1 && (QUALIFIERS.contains(&first) || first == "default"))
}

/// The label of the first personal term among `words` that no qualifier
/// or exception explains away.
fn term(words: &[String]) -> Option<&'static str> {
    // "_user_email_": words joined and fenced, so "_ip_" matches a whole
    // word ("client_ip", "ipAddress") but never "zip", "tip" or "recipient".
    let hay = format!("_{}_", words.join("_"));
    let mut starts = Vec::with_capacity(words.len());
    let mut at = 1;
    for w in words {
        starts.push(at);
        at += w.len() + 1;
    }
    let word_at = |byte: usize| starts.partition_point(|&s| s <= byte).saturating_sub(1);
    let bytes = hay.as_bytes();
    for m in PATTERNS.find_overlapping_iter(&hay) {
        let label = TERMS[m.pattern().as_usize()].1;
        let first = m.start() + usize::from(bytes[m.start()] == b'_');
        let last = m.end() - 1 - usize::from(bytes[m.end() - 1] == b'_');
        let (a, mut b) = (word_at(first), word_at(last.max(first)));
        // `email_address_verified`, `phone_number_type`: the qualifier
        // comes after the term's own tail.
        while words
            .get(b + 1)
            .is_some_and(|w| TERM_TAILS.contains(&w.as_str()))
        {
            b += 1;
        }
        if !qualified(words, a, b, label) && !exempt(words, a, b) {
            return Some(label);
        }
    }
    None
}

/// Whether the term in `words[a..=b]` is qualified into something about
/// the data rather than the data: `is_`, `has_`, `num_`, `n_` before it
/// (`is_mobile`, `has_email`), or a qualifier right after it
/// (`email_verified`, `emails_sent`, `phone_type`, `token_count`) with no
/// value word later (`email_sent_to` is an address). After an IP or a
/// location, a coarse place derived from it too (`ip_country`).
fn qualified(words: &[String], a: usize, b: usize, label: &str) -> bool {
    if a > 0 && PREFIX_QUALIFIERS.contains(&words[0].as_str()) {
        return true;
    }
    let Some(next) = words.get(b + 1).map(String::as_str) else {
        return false;
    };
    let qualifier = QUALIFIERS.contains(&next)
        || ((label == IP || label == LOCATION) && DERIVED_PLACES.contains(&next));
    qualifier
        && !words[b + 2..]
            .iter()
            .any(|w| VALUE_WORDS.contains(&w.as_str()))
}

/// Whether the term in `words[a..=b]` is part of a known innocent phrase
/// (`contract_address`, `tel_aviv`).
fn exempt(words: &[String], a: usize, b: usize) -> bool {
    EXEMPT_PHRASES.iter().any(|p| {
        words
            .windows(p.len())
            .enumerate()
            .any(|(k, w)| k <= a && b < k + p.len() && w.iter().zip(*p).all(|(x, y)| x == y))
    })
}

/// Splits a key into lower-case words at separators, at camelCase humps and
/// between letters and digits, after removing invisible characters (so
/// `User_Email`, `userEmail`, `user-email` and `user\u{200b}Email` all give
/// `["user", "email"]`). Each word is in [`selector::canonical`] form.
fn words(key: &str) -> Vec<String> {
    let chars: Vec<char> = key
        .chars()
        .filter(|&c| !crate::chars::is_invisible(c) && !c.is_control())
        .collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        if !cur.is_empty() {
            let w = selector::canonical(cur);
            if !w.is_empty() {
                out.push(w);
            }
            cur.clear();
        }
    };
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            flush(&mut cur, &mut out);
            continue;
        }
        if let Some(&prev) = i.checked_sub(1).and_then(|p| chars.get(p))
            && !cur.is_empty()
        {
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let hump =
                c.is_uppercase() && (prev.is_lowercase() || (prev.is_uppercase() && next_lower));
            let digit_edge = c.is_numeric() != prev.is_numeric();
            if hump || digit_edge {
                flush(&mut cur, &mut out);
            }
        }
        cur.push(c);
    }
    flush(&mut cur, &mut out);
    out
}

const EMAIL: &str = "an email address";
const PHONE: &str = "a phone number";
const IP: &str = "an IP address";
const NAME: &str = "a name";
const ADDRESS: &str = "an address";
const ADDRESS_PART: &str = "part of an address";
const USER_ID: &str = "a user id";
const CLIENT_ID: &str = "a client id";
const DEVICE_ID: &str = "a device id";
const NATIONAL_ID: &str = "a national id";
const BIRTH: &str = "a birth date";
const LOCATION: &str = "a location";
const GENDER: &str = "a gender";
const USER_AGENT: &str = "a user agent (a device fingerprint)";
const CREDENTIAL: &str = "a credential";
const PAYMENT: &str = "a payment identifier";
const TRACKING: &str = "a tracking identifier";
const SESSION: &str = "a session id";
const CONTAINER: &str = "a container of personal data";

/// Meta Conversions API customer information keys, personal under
/// `user_data` (where their short names are unambiguous).
const USER_DATA_KEYS: &[(&str, &str)] = &[
    ("em", EMAIL),
    ("ph", PHONE),
    ("fn", NAME),
    ("ln", NAME),
    ("db", BIRTH),
    ("ge", GENDER),
    ("zp", ADDRESS_PART),
    ("ct", ADDRESS_PART),
    ("st", ADDRESS_PART),
    ("country", ADDRESS_PART),
    ("external_id", USER_ID),
    ("anon_id", USER_ID),
    ("subscription_id", USER_ID),
    ("page_scoped_user_id", USER_ID),
    ("lead_id", TRACKING),
    ("fbp", TRACKING),
    ("fbc", TRACKING),
    ("ctwa_clid", TRACKING),
    ("madid", DEVICE_ID),
    ("client_ip_address", IP),
    ("client_user_agent", USER_AGENT),
];

/// Keys that hold a person's data as a whole (compared as joined words:
/// `userData` is `user_data`).
const CONTAINERS: &[&str] = &[
    "traits",
    "user_traits",
    "user_properties",
    "userproperties",
    "user",
    "users",
    "customer",
    "customers",
    "person",
    "people",
    "profile",
    "profiles",
    "contact",
    "contacts",
    "member",
    "visitor",
    "address",
    "addresses",
    "billing",
    "billing_address",
    "billing_details",
    "shipping_address",
    "home_address",
    "mailing_address",
    "postal_address",
    "delivery_address",
    "user_data",
    "userdata",
    "customer_data",
    "personal_data",
    "personal_info",
    "pii",
];

/// Containers whose fields are parts of an address.
const ADDRESS_CONTAINERS: &[&str] = &[
    "address",
    "addresses",
    "addr",
    "billing_address",
    "shipping_address",
    "home_address",
    "mailing_address",
    "postal_address",
    "delivery_address",
];

/// Parents under which a bare `id` is a person's id.
const PERSON_CONTAINERS: &[&str] = &[
    "user",
    "users",
    "customer",
    "customers",
    "person",
    "people",
    "profile",
    "contact",
    "member",
    "visitor",
];

/// A first word that makes the key a flag or a count about the data:
/// `is_mobile`, `has_email`, `num_emails`, `n_phones`.
const PREFIX_QUALIFIERS: &[&str] = &["is", "has", "can", "num", "n", "count", "total"];

/// A word right after a term that makes the key about the data, not the
/// data: `email_verified`, `email_opt_in`, `emails_sent`, `phone_type`,
/// `mobile_app`, `email_domain` (the domain of an address is coarse),
/// `token_count`. Not `hash`: a hashed email is reversible with a list of
/// addresses and still warns.
const QUALIFIERS: &[&str] = &[
    "verified",
    "unverified",
    "confirmed",
    "validated",
    "valid",
    "opt",
    "optin",
    "optout",
    "opted",
    "consent",
    "consented",
    "subscribed",
    "unsubscribed",
    "marketing",
    "count",
    "counts",
    "sent",
    "opened",
    "clicked",
    "bounced",
    "delivered",
    "status",
    "type",
    "kind",
    "format",
    "template",
    "templates",
    "domain",
    "enabled",
    "disabled",
    "provided",
    "present",
    "available",
    "changed",
    "length",
    "app",
    "os",
    "web",
    "browser",
    "platform",
    "version",
    "sdk",
    "view",
];

/// Words that continue a term (`email_address`, `phone_number`), skipped
/// before looking for a qualifier.
const TERM_TAILS: &[&str] = &["address", "addr", "number", "no", "id", "ids"];

/// After an IP address or a location: a coarse place derived from it
/// (`ip_country`, `ip_city`, `geo_region`).
const DERIVED_PLACES: &[&str] = &[
    "country",
    "city",
    "region",
    "continent",
    "subcontinent",
    "timezone",
    "tz",
    "asn",
    "isp",
    "org",
];

/// Words after a qualifier that make the key a value again:
/// `email_sent_to`, `email_verified_address`.
const VALUE_WORDS: &[&str] = &["to", "from", "address", "addr", "value", "raw"];

/// Phrases in which a term is innocent (word sequences).
const EXEMPT_PHRASES: &[&[&str]] = &[
    &["contract", "address"], // a blockchain contract
    &["token", "address"],    // a blockchain token contract
    &["tel", "aviv"],
];

/// Parents that are a bag of attributes: a thing's (`event_properties`) or
/// anyone's (`properties`, `user_properties`), depending on the word before.
const ATTRIBUTE_BAGS: &[&str] = &[
    "properties",
    "property",
    "props",
    "params",
    "param",
    "parameters",
    "attributes",
    "attrs",
    "data",
    "details",
    "info",
];

/// Parent keys under which a bare `name` names a thing, not a person.
const NOT_A_PERSON: &[&str] = &[
    "event",
    "events",
    "product",
    "products",
    "item",
    "items",
    "page",
    "pages",
    "screen",
    "app",
    "application",
    "campaign",
    "campaigns",
    "experiment",
    "experiments",
    "variant",
    "feature",
    "plan",
    "category",
    "content",
    "promotion",
    "promotions",
    "list",
    "step",
    "action",
    "metric",
    "file",
    "os",
    "browser",
    "library",
    "sdk",
    "tag",
    "tags",
    "company",
    "organization",
    "organisation",
    "team",
    "project",
    "country",
    "region",
    "city",
    "currency",
    "source",
    "medium",
];

/// Terms, as fenced word sequences (`_first_name_`), half-fenced
/// (`password_`: also `userpassword`, not `passwordless`) or, where no
/// innocent word contains them, bare (`email` also matches `useremail`);
/// with the label shown in the warning.
const TERMS: &[(&str, &str)] = &[
    ("email", EMAIL),
    ("_e_mail_", EMAIL),
    ("_mail_", EMAIL),
    ("_phone_", PHONE),
    ("_phones_", PHONE),
    ("phonenumber", PHONE),
    ("telephone", PHONE),
    ("cellphone", PHONE),
    ("_mobile_", PHONE),
    ("_tel_", PHONE),
    ("msisdn", PHONE),
    ("_ip_", IP),
    ("_ips_", IP),
    ("_ipv_", IP),
    ("ipaddr", IP),
    ("_userip_", IP),
    ("_clientip_", IP),
    ("_remoteip_", IP),
    ("_first_name_", NAME),
    ("_last_name_", NAME),
    ("_full_name_", NAME),
    ("_given_name_", NAME),
    ("_family_name_", NAME),
    ("_middle_name_", NAME),
    ("_maiden_name_", NAME),
    ("_user_name_", NAME),
    ("_display_name_", NAME),
    ("_customer_name_", NAME),
    ("_contact_name_", NAME),
    ("_billing_name_", NAME),
    ("_shipping_name_", NAME),
    ("_recipient_name_", NAME),
    ("_nick_name_", NAME),
    ("_card_holder_", NAME),
    ("firstname", NAME),
    ("lastname", NAME),
    ("fullname", NAME),
    ("givenname", NAME),
    ("familyname", NAME),
    ("username", NAME),
    ("surname", NAME),
    ("nickname", NAME),
    ("cardholder", NAME),
    ("_address_", ADDRESS),
    ("_addr_", ADDRESS),
    ("_street_", ADDRESS),
    ("postcode", ADDRESS),
    ("_post_code_", ADDRESS),
    ("_postal_", ADDRESS),
    ("postalcode", ADDRESS),
    ("_zip_", ADDRESS),
    ("zipcode", ADDRESS),
    ("_user_id_", USER_ID),
    ("userid", USER_ID),
    ("_uid_", USER_ID),
    ("_distinct_id_", USER_ID),
    ("distinctid", USER_ID),
    ("_customer_id_", USER_ID),
    ("customerid", USER_ID),
    ("_account_id_", USER_ID),
    ("accountid", USER_ID),
    ("_member_id_", USER_ID),
    ("memberid", USER_ID),
    ("_visitor_id_", USER_ID),
    ("visitorid", USER_ID),
    ("_person_id_", USER_ID),
    ("personid", USER_ID),
    ("_profile_id_", USER_ID),
    ("profileid", USER_ID),
    ("_contact_id_", USER_ID),
    ("_subscriber_id_", USER_ID),
    ("_external_id_", USER_ID),
    ("externalid", USER_ID),
    ("_anonymous_id_", USER_ID),
    ("anonymousid", USER_ID),
    ("_client_id_", CLIENT_ID),
    ("clientid", CLIENT_ID),
    ("_device_id_", DEVICE_ID),
    ("deviceid", DEVICE_ID),
    ("_android_id_", DEVICE_ID),
    ("androidid", DEVICE_ID),
    ("_advertising_id_", DEVICE_ID),
    ("advertisingid", DEVICE_ID),
    ("_idfa_", DEVICE_ID),
    ("_idfv_", DEVICE_ID),
    ("_gaid_", DEVICE_ID),
    ("_adid_", DEVICE_ID),
    ("_imei_", DEVICE_ID),
    ("_ssn_", NATIONAL_ID),
    ("_social_security_", NATIONAL_ID),
    ("passport", NATIONAL_ID),
    ("_national_id_", NATIONAL_ID),
    ("_dob_", BIRTH),
    ("birth", BIRTH),
    ("_lat_", LOCATION),
    ("_lon_", LOCATION),
    ("_lng_", LOCATION),
    ("latitude", LOCATION),
    ("longitude", LOCATION),
    ("_geo_", LOCATION),
    ("geolocation", LOCATION),
    ("_gps_", LOCATION),
    ("_coordinates_", LOCATION),
    ("password_", CREDENTIAL),
    ("passwd", CREDENTIAL),
    ("_pwd_", CREDENTIAL),
    ("passcode", CREDENTIAL),
    ("_token_", CREDENTIAL),
    ("accesstoken", CREDENTIAL),
    ("refreshtoken", CREDENTIAL),
    ("authtoken", CREDENTIAL),
    ("_api_key_", CREDENTIAL),
    ("apikey", CREDENTIAL),
    ("_private_key_", CREDENTIAL),
    ("privatekey", CREDENTIAL),
    ("_access_key_", CREDENTIAL),
    ("secret_", CREDENTIAL),
    ("_authorization_", CREDENTIAL),
    ("_cvv_", CREDENTIAL),
    ("_cvc_", CREDENTIAL),
    ("_session_id_", SESSION),
    ("sessionid", SESSION),
    ("_iban_", PAYMENT),
    ("_card_number_", PAYMENT),
    ("cardnumber", PAYMENT),
    ("_card_no_", PAYMENT),
    ("_pan_", PAYMENT),
    ("_credit_card_", PAYMENT),
    ("creditcard", PAYMENT),
    ("_account_number_", PAYMENT),
    ("accountnumber", PAYMENT),
    ("_bank_account_", PAYMENT),
    ("_gclid_", TRACKING),
    ("_fbclid_", TRACKING),
    ("_msclkid_", TRACKING),
    ("_ttclid_", TRACKING),
    ("_dclid_", TRACKING),
    ("_wbraid_", TRACKING),
    ("_gbraid_", TRACKING),
    ("_yclid_", TRACKING),
    ("_twclid_", TRACKING),
    ("_click_id_", TRACKING),
    ("clickid", TRACKING),
];

static PATTERNS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::new(TERMS.iter().map(|(p, _)| p)).expect("the terms are a valid automaton")
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The label for `keep` on this selector, if any.
    fn p001(selector: &str) -> Option<&'static str> {
        personal_selector(Selector::parse(selector).unwrap().segments())
    }

    fn assert_personal(selectors: &[&str]) {
        for s in selectors {
            assert!(p001(s).is_some(), "{s} should look personal");
        }
    }

    fn assert_innocent(selectors: &[&str]) {
        for s in selectors {
            assert_eq!(p001(s), None, "{s} should not look personal");
        }
    }

    #[test]
    fn words_split_at_humps_separators_and_digits() {
        assert_eq!(words("User_Email"), ["user", "email"]);
        assert_eq!(words("userEmail"), ["user", "email"]);
        assert_eq!(words("user-email"), ["user", "email"]);
        assert_eq!(words("user\u{200b}Email"), ["user", "email"]);
        assert_eq!(words("IPAddress"), ["ip", "address"]);
        assert_eq!(words("ipv4"), ["ipv", "4"]);
        assert_eq!(words("address_line1"), ["address", "line", "1"]);
        assert_eq!(words("$distinct_id"), ["distinct", "id"]);
    }

    #[test]
    fn personal_keys_are_found_in_every_spelling() {
        assert_personal(&[
            "email",
            "User_Email",
            "userEmail",
            "user-email",
            "USER_EMAIL",
            "useremail",
            "e-mail",
            "phone",
            "phoneNumber",
            "mobile",
            "tel",
            "ip",
            "client_ip",
            "ipAddress",
            "ip_address",
            "ipv6",
            "first_name",
            "lastName",
            "fullname",
            "surname",
            "address",
            "street",
            "postcode",
            "zip",
            "zipCode",
            "user_id",
            "userId",
            "uid",
            "device_id",
            "idfa",
            "gaid",
            "adid",
            "android_id",
            "ssn",
            "passport",
            "dob",
            "birthDate",
            "date_of_birth",
            "lat",
            "lon",
            "latitude",
            "longitude",
            "geo",
            "client_id",
            "anonymousId",
            "name",
            "cid",
        ]);
    }

    #[test]
    fn innocent_keys_are_not_flagged() {
        assert_innocent(&[
            "tip",
            "recipient",
            "shipping",
            "shipping_method",
            "ship",
            "skip",
            "description",
            "event_name",
            "os_name",
            "page_name",
            "plan",
            "currency",
            "country",
            "region",
            "latency",
            "longest_streak",
            "telemetry",
            "hotel",
            "mobility",
            "timestamp",
            "event",
            "id",
            "tipping_point",
            "zipper",
            "equip",
            "ipsum",
            "chip_id",
            "device_model",
            "country_id",
            "geometry",
            "secretary",
            "passwordless",
            "props.*",
            "**",
        ]);
    }

    #[test]
    fn meta_short_keys_are_personal_under_user_data() {
        for key in [
            "em",
            "ph",
            "fn",
            "ln",
            "db",
            "ge",
            "zp",
            "ct",
            "st",
            "country",
            "external_id",
            "fbp",
            "fbc",
            "client_user_agent",
            "client_ip_address",
            "madid",
            "anon_id",
            "lead_id",
            "subscription_id",
        ] {
            for prefix in [
                "user_data",
                "data.user_data",
                "userData",
                "batch.*.user_data",
            ] {
                let s = format!("{prefix}.{key}");
                assert!(p001(&s).is_some(), "{s} should look personal");
            }
        }
        assert_eq!(p001("data.user_data.em"), Some(EMAIL));
        assert_eq!(p001("user_data.ph"), Some(PHONE));
        assert_eq!(p001("data.user_data.fbc"), Some(TRACKING));
        assert_personal(&["data.user_data.*", "data.user_data.**", "user_data"]);
        // Elsewhere the short keys are not personal.
        assert_innocent(&[
            "em",
            "st",
            "ct",
            "country",
            "custom_data.ct",
            "data.custom_data.value",
            "consent.ad_user_data",
            "data.user_data_version",
        ]);
    }

    #[test]
    fn identifiers_are_personal_anywhere() {
        assert_personal(&[
            "distinct_id",
            "$distinct_id",
            "properties.distinct_id",
            "distinctId",
            "customer_id",
            "customerId",
            "account_id",
            "member_id",
            "anonymous_id",
            "anonymousId",
            "visitor_id",
            "person_id",
            "profile_id",
            "external_id",
            "externalId",
            "user.id",
            "customer.id",
        ]);
        assert_eq!(p001("$distinct_id"), Some(USER_ID));
        assert_innocent(&["product.id", "event.id", "order_id", "id"]);
    }

    #[test]
    fn whole_personal_containers_kept_are_personal() {
        for c in [
            "traits",
            "user_properties",
            "userProperties",
            "user",
            "customer",
            "person",
            "profile",
            "contact",
            "address",
            "billing",
            "shipping_address",
            "billing_address",
            "user_data",
        ] {
            for s in [
                c.to_string(),
                format!("{c}.*"),
                format!("{c}.**"),
                format!("context.{c}"),
            ] {
                assert!(p001(&s).is_some(), "{s} should look personal");
            }
        }
        assert_eq!(p001("context.traits.*"), Some(CONTAINER));
        // A field in them is judged by its own key.
        assert_innocent(&[
            "traits.plan",
            "user_properties.plan",
            "user.plan",
            "events.user_properties.plan",
            "user_properties.customer_tier.value",
            "billing.plan",
            "billing.currency",
            "user.*.plan",
        ]);
    }

    #[test]
    fn a_bare_name_is_a_thing_s_only_under_a_thing() {
        assert_innocent(&[
            "events.name",
            "product.name",
            "context.app.name",
            "context.os.name",
            "context.library.name",
            "event_properties.name",
            "events.*.name",
        ]);
        assert_personal(&[
            "name",
            "user.name",
            "user_properties.name",
            "properties.name",
            "context.device.name",
            "device.name",
            "traits.name",
        ]);
        assert_eq!(p001("context.device.name"), Some(NAME));
    }

    #[test]
    fn spelling_variants() {
        assert_personal(&[
            "cellphone",
            "cell_phone",
            "userip",
            "clientip",
            "userIp",
            "nickname",
            "billing_name",
            "cardholder_name",
            "cardholderName",
            "shipping_address.line1",
            "billing_address.postal_code",
            "address.city",
            "address.street",
            "user.address.line2",
            "shipping_address.*.line1",
        ]);
        assert_eq!(p001("address.city"), Some(ADDRESS_PART));
        // An address's country is coarse; its type or status is about it.
        assert_innocent(&[
            "address.country",
            "address.country_code",
            "shipping_address.type",
            "address.is_default",
            "city",
        ]);
    }

    #[test]
    fn secrets_and_direct_identifiers() {
        for (keys, label) in [
            (
                &[
                    "password",
                    "user_password",
                    "newPassword",
                    "passwd",
                    "token",
                    "access_token",
                    "accessToken",
                    "id_token",
                    "refresh_token",
                    "api_key",
                    "apiKey",
                    "apikey",
                    "secret",
                    "client_secret",
                    "api_secret",
                    "cvv",
                ][..],
                CREDENTIAL,
            ),
            (
                &["iban", "card_number", "cardNumber", "cardnumber", "pan"][..],
                PAYMENT,
            ),
            (&["session_id", "sessionId", "sessionid"][..], SESSION),
            (
                &[
                    "gclid",
                    "fbclid",
                    "msclkid",
                    "ttclid",
                    "dclid",
                    "wbraid",
                    "gbraid",
                    "page.gclid",
                ][..],
                TRACKING,
            ),
        ] {
            for k in keys {
                assert_eq!(p001(k), Some(label), "{k}");
            }
        }
        // Counts and types, plural words, innocent phrases.
        assert_innocent(&[
            "token_count",
            "max_tokens",
            "tokens",
            "prompt_tokens",
            "token_type",
            "secretary_id",
            "japan",
        ]);
    }

    #[test]
    fn qualifiers_make_a_key_about_the_data_not_the_data() {
        assert_innocent(&[
            "is_mobile",
            "mobile_app",
            "mobile_os",
            "email_verified",
            "email_opt_in",
            "email_optIn",
            "emails_sent",
            "email_count",
            "has_email",
            "num_emails",
            "n_phones",
            "email_domain",
            "email_template",
            "phone_type",
            "email_address_verified",
            "phone_number_type",
            "has_user_email",
            "ip_country",
            "ip_city",
            "ip_region",
            "geo_country",
            "contract_address",
            "token_address",
            "tel_aviv",
            "telAviv",
        ]);
        // The term itself, a value word after the qualifier, a hash, or a
        // derived place after something that is not an IP or a location.
        assert_personal(&[
            "mobile",
            "mobile_number",
            "email",
            "email_sent_to",
            "email_verified_address",
            "email_hash",
            "hashed_email",
            "email_sha256",
            "phone_city",
            "wallet_address",
            "tel",
            "ip_lat",
        ]);
        assert_eq!(p001("email_hash"), Some(EMAIL));
    }

    #[test]
    fn wildcards_take_the_key_they_stand_under() {
        assert!(p001("address.*").is_some());
        assert!(p001("geo.**").is_some());
        assert!(p001("props.*").is_none());
        assert!(p001("**").is_none());
        assert!(p001("user.email").is_some());
        assert!(p001("*.email").is_some());
        assert!(p001("events.params.*").is_none());
    }

    #[test]
    fn codes_and_names_are_found() {
        assert_eq!(find("P001").map(|l| l.name), Some("personal-keep"));
        assert_eq!(find("p003").map(|l| l.name), Some("keep-under-globstar"));
        assert_eq!(find("unkeyed-hash").map(|l| l.code), Some("P002"));
        assert!(find("P999").is_none());
        let mut codes: Vec<&str> = LINTS.iter().map(|l| l.code).collect();
        codes.dedup();
        assert_eq!(codes.len(), LINTS.len());
    }
}
