//! `truncate_ip`: zero the host bits of an IP address.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Default number of leading bits an IPv4 address keeps (`/24`).
pub const DEFAULT_V4_PREFIX: u8 = 24;
/// Default number of leading bits an IPv6 address keeps (`/48`).
pub const DEFAULT_V6_PREFIX: u8 = 48;

fn mask_v4(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let bits = u32::from(addr);
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(bits & mask)
}

fn mask_v6(addr: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let bits = u128::from(addr);
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    Ipv6Addr::from(bits & mask)
}

/// Zeroes the host bits of a bare IP address.
///
/// * IPv4 (`"203.0.113.77"`) keeps its first `v4_prefix` bits:
///   `"203.0.113.0"` at the default [`DEFAULT_V4_PREFIX`] (24).
/// * IPv6 keeps its first `v6_prefix` bits: `"2001:db8:abcd:12::1"` becomes
///   `"2001:db8:abcd::"` at the default [`DEFAULT_V6_PREFIX`] (48).
/// * An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, in either the dotted or the
///   hex spelling) is truncated with the **v4** prefix and written back in the
///   mapped form: `"::ffff:203.0.113.77"` gives `"::ffff:203.0.113.0"`.
/// * IPv6 forms that embed an IPv4 address elsewhere never keep more of it than
///   `v4_prefix` allows: for 6to4 (`2002::/16`, IPv4 in bits 16..48) at most
///   `16 + v4_prefix` bits are kept; for NAT64 (`64:ff9b::/96`), Teredo
///   (`2001:0::/32`, obfuscated client IPv4 in the last 32 bits) and
///   IPv4-compatible addresses (first 96 bits zero) at most `96 + v4_prefix`.
///   With the defaults only 6to4 is affected (`/40` instead of `/48`).
///
/// Input must be a bare address as accepted by `std::net` (no brackets, no
/// port, no zone id such as `"fe80::1%eth0"`, no surrounding whitespace, no
/// leading zeros in IPv4 octets). Output is the canonical `std::net` display
/// form (RFC 5952 for IPv6: lower case, longest zero run compressed), so
/// `"2001:DB8::1"` comes out lower-cased.
///
/// Returns `None` for anything that is not such an address, and for prefixes
/// out of range (`v4_prefix > 32` or `v6_prefix > 128`; the rule compiler is
/// expected to reject those earlier).
#[must_use]
pub fn truncate_ip(value: &str, v4_prefix: u8, v6_prefix: u8) -> Option<String> {
    if v4_prefix > 32 || v6_prefix > 128 {
        return None;
    }
    if let Ok(v4) = value.parse::<Ipv4Addr>() {
        return Some(mask_v4(v4, v4_prefix).to_string());
    }
    let v6 = value.parse::<Ipv6Addr>().ok()?;
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(mask_v4(v4, v4_prefix).to_ipv6_mapped().to_string());
    }
    let seg = v6.segments();
    let embedded_offset: Option<u8> = if seg[0] == 0x2002 {
        Some(16) // 6to4
    } else if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] // NAT64 well-known prefix
        || seg[..2] == [0x2001, 0] // Teredo
        || seg[..6] == [0; 6]
    // IPv4-compatible (deprecated)
    {
        Some(96)
    } else {
        None
    };
    let keep = match embedded_offset {
        Some(off) => v6_prefix.min(off + v4_prefix),
        None => v6_prefix,
    };
    Some(mask_v6(v6, keep).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &str) -> Option<String> {
        truncate_ip(v, DEFAULT_V4_PREFIX, DEFAULT_V6_PREFIX)
    }

    #[test]
    fn ipv4_prefixes() {
        assert_eq!(t("203.0.113.77").as_deref(), Some("203.0.113.0"));
        assert_eq!(
            truncate_ip("203.0.113.77", 16, 48).as_deref(),
            Some("203.0.0.0")
        );
        assert_eq!(
            truncate_ip("203.0.113.77", 0, 48).as_deref(),
            Some("0.0.0.0")
        );
        assert_eq!(
            truncate_ip("203.0.113.77", 32, 48).as_deref(),
            Some("203.0.113.77")
        );
        assert_eq!(
            truncate_ip("203.0.113.77", 20, 48).as_deref(),
            Some("203.0.112.0")
        );
        assert_eq!(
            truncate_ip("255.255.255.255", 1, 48).as_deref(),
            Some("128.0.0.0")
        );
    }

    #[test]
    fn ipv6_prefixes() {
        assert_eq!(t("2001:db8:abcd:12::1").as_deref(), Some("2001:db8:abcd::"));
        assert_eq!(
            truncate_ip("2001:db8:abcd:12:34:56:78:9a", 24, 64).as_deref(),
            Some("2001:db8:abcd:12::")
        );
        assert_eq!(
            truncate_ip("2001:DB8:ABCD:0012::1", 24, 64).as_deref(),
            Some("2001:db8:abcd:12::")
        );
        assert_eq!(truncate_ip("2001:db8::1", 24, 0).as_deref(), Some("::"));
        assert_eq!(
            truncate_ip("2001:db8::1", 24, 128).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            truncate_ip("2001:db8:ffff:ffff::", 24, 36).as_deref(),
            Some("2001:db8:f000::")
        );
        assert_eq!(t("fe80::1").as_deref(), Some("fe80::"));
        assert_eq!(t("::1").as_deref(), Some("::"));
    }

    #[test]
    fn mapped_ipv6_uses_v4_prefix() {
        assert_eq!(
            t("::ffff:203.0.113.77").as_deref(),
            Some("::ffff:203.0.113.0")
        );
        assert_eq!(t("::FFFF:cb00:714d").as_deref(), Some("::ffff:203.0.113.0"));
        assert_eq!(
            truncate_ip("::ffff:203.0.113.77", 16, 128).as_deref(),
            Some("::ffff:203.0.0.0")
        );
        assert_eq!(
            truncate_ip("::ffff:203.0.113.77", 0, 128).as_deref(),
            Some("::ffff:0.0.0.0")
        );
    }

    #[test]
    fn embedded_ipv4_is_capped() {
        // 6to4: 2002:cb00:714d:: embeds 203.0.113.77; /48 would keep all of it.
        assert_eq!(
            t("2002:cb00:714d:1::1").as_deref(),
            Some("2002:cb00:7100::")
        );
        // NAT64 with a long v6 prefix.
        assert_eq!(
            truncate_ip("64:ff9b::cb00:714d", 24, 128).as_deref(),
            Some("64:ff9b::cb00:7100")
        );
        // Teredo with a long v6 prefix.
        assert_eq!(
            truncate_ip("2001:0:4136:e378:8000:63bf:3fff:fdd2", 24, 128).as_deref(),
            Some("2001:0:4136:e378:8000:63bf:3fff:fd00")
        );
        // Default /48 on NAT64 is already coarser than the cap.
        assert_eq!(t("64:ff9b::cb00:714d").as_deref(), Some("64:ff9b::"));
    }

    #[test]
    fn invalid_inputs() {
        for bad in [
            "",
            " 203.0.113.77",
            "203.0.113.77 ",
            "203.0.113",
            "203.0.113.256",
            "203.0.113.077",
            "203.0.113.77:80",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
            "fe80::1%eth0",
            "fe80::1%1",
            "2001:db8::1/64",
            "2001:db8:::1",
            "gggg::1",
            "localhost",
            "1.2.3.4.5",
            "::ffff:1.2.3",
            "12345",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        assert_eq!(truncate_ip("1.2.3.4", 33, 48), None);
        assert_eq!(truncate_ip("::1", 24, 129), None);
    }
}
