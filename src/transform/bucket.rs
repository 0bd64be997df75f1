//! `bucket`: a number into a band.

use super::number::{Decimal, parse_json_number, parse_plain_decimal};

/// True when `bounds` can be used by [`bucket`]: non-empty and strictly
/// increasing. The rule compiler should check this up front; [`bucket`]
/// returns `None` for invalid bounds.
#[must_use]
pub fn bounds_are_valid(bounds: &[i64]) -> bool {
    !bounds.is_empty() && bounds.windows(2).all(|w| w[0] < w[1])
}

fn label(value: &Decimal<'_>, bounds: &[i64]) -> Option<String> {
    if !bounds_are_valid(bounds) {
        return None;
    }
    // For an integer bound b and any real x: x >= b  <=>  floor(x) >= b.
    let f = value.floor();
    let above = bounds.partition_point(|&b| i128::from(b) <= f);
    Some(match above {
        0 => format!("<{}", bounds[0]),
        n if n == bounds.len() => format!("{}+", bounds[n - 1]),
        n => format!("{}-{}", bounds[n - 1], bounds[n] - 1),
    })
}

/// Puts a JSON number into a band.
///
/// `bounds` are strictly increasing integers `b0 < b1 < ... < bk` (e.g.
/// `[18, 25, 35, 45, 55, 65]`). The labels are:
///
/// * `x < b0`: `"<b0"` (`17.9` gives `"<18"`);
/// * `bi <= x < b(i+1)`: `"bi-(b(i+1) - 1)"` (`25` and `34.99` give `"25-34"`;
///   a band of width one is written `"7-7"`; negative bounds give labels such
///   as `"-10--1"`);
/// * `x >= bk`: `"bk+"` (`65` gives `"65+"`).
///
/// `num_text` is the raw JSON number text (RFC 8259 grammar: `-1.5e3`,
/// `24.999`, `1E2`); it may be fractional or use an exponent. The comparison is
/// exact on the decimal text, without a float round trip, so
/// `24.99999999999999999999` is `"18-24"`, and huge exponents are fine.
///
/// Returns `None` for text that is not a JSON number and for invalid `bounds`
/// (see [`bounds_are_valid`]).
#[must_use]
pub fn bucket(num_text: &str, bounds: &[i64]) -> Option<String> {
    label(&parse_json_number(num_text)?, bounds)
}

/// Like [`bucket`], for a number carried in a JSON string (`"34"`).
///
/// The string must be a plain decimal number: an optional leading `-`, one or
/// more ASCII digits (leading zeros allowed) and an optional `.` followed by
/// one or more digits. Exponents, a `+` sign, whitespace, thousands separators
/// and anything else give `None`.
#[must_use]
pub fn bucket_str(value: &str, bounds: &[i64]) -> Option<String> {
    label(&parse_plain_decimal(value)?, bounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGES: &[i64] = &[18, 25, 35, 45, 55, 65];

    fn b(v: &str) -> Option<String> {
        bucket(v, AGES)
    }

    #[test]
    fn edges() {
        assert_eq!(b("17").as_deref(), Some("<18"));
        assert_eq!(b("17.9").as_deref(), Some("<18"));
        assert_eq!(b("18").as_deref(), Some("18-24"));
        assert_eq!(b("24.999").as_deref(), Some("18-24"));
        assert_eq!(b("24.99999999999999999999").as_deref(), Some("18-24"));
        assert_eq!(b("25").as_deref(), Some("25-34"));
        assert_eq!(b("25.0").as_deref(), Some("25-34"));
        assert_eq!(b("2.5e1").as_deref(), Some("25-34"));
        assert_eq!(b("34.5").as_deref(), Some("25-34"));
        assert_eq!(b("35").as_deref(), Some("35-44"));
        assert_eq!(b("64.99").as_deref(), Some("55-64"));
        assert_eq!(b("65").as_deref(), Some("65+"));
        assert_eq!(b("1e300").as_deref(), Some("65+"));
        assert_eq!(b("-3").as_deref(), Some("<18"));
        assert_eq!(b("-1e300").as_deref(), Some("<18"));
        assert_eq!(b("0").as_deref(), Some("<18"));
    }

    #[test]
    fn other_bounds() {
        assert_eq!(bucket("0", &[0]).as_deref(), Some("0+"));
        assert_eq!(bucket("-0.5", &[0]).as_deref(), Some("<0"));
        assert_eq!(bucket("-0.0", &[0]).as_deref(), Some("0+"));
        assert_eq!(bucket("-5", &[-10, 0]).as_deref(), Some("-10--1"));
        assert_eq!(bucket("7.5", &[7, 8]).as_deref(), Some("7-7"));
        assert_eq!(
            bucket("9223372036854775807", &[i64::MIN, i64::MAX]).as_deref(),
            Some("9223372036854775807+")
        );
        assert_eq!(
            bucket("-1e40", &[i64::MIN, 0]).as_deref(),
            Some("<-9223372036854775808")
        );
    }

    #[test]
    fn invalid() {
        for bad in [
            "", "NaN", "Infinity", "-", "1.", "01", "\"25\"", "25 ", "0x19", "1e",
        ] {
            assert_eq!(b(bad), None, "{bad}");
        }
        assert_eq!(bucket("25", &[]), None);
        assert_eq!(bucket("25", &[18, 18]), None);
        assert_eq!(bucket("25", &[25, 18]), None);
        assert!(bounds_are_valid(AGES));
        assert!(!bounds_are_valid(&[]));
    }

    #[test]
    fn strings() {
        assert_eq!(bucket_str("34", AGES).as_deref(), Some("25-34"));
        assert_eq!(bucket_str("034", AGES).as_deref(), Some("25-34"));
        assert_eq!(bucket_str("17.9", AGES).as_deref(), Some("<18"));
        assert_eq!(bucket_str("-2", AGES).as_deref(), Some("<18"));
        assert_eq!(bucket_str("65", AGES).as_deref(), Some("65+"));
        for bad in [
            "", " 34", "34 ", "3e1", "+34", "34.", "thirty", "3,4", "34 years",
        ] {
            assert_eq!(bucket_str(bad, AGES), None, "{bad}");
        }
    }
}
