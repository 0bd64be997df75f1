//! Pure value transforms behind the generalising actions of the rule files
//! (`truncate_ip`, `coarsen_time`, `bucket`, `mask_email`, `strip_query`,
//! `scan`).
//!
//! Every function here works on one decoded value: an already-unescaped JSON
//! string (`&str`) or the raw text of a JSON number (`"1700000000123"`,
//! `"-1.5e3"`). None of them does I/O, allocates more than its output (plus,
//! for [`Scanner::scan`], one small list of matches), or panics on any input.
//!
//! A function returns `None` when its action cannot apply to the value (an IP
//! action on a non-address, a time action on a non-date, ...). The caller then
//! drops the field and counts it; the value itself never appears in an error,
//! a log line or a panic message, and nothing in this module formats it into
//! one.
//!
//! Format decisions are documented on each function; in short:
//!
//! * [`truncate_ip`]: bare addresses only, canonical `std::net` display form out;
//! * [`coarsen_time_str`] / [`coarsen_time_number`]: RFC 3339 in the value's own
//!   offset and notation, or integer epoch seconds / milliseconds (magnitude
//!   `>= 1e11` means milliseconds), floor rounding;
//! * [`bucket`] / [`bucket_str`]: exact decimal comparison (no float rounding),
//!   labels `"<18"`, `"25-34"`, `"65+"`;
//! * [`mask_email`]: the lower-cased domain;
//! * [`strip_query`]: no query, no fragment, no userinfo, optional kept parameters;
//! * [`Scanner`]: free-text detection of emails, IPs, phones, cards, IBANs and
//!   secret tokens.

mod bucket;
mod email;
mod ip;
mod number;
mod scan;
mod time;
mod url;

pub use bucket::{bounds_are_valid, bucket, bucket_str};
pub use email::mask_email;
pub use ip::{DEFAULT_V4_PREFIX, DEFAULT_V6_PREFIX, truncate_ip};
pub use scan::{Detector, DetectorSet, ScanCounts, Scanner, TOKEN_PREFIXES};
pub use time::{MS_THRESHOLD, TimeUnit, coarsen_time_number, coarsen_time_str};
pub use url::strip_query;

#[cfg(test)]
mod fuzz_tests;
