//! What the gateway parses before the engine: Content-Type, Content-Encoding
//! and the capped decoder, query minimisation, header minimisation.
//!
//! Oracles: no panic; only the JSON, NDJSON and form media types (and
//! `+json`) are rewritten, anything else is passthrough only when the rule
//! file lists it; the decoder never hands on more than its limit; a rewritten
//! query holds only parameters the `[query]` rules allow, with transformed
//! values that are not the raw input; the outbound headers hold only allowed
//! or set names, never a hop-by-hop one; a URL path leaves only without
//! dot-segments, encoded separators or NUL, unchanged when screened (and
//! then accepted again as it is), and in the shape of a template when the
//! rules list `paths`, with placeholders as pseudonyms.
#![no_main]

use std::sync::{Arc, OnceLock};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use scrim::policy::{BodyFormat, compile_str};
use scrim::proxy::body::{self, BodyKind, Decoder};
use scrim::proxy::headers;
use scrim::pseudonym::KeyRing;
use scrim::rewrite::Engine;

const RULES: &str = r#"
upstream = "https://p.example"
passthrough_content_types = ["image/gif"]
[headers]
allow = ["user-agent", "x-trace", "cookie"]
set = { authorization = "Bearer partner" }
[query]
v = "keep"
cid = "pseudonymise"
"#;

const PATH_RULES: &str = r#"
upstream = "https://p.example"
paths = ["/v1/batch", "/u/{id}/e", "/f/**"]
[path_params]
id = "pseudonymise"
"#;

fn templated() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| build(PATH_RULES, "paths"))
}

fn build(rules: &str, name: &str) -> Engine {
    let file = format!("{name}.toml");
    Engine::new(Arc::new(compile_str(rules, &file, name).expect("rules")), &KeyRing::test_ring())
}

/// No segment of a path that leaves reads, decoded once or twice, as a
/// dot-segment, or holds a separator or NUL.
fn assert_plain(path: &str) {
    for seg in path.split('/').skip(1) {
        let mut reading = seg.to_string();
        for _ in 0..2 {
            let Some(next) = percent_decode(&reading) else { break };
            let name = next.split(';').next().unwrap_or("").trim();
            assert!(name.is_empty() || name.chars().any(|c| c != '.'), "dot-segment {seg:?} left in {path:?}");
            assert!(!next.contains(['/', '\\', '\0']), "separator or NUL in {seg:?} left in {path:?}");
            reading = next;
        }
    }
}

/// Percent-decoding as a path reader does it (`+` stays `+`); `None` on a
/// malformed escape.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| build(RULES, "gw"))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = (data[0] as usize) % data.len();
    let (a, b) = data[1..].split_at(split.min(data.len() - 1));
    let text = String::from_utf8_lossy(a);

    // Content-Type and Content-Encoding.
    let passthrough = vec!["image/gif".to_string()];
    if let Ok(kind) = body::classify(Some(&text), !b.is_empty(), true, &passthrough) {
        let (mt, _) = body::media_type(&text);
        match kind {
            BodyKind::Rewrite(BodyFormat::Json) => assert!(
                mt == "application/json" || (mt.starts_with("application/") && mt.ends_with("+json")),
                "{mt:?} rewritten as JSON"
            ),
            BodyKind::Rewrite(BodyFormat::Ndjson) => assert!(mt.contains("json"), "{mt:?}"),
            BodyKind::Rewrite(BodyFormat::Form) => assert_eq!(mt, "application/x-www-form-urlencoded"),
            BodyKind::Passthrough => assert_eq!(mt, "image/gif"),
            BodyKind::Empty => assert!(b.is_empty(), "a body classified as empty"),
        }
    }
    if let Ok(enc) = body::encoding(Some(&text), &[]) {
        let limit = 1 + (data[0] as u64) * 64;
        let mut d = Decoder::new(enc, limit);
        let mut total = 0u64;
        let mut sink = |x: &[u8]| {
            total += x.len() as u64;
            Ok(())
        };
        let _ = b.chunks(7).try_for_each(|c| d.push(c, &mut sink)).and_then(|()| d.finish(&mut sink));
        assert!(total <= limit, "decoder handed on {total} bytes over a {limit} limit");
    }

    // Query minimisation.
    let e = engine();
    if let Ok(out) = e.rewrite_query(b) {
        let q = String::from_utf8(out.body).expect("query output is UTF-8");
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let name = pair.split('=').next().unwrap_or("");
            let decoded = scrim::rewrite::form::decode(name.as_bytes(), 0).expect("valid output");
            let canonical = scrim::policy::selector::canonical(&String::from_utf8_lossy(&decoded));
            assert!(canonical == "v" || canonical == "cid", "query parameter {name:?} left");
            if canonical == "cid" {
                let value = pair.split_once('=').map_or("", |(_, v)| v);
                assert!(value.starts_with("test."), "cid left as {value:?}");
            }
        }
    }

    // URL paths.
    if text.starts_with('/') {
        if let Ok(p) = e.rewrite_path(&text) {
            assert_eq!(p.path, text, "a screened path is sent as written");
            assert_plain(&p.path);
        }
        if let Ok(p) = templated().rewrite_path(&text) {
            assert_plain(&p.path);
            let ok = p.path == "/v1/batch"
                || p.path == "/f"
                || p.path.starts_with("/f/")
                || (p.path.starts_with("/u/test.") && p.path.ends_with("/e") && p.path.matches('/').count() == 3);
            assert!(ok, "{:?} left as {:?}", text, p.path);
            if p.path.starts_with("/f/") {
                assert_eq!(e.rewrite_path(&p.path).map(|q| q.path), Ok(p.path.clone()), "a `**` rest passes the screening");
            }
        }
    }

    // Header minimisation.
    let mut incoming = HeaderMap::new();
    for line in text.split('\n') {
        if let Some((k, v)) = line.split_once(':')
            && let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.trim().as_bytes()), HeaderValue::from_str(v.trim()))
        {
            incoming.append(k, v);
        }
    }
    let allow: Vec<HeaderName> = ["user-agent", "x-trace", "cookie", "connection", "transfer-encoding"]
        .iter()
        .map(|s| HeaderName::from_static(s))
        .collect();
    let set = vec![(HeaderName::from_static("authorization"), HeaderValue::from_static("Bearer partner"))];
    let out = headers::outbound(&incoming, &allow, &set);
    for (k, v) in &out {
        assert!(
            ["user-agent", "x-trace", "cookie", "authorization"].contains(&k.as_str()),
            "{k} left"
        );
        assert!(!headers::HOP_BY_HOP.contains(&k.as_str()), "hop-by-hop {k} left");
        if k == "authorization" {
            assert_eq!(v, "Bearer partner", "the caller's authorization left");
        }
    }
    let mut response = incoming.clone();
    headers::inbound_response(&mut response);
    assert!(response.get("set-cookie").is_none());
});
