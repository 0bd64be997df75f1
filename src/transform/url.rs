//! `strip_query`: a URL without query, fragment and userinfo.

use crate::chars::is_invisible;

/// Length of a valid scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`)
/// followed by `:` at the start of `s`, or `None`.
fn scheme_len(s: &str) -> Option<usize> {
    let colon = s.find(':')?;
    let scheme = &s.as_bytes()[..colon];
    let first_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic);
    let rest_ok = scheme
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    (first_ok && rest_ok).then_some(colon)
}

/// The URL a `blob:` URL wraps (the scheme in any case).
fn blob_inner(s: &str) -> Option<&str> {
    let n = scheme_len(s)?;
    s[..n].eq_ignore_ascii_case("blob").then(|| &s[n + 1..])
}

/// Whether a scheme is special for WHATWG and can hold userinfo (`file`
/// cannot: a `file` URL with credentials does not parse).
fn is_special(scheme: &str) -> bool {
    ["http", "https", "ws", "wss", "ftp"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
}

/// Removes the query string, the fragment and any userinfo from a URL.
///
/// * The fragment (from the first `#`) is always removed.
/// * The query (from the first `?` before the fragment) is removed, except for
///   the parameters whose name is listed in `keep_params`. The name is the raw
///   text before the first `=` of each parameter (separated by `&` or `;`, as
///   some servers split on either) and is compared
///   byte for byte, case-sensitively and without percent-decoding (so an
///   encoded name such as `ut%6D_source` does not match `utm_source`: fail
///   closed). Kept parameters are written verbatim, in their original order,
///   joined by `&` after a `?`; empty parameters are skipped. When nothing is
///   kept there is no `?`.
/// * Userinfo is removed from the authority, since it carries credentials or
///   identity: `"https://user:pass@host/p"` gives `"https://host/p"`. The
///   authority is what follows `scheme://` (or a leading `//` in a
///   network-path reference) up to the next `/`; its userinfo ends at the last
///   `@` in it.
/// * A `blob:` URL is stripped as the URL it wraps.
/// * Everything else (scheme, host, port, path) is kept byte for byte; no
///   normalisation or decoding is done. Relative references work the same way:
///   `"/p?a=1#x"` gives `"/p"`, `"?a=1"` gives `""`.
///
/// Returns `None` for strings containing whitespace, control characters,
/// invisible format characters (U+FEFF, U+200B...: JavaScript's `trim()`
/// removes some of them, turning a relative path into a URL with userinfo) or a
/// backslash (URL parsers disagree on whether `\` ends the authority, and
/// WHATWG parsers remove tabs and newlines anywhere, so such a value could
/// hide userinfo from one of them). Also `None` for a special scheme (`http`,
/// `https`, `ws`, `wss`, `ftp`, any case) not followed by exactly two
/// slashes and a non-slash (`https:///user:pw@host`, `https:user@host`:
/// WHATWG skips any number of slashes before the authority and reads a user
/// and password there, RFC 3986 reads a path) and for a relative reference
/// starting with three slashes (the same, against a special base).
#[must_use]
pub fn strip_query(value: &str, keep_params: &[String]) -> Option<String> {
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\' || is_invisible(c))
    {
        return None;
    }
    // `blob:` wraps a whole URL (`blob:https://u:p@host/id`): strip that
    // one. A blob of a blob is no URL anyone serves: refused (and never
    // recursed into).
    if let Some(inner) = blob_inner(value) {
        if blob_inner(inner).is_some() {
            return None;
        }
        let scheme = &value[..value.len() - inner.len()];
        return strip_query(inner, keep_params).map(|inner| format!("{scheme}{inner}"));
    }
    let no_fragment = value.split_once('#').map_or(value, |(head, _)| head);
    let (base, query) = match no_fragment.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (no_fragment, None),
    };
    let authority_start = match scheme_len(base) {
        Some(n) if is_special(&base[..n]) => {
            // WHATWG skips any number of slashes (none included) before a
            // special URL's authority: only the clean `scheme://host` shape
            // is read the same way by every parser.
            let rest = &base[n + 1..];
            if !rest.starts_with("//") || rest[2..].starts_with('/') {
                return None;
            }
            Some((n + 3, true))
        }
        Some(n) if base[n + 1..].starts_with("//") => Some((n + 3, false)),
        Some(_) => None,
        // A relative `///user@host` against a special base has an authority
        // for WHATWG and none for RFC 3986.
        None if base.starts_with("///") => return None,
        None => base.starts_with("//").then_some((2, false)),
    };
    let mut out = String::with_capacity(no_fragment.len());
    match authority_start {
        Some((a, special)) => {
            let auth_end = base[a..].find('/').map_or(base.len(), |j| a + j);
            let authority = &base[a..auth_end];
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            // A special URL needs a host; `https://u@/h/p` would come out as
            // `https:///h/p`, which WHATWG reads with host `h`.
            if special && host.is_empty() {
                return None;
            }
            out.push_str(&base[..a]);
            out.push_str(host);
            out.push_str(&base[auth_end..]);
        }
        None => out.push_str(base),
    }
    if let Some(q) = query {
        let mut first = true;
        for param in q.split(['&', ';']).filter(|p| !p.is_empty()) {
            let name = param.split_once('=').map_or(param, |(n, _)| n);
            if keep_params.iter().any(|k| k == name) {
                out.push(if first { '?' } else { '&' });
                out.push_str(param);
                first = false;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn sq(v: &str) -> Option<String> {
        strip_query(v, &[])
    }

    #[test]
    fn strips_query_and_fragment() {
        assert_eq!(
            sq("https://example.com/p/a?x=1&y=2#frag").as_deref(),
            Some("https://example.com/p/a")
        );
        assert_eq!(
            sq("https://example.com/p#f?x=1").as_deref(),
            Some("https://example.com/p")
        );
        assert_eq!(
            sq("https://example.com").as_deref(),
            Some("https://example.com")
        );
        assert_eq!(
            sq("https://example.com?q=1").as_deref(),
            Some("https://example.com")
        );
        assert_eq!(
            sq("https://example.com:8443/p?").as_deref(),
            Some("https://example.com:8443/p")
        );
        assert_eq!(
            sq("https://[2001:db8::1]:8443/p?a").as_deref(),
            Some("https://[2001:db8::1]:8443/p")
        );
    }

    #[test]
    fn keep_params_in_order() {
        let k = keep(&["utm_source", "v"]);
        assert_eq!(
            strip_query("https://e.com/p?email=a%40b.c&v=2&utm_source=news&x#f", &k).as_deref(),
            Some("https://e.com/p?v=2&utm_source=news")
        );
        assert_eq!(
            strip_query("/p?utm_source=a&&utm_source=b%20c&v", &k).as_deref(),
            Some("/p?utm_source=a&utm_source=b%20c&v")
        );
        assert_eq!(
            strip_query("/p?ut%6D_source=x&UTM_SOURCE=y&v2=1", &k).as_deref(),
            Some("/p")
        );
        assert_eq!(strip_query("/p?email=x", &k).as_deref(), Some("/p"));
    }

    #[test]
    fn removes_userinfo() {
        assert_eq!(
            sq("https://user:pass@host/p").as_deref(),
            Some("https://host/p")
        );
        assert_eq!(sq("https://user@host").as_deref(), Some("https://host"));
        assert_eq!(sq("https://@host/").as_deref(), Some("https://host/"));
        assert_eq!(
            sq("https://a@b@host:1/p?q").as_deref(),
            Some("https://host:1/p")
        );
        assert_eq!(sq("//user@host/p?q").as_deref(), Some("//host/p"));
        assert_eq!(
            sq("ftp://u:p@ftp.example/x").as_deref(),
            Some("ftp://ftp.example/x")
        );
        // An '@' in the path is not userinfo.
        assert_eq!(
            sq("https://host/@alice?x").as_deref(),
            Some("https://host/@alice")
        );
    }

    #[test]
    fn relative_and_other_forms() {
        assert_eq!(sq("/p?a=1").as_deref(), Some("/p"));
        assert_eq!(sq("p/q?a=1#x").as_deref(), Some("p/q"));
        assert_eq!(sq("?a=1").as_deref(), Some(""));
        assert_eq!(sq("").as_deref(), Some(""));
        assert_eq!(sq("#top").as_deref(), Some(""));
        assert_eq!(
            sq("mailto:a@b.example?subject=hi").as_deref(),
            Some("mailto:a@b.example")
        );
        assert_eq!(sq("/caf\u{e9}?x=1").as_deref(), Some("/caf\u{e9}"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "https://example.com/p q",
            " https://example.com/",
            "https://example.com/\n",
            "https://example.com/\t",
            "https://example.com/\u{7f}",
            "https://example.com/\u{a0}",
            "https://user:pass@host\\@evil/p",
            "https://host\\p",
        ] {
            assert_eq!(sq(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn invisible_characters_and_blob_urls_cannot_hide_userinfo() {
        // JavaScript's trim() removes U+FEFF: `new URL(v.trim())` would read
        // user `alice` and password `secret`.
        for bad in [
            "\u{feff}https://alice:secret@host/p?email=a",
            "\u{200b}https://alice:secret@host/p",
            "https://alice\u{2060}:secret@host/p",
            "blob:blob:https://alice:secret@host/p",
        ] {
            assert_eq!(sq(bad), None, "{bad:?}");
        }
        assert_eq!(
            sq("blob:https://alice:secret@host/id?x=1#f").as_deref(),
            Some("blob:https://host/id")
        );
        assert_eq!(
            strip_query(
                "BLOB:https://u@host/id?utm_source=a&e=b",
                &keep(&["utm_source"])
            )
            .as_deref(),
            Some("BLOB:https://host/id?utm_source=a")
        );
        assert_eq!(sq("blob:https:///u@host"), None);
    }

    /// WHATWG reads a user and password in all of these (any number of
    /// slashes or backslashes after a special scheme, tabs and newlines
    /// removed): refused rather than forwarded.
    #[test]
    fn whatwg_userinfo_shapes_are_refused() {
        for bad in [
            "https:///user:pw@host/p",
            "https:user:pw@host/p",
            "https:////alice:pw@host",
            "http:alice@example.com@host/",
            "HTTPS:///user:pw@host/p",
            "wss:/user@host",
            "ftp:///u:p@host/x",
            "https:\\\\user@host",
            "https:/\\user@host",
            "ht\ttps://user@host",
            "https://us\ner:pw@host/",
            "https:///host/p",
            "///user:pw@host/p",
        ] {
            assert_eq!(sq(bad), None, "{bad:?}");
        }
        // The clean shapes are unchanged, userinfo removed.
        assert_eq!(
            sq("https://user:pw@host/p").as_deref(),
            Some("https://host/p")
        );
        assert_eq!(
            sq("HTTP://a%40b:pw@c@host/p").as_deref(),
            Some("HTTP://host/p")
        );
        assert_eq!(sq("https://"), None);
        assert_eq!(sq("https://u@/host/p"), None);
        assert_eq!(sq("https://@"), None);
        assert_eq!(sq("file:///etc/x?q").as_deref(), Some("file:///etc/x"));
        assert_eq!(sq("foo:///a@b?q").as_deref(), Some("foo:///a@b"));
    }

    #[test]
    fn semicolons_separate_parameters_and_fragments_go() {
        let k = keep(&["utm_source"]);
        assert_eq!(
            strip_query(
                "https://shop.example/p?utm_source=news;email=alice@example.com",
                &k
            )
            .as_deref(),
            Some("https://shop.example/p?utm_source=news")
        );
        assert_eq!(
            strip_query("/p?email=a;utm_source=x&utm_source=y;v=1", &k).as_deref(),
            Some("/p?utm_source=x&utm_source=y")
        );
        for v in [
            "https://e.com/p?utm_source=a#email=alice@example.com",
            "https://e.com/p#?utm_source=a",
            "https://e.com/p?utm_source=a#",
        ] {
            let out = strip_query(v, &k).unwrap();
            assert!(!out.contains('#') && !out.contains("alice"), "{v:?}: {out}");
        }
    }
}
