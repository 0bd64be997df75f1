//! Header hygiene from static lists (RFC 9110 section 7.6.1 hop-by-hop
//! fields; default deny for everything else).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Connection-specific fields, never forwarded in either direction.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Fields scrim always computes itself on the upstream request.
const COMPUTED: &[&str] = &["host", "content-length", "content-encoding", "content-type"];

/// Fields that carry identity or client addresses. They are dropped by the
/// default deny like any other field; listed so the rule is visible (and
/// tested): they leave only when a rule file names them in `allow`.
pub const NEVER_UNLESS_NAMED: &[&str] = &[
    "cookie",
    "authorization",
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
];

fn connection_named(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The request headers sent upstream: only the names in `allow` (minus
/// hop-by-hop and computed ones), then the rule file's `set` values.
pub fn outbound(
    incoming: &HeaderMap,
    allow: &[HeaderName],
    set: &[(HeaderName, HeaderValue)],
) -> HeaderMap {
    let per_connection = connection_named(incoming);
    let mut out = HeaderMap::new();
    for name in allow {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || COMPUTED.contains(&n) || per_connection.iter().any(|c| c == n)
        {
            continue;
        }
        for v in incoming.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    for (name, value) in set {
        out.insert(name.clone(), value.clone());
    }
    out
}

/// Cleans a partner response before it goes back to the caller: hop-by-hop
/// fields and `Set-Cookie` (the partner must not set state in internal
/// services) are removed.
pub fn inbound_response(headers: &mut HeaderMap) {
    for name in connection_named(headers) {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(n);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    headers.remove(header::SET_COOKIE);
}

/// Total size of the header section (names + values + 4 bytes per line).
pub fn size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn default_deny_and_identity_headers() {
        let incoming = map(&[
            ("user-agent", "svc/1"),
            ("cookie", "sid=1"),
            ("authorization", "Bearer internal"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
            ("x-trace", "abc"),
            ("connection", "x-trace"),
            ("content-length", "10"),
        ]);
        let allow: Vec<HeaderName> = [
            "user-agent",
            "x-trace",
            "content-length",
            "transfer-encoding",
        ]
        .iter()
        .map(|s| HeaderName::from_static(s))
        .collect();
        let set = vec![(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer partner"),
        )];
        let out = outbound(&incoming, &allow, &set);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out["user-agent"], "svc/1");
        assert_eq!(out["authorization"], "Bearer partner");
        // Named in Connection: per-connection, not forwarded even if allowed.
        assert!(out.get("x-trace").is_none());
        for n in NEVER_UNLESS_NAMED {
            if *n != "authorization" {
                assert!(out.get(*n).is_none());
            }
        }
    }

    #[test]
    fn named_identity_header_passes() {
        let incoming = map(&[("cookie", "consent=1")]);
        let out = outbound(&incoming, &[HeaderName::from_static("cookie")], &[]);
        assert_eq!(out["cookie"], "consent=1");
    }

    #[test]
    fn response_loses_set_cookie_and_hop_by_hop() {
        let mut h = map(&[
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("keep-alive", "timeout=5"),
            ("connection", "x-partner"),
            ("x-partner", "1"),
            ("content-type", "application/json"),
        ]);
        inbound_response(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }
}
