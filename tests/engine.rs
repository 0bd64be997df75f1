//! The rewrite engine from outside: exact outputs, refusals with offsets and
//! paths, chunking, memory bounds, forms.

use std::sync::Arc;

use scrim::policy::{BodyFormat, compile_str};
use scrim::pseudonym::KeyRing;
use scrim::rewrite::{Engine, ErrorKind, RewriteError};

const RULES: &str = r#"
upstream = "https://partner.example"
[fields]
"type" = "keep"
"event" = "keep"
"userId" = "pseudonymise"
"context.ip" = "truncate_ip"
"context.page.url" = "strip_query"
"properties" = "keep"
"properties.secret" = "drop"
"**.email" = { action = "pseudonymise", normalise = "email" }
"batch" = "keep"
"batch.password" = "drop"
"n" = "keep"
"blob" = "embedded_json"
"blob.a" = "keep"
"blob64" = { action = "embedded_json", encoding = "base64" }
"blob64.ip" = "truncate_ip"
"age" = { action = "bucket", bounds = [18, 25, 35] }
"#;

fn engine(rules: &str) -> Engine {
    Engine::new(
        Arc::new(compile_str(rules, "t.toml", "t").unwrap()),
        &KeyRing::test_ring(),
    )
}

fn ok(input: &str) -> String {
    let out = engine(RULES)
        .rewrite(BodyFormat::Json, input.as_bytes())
        .unwrap();
    String::from_utf8(out.body).unwrap()
}

fn refused(input: &[u8]) -> RewriteError {
    engine(RULES)
        .rewrite(BodyFormat::Json, input)
        .expect_err("must be refused")
}

fn pseudonym(value: &str, scope: &str) -> String {
    KeyRing::test_ring()
        .scoped(scope)
        .pseudonymise(value.as_bytes(), 128)
}

