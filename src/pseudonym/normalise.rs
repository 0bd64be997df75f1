//! Normalisation of a value before it is pseudonymised or hashed.
//!
//! The point of normalising is that two spellings of one identifier
//! (`Alice@Example.com` and ` alice@example.com`) give one pseudonym, so a
//! partner can still count distinct people. Each form is deliberately small and
//! documented, because changing one later changes every pseudonym it produces.

use std::borrow::Cow;

/// Normalisation applied before hashing.
///
/// Rule files name it with the `normalise` option of `pseudonymise` and
/// `hash_sha256`; [`Normalise::parse`] accepts exactly the names in
/// [`Normalise::NAMES`]. [`Normalise::None`] is what an action without the
/// option uses: the value is hashed as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Normalise {
    /// No normalisation: the value's bytes are hashed as they are.
    #[default]
    None,
    /// `email`: [`Normalise::Trim`] then [`Normalise::Lower`]. Nothing
    /// provider-specific (no removal of dots or `+tags`), since that would
    /// merge addresses that really are different people's.
    Email,
    /// `lower`: Unicode lowercase (`str::to_lowercase`), without trimming.
    Lower,
    /// `trim`: strip leading and trailing Unicode whitespace (`str::trim`).
    Trim,
    /// `phone`: keep ASCII digits only, dropping `+`, spaces, dashes, dots,
    /// parentheses and anything else. This is the form ad partners' match
    /// keys require (for example Meta CAPI `ph`: digits only, country code
    /// included). A value without any digit normalises to the empty string.
    Phone,
}

impl Normalise {
    /// The names accepted by [`Normalise::parse`], as written in rule files.
    pub const NAMES: &[&str] = &["email", "lower", "trim", "phone"];

    /// Parses a rule-file name (`email`, `lower`, `trim`, `phone`;
    /// case-sensitive). Returns `None` for anything else, including `"none"`:
    /// leaving the option out is how a rule asks for no normalisation.
    #[must_use]
    pub fn parse(name: &str) -> Option<Normalise> {
        match name {
            "email" => Some(Normalise::Email),
            "lower" => Some(Normalise::Lower),
            "trim" => Some(Normalise::Trim),
            "phone" => Some(Normalise::Phone),
            _ => None,
        }
    }

    /// The rule-file name of this normalisation (`"none"` for
    /// [`Normalise::None`]), for `--explain` output and messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Normalise::None => "none",
            Normalise::Email => "email",
            Normalise::Lower => "lower",
            Normalise::Trim => "trim",
            Normalise::Phone => "phone",
        }
    }
}

impl std::fmt::Display for Normalise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Applies normalisation `n` to `value`.
///
/// * `trim`: strip leading and trailing Unicode whitespace;
/// * `lower`: Unicode lowercase (no trim);
/// * `email`: trim, then lowercase;
/// * `phone`: keep ASCII digits only (drops `+`, spaces, dashes, dots,
///   parentheses and every other character), the form ad partners' match keys
///   (Meta CAPI `ph`) require;
/// * `None`: the value unchanged.
///
/// Returns [`Cow::Borrowed`] whenever nothing changes (and for any trim, which
/// is a sub-slice), so the common already-normal case does not allocate.
#[must_use]
pub fn normalise(n: Normalise, value: &str) -> Cow<'_, str> {
    match n {
        Normalise::None => Cow::Borrowed(value),
        Normalise::Trim => Cow::Borrowed(value.trim()),
        Normalise::Lower => lower(value),
        Normalise::Email => lower(value.trim()),
        Normalise::Phone => phone(value),
    }
}

/// Unicode lowercase, borrowing when the value is already lowercase.
fn lower(value: &str) -> Cow<'_, str> {
    if value.is_ascii() {
        if value.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(value.to_ascii_lowercase())
        } else {
            Cow::Borrowed(value)
        }
    } else if value.chars().all(is_lowercase_fixed_point) {
        // `str::to_lowercase` maps every char through `char::to_lowercase`,
        // except a context-dependent rule for 'Σ', which is not a fixed point
        // and so is never seen here. The string is therefore unchanged.
        Cow::Borrowed(value)
    } else {
        Cow::Owned(value.to_lowercase())
    }
}

