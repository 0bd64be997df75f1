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

/// Every lint.
pub const LINTS: &[LintInfo] = &[
    LintInfo {
        code: PERSONAL_KEEP,
        name: "personal-keep",
        scope: LintScope::Selector,
        summary: "`keep` on a key that looks like personal data (email, phone, ip, name, address, user or device id, birth date, location...)",
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
    if policy.tests.is_empty() {
        let e = PolicyError::whole_file(
            NO_TESTS,
            &file,
            "no [[tests]]: nothing shows what this file lets out",
        )
        .with_help("add a [[tests]] case with an `input` and an `expect`; or accept it: [[allow]] lint = \"P005\", reason = \"...\"")
        .warning();
        found.push((None, e));
    }
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
    for (a, used) in policy.allows.iter().zip(used) {
        if !used {
            let what = match &a.selector {
                Some(s) => format!("{} on \"{s}\"", a.code),
                None => a.code.to_string(),
            };
            out.push(
                PolicyError::at(
                    STALE_ALLOW,
                    &file,
                    text,
                    a.span.clone(),
                    format!("[[allow]] for {what} suppresses nothing"),
                )
                .with_help("remove the entry: the warning it accepted no longer occurs")
                .warning(),
            );
        }
    }
    out.sort_by_key(|e| (e.line, e.col));
    out
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
                    format!("`keep` sends \"{shown}\" verbatim, and it looks like personal data ({term})"),
                    "pseudonymise, generalise (mask_email, truncate_ip, bucket...) or drop it".to_string(),
                ));
            }
            if segments.contains(&Segment::GlobStar) {
                w.push((
                    KEEP_UNDER_GLOBSTAR,
                    format!("`keep` on \"{shown}\" passes matching fields at any depth, also ones added later"),
                    "name the paths to keep without `**`".to_string(),
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

/// Whether a selector ends on a personal-looking key: its last segment, or,
/// when it ends with `*` or `**`, the key those stand under. Returns the
/// term that matched.
fn personal_selector(segments: &[Segment]) -> Option<&'static str> {
    let last_key = segments
        .iter()
        .rposition(|s| matches!(s, Segment::Key(_)))?;
    let Segment::Key(key) = &segments[last_key] else {
        return None;
    };
    let parent = segments[..last_key].iter().rev().find_map(|s| match s {
        Segment::Key(k) => Some(&**k),
        _ => None,
    });
    personal_key(key, parent)
}

/// The personal-data term a key looks like, if any. `parent` is the key it
/// sits under, when known: a bare `name` under `event` is an event name.
pub fn personal_key(key: &str, parent: Option<&str>) -> Option<&'static str> {
    let words = words(key);
    if words.is_empty() {
        return None;
    }
    if words.len() == 1 && BARE_ONLY.iter().any(|t| words[0] == *t) {
        let parent_words = parent.map(self::words).unwrap_or_default();
        let thing = parent_words
            .last()
            .is_some_and(|p| NOT_A_PERSON.contains(&p.as_str()));
        return if thing { None } else { Some(label(&words[0])) };
    }
    // "_user_email_": words joined and fenced, so "_ip_" matches a whole
    // word ("client_ip", "ipAddress") but never "zip", "tip" or "recipient".
    let hay = format!("_{}_", words.join("_"));
    PATTERNS.find(&hay).map(|m| TERMS[m.pattern().as_usize()].1)
}

fn label(word: &str) -> &'static str {
    BARE_ONLY_LABELS
        .iter()
        .find(|(w, _)| *w == word)
        .map_or("personal data", |(_, l)| l)
}

