//! Event times: RFC 3339 strings and epoch numbers to unix seconds, and
//! window bounds back to RFC 3339 (UTC).

use serde_json::Value;

/// Epochs at or above this are milliseconds (1e11 seconds is the year 5138).
const MS_THRESHOLD: f64 = 1e11;

/// Unix seconds of an event time: an RFC 3339 date-time string (any
/// offset), or epoch seconds or milliseconds as a number or a digit
/// string. `None` for anything else, and for times before 1970.
pub fn epoch_seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => from_epoch(n.as_f64()?),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            from_epoch(s.parse::<f64>().ok()?)
        }
        Value::String(s) => parse_rfc3339(s),
        _ => None,
    }
}

fn from_epoch(v: f64) -> Option<u64> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let secs = if v >= MS_THRESHOLD { v / 1000.0 } else { v };
    // Past the year 9999 is not an event time.
    (secs < 253_402_300_800.0).then_some(secs as u64)
}

/// `YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm|-hh:mm)` to unix seconds.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let t = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset;
    u64::try_from(t).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as `YYYY-MM-DDThh:mm:ssZ`.
pub fn rfc3339(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let rem = t % 86_400;
    // civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times() {
        assert_eq!(epoch_seconds(&json!("1970-01-01T00:00:00Z")), Some(0));
        assert_eq!(
            epoch_seconds(&json!("2026-12-07T10:42:00Z")),
            Some(1_796_640_120)
        );
        assert_eq!(
            epoch_seconds(&json!("2026-12-07T11:42:00.5+01:00")),
            Some(1_796_640_120)
        );
        assert_eq!(epoch_seconds(&json!(1_796_640_120)), Some(1_796_640_120));
        assert_eq!(
            epoch_seconds(&json!(1_796_640_120_123u64)),
            Some(1_796_640_120)
        );
        assert_eq!(epoch_seconds(&json!("1796640120")), Some(1_796_640_120));
        assert_eq!(epoch_seconds(&json!("2026-12-07")), None);
        assert_eq!(epoch_seconds(&json!(-5)), None);
        assert_eq!(epoch_seconds(&json!(null)), None);
    }

    #[test]
    fn round_trip() {
        for t in [0, 951_782_400, 1_796_640_120, 4_102_444_799] {
            assert_eq!(epoch_seconds(&json!(rfc3339(t))), Some(t), "{}", rfc3339(t));
        }
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