/// Whether `char::to_lowercase` maps `c` to exactly itself.
fn is_lowercase_fixed_point(c: char) -> bool {
    let mut it = c.to_lowercase();
    it.next() == Some(c) && it.next().is_none()
}

/// ASCII digits only, borrowing when the value is already all digits.
fn phone(value: &str) -> Cow<'_, str> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(value.chars().filter(char::is_ascii_digit).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(n: Normalise, v: &str) -> String {
        normalise(n, v).into_owned()
    }

    #[test]
    fn parse_accepts_exactly_the_documented_names() {
        for name in Normalise::NAMES {
            let n = Normalise::parse(name).expect(name);
            assert_eq!(n.name(), *name);
            assert_eq!(n.to_string(), *name);
        }
        for bad in ["none", "Email", "EMAIL", "", "phone ", "digits"] {
            assert_eq!(Normalise::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Normalise::None.name(), "none");
        assert_eq!(Normalise::default(), Normalise::None);
    }

    #[test]
    fn email() {
        assert_eq!(
            norm(Normalise::Email, "  Alice@Example.COM "),
            "alice@example.com"
        );
        assert_eq!(norm(Normalise::Email, "\t\u{3000}BOB@X.ORG\n"), "bob@x.org");
        // No provider-specific rewriting.
        assert_eq!(
            norm(Normalise::Email, "a.b+tag@gmail.com"),
            "a.b+tag@gmail.com"
        );
        assert!(matches!(
            normalise(Normalise::Email, "alice@example.com"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            normalise(Normalise::Email, " alice@example.com "),
            Cow::Borrowed("alice@example.com")
        ));
    }

    #[test]
    fn phone() {
        assert_eq!(norm(Normalise::Phone, "+1 (650) 555-1234"), "16505551234");
        assert_eq!(norm(Normalise::Phone, "+44 20.7946.0958"), "442079460958");
        assert_eq!(norm(Normalise::Phone, "no digits"), "");
        // Non-ASCII digits are not ASCII digits: dropped.
        assert_eq!(norm(Normalise::Phone, "１２3"), "3");
        assert!(matches!(
            normalise(Normalise::Phone, "16505551234"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(normalise(Normalise::Phone, ""), Cow::Borrowed(_)));
    }

    #[test]
    fn lower_is_unicode_and_does_not_trim() {
        assert_eq!(norm(Normalise::Lower, " ÀB "), " àb ");
        assert_eq!(norm(Normalise::Lower, "ΟΔΟΣ"), "οδος");
        assert_eq!(norm(Normalise::Lower, "Ǆ"), "ǆ");
        // Titlecase 'ǅ' is not uppercase, yet it lowercases to 'ǆ'.
        assert_eq!(norm(Normalise::Lower, "ǅ"), "ǆ");
        assert!(matches!(
            normalise(Normalise::Lower, "déjà vu"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            normalise(Normalise::Lower, "abc"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(normalise(Normalise::Lower, "aBc"), Cow::Owned(_)));
    }

    #[test]
    fn trim_and_none() {
        assert_eq!(norm(Normalise::Trim, "\u{a0} X y \u{2003}"), "X y");
        assert!(matches!(
            normalise(Normalise::Trim, " x "),
            Cow::Borrowed("x")
        ));
        assert!(matches!(
            normalise(Normalise::None, " A "),
            Cow::Borrowed(" A ")
        ));
    }

    #[test]
    fn lower_matches_std_on_samples() {
        for s in [
            "",
            "A",
            "ß",
            "İstanbul",
            "ΣΑΣ",
            "ﬀ",
            "Ω",
            "K",
            "ÅNGSTRÖM",
            "a\u{301}",
            "ǈ",
        ] {
            assert_eq!(norm(Normalise::Lower, s), s.to_lowercase(), "{s:?}");
        }
    }
}