#[test]
fn default_deny_and_exact_output() {
    let out = ok(
        r#"{"type":"track","password":"hunter2","event":"Sign\u0020up","n":1.50e+00,"userId":"u-1"}"#,
    );
    let p = pseudonym("u-1", "t");
    assert_eq!(
        out,
        format!(r#"{{"type":"track","event":"Sign\u0020up","n":1.50e+00,"userId":"{p}"}}"#)
    );
    assert!(p.starts_with("test."));
}

#[test]
fn keys_are_matched_after_unescaping() {
    let out = ok(r#"{"us\u0065rId":"u-1","pass\u0077ord":"x"}"#);
    assert!(!out.contains("u-1"), "{out}");
    assert!(!out.contains("pass"), "{out}");
    assert!(out.contains(&pseudonym("u-1", "t")));
}

#[test]
fn a_drop_below_a_kept_container_is_honoured() {
    let e = engine(
        "upstream = \"https://p.example\"\n[fields]\nuser = \"keep\"\n\"**.password\" = \"drop\"\n\"user.secret\" = \"drop\"\n",
    );
    let out = e
        .rewrite(
            BodyFormat::Json,
            br#"{"user":{"id":"9","password":"hunter2","secret":"s","deep":{"password":"p2"}}}"#,
        )
        .unwrap();
    assert_eq!(out.body, br#"{"user":{"id":"9","deep":{}}}"#);
}

#[test]
fn redact_replaces_any_value() {
    let e = engine("upstream = \"https://p.example\"\n[fields]\n\"*\" = \"redact\"\n");
    let out = e
        .rewrite(
            BodyFormat::Json,
            br#"{"a":true,"b":null,"c":1,"d":"x","e":{"f":1}}"#,
        )
        .unwrap();
    assert_eq!(
        out.body,
        br#"{"a":"[redacted]","b":"[redacted]","c":"[redacted]","d":"[redacted]","e":"[redacted]"}"#
    );
}

#[test]
fn case_and_invisible_variants_of_a_key_meet_its_rule() {
    // Under a kept container, a variant spelling must not slip past `**.email`.
    let out = ok(
        r#"{"properties":{"Email":"a@b.c","a":{"EMAIL":"d@e.f"},"b":{"em\u200bail":"g@h.i"},"c":{"e\u0001mail":"j@k.l"}}}"#,
    );
    for raw in ["a@b.c", "d@e.f", "g@h.i", "j@k.l"] {
        assert!(!out.contains(raw), "{raw} leaked: {out}");
    }
    assert!(out.contains(&pseudonym("a@b.c", "t")), "{out}");
    // Keys are output as written.
    assert!(out.contains(r#""EMAIL":"#), "{out}");
}

#[test]
fn nested_email_anywhere_is_pseudonymised_and_normalised() {
    let out = ok(
        r#"{"properties":{"deep":[{"email":" Alice@Example.COM "}]},"batch":[{"email":"alice@example.com","password":"p"}]}"#,
    );
    let p = pseudonym("alice@example.com", "t");
    assert_eq!(out.matches(&p).count(), 2, "{out}");
    assert!(
        !out.contains("Alice") && !out.contains("alice") && !out.contains("\"p\""),
        "{out}"
    );
}

#[test]
fn containers_appear_only_when_something_inside_stays() {
    // Nothing inside stays: no empty shells, not even the key names.
    assert_eq!(
        ok(r#"{"context":{"ua":"x"},"other":{"alice@example.com":{"a":1}}}"#),
        "{}"
    );
    assert_eq!(
        ok(r#"{"context":{"ip":"10.1.2.3"}}"#),
        r#"{"context":{"ip":"10.1.2.0"}}"#
    );
    assert_eq!(
        ok(r#"{"x":[{"y":[]},{"email":"a@b.c"}]}"#),
        format!(r#"{{"x":[{{"email":"{}"}}]}}"#, pseudonym("a@b.c", "t"))
    );
    assert_eq!(ok(r#"[1,{"type":"a"}]"#), r#"[{"type":"a"}]"#);
    // A container kept as such stays, empty or not.
    assert_eq!(
        ok(r#"{"properties":{},"batch":[]}"#),
        r#"{"properties":{},"batch":[]}"#
    );
    // The document root is always present.
    assert_eq!(ok(r#""scalar root""#), "null");
    assert_eq!(ok(r#"{"nothing":1}"#), "{}");
    assert_eq!(ok(r#"[]"#), "[]");
}

#[test]
fn value_an_action_cannot_apply_to_is_dropped_and_counted() {
    let e = engine(RULES);
    let out = e
        .rewrite(
            BodyFormat::Json,
            br#"{"userId":{"id":1},"age":"old","type":"t"}"#,
        )
        .unwrap();
    assert_eq!(out.body, br#"{"type":"t"}"#);
    assert_eq!(out.stats.not_applicable, 2);
    assert_eq!(out.stats.kept, 1);
    assert_eq!(out.stats.dropped, 2);
    assert_eq!(out.stats.dropped_paths, ["userId", "age"]);
}

#[test]
fn embedded_json_plain_and_base64() {
    let out = ok(r#"{"blob":"{\"a\":1,\"b\":\"secret\"}"}"#);
    assert_eq!(out, r#"{"blob":"{\"a\":1}"}"#);
    use base64::Engine as _;
    let b64 =
        base64::engine::general_purpose::STANDARD.encode(br#"{"ip":"10.1.2.3","email":"x@y.io"}"#);
    let out = ok(&format!(r#"{{"blob64":"{b64}"}}"#));
    let inner = out
        .trim_start_matches(r#"{"blob64":""#)
        .trim_end_matches(r#""}"#);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(inner)
        .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    assert!(
        decoded.starts_with(r#"{"ip":""#) && !decoded.contains("x@y.io"),
        "{decoded}"
    );
    // Not JSON inside: dropped, never passed on.
    assert_eq!(ok(r#"{"blob":"not json {"}"#), "{}");
}

#[test]
fn refusals_say_what_and_where_never_the_value() {
    let e = refused(br#"{"type":"a","type":"b"}"#);
    assert_eq!(
        (e.kind, e.offset, e.path.as_str()),
        (ErrorKind::DuplicateKey, 12, "type")
    );
    // Duplicates are caught after unescaping too.
    let e = refused(br#"{"properties":{"k":1,"\u006b":2}}"#);
    assert_eq!(e.kind, ErrorKind::DuplicateKey);
    assert_eq!(e.path, "properties.k");
    // Keys that fold to the same key are duplicates too, whatever the rules
    // decide for them: a partner reading keys case-insensitively picks one
    // by its own rule.
    for doc in [
        r#"{"event":"a","EVENT":"b"}"#,
        r#"{"properties":{"Email":1,"x":2,"EMAIL":3}}"#,
        r#"{"properties":{"email":1,"EMA\u0130L":2}}"#,
        r#"{"properties":{"strasse":1,"STRA\u1e9eE":2}}"#,
        r#"{"properties":{"userid":1,"user\u200bId":2}}"#,
        r#"{"properties":{"k":1,"\u212a":2}}"#,
    ] {
        let e = refused(doc.as_bytes());
        assert_eq!(e.kind, ErrorKind::DuplicateKey, "{doc}");
    }
    // Also past the point where large objects switch to a hash set.
    let mut big: String = (0..40).map(|i| format!(r#""k{i}":{i},"#)).collect();
    big = format!("{{{big}\"K39\":0}}");
    assert_eq!(refused(big.as_bytes()).kind, ErrorKind::DuplicateKey);
    big = big.replace("K39", "K40");
    assert!(
        engine(RULES)
            .rewrite(BodyFormat::Json, big.as_bytes())
            .is_ok()
    );
    let e = refused(br#"{"email":"\ud800x"}"#);
    assert_eq!((e.kind, e.offset), (ErrorKind::LoneSurrogate, 10));
    let e = refused(b"{\"type\":\"\xff\"}");
    assert_eq!((e.kind, e.offset), (ErrorKind::InvalidUtf8, 9));
    let e = refused(b"{\"type\":\"\xc0\xaf\"}"); // overlong '/'
    assert_eq!(e.kind, ErrorKind::InvalidUtf8);
    assert_eq!(refused(br#"{"a":1} {"b":2}"#).kind, ErrorKind::TrailingData);
    assert_eq!(
        refused(br#"{"a":1 /* c */}"#).kind,
        ErrorKind::Syntax("expected ',' or '}' after object member")
    );
    assert!(matches!(
        refused(br#"{"a":NaN}"#).kind,
        ErrorKind::Syntax(_)
    ));
    assert!(matches!(
        refused("\u{feff}{}".as_bytes()).kind,
        ErrorKind::Syntax(_)
    ));
    assert_eq!(refused(br#"{"a":"#).kind, ErrorKind::UnexpectedEnd);
    assert_eq!(refused(b"").kind, ErrorKind::UnexpectedEnd);
    let secret = "4111111111111111-alice@example.com";
    for bad in [
        format!(r#"{{"email":"{secret}","email":"x"}}"#),
        format!(r#"{{"email":"{secret}\ud800"}}"#),
        format!(r#"{{"email":"{secret}"#),
    ] {
        let msg = refused(bad.as_bytes()).to_string();
        assert!(!msg.contains("alice") && !msg.contains("4111"), "{msg}");
    }
}

#[test]
fn personal_keys_do_not_reach_error_paths() {
    let e = refused(br#"{"properties":{"alice@example.com":{"x":1,"x":2}}}"#);
    assert_eq!(e.path, "properties.<key>.x");
    // Identifier-shaped keys that are data: tokens, advertising ids, IBANs,
    // long numbers.
    for key in [
        "sk_live_abcdefghijklmnop",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "tok_live_ABCDEFGHIJKLMNOPQRS",
        "AEBE52E7-03EE-455A-B3C4-E57283966239",
        "DE89370400440532013000",
        "user4915112345678",
        "deadbeef1234",
        "ref_QWERTYUIOPZX_v",
        "x-QWERTYUIOPZXCV",
    ] {
        let body = format!(r#"{{"properties":{{"{key}":{{"x":1,"x":2}}}}}}"#);
        let e = refused(body.as_bytes());
        assert_eq!(e.path, "properties.<key>.x", "{key}");
    }
    // Names still show, so an error says where.
    for key in [
        "userId",
        "first_name",
        "page-title",
        "$email",
        "utm_source2",
        "createdAtTimestamp",
        "QWERTYUIOPZ_ASDFGHJKLQW",
    ] {
        let body = format!(r#"{{"properties":{{"{key}":{{"x":1,"x":2}}}}}}"#);
        let e = refused(body.as_bytes());
        assert_eq!(e.path, format!("properties.{key}.x"), "{key}");
    }
}

#[test]
fn depth_limit() {
    let deep = "[".repeat(65) + &"]".repeat(65);
    let e = refused(deep.as_bytes());
    assert_eq!(e.kind, ErrorKind::TooDeep(64));
    assert_eq!(e.offset, 64);
    let ok_depth = "[".repeat(64) + &"]".repeat(64);
    assert!(
        engine(RULES)
            .rewrite(BodyFormat::Json, ok_depth.as_bytes())
            .is_ok()
    );
    let e = refused("[".repeat(100_000).as_bytes());
    assert_eq!(e.kind, ErrorKind::TooDeep(64));
}

#[test]
fn ndjson_lines() {
    let e = engine(RULES);
    let out = e
        .rewrite(
            BodyFormat::Ndjson,
            b"{\"type\":1,\"x\":2}\r\n\n  \n{\"event\":\"e\"}",
        )
        .unwrap();
    assert_eq!(out.body, b"{\"type\":1}\n{\"event\":\"e\"}\n");
    assert_eq!(out.stats.documents, 2);
    let err = e
        .rewrite(BodyFormat::Ndjson, b"{\"type\":1}\n{\"type\":\n2}\n")
        .unwrap_err();
    assert_eq!(
        (err.kind, err.line),
        (ErrorKind::LineBreakInDocument, Some(2))
    );
    let err = e
        .rewrite(BodyFormat::Ndjson, b"{\"type\":1} {}\n")
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::TrailingData);
    assert!(e.rewrite(BodyFormat::Ndjson, b"").unwrap().body.is_empty());
}

/// A lone CR in NDJSON is refused wherever it stands, in any chunking:
/// line readers that split on CR would see a second document after it (here
/// a root `userId` hidden inside a kept container). CR LF still ends a line,
/// also when a chunk ends between the two.
#[test]
fn ndjson_refuses_a_carriage_return_without_a_line_feed() {
    let e = engine(RULES);
    for input in [
        &b"{\"event\":\"b\",\"properties\":{\"x\":\r{\"userId\":\"alice@example.com\"}\r}}\n"[..],
        b"{\"type\":1}\r{\"type\":2}\n",
        b"{\"type\":1}\n\r{\"type\":2}\n",
    ] {
        for size in 1..=input.len() {
            let mut out = Vec::new();
            let mut rw = e.body_rewriter(BodyFormat::Ndjson);
            let r = input
                .chunks(size)
                .try_for_each(|c| rw.feed(c, &mut out))
                .and_then(|()| rw.finish(&mut out).map(|_| ()));
            let kind = r.expect_err("a lone CR must be refused").kind;
            assert_eq!(
                kind,
                ErrorKind::BareCarriageReturn,
                "{input:?} in chunks of {size}"
            );
        }
    }
    let err = e
        .rewrite(BodyFormat::Ndjson, b"{\"type\":\r1}\n")
        .unwrap_err();
    assert_eq!((err.kind, err.offset), (ErrorKind::BareCarriageReturn, 8));
    // CR LF, a blank CR LF line and a CR at the very end are line ends.
    let crlf = b"{\"type\":1}\r\n\r\n{\"type\":2}\r\n\r";
    for size in 1..=crlf.len() {
        let mut out = Vec::new();
        let mut rw = e.body_rewriter(BodyFormat::Ndjson);
        for c in crlf.chunks(size) {
            rw.feed(c, &mut out).unwrap();
        }
        rw.finish(&mut out).unwrap();
        assert_eq!(out, b"{\"type\":1}\n{\"type\":2}\n", "chunks of {size}");
    }
    // In a single JSON document a CR is ordinary whitespace.
    assert_eq!(ok("{\"type\":\r1}"), "{\"type\":1}");
}

/// `\u0000` in a key: canonicalisation ignores it (`email\u0000x` is
/// `emailx`), C-string parsers (json-c, for one) stop the key there and read
/// `email`. When the rules decide the two readings differently the body is
/// refused; when alike, it is rewritten as usual (and valid JSON such as
/// JSONTestSuite's `y_object_escaped_null_in_key` passes).
#[test]
fn a_key_with_an_escaped_nul_is_refused_when_its_readings_differ() {
    for input in [
        &br#"{"properties":{"email":"a@b.c","email\u0000x":"alice@example.com"}}"#[..],
        br#"{"eve\u0000nt":"x"}"#,
        br#"{"blob":"{\"a\\u0000b\":1}"}"#,
    ] {
        let r = engine(RULES).rewrite(BodyFormat::Json, input);
        match r {
            Err(e) => assert_eq!(e.kind, ErrorKind::NulInKey, "{input:?}"),
            // Inside embedded_json the document does not apply: dropped.
            Ok(out) => assert_eq!(out.body, b"{}", "{input:?}"),
        }
    }
    assert_eq!(refused(br#"{"properties":{"email\u0000x":1}}"#).offset, 15);
    assert_eq!(refused(br#"{"eve\u0000nt":"x"}"#).kind, ErrorKind::NulInKey);
    // Readings decided alike: rewritten as usual.
    assert_eq!(
        ok(r#"{"event\u0000":"x","\u0000":1}"#),
        r#"{"event\u0000":"x"}"#
    );
    assert_eq!(
        ok(r#"{"blob":"{\"a\\u0000\":1}"}"#),
        r#"{"blob":"{\"a\\u0000\":1}"}"#
    );
    // A NUL in a value is data.
    assert_eq!(ok(r#"{"event":"a\u0000b"}"#), r#"{"event":"a\u0000b"}"#);
}

#[test]
fn any_chunking_gives_the_same_output() {
    let input = r#"{"type":"t\"q\u00e9\ud83d\ude00","userId":"ü-1","context":{"ip":"10.0.0.9","page":{"url":"https://a/b?c=d"}},"properties":{"a":[1,-2.5e-3,true,null,{"b":"c"}],"secret":1,"email":"E@x.io"},"batch":[{"password":"p","k":"v"}],"n":123456789012345678901234567890}"#;
    let e = engine(RULES);
    let whole = e.rewrite(BodyFormat::Json, input.as_bytes()).unwrap();
    for size in 1..=input.len() {
        let mut out = Vec::new();
        let mut rw = e.body_rewriter(BodyFormat::Json);
        for c in input.as_bytes().chunks(size) {
            rw.feed(c, &mut out).unwrap();
        }
        let stats = rw.finish(&mut out).unwrap();
        assert_eq!(out, whole.body, "chunk size {size}");
        assert_eq!(stats, whole.stats, "chunk size {size}");
    }
}

/// The fast path (whole documents) and the resumable state machine give
/// the same outcome on the same bytes: output, counts, or the same refusal
/// at the same offset and path.
#[test]
fn the_fast_path_and_the_state_machine_agree() {
    /// Output and counts, or the refusal's kind, offset, line and path.
    type Outcome = Result<(Vec<u8>, scrim::rewrite::Stats), (ErrorKind, u64, Option<u64>, String)>;
    fn run(e: &Engine, format: BodyFormat, input: &[u8], slow: bool) -> Outcome {
        let mut rw = e.body_rewriter(format);
        if slow {
            rw.state_machine_only();
        }
        let mut out = Vec::new();
        rw.feed(input, &mut out)
            .and_then(|()| rw.finish(&mut out))
            .map(|stats| (out, stats))
            .map_err(|e| (e.kind, e.offset, e.line, e.path))
    }
    let wide: String = (0..40).map(|i| format!(r#""k{i}":{i},"#)).collect();
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let docs: Vec<String> = vec![
        r#"{"type":"t","userId":"u1","context":{"ip":"10.1.2.3","page":{"url":"https://a/b?c=d#e"}}}"#.into(),
        r#"{"properties":{"a":[1,-2.5e-3,true,null,{"b":"c"}],"secret":1,"email":" E@x.io "}}"#.into(),
        r#"{"batch":[{"password":"p","k":"v"},{"email":"a@b.c"},[],{}],"n":123456789012345678901234567890}"#.into(),
        r#" { "type" : "t" , "userId" : 42 , "age" : 30 , "blob" : "{\"a\":1,\"b\":2}" } "#.into(),
        r#"{"blob64":"eyJpcCI6IjEwLjAuMC45In0=","age":"x","context":{"ip":{"x":1}}}"#.into(),
        r#"{"t\u0079pe":"\ud83d\ude00","EVENT":"e","us\u0065rId":"\u00e9"}"#.into(),
        r#"{"properties":{"Email":"a@b.c"},"x":{"y":{"z":[{"w":1}]}}}"#.into(),
        format!("{{{wide}\"type\":1}}"),
        format!("{{\"properties\":{{{wide}\"K39\":0}}}}"),
        format!("{{\"properties\":{{{wide}\"k40\":0}}}}"),
        "[1,2,{\"type\":\"t\"}]".into(),
        "\"just a string\"".into(),
        "42".into(),
        "42 ".into(),
        "null".into(),
        "{}".into(),
        deep(60),
        deep(64),
        deep(65),
        format!("{{\"properties\":{}}}", deep(62)),
        format!("{{\"properties\":{}}}", deep(63)),
        // Refused, each at its offset.
        r#"{"type":"a","type":"b"}"#.into(),
        r#"{"properties":{"k":1,"K":2}}"#.into(),
        r#"{"type":"a" "x":1}"#.into(),
        r#"{"type":"\ud800"}"#.into(),
        r#"{"type":"a\x"}"#.into(),
        r#"{"type":01}"#.into(),
        r#"{"type":1.}"#.into(),
        r#"{"type":tru}"#.into(),
        r#"{"properties":{"a\u0000b":1}}"#.into(),
        r#"{"type":"a"} {"type":"b"}"#.into(),
        "{\"type\":\"a\tb\"}".into(),
        r#"{"type":"a""#.into(),
        "[1,2".into(),
    ];
    let e = engine(RULES);
    for doc in &docs {
        for input in [doc.as_bytes().to_vec(), [doc.as_bytes(), b"\xff"].concat()] {
            let fast = run(&e, BodyFormat::Json, &input, false);
            let slow = run(&e, BodyFormat::Json, &input, true);
            assert_eq!(fast, slow, "{}", String::from_utf8_lossy(&input));
            // In chunks, the state machine hands every container that lies
            // whole in a chunk to the fast path.
            for size in [1, 2, 5, 16, 61] {
                let mut rw = e.body_rewriter(BodyFormat::Json);
                let mut out = Vec::new();
                let chunked = input
                    .chunks(size)
                    .try_for_each(|c| rw.feed(c, &mut out))
                    .and_then(|()| rw.finish(&mut out))
                    .map(|stats| (out, stats))
                    .map_err(|e| (e.kind, e.offset, e.line, e.path));
                assert_eq!(
                    chunked,
                    slow,
                    "chunks of {size}: {}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }
    // NDJSON: every document on its own line, with CRLF, blank lines, a
    // lone CR and a line break inside a document.
    let mut nd = String::new();
    for doc in docs.iter().filter(|d| !d.contains('\n')) {
        nd.push_str(doc);
        nd.push_str("\r\n\n");
    }
    for input in [
        nd.clone(),
        nd.replace("\r\n", "\r"),
        format!("{nd}{{\"type\":\n1}}\n"),
    ] {
        let fast = run(&e, BodyFormat::Ndjson, input.as_bytes(), false);
        let slow = run(&e, BodyFormat::Ndjson, input.as_bytes(), true);
        assert_eq!(fast, slow, "{input}");
    }
    let valid: Vec<&String> = docs
        .iter()
        .filter(|d| run(&e, BodyFormat::Json, d.as_bytes(), true).is_ok())
        .collect();
    assert!(valid.len() >= 18, "{}", valid.len());
    let lines: String = valid.iter().map(|d| format!("{d}\n")).collect();
    let fast = run(&e, BodyFormat::Ndjson, lines.as_bytes(), false).unwrap();
    assert_eq!(
        fast,
        run(&e, BodyFormat::Ndjson, lines.as_bytes(), true).unwrap()
    );
    assert_eq!(fast.1.documents, valid.len() as u64);
    // And the fast path did read them, all but the one with an escaped NUL
    // in a key (the state machine decides those).
    let mut rw = match e.body_rewriter(BodyFormat::Ndjson) {
        scrim::rewrite::BodyRewriter::Json(r) => r,
        _ => unreachable!(),
    };
    let mut out = Vec::new();
    rw.feed(lines.as_bytes(), &mut out).unwrap();
    rw.finish(&mut out).unwrap();
    let nul = valid.iter().filter(|d| d.contains("\\u0000")).count();
    assert_eq!(nul, 1);
    assert_eq!(rw.fast_documents(), (valid.len() - nul) as u64);
}

#[test]
fn memory_is_bounded_by_the_largest_token_not_the_body() {
    let e = engine(RULES);
    let mut rw = match e.body_rewriter(BodyFormat::Json) {
        scrim::rewrite::BodyRewriter::Json(r) => r,
        _ => unreachable!(),
    };
    let mut out = Vec::new();
    rw.feed(br#"{"properties":{"list":["#, &mut out).unwrap();
    let item = br#"{"k":"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"},"#;
    let mut max_buffered = 0;
    let mut total_out = 0;
    for _ in 0..20_000 {
        rw.feed(item, &mut out).unwrap();
        max_buffered = max_buffered.max(rw.buffered());
        total_out += out.len();
        out.clear(); // output is drained as it is produced
    }
    rw.feed(br#"1]}}"#, &mut out).unwrap();
    rw.finish(&mut out).unwrap();
    total_out += out.len();
    assert!(max_buffered <= item.len(), "buffered {max_buffered}");
    assert_eq!(
        total_out,
        r#"{"properties":{"list":["#.len() + item.len() * 20_000 + 4
    );
}

#[test]
fn a_large_string_in_small_chunks_is_linear() {
    // 8 MiB string fed 4 KiB at a time: rescanning from the token start on
    // every chunk would take minutes; resuming takes milliseconds.
    let e = engine(RULES);
    let mut rw = e.body_rewriter(BodyFormat::Json);
    let mut out = Vec::new();
    rw.feed(br#"{"type":""#, &mut out).unwrap();
    let chunk = vec![b'a'; 4096];
    for _ in 0..2048 {
        rw.feed(&chunk, &mut out).unwrap();
    }
    rw.feed(br#""}"#, &mut out).unwrap();
    rw.finish(&mut out).unwrap();
    assert_eq!(out.len(), 8 * 1024 * 1024 + r#"{"type":""}"#.len());
}

#[test]
fn forms_are_fields() {
    let e = engine(RULES);
    let out = e
        .rewrite(
            BodyFormat::Form,
            b"type=track&us%65rId=u-1&password=x&&event=a+b&userId=u-2",
        )
        .unwrap();
    let s = String::from_utf8(out.body).unwrap();
    assert_eq!(
        s,
        format!(
            "type=track&us%65rId={}&event=a+b&userId={}",
            pseudonym("u-1", "t"),
            pseudonym("u-2", "t")
        )
    );
    // `;` separates too: nothing hides behind a kept parameter.
    let out = e
        .rewrite(BodyFormat::Form, b"type=t;password=x;event=e")
        .unwrap();
    assert_eq!(out.body, b"type=t&event=e");
    let err = e.rewrite(BodyFormat::Form, b"type=%zz").unwrap_err();
    assert_eq!(
        (err.kind, err.offset),
        (ErrorKind::InvalidPercentEncoding, 5)
    );
    let err = e.rewrite(BodyFormat::Form, b"userId=%ff").unwrap_err();
    assert_eq!(err.kind, ErrorKind::FormUtf8);
    assert_eq!(err.kind.code(), "invalid_form");
    // Chunked the same.
    let mut out = Vec::new();
    let mut rw = e.body_rewriter(BodyFormat::Form);
    for c in b"type=track&event=x&password=y".chunks(3) {
        rw.feed(c, &mut out).unwrap();
    }
    rw.finish(&mut out).unwrap();
    assert_eq!(out, b"type=track&event=x");
}

#[test]
fn query_rules_are_separate() {
    let e = engine(
        "upstream = \"https://p.example\"\n[query]\nv = \"keep\"\ncid = \"pseudonymise\"\n[fields]\nv = \"drop\"\n",
    );
    let out = e.rewrite_query(b"v=2&cid=abc&email=a%40b.c").unwrap();
    assert_eq!(
        String::from_utf8(out.body).unwrap(),
        format!("v=2&cid={}", pseudonym("abc", "t"))
    );
}

#[test]
fn explain_names_the_deciding_selector_and_never_a_value() {
    let e = engine(RULES);
    let mut rw = e.body_rewriter(BodyFormat::Json);
    rw.explain();
    let mut out = Vec::new();
    rw.feed(
        br#"{"properties":{"email":"a@b.c","secret":"s3"},"zz":"v"}"#,
        &mut out,
    )
    .unwrap();
    rw.finish(&mut out).unwrap();
    let lines: Vec<String> = rw
        .explained()
        .iter()
        .map(|x| format!("{} {:?} {} {}", x.path, x.selector, x.action, x.outcome))
        .collect();
    assert!(
        lines.contains(&"properties.email Some(\"**.email\") pseudonymise transformed".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"properties.secret Some(\"properties.secret\") drop dropped".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"zz None drop dropped".to_string()),
        "{lines:?}"
    );
    assert!(!lines.join(" ").contains("a@b.c") && !lines.join(" ").contains("s3"));
}

/// PHP, Rack/Rails and Node `qs` read `email[]`, `user[email]` and
/// `user.email` as `email` (or `user_email`): a named rule meets them under a
/// `*` keep, in bodies and query strings alike.
#[test]
fn bracket_and_dotted_form_names_meet_named_rules() {
    let e = engine(
        r#"
upstream = "https://p.example"
[fields]
"*" = "keep"
"email" = "pseudonymise"
"user_email" = "pseudonymise"
"password" = "drop"
[query]
"*" = "keep"
"email" = "pseudonymise"
"user_email" = "pseudonymise"
"password" = "drop"
"#,
    );
    let raw = "alice%40example.com";
    for name in [
        "email[]",
        "email%5B%5D",
        "email[0]",
        "user[email]",
        "user%5Bemail%5D",
        "user.email",
        "user+email",
        "user%2Eemail",
        "a[user][email][]",
    ] {
        let input = format!("{name}={raw}&event=e");
        let body = e.rewrite(BodyFormat::Form, input.as_bytes()).unwrap();
        let query = e.rewrite_query(input.as_bytes()).unwrap();
        for out in [body, query] {
            let s = String::from_utf8(out.body).unwrap();
            assert!(!s.contains("alice"), "{name}: {s}");
            assert!(s.starts_with(&format!("{name}=")), "{name}: {s}");
            assert!(s.ends_with("&event=e"), "{name}: {s}");
        }
    }
    for name in [
        "password[]",
        "password%5B%5D",
        "user[password]",
        "password[0]",
    ] {
        let input = format!("{name}=hunter2&event=e");
        for out in [
            e.rewrite(BodyFormat::Form, input.as_bytes()).unwrap(),
            e.rewrite_query(input.as_bytes()).unwrap(),
        ] {
            assert_eq!(out.body, b"event=e", "{name}");
        }
    }
    // Nothing named: `*` keeps it byte for byte.
    let out = e
        .rewrite(BodyFormat::Form, b"items[0][sku]=A1&page.title=x")
        .unwrap();
    assert_eq!(out.body, b"items[0][sku]=A1&page.title=x");
}

/// Browsers and Node's `new URL` read a user and password in these; RFC 3986
/// parsers do not. Refused (the field is dropped), never forwarded.
#[test]
fn strip_query_refuses_whatwg_userinfo_shapes() {
    let e = engine(RULES);
    for url in [
        "https:///user:pw@host/p",
        "https:user:pw@host/p",
        "https:////alice:pw@host",
        "HTTPS:/alice:pw@host",
        "https:\\\\user@host",
        "ht\ttps://user:pw@host/",
        "wss:///u:p@host",
    ] {
        let doc = serde_json::json!({"type": "t", "context": {"page": {"url": url}}});
        let out = e
            .rewrite(BodyFormat::Json, doc.to_string().as_bytes())
            .unwrap();
        assert_eq!(out.body, br#"{"type":"t"}"#, "{url:?}");
        assert_eq!(out.stats.not_applicable, 1, "{url:?}");
    }
    // The last `@` ends the userinfo; `;` separates parameters; the fragment goes.
    let out = ok(r#"{"context":{"page":{"url":"http://alice@example.com@host/p?a=1;b=2#x"}}}"#);
    assert_eq!(out, r#"{"context":{"page":{"url":"http://host/p"}}}"#);
    let e = engine(
        "upstream = \"https://p.example\"\n[fields]\nu = { action = \"strip_query\", keep_params = [\"utm_source\"] }\n",
    );
    let out = e
        .rewrite(
            BodyFormat::Json,
            br#"{"u":"https://shop.example/p?utm_source=news;email=alice@example.com#alice"}"#,
        )
        .unwrap();
    assert_eq!(
        out.body,
        br#"{"u":"https://shop.example/p?utm_source=news"}"#
    );
}
