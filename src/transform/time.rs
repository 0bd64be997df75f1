//! `coarsen_time`: round timestamps down to a minute, an hour or a day.

use super::number::parse_json_number;

/// The granularity `coarsen_time` rounds down to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// Seconds (and fractions) become zero.
    Minute,
    /// Minutes, seconds (and fractions) become zero.
    Hour,
    /// The time of day becomes `00:00:00`.
    Day,
}

impl TimeUnit {
    /// The names accepted by [`TimeUnit::parse`], as written in rule files.
    pub const NAMES: &[&str] = &["minute", "hour", "day"];

    /// Parses a rule-file unit name: exactly `"minute"`, `"hour"` or `"day"`
    /// (lower case, no surrounding whitespace).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "minute" => Some(Self::Minute),
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            _ => None,
        }
    }

    /// The rule-file name of this unit.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// Length of the unit in seconds.
    #[must_use]
    pub const fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }
}

/// Epoch values whose magnitude is at least this are milliseconds, smaller
/// ones are seconds.
///
/// `1e11` seconds is in the year 5138, while `1e11` milliseconds is
/// 1973-03-03T09:46:40Z; so millisecond timestamps from before March 1973 (and
/// after about 1966-10-31 for negative ones) are read as seconds. Both readings
/// still come out rounded down, just to a different grid.
pub const MS_THRESHOLD: u64 = 100_000_000_000;

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Reads `n` ASCII digits at `at` as a number.
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &d in s {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
    }
    Some(v)
}

/// Floors an epoch value to the unit, choosing seconds or milliseconds by
/// magnitude (see [`MS_THRESHOLD`]).
fn floor_epoch(v: i64, unit: TimeUnit) -> Option<i64> {
    // Seconds below 1e11, milliseconds below 1e14, microseconds below 1e17,
    // nanoseconds beyond: the unit is inferred from the magnitude, so a
    // microsecond stamp is really coarsened, not rounded on a millisecond grid.
    let a = v.unsigned_abs();
    let scale: i64 = if a < MS_THRESHOLD {
        1
    } else if a < MS_THRESHOLD * 1_000 {
        1_000
    } else if a < MS_THRESHOLD * 1_000_000 {
        1_000_000
    } else {
        1_000_000_000
    };
    let step = unit.seconds().checked_mul(scale)?;
    v.div_euclid(step).checked_mul(step)
}

/// Rounds a timestamp given as a JSON string down to `unit`.
///
/// Two forms are accepted:
///
/// 1. An RFC 3339 `date-time`:
///    `YYYY-MM-DD` `T` `hh:mm:ss` \[`.` fraction\] offset, where the separator
///    is `T`, `t` or a single space (RFC 3339 section 5.6 note), the fraction
///    has one or more digits, and the offset is `Z`, `z` or `+hh:mm` /
///    `-hh:mm` (`-00:00` included). The date is validated for real: month
///    1-12, day within the month (leap years by the Gregorian rule, so
///    `2024-02-29` is accepted and `2023-02-29` is not), hour < 24,
///    minute < 60, second <= 60 (a leap second), offset hour < 24 and offset
///    minute < 60. Date-only or time-only strings, a missing offset, a comma
///    as decimal sign and other ISO 8601 variants are `None`.
///
///    The value is rounded down **in its own offset** (the wall-clock fields
///    are truncated, so `13:45+05:30` rounds to `13:00+05:30` for `hour`), and
///    the output keeps the exact notation of the input: the same separator
///    and offset spelling (`Z`/`z`/`+02:00`), and the same number of fraction
///    digits, all set to zero. `"2024-05-01T13:45:12.123+02:00"` gives
///    `"2024-05-01T13:00:00.000+02:00"` for `hour`. A leap second rounds
///    into its own minute (`23:59:60` gives `23:59:00` for `minute`).
///
/// 2. A string of ASCII digits only (`"1700000000123"`): an epoch in seconds or
///    milliseconds, handled as by [`coarsen_time_number`] and returned as a
///    digit string again. No sign, no leading zeros (except `"0"` itself), and
///    the value must fit an `i64`.
///
/// Anything else is `None`.
#[must_use]
pub fn coarsen_time_str(value: &str, unit: TimeUnit) -> Option<String> {
    let b = value.as_bytes();
    if !b.is_empty() && b.iter().all(u8::is_ascii_digit) {
        if b.len() > 1 && b[0] == b'0' {
            return None;
        }
        let v: i64 = value.parse().ok()?;
        return Some(floor_epoch(v, unit)?.to_string());
    }
    coarsen_rfc3339(b, unit)
}

