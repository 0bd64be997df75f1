//! `mask_email`: keep only the domain of an email address.

/// True for a DNS-like domain: at least two non-empty labels separated by `.`,
/// each made of letters and digits (any script) and inner `-`, at most 63
/// bytes; the last label (TLD) is alphabetic with at least two characters, or
/// an `xn--` punycode label.
pub(super) fn is_valid_domain(domain: &str) -> bool {
    let mut labels = 0usize;
    let mut last = "";
    for label in domain.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_alphanumeric() || c == '-')
        {
            return false;
        }
        labels += 1;
        last = label;
    }
    if labels < 2 {
        return false;
    }
    let punycode = last.len() > 4
        && last
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("xn--"));
    punycode || (last.chars().count() >= 2 && last.chars().all(char::is_alphabetic))
}

/// Keeps only the domain of an email address, lower-cased:
/// `"Alice@Example.COM"` gives `"example.com"`.
///
/// The value must contain exactly one `@`, a non-empty local part, and no
/// whitespace or control characters anywhere. The domain must be a host name
/// with at least two labels (`example.com`): labels of letters and digits of
/// any script and inner hyphens, at most 63 bytes each, no empty label (so no
/// trailing dot), and an alphabetic top-level label of two or more characters
/// (or an `xn--` label). Address literals (`bob@[192.0.2.1]`), numeric
/// "domains" (`bob@192.0.2.1`) and `localhost` are `None`, so an IP address
/// never passes through this action. Lower-casing is Unicode-aware
/// (`str::to_lowercase`); no IDNA conversion is done.
#[must_use]
pub fn mask_email(value: &str) -> Option<String> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = value.split_once('@')?;
    if local.is_empty() || domain.contains('@') || !is_valid_domain(domain) {
        return None;
    }
    Some(domain.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lowercased_domain() {
        assert_eq!(
            mask_email("Alice@Example.COM").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            mask_email("a.b+tag@mail.example.co.uk").as_deref(),
            Some("mail.example.co.uk")
        );
        assert_eq!(mask_email("x@b-c.de").as_deref(), Some("b-c.de"));
        assert_eq!(mask_email("jörg@BÜCHER.de").as_deref(), Some("bücher.de"));
        assert_eq!(
            mask_email("j@xn--bcher-kva.XN--P1AI").as_deref(),
            Some("xn--bcher-kva.xn--p1ai")
        );
        assert_eq!(
            mask_email("\"odd\"@example.org").as_deref(),
            Some("example.org")
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "@example.com",
            "alice",
            "alice@",
            "alice@example",
            "alice@localhost",
            "alice@@example.com",
            "a@b@example.com",
            "alice@example.com.",
            "alice@.example.com",
            "alice@example..com",
            "alice@-example.com",
            "alice@example-.com",
            "alice@example.c",
            "alice@example.c0m",
            "alice@192.0.2.1",
            "alice@[192.0.2.1]",
            "alice@exa mple.com",
            " alice@example.com",
            "alice@example.com\n",
            "ali\tce@example.com",
            "alice@exam_ple.com",
            "alice@example.com:25",
            "alice@example.com/x",
        ] {
            assert_eq!(mask_email(bad), None, "{bad:?}");
        }
        let long_label = format!("a@{}.com", "x".repeat(64));
        assert_eq!(mask_email(&long_label), None);
    }
}
