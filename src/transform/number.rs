//! Exact parsing of decimal number text (JSON numbers and plain decimal
//! strings) without a float round trip.

/// The syntactic parts of a decimal number, borrowed from its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Decimal<'a> {
    /// A leading `-` was present.
    pub(super) negative: bool,
    /// Digits before the decimal point (at least one).
    pub(super) int: &'a [u8],
    /// Digits after the decimal point (empty when there is no point).
    pub(super) frac: &'a [u8],
    /// Exponent, saturated to +-`EXP_LIMIT`; `None` when absent.
    pub(super) exp: Option<i64>,
}

/// Exponents beyond this magnitude are saturated: they already move any digit
/// far outside every range this module compares against.
const EXP_LIMIT: i64 = 1_000_000;

/// Magnitudes are saturated at this value when computing an integer part; it
/// is larger than any `i64`, so comparisons with `i64` bounds stay exact.
const MAG_CAP: u128 = 100_000_000_000_000_000_000; // 1e20

fn digits_end(b: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// Parses the JSON number grammar (RFC 8259 section 6):
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. Anything else,
/// including surrounding whitespace, is `None`.
pub(super) fn parse_json_number(s: &str) -> Option<Decimal<'_>> {
    let b = s.as_bytes();
    let mut i = 0;
    let negative = b.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let int_start = i;
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(c) if c.is_ascii_digit() => i = digits_end(b, i),
        _ => return None,
    }
    let int = &b[int_start..i];
    let (frac, after) = fraction(b, i)?;
    i = after;
    let mut exp = None;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exp_negative = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let es = i;
        let ee = digits_end(b, es);
        if ee == es {
            return None;
        }
        let mut v: i64 = 0;
        for &d in &b[es..ee] {
            v = (v * 10 + i64::from(d - b'0')).min(EXP_LIMIT);
        }
        exp = Some(if exp_negative { -v } else { v });
        i = ee;
    }
    if i != b.len() {
        return None;
    }
    Some(Decimal {
        negative,
        int,
        frac,
        exp,
    })
}

/// An optional `.digits` at `i`: the digits (empty when there is no dot) and
/// the index after them; `None` for a dot without digits.
fn fraction(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    if b.get(i) != Some(&b'.') {
        return Some((&[], i));
    }
    let fs = i + 1;
    let fe = digits_end(b, fs);
    if fe == fs {
        return None;
    }
    Some((&b[fs..fe], fe))
}

/// Parses a plain decimal string: `-? [0-9]+ (. [0-9]+)?`. Leading zeros are
/// allowed; signs other than a leading `-`, exponents, whitespace, thousands
/// separators and everything else are not.
pub(super) fn parse_plain_decimal(s: &str) -> Option<Decimal<'_>> {
    let b = s.as_bytes();
    let mut i = 0;
    let negative = b.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let is = i;
    i = digits_end(b, i);
    if i == is {
        return None;
    }
    let int = &b[is..i];
    let (frac, after) = fraction(b, i)?;
    i = after;
    if i != b.len() {
        return None;
    }
    Some(Decimal {
        negative,
        int,
        frac,
        exp: None,
    })
}

impl Decimal<'_> {
    /// The exact floor of the value, saturated to +-1e20 (beyond the `i64`
    /// range, so comparisons with `i64` values stay exact).
    pub(super) fn floor(&self) -> i128 {
        let total = self.int.len() + self.frac.len();
        // Number of digits (of int ++ frac) before the decimal point.
        let point = i64::try_from(self.int.len())
            .unwrap_or(i64::MAX)
            .saturating_add(self.exp.unwrap_or(0));
        let mut mag: u128 = 0;
        let mut frac_nonzero = false;
        for (idx, &d) in self.int.iter().chain(self.frac.iter()).enumerate() {
            let idx = i64::try_from(idx).unwrap_or(i64::MAX);
            if idx < point {
                if mag < MAG_CAP {
                    mag = mag * 10 + u128::from(d - b'0');
                }
            } else if d != b'0' {
                frac_nonzero = true;
            }
        }
        let total = i64::try_from(total).unwrap_or(i64::MAX);
        let mut extra = point.saturating_sub(total);
        while extra > 0 && mag != 0 && mag < MAG_CAP {
            mag *= 10;
            extra -= 1;
        }
        let mag = i128::try_from(mag.min(MAG_CAP)).unwrap_or(i128::MAX);
        if self.negative {
            -mag - i128::from(frac_nonzero)
        } else {
            mag
        }
    }

    /// The value as an `i64` when it is written as a plain integer (no
    /// fraction, no exponent) and fits; `None` otherwise.
    pub(super) fn as_plain_i64(&self) -> Option<i64> {
        if !self.frac.is_empty() || self.exp.is_some() {
            return None;
        }
        let mut v: i64 = 0;
        for &d in self.int {
            let d = i64::from(d - b'0');
            v = v.checked_mul(10)?;
            v = if self.negative {
                v.checked_sub(d)?
            } else {
                v.checked_add(d)?
            };
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_grammar() {
        for ok in ["0", "-0", "1", "-1.5e3", "2.5E+1", "1e-7", "123.000", "0.0"] {
            assert!(parse_json_number(ok).is_some(), "{ok}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "+1", "1e", "1e+", " 1", "1 ", "NaN", "Infinity", "0x10",
            "1..2", "--1", "1.5.2",
        ] {
            assert!(parse_json_number(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn plain_grammar() {
        for ok in ["0", "034", "-12", "17.90", "-0.5"] {
            assert!(parse_plain_decimal(ok).is_some(), "{ok}");
        }
        for bad in ["", "-", "1e3", "+1", "1.", ".1", "1,000", " 1", "1_000"] {
            assert!(parse_plain_decimal(bad).is_none(), "{bad}");
        }
    }

    fn floor_of(s: &str) -> i128 {
        parse_json_number(s).map(|d| d.floor()).unwrap_or(i128::MIN)
    }

    #[test]
    fn floor_is_exact() {
        assert_eq!(floor_of("17.9"), 17);
        assert_eq!(floor_of("-17.9"), -18);
        assert_eq!(floor_of("-17"), -17);
        assert_eq!(floor_of("-0"), 0);
        assert_eq!(floor_of("-0.0"), 0);
        assert_eq!(floor_of("24.99999999999999999999999"), 24);
        assert_eq!(floor_of("2.5e1"), 25);
        assert_eq!(floor_of("2.5e-1"), 0);
        assert_eq!(floor_of("-2.5e-1"), -1);
        assert_eq!(floor_of("1e2"), 100);
        assert_eq!(floor_of("0e999999999999999"), 0);
        assert_eq!(floor_of("1e999999999999999"), 100_000_000_000_000_000_000);
        assert_eq!(floor_of("-1e999999999999999"), -100_000_000_000_000_000_000);
        assert_eq!(floor_of("1e-999999999999999"), 0);
        assert_eq!(floor_of("-1e-999999999999999"), -1);
        assert_eq!(floor_of("9223372036854775807"), i128::from(i64::MAX));
    }

    #[test]
    fn plain_i64() {
        let p = |s: &str| parse_json_number(s).and_then(|d| d.as_plain_i64());
        assert_eq!(p("9223372036854775807"), Some(i64::MAX));
        assert_eq!(p("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(p("9223372036854775808"), None);
        assert_eq!(p("1.0"), None);
        assert_eq!(p("1e3"), None);
        assert_eq!(p("-0"), Some(0));
    }
}