/// Splits a key into lower-case words at separators, at camelCase humps and
/// between letters and digits, after removing invisible characters (so
/// `User_Email`, `userEmail`, `user-email` and `user\u{200b}Email` all give
/// `["user", "email"]`). Each word is in [`selector::canonical`] form.
fn words(key: &str) -> Vec<String> {
    let chars: Vec<char> = key
        .chars()
        .filter(|&c| !selector::is_invisible(c) && !c.is_control())
        .collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(selector::canonical(cur));
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

/// Words that are personal only as the whole key (`name`, not `event_name`).
const BARE_ONLY: &[&str] = &["name", "cid"];
const BARE_ONLY_LABELS: &[(&str, &str)] = &[("name", "a name"), ("cid", "a client id")];

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
    "property",
    "properties",
    "param",
    "params",
    "file",
    "device",
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

/// Terms, as fenced word sequences (`_first_name_`) or, where no innocent
/// word contains them, bare (`email` also matches `useremail`); with the
/// label shown in the warning.
const TERMS: &[(&str, &str)] = &[
    ("email", "an email address"),
    ("_e_mail_", "an email address"),
    ("_mail_", "an email address"),
    ("_phone_", "a phone number"),
    ("phonenumber", "a phone number"),
    ("telephone", "a phone number"),
    ("_mobile_", "a phone number"),
    ("_tel_", "a phone number"),
    ("msisdn", "a phone number"),
    ("_ip_", "an IP address"),
    ("_ipv_", "an IP address"),
    ("ipaddr", "an IP address"),
    ("_first_name_", "a name"),
    ("_last_name_", "a name"),
    ("_full_name_", "a name"),
    ("_given_name_", "a name"),
    ("_family_name_", "a name"),
    ("_middle_name_", "a name"),
    ("_user_name_", "a name"),
    ("_display_name_", "a name"),
    ("_customer_name_", "a name"),
    ("_contact_name_", "a name"),
    ("firstname", "a name"),
    ("lastname", "a name"),
    ("fullname", "a name"),
    ("givenname", "a name"),
    ("familyname", "a name"),
    ("username", "a name"),
    ("surname", "a name"),
    ("_address_", "an address"),
    ("_addr_", "an address"),
    ("_street_", "an address"),
    ("postcode", "an address"),
    ("_post_code_", "an address"),
    ("_postal_", "an address"),
    ("postalcode", "an address"),
    ("_zip_", "an address"),
    ("zipcode", "an address"),
    ("_user_id_", "a user id"),
    ("userid", "a user id"),
    ("_uid_", "a user id"),
    ("_client_id_", "a client id"),
    ("clientid", "a client id"),
    ("_anonymous_id_", "a user id"),
    ("anonymousid", "a user id"),
    ("_device_id_", "a device id"),
    ("deviceid", "a device id"),
    ("_android_id_", "a device id"),
    ("androidid", "a device id"),
    ("_advertising_id_", "a device id"),
    ("advertisingid", "a device id"),
    ("_idfa_", "a device id"),
    ("_idfv_", "a device id"),
    ("_gaid_", "a device id"),
    ("_adid_", "a device id"),
    ("_imei_", "a device id"),
    ("_ssn_", "a national id"),
    ("_social_security_", "a national id"),
    ("passport", "a national id"),
    ("_national_id_", "a national id"),
    ("_dob_", "a birth date"),
    ("birth", "a birth date"),
    ("_lat_", "a location"),
    ("_lon_", "a location"),
    ("_lng_", "a location"),
    ("latitude", "a location"),
    ("longitude", "a location"),
    ("_geo_", "a location"),
    ("geolocation", "a location"),
    ("_gps_", "a location"),
    ("_coordinates_", "a location"),
];

static PATTERNS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::new(TERMS.iter().map(|(p, _)| p)).expect("the terms are a valid automaton")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_at_humps_separators_and_digits() {
        assert_eq!(words("User_Email"), ["user", "email"]);
        assert_eq!(words("userEmail"), ["user", "email"]);
        assert_eq!(words("user-email"), ["user", "email"]);
        assert_eq!(words("user\u{200b}Email"), ["user", "email"]);
        assert_eq!(words("IPAddress"), ["ip", "address"]);
        assert_eq!(words("ipv4"), ["ipv", "4"]);
        assert_eq!(words("address_line1"), ["address", "line", "1"]);
    }

    #[test]
    fn personal_keys_are_found_in_every_spelling() {
        for key in [
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
        ] {
            assert!(
                personal_key(key, None).is_some(),
                "{key} should look personal"
            );
        }
    }

    #[test]
    fn innocent_keys_are_not_flagged() {
        for key in [
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
            "session_id",
            "geometry",
        ] {
            assert_eq!(
                personal_key(key, None),
                None,
                "{key} should not look personal"
            );
        }
    }

    #[test]
    fn a_bare_name_under_a_thing_is_not_a_person() {
        assert_eq!(personal_key("name", Some("events")), None);
        assert_eq!(personal_key("name", Some("product")), None);
        assert_eq!(personal_key("name", Some("user")), Some("a name"));
        assert_eq!(personal_key("name", None), Some("a name"));
    }

    #[test]
    fn wildcards_take_the_key_they_stand_under() {
        let sel = |t: &str| Selector::parse(t).unwrap();
        assert!(personal_selector(sel("address.*").segments()).is_some());
        assert!(personal_selector(sel("geo.**").segments()).is_some());
        assert!(personal_selector(sel("props.*").segments()).is_none());
        assert!(personal_selector(sel("**").segments()).is_none());
        assert!(personal_selector(sel("user.email").segments()).is_some());
        assert!(personal_selector(sel("address.city").segments()).is_none());
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