fn coarsen_rfc3339(b: &[u8], unit: TimeUnit) -> Option<String> {
    // Fixed part: YYYY-MM-DDThh:mm:ss (19 bytes).
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let frac_start = i;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let ds = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == ds {
            return None;
        }
    }
    let frac_end = i;
    match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => {}
        Some(b'+' | b'-') if i + 6 == b.len() => {
            let oh = digits(b, i + 1, 2)?;
            let om = digits(b, i + 4, 2)?;
            if b[i + 3] != b':' || oh > 23 || om > 59 {
                return None;
            }
        }
        _ => return None,
    }
    // Everything is ASCII now; build the output by zeroing digit positions.
    let zero_from = match unit {
        TimeUnit::Minute => 17,
        TimeUnit::Hour => 14,
        TimeUnit::Day => 11,
    };
    let mut out = String::with_capacity(b.len());
    for (idx, &c) in b.iter().enumerate() {
        let zero = (idx >= zero_from && idx < 19 && c.is_ascii_digit())
            || (idx > frac_start && idx < frac_end);
        out.push(if zero { '0' } else { char::from(c) });
    }
    Some(out)
}

/// Rounds an epoch timestamp given as a JSON number down to `unit`.
///
/// Any JSON number whose floor fits an `i64` is an epoch: `1700000000`,
/// `-86401`, and also the fractional seconds many clients send
/// (`1700000000.123`, or `1.7e9`), whose fraction is below every unit. A
/// magnitude of at least [`MS_THRESHOLD`] (`1e11`) means milliseconds,
/// anything smaller means seconds; the output is in the same unit. Rounding is
/// a floor towards negative infinity, also for epochs before 1970
/// (`-1` second gives `-60` for `minute`), in UTC (epoch days start at
/// 00:00Z). The output is plain integer text (`-0` gives `0`). Values and
/// results outside the `i64` range are `None`.
#[must_use]
pub fn coarsen_time_number(num_text: &str, unit: TimeUnit) -> Option<String> {
    let n = parse_json_number(num_text)?;
    let v = match n.as_plain_i64() {
        Some(v) => v,
        None => i64::try_from(n.floor()).ok()?,
    };
    Some(floor_epoch(v, unit)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use TimeUnit::{Day, Hour, Minute};

    fn s(v: &str, u: TimeUnit) -> Option<String> {
        coarsen_time_str(v, u)
    }

    #[test]
    fn micro_and_nanosecond_epochs_are_coarsened_in_their_unit() {
        assert_eq!(
            coarsen_time_number("1710513472123456", TimeUnit::Hour).as_deref(),
            Some("1710511200000000")
        );
        assert_eq!(
            coarsen_time_number("1710513472123456789", TimeUnit::Day).as_deref(),
            Some("1710460800000000000")
        );
    }

    #[test]
    fn unit_names() {
        for n in TimeUnit::NAMES {
            assert_eq!(TimeUnit::parse(n).map(TimeUnit::name), Some(*n));
        }
        assert_eq!(TimeUnit::parse("Hour"), None);
        assert_eq!(TimeUnit::parse("second"), None);
        assert_eq!(TimeUnit::parse(" day"), None);
    }

    #[test]
    fn rfc3339_units() {
        let v = "2024-05-01T13:45:12.123+02:00";
        assert_eq!(
            s(v, Minute).as_deref(),
            Some("2024-05-01T13:45:00.000+02:00")
        );
        assert_eq!(s(v, Hour).as_deref(), Some("2024-05-01T13:00:00.000+02:00"));
        assert_eq!(s(v, Day).as_deref(), Some("2024-05-01T00:00:00.000+02:00"));
    }

    #[test]
    fn rfc3339_variants() {
        assert_eq!(
            s("2024-05-01t13:45:12Z", Hour).as_deref(),
            Some("2024-05-01t13:00:00Z")
        );
        assert_eq!(
            s("2024-05-01t13:45:12z", Minute).as_deref(),
            Some("2024-05-01t13:45:00z")
        );
        assert_eq!(
            s("2024-05-01T13:45:12-05:30", Hour).as_deref(),
            Some("2024-05-01T13:00:00-05:30")
        );
        assert_eq!(
            s("2024-05-01 13:45:12+00:00", Day).as_deref(),
            Some("2024-05-01 00:00:00+00:00")
        );
        assert_eq!(
            s("2024-05-01T13:45:12.5-00:00", Minute).as_deref(),
            Some("2024-05-01T13:45:00.0-00:00")
        );
        assert_eq!(
            s("2024-05-01T13:45:12.123456789Z", Hour).as_deref(),
            Some("2024-05-01T13:00:00.000000000Z")
        );
        assert_eq!(
            s("2016-12-31T23:59:60Z", Minute).as_deref(),
            Some("2016-12-31T23:59:00Z")
        );
        assert_eq!(
            s("0000-01-01T00:00:00Z", Day).as_deref(),
            Some("0000-01-01T00:00:00Z")
        );
    }

    #[test]
    fn calendar_validation() {
        assert_eq!(
            s("2024-02-29T10:11:12Z", Day).as_deref(),
            Some("2024-02-29T00:00:00Z")
        );
        assert_eq!(
            s("2000-02-29T10:11:12Z", Day).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        for bad in [
            "2023-02-29T10:11:12Z",
            "1900-02-29T10:11:12Z",
            "2024-04-31T10:11:12Z",
            "2024-13-01T10:11:12Z",
            "2024-00-01T10:11:12Z",
            "2024-01-00T10:11:12Z",
            "2024-01-32T10:11:12Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T23:60:00Z",
            "2024-01-01T23:59:61Z",
            "2024-01-01T23:59:59+24:00",
            "2024-01-01T23:59:59+01:60",
        ] {
            assert_eq!(s(bad, Hour), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_rejects() {
        for bad in [
            "",
            "2024-05-01",
            "13:45:12Z",
            "2024-05-01T13:45:12",
            "2024-05-01T13:45Z",
            "2024-05-01T13:45:12.Z",
            "2024-05-01T13:45:12,5Z",
            "2024-05-01X13:45:12Z",
            "2024-05-01T13:45:12+0200",
            "2024-05-01T13:45:12+02",
            "2024-05-01T13:45:12+02:00 ",
            " 2024-05-01T13:45:12Z",
            "2024-05-01T13:45:12ZZ",
            "2024/05/01T13:45:12Z",
            "24-05-01T13:45:12Z",
            "2024-5-01T13:45:12Z",
            "+2024-05-01T13:45:12Z",
            "2024-05-01T13:45:12.123+02:00x",
            "２０２４-05-01T13:45:12Z",
            "2024-05-01T1é:45:12Z",
            "not a date at all",
        ] {
            assert_eq!(s(bad, Minute), None, "{bad}");
        }
    }

    #[test]
    fn epoch_numbers() {
        let n = coarsen_time_number;
        assert_eq!(n("1700000123", Minute).as_deref(), Some("1700000100"));
        assert_eq!(n("1700000123", Hour).as_deref(), Some("1699999200"));
        assert_eq!(n("1700000123", Day).as_deref(), Some("1699920000"));
        assert_eq!(n("1700000123456", Minute).as_deref(), Some("1700000100000"));
        assert_eq!(n("1700000123456", Hour).as_deref(), Some("1699999200000"));
        assert_eq!(n("1700000123456", Day).as_deref(), Some("1699920000000"));
        assert_eq!(n("0", Day).as_deref(), Some("0"));
        assert_eq!(n("-0", Day).as_deref(), Some("0"));
        assert_eq!(n("59", Minute).as_deref(), Some("0"));
        // 99_999_999_999 is seconds, 100_000_000_000 is milliseconds.
        assert_eq!(n("99999999999", Minute).as_deref(), Some("99999999960"));
        assert_eq!(n("100000000001", Minute).as_deref(), Some("99999960000"));
    }

    #[test]
    fn negative_epochs_floor() {
        let n = coarsen_time_number;
        assert_eq!(n("-1", Minute).as_deref(), Some("-60"));
        assert_eq!(n("-60", Minute).as_deref(), Some("-60"));
        assert_eq!(n("-61", Minute).as_deref(), Some("-120"));
        assert_eq!(n("-86401", Day).as_deref(), Some("-172800"));
        assert_eq!(n("-100000000001", Minute).as_deref(), Some("-100000020000"));
    }

    #[test]
    fn fractional_and_exponent_epochs_are_floored() {
        let n = coarsen_time_number;
        assert_eq!(n("1700000000.0", Hour).as_deref(), Some("1699999200"));
        assert_eq!(n("1700003599.999999", Hour).as_deref(), Some("1700002800"));
        assert_eq!(n("1.7e9", Day).as_deref(), Some("1699920000"));
        assert_eq!(n("17E8", Minute).as_deref(), Some("1699999980"));
        // Milliseconds with a fraction stay milliseconds.
        assert_eq!(
            n("1700000000123.5", Minute).as_deref(),
            Some("1699999980000")
        );
        // Before 1970 the floor goes down: -0.5 s is in the minute before.
        assert_eq!(n("-0.5", Minute).as_deref(), Some("-60"));
        assert_eq!(n("0.5", Minute).as_deref(), Some("0"));
        assert_eq!(n("1e-7", Day).as_deref(), Some("0"));
    }

    #[test]
    fn epoch_number_rejects() {
        let n = coarsen_time_number;
        for bad in [
            "1e19",
            "1e300",
            "-1e300",
            "9223372036854775808",
            "9223372036854775808.5",
            "-9223372036854775809",
            "",
            "01",
            "+1",
            "abc",
            " 1",
        ] {
            assert_eq!(n(bad, Hour), None, "{bad}");
        }
        // Flooring i64::MIN would leave the range.
        assert_eq!(n("-9223372036854775808", Day), None);
        assert_eq!(
            n("9223372036854775807", Minute).as_deref(),
            Some("9223372020000000000")
        );
    }

    #[test]
    fn epoch_digit_strings() {
        assert_eq!(s("1700000123", Hour).as_deref(), Some("1699999200"));
        assert_eq!(s("1700000123456", Minute).as_deref(), Some("1700000100000"));
        assert_eq!(s("0", Minute).as_deref(), Some("0"));
        for bad in [
            "-1700000123",
            "01700000123",
            "1700000123.5",
            "99999999999999999999",
            "1 2",
        ] {
            assert_eq!(s(bad, Hour), None, "{bad}");
        }
    }
}
