//! Known ways around minimisers, through the running gateway: each case
//! asserts that the recording upstream received no raw personal value, or
//! nothing at all.

mod support;

use bytes::Bytes;
use support::*;

const RULES: &str = r#"
upstream = "UPSTREAM"
[fields]
"event" = "keep"
"props" = "keep"
"**.email" = { action = "pseudonymise", normalise = "email" }
"userId" = "pseudonymise"
"blob" = "embedded_json"
"blob.event" = "keep"
"blob64" = { action = "embedded_json", encoding = "base64" }
"blob64.event" = "keep"
"#;

const RAW: &str = "bypass.alice@example.com";

async fn gateway() -> (Gateway, Upstream) {
    let up = Upstream::ok().await;
    let gw = Gateway::start(
        &[("p.toml", &RULES.replace("UPSTREAM", &up.url()))],
        Opts::default(),
    )
    .await;
    (gw, up)
}

/// Every `n_` file of JSONTestSuite is refused with 400 and not one byte of
/// it reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_test_suite_n_files_are_refused_and_never_forwarded() {
    let (gw, up) = gateway().await;
    let c = client();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/JSONTestSuite/test_parsing");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("n_") {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        let r = send(
            &c,
            request(
                "POST",
                &gw.url("/p/x"),
                &[("content-type", "application/json")],
                Bytes::from(body),
            ),
        )
        .await;
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        n += 1;
    }
    assert_eq!(n, 188);
    up.assert_untouched();
}

/// Bodies that must be refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_bodies_are_refused_and_never_forwarded() {
    let (gw, up) = gateway().await;
    let c = client();
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "duplicate key",
            format!(r#"{{"event":"a","email":"x@y.z","email":"{RAW}"}}"#).into_bytes(),
        ),
        (
            "escaped duplicate",
            format!(r#"{{"email":"x@y.z","em\u0061il":"{RAW}"}}"#).into_bytes(),
        ),
        (
            "lone surrogate",
            format!(r#"{{"email":"{RAW}\ud800"}}"#).into_bytes(),
        ),
        (
            "invalid utf-8",
            [format!(r#"{{"event":"{RAW}"#).as_bytes(), b"\xff\"}"].concat(),
        ),
        (
            "overlong utf-8",
            [format!(r#"{{"event":"{RAW}"#).as_bytes(), b"\xc0\xaf\"}"].concat(),
        ),
        (
            "comment",
            format!(r#"{{"event":"a" /* {RAW} */}}"#).into_bytes(),
        ),
        (
            "NaN",
            format!(r#"{{"event":NaN,"email":"{RAW}"}}"#).into_bytes(),
        ),
        (
            "BOM",
            [
                b"\xef\xbb\xbf".as_slice(),
                format!(r#"{{"email":"{RAW}"}}"#).as_bytes(),
            ]
            .concat(),
        ),
        (
            "trailing document",
            format!(r#"{{"event":"a"}}{{"event":"{RAW}"}}"#).into_bytes(),
        ),
        (
            "NDJSON sent as JSON",
            format!("{{\"event\":\"a\"}}\n{{\"event\":\"{RAW}\"}}\n").into_bytes(),
        ),
        ("10,000-deep nesting", deep.into_bytes()),
        (
            "duplicate keys that fold alike (case)",
            format!(r#"{{"event":"a","EVENT":"{RAW}"}}"#).into_bytes(),
        ),
        (
            "duplicate keys that fold alike (dotted capital I, escaped)",
            format!(r#"{{"props":{{"email":"x","EMA\u0130L":"{RAW}"}}}}"#).into_bytes(),
        ),
        (
            "duplicate keys that fold alike (invisible character)",
            format!(r#"{{"userId":"u","user\u200bId":"{RAW}"}}"#).into_bytes(),
        ),
        (
            "NUL in a key (C-string parsers read `email`)",
            format!(r#"{{"props":{{"email\u0000x":"{RAW}"}}}}"#).into_bytes(),
        ),
    ];
    let ndjson = "application/x-ndjson";
    let form = "application/x-www-form-urlencoded";
    let cases = cases
        .into_iter()
        .map(|(what, body)| (what, "application/json", body))
        .chain([
            (
                "NDJSON line with a lone CR before a hidden document",
                ndjson,
                format!("{{\"event\":\"a\",\"props\":{{\"x\":\r{{\"userId\":\"{RAW}\"}}\r}}}}\n")
                    .into_bytes(),
            ),
            (
                "NUL in a form name (PHP reads `email`)",
                form,
                format!("event=a&email%00x={RAW}").into_bytes(),
            ),
            (
                "JSON sent as a form (one parameter name under a `*` keep)",
                form,
                format!(r#"{{"event":"a","email":"{RAW}"}}"#).into_bytes(),
            ),
            (
                "JSON sent as a form behind a BOM",
                form,
                format!("\u{feff}{{\"email\":\"{RAW}\"}}").into_bytes(),
            ),
            (
                "JSON sent as a form behind a percent-encoded BOM",
                form,
                format!("%EF%BB%BF{{\"email\":\"{RAW}\"}}").into_bytes(),
            ),
            (
                "JSON sent as a form behind a form feed",
                form,
                format!("\x0c[{{\"email\":\"{RAW}\"}}]").into_bytes(),
            ),
            (
                "JSON sent as a form behind a zero-width space and a comment",
                form,
                format!("\u{200b}/**/{{\"email\":\"{RAW}\"}}").into_bytes(),
            ),
        ]);
    for (what, content_type, body) in cases {
        let r = send(
            &c,
            request(
                "POST",
                &gw.url("/p/x"),
                &[("content-type", content_type)],
                Bytes::from(body),
            ),
        )
        .await;
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert!(
            !r.text().contains(RAW),
            "{what}: error body shows the value"
        );
    }
    // A content type that lies: JSON as text/plain is not rewritten, so it is
    // refused (415), never passed on.
    let r = send(
        &c,
        request(
            "POST",
            &gw.url("/p/x"),
            &[("content-type", "text/plain")],
            format!(r#"{{"email":"{RAW}"}}"#),
        ),
    )
    .await;
    assert_eq!(r.status, 415);
    up.assert_untouched();
}

/// Bodies that are rewritten: the raw value never reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disguised_personal_values_never_reach_the_upstream() {
    use base64::Engine as _;
    let (gw, up) = gateway().await;
    let c = client();
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(format!(r#"{{"event":"e","email":"{RAW}"}}"#));
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "escaped key",
            "application/json",
            format!(r#"{{"props":{{"em\u0061il":"{RAW}"}}}}"#),
        ),
        (
            "case variant",
            "application/json",
            format!(r#"{{"props":{{"EMAIL":"{RAW}","x":{{"Email":"{RAW}"}}}}}}"#),
        ),
        (
            // Java's equalsIgnoreCase and Turkic case folding read `İ` as `i`.
            "dotted capital I",
            "application/json",
            format!(r#"{{"props":{{"EMAİL":"{RAW}","x":{{"EMA\u0130L":"{RAW}"}}}}}}"#),
        ),
        (
            "dotted capital I in a form name",
            "application/x-www-form-urlencoded",
            "EMA%C4%B0L=bypass.alice%40example.com&event=e".to_string(),
        ),
        (
            // (A NUL in a key is refused whole: see the smuggling cases.)
            "control-character key",
            "application/json",
            format!(r#"{{"props":{{"email\u0001":"{RAW}","x":{{"e\u200bmail":"{RAW}"}}}}}}"#),
        ),
        (
            "nested arrays of objects",
            "application/json",
            format!(r#"{{"props":{{"a":[[{{"b":[{{"email":"{RAW}"}}]}}]]}}}}"#),
        ),
        (
            "unlisted field",
            "application/json",
            format!(r#"{{"event":"e","contact":"{RAW}"}}"#),
        ),
        (
            "stringified JSON",
            "application/json",
            format!(r#"{{"blob":"{{\"event\":\"e\",\"email\":\"{RAW}\",\"x\":\"{RAW}\"}}"}}"#),
        ),
        (
            "base64 JSON",
            "application/json",
            format!(r#"{{"blob64":"{b64}"}}"#),
        ),
        (
            "big numbers and exotic floats",
            "application/json",
            format!(
                r#"{{"event":1e400,"props":{{"n":-0.0e-0,"m":123456789012345678901234567890}},"email":"{RAW}"}}"#
            ),
        ),
        (
            "percent-encoded form",
            "application/x-www-form-urlencoded",
            "em%61il=bypass.alice%40example.com&event=e".to_string(),
        ),
        (
            "form with ; separator",
            "application/x-www-form-urlencoded",
            "event=e;contact=bypass.alice%40example.com".to_string(),
        ),
        (
            "NDJSON",
            "application/x-ndjson",
            format!("{{\"email\":\"{RAW}\"}}\n{{\"props\":{{\"Email\":\"{RAW}\"}}}}\n"),
        ),
    ];
    // Each case over HTTP/1.1 and HTTP/2, whole and in odd-sized chunks
    // (1, 7 and 13 bytes: splits inside escapes, keys and UTF-8 sequences).
    let h2 = h2_client();
    let transports: [(&str, &HttpClient, Option<usize>); 5] = [
        ("HTTP/1.1", &c, None),
        ("HTTP/2", &h2, None),
        ("HTTP/1.1 chunked by 1", &c, Some(1)),
        ("HTTP/1.1 chunked by 7", &c, Some(7)),
        ("HTTP/2 frames of 13", &h2, Some(13)),
    ];
    let mut sent = Vec::new();
    for (how, client, chunk) in transports {
        for (what, ct, body) in &cases {
            let req = request(
                "POST",
                &gw.url("/p/x"),
                &[("content-type", ct)],
                body.clone(),
            );
            let req = match chunk {
                None => req,
                Some(n) => chunked(req, body.as_bytes(), n),
            };
            let r = send(client, req).await;
            assert!(r.status < 300, "{what} ({how}): {} {}", r.status, r.text());
            sent.push(format!("{what} ({how})"));
        }
    }
    let records = up.records();
    assert_eq!(records.len(), sent.len());
    for (rec, what) in records.iter().zip(&sent) {
        let body = rec.body_str().to_string();
        let decoded = String::from_utf8_lossy(
            &scrim::rewrite::form::decode(body.as_bytes(), 0).unwrap_or_default(),
        )
        .into_owned();
        assert!(
            !body.contains(RAW) && !decoded.contains(RAW),
            "{what}: raw value forwarded: {body}"
        );
        assert!(!body.contains("bypass.alice"), "{what}: {body}");
    }
    // Query string and headers too.
    let r = send(
        &c,
        request(
            "GET",
            &gw.url(&format!("/p/x?email={RAW}&event=e")),
            &[
                ("cookie", RAW),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-email", RAW),
            ],
            Bytes::new(),
        ),
    )
    .await;
    assert!(r.status < 300);
    let last = up.records().pop().unwrap();
    assert!(!format!("{last:?}").contains(RAW), "{last:?}");
}

/// The same request with its body sent as `n`-byte frames (chunked
/// transfer coding on HTTP/1.1, DATA frames on HTTP/2).
fn chunked(req: http::Request<Body>, body: &[u8], n: usize) -> http::Request<Body> {
    use http_body_util::BodyExt as _;
    let (mut tx, frames) = http_body_util::channel::Channel::<Bytes, BoxError>::new(16);
    let data = body.to_vec();
    tokio::spawn(async move {
        for c in data.chunks(n) {
            if tx.send_data(Bytes::copy_from_slice(c)).await.is_err() {
                return;
            }
        }
    });
    let (parts, _) = req.into_parts();
    http::Request::from_parts(parts, frames.boxed())
}

/// Raw HTTP/1.1 on a fresh connection; returns what the gateway answered
/// before closing (or the read timeout).
async fn raw(addr: std::net::SocketAddr, bytes: &[u8], pause_after: Option<usize>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    match pause_after {
        Some(n) => {
            s.write_all(&bytes[..n]).await.unwrap();
            // Slowloris: stop sending in the middle of the head.
        }
        None => s.write_all(bytes).await.unwrap(),
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Content-Length and Transfer-Encoding together (request smuggling): hyper
/// frames the request by Transfer-Encoding alone (RFC 9112 section 6.1) and
/// drops Content-Length; scrim forwards its own request with a recomputed
/// Content-Length, so the upstream sees one cleanly framed request and no
/// raw personal value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_cannot_smuggle() {
    let (gw, up) = gateway().await;
    let body = format!(r#"{{"email":"{RAW}"}}"#);
    let req = format!(
        "POST /p/x HTTP/1.1\r\nHost: scrim\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let answer = raw(gw.running.addr, req.as_bytes(), None).await;
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    for r in up.records() {
        assert!(!r.body_str().contains(RAW), "{}", r.body_str());
        assert!(r.header("transfer-encoding").is_none());
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
    }
    assert!(up.records().len() <= 1, "one request in, at most one out");
}

/// The recipient never depends on which host a reader believes: two Host
/// headers (RFC 9112 3.2), or an absolute URI or `:authority` that routes
/// elsewhere than the Host header, are refused with 400 and nothing is
/// forwarded; agreeing ones are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_names_two_hosts_is_refused() {
    let up = Upstream::ok().await;
    let claimed = format!(
        "upstream = \"{}\"\nhosts = [\"claimed.example\"]\n[fields]\n\"**\" = \"keep\"\n",
        up.url()
    );
    let gw = Gateway::start(
        &[
            ("p.toml", &RULES.replace("UPSTREAM", &up.url())),
            ("h.toml", &claimed),
        ],
        Opts::default(),
    )
    .await;
    let body = format!(r#"{{"event":"e","email":"{RAW}"}}"#);
    let send_raw = |target: &str, hosts: &[&str]| {
        let mut head = format!("POST {target} HTTP/1.1\r\n");
        for h in hosts {
            head.push_str(&format!("Host: {h}\r\n"));
        }
        format!(
            "{head}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    for (what, target, hosts) in [
        (
            "two Host headers",
            "/p/x",
            &["scrim", "claimed.example"][..],
        ),
        ("the same Host twice", "/p/x", &["scrim", "scrim"][..]),
        (
            "absolute URI to a claimed host",
            "http://claimed.example/p/x",
            &["scrim"][..],
        ),
        (
            "absolute URI away from a claimed Host",
            "http://scrim/p/x",
            &["claimed.example"][..],
        ),
    ] {
        let answer = raw(gw.running.addr, send_raw(target, hosts).as_bytes(), None).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{what}: {answer}");
        assert!(answer.contains("ambiguous_host"), "{what}: {answer}");
    }
    up.assert_untouched();
    // Agreeing names are served.
    for (what, target, hosts) in [
        ("one Host", "/p/x", &["scrim"][..]),
        (
            "absolute URI, same host",
            "http://claimed.example/x",
            &["claimed.example"][..],
        ),
        (
            "absolute URI, both unclaimed",
            "http://other.example/p/x",
            &["scrim"][..],
        ),
    ] {
        let answer = raw(gw.running.addr, send_raw(target, hosts).as_bytes(), None).await;
        assert!(answer.starts_with("HTTP/1.1 2"), "{what}: {answer}");
    }
    assert_eq!(up.records().len(), 3);
}

/// A client that never finishes its request head is cut off by the header
/// read timeout; nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_are_cut_off() {
    let up = Upstream::ok().await;
    let opts = Opts {
        limits: "header_read_timeout_ms = 300".into(),
        ..Opts::default()
    };
    let gw = Gateway::start(&[("p.toml", &RULES.replace("UPSTREAM", &up.url()))], opts).await;
    let req = b"POST /p/x HTTP/1.1\r\nHost: scrim\r\nContent-Type: application/json\r\nX-Slow: 1";
    let start = std::time::Instant::now();
    let answer = raw(gw.running.addr, req, Some(req.len())).await;
    let took = start.elapsed();
    assert!(
        took < std::time::Duration::from_secs(4),
        "connection held for {took:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    up.assert_untouched();
}

/// Hundreds of connections from one address, each sending a head and then
/// its body a byte at a time, hold every concurrency slot only until the
/// minimum data rate applies: then each is cut with 408 and a normal request
/// gets its 2xx within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_bodies_lose_their_slots_once_the_grace_is_over() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::{Duration, Instant, sleep, timeout};
    let up = Upstream::ok().await;
    let opts = Opts {
        limits: "concurrency = 64\nbody_min_rate_grace_ms = 1500\nbody_min_rate_bytes_per_s = 240"
            .into(),
        ..Opts::default()
    };
    let gw = Gateway::start(&[("p.toml", &RULES.replace("UPSTREAM", &up.url()))], opts).await;
    let addr = gw.running.addr;
    let start = Instant::now();
    let head = "POST /p/x HTTP/1.1\r\nHost: scrim\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{";
    let mut tricklers = Vec::new();
    for _ in 0..300 {
        tricklers.push(tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                return None;
            };
            s.write_all(head.as_bytes()).await.ok()?;
            // A byte every 400 ms, for at most 6 s: far below 240 B/s.
            let mut answer = Vec::new();
            for _ in 0..15 {
                let mut buf = [0u8; 512];
                match timeout(Duration::from_millis(400), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => {
                        answer.extend_from_slice(&buf[..n]);
                        break;
                    }
                    Err(_) => {
                        if s.write_all(b" ").await.is_err() {
                            break;
                        }
                    }
                }
            }
            Some(String::from_utf8_lossy(&answer).into_owned())
        }));
    }
    let c = client();
    let normal = || {
        request(
            "POST",
            &gw.url("/p/x"),
            &[("content-type", "application/json")],
            Bytes::from_static(br#"{"event":"e"}"#),
        )
    };
    // While the grace lasts the tricklers hold every slot.
    sleep(Duration::from_millis(700)).await;
    let r = send(&c, normal()).await;
    assert_eq!(
        r.status,
        503,
        "the trickling connections should hold the slots: {}",
        r.text()
    );
    // Once it is over they are cut, and a normal request is served at once.
    sleep(Duration::from_millis(1500).saturating_sub(start.elapsed()) + Duration::from_millis(600))
        .await;
    let t = Instant::now();
    let r = timeout(Duration::from_secs(1), send(&c, normal()))
        .await
        .expect("a normal request is answered within a second");
    assert!(r.status < 300, "{} {}", r.status, r.text());
    assert!(t.elapsed() < Duration::from_secs(1));
    let mut cut = 0;
    for t in tricklers {
        if let Ok(Some(answer)) = t.await
            && answer.starts_with("HTTP/1.1 408")
        {
            assert!(answer.contains("body_timeout"), "{answer}");
            cut += 1;
        }
    }
    assert!(cut >= 64, "{cut} trickling requests cut with 408");
    // Only the normal request reached the upstream.
    assert_eq!(up.records().len(), 1);
}

/// A 50 MB string: under the default 10 MiB body limit it is refused (413)
/// and nothing is forwarded; with a limit that admits it, the field is
/// pseudonymised or dropped like any other, and no stretch of it leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_string_is_refused_or_rewritten_never_forwarded_raw() {
    let huge = format!("bypass.{}@example.com", "a1b2c3d4".repeat(50 << 17));
    assert!(huge.len() > 50 << 20);
    let marker = &huge[..4096];

    // Under the default limit: refused on its declared length, before the
    // body is read (the head and the first bytes are enough).
    let (gw, up) = gateway().await;
    let body = format!(r#"{{"event":"e","email":"{huge}"}}"#);
    let head = format!(
        "POST /p/x HTTP/1.1\r\nHost: scrim\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let start = [head.as_bytes(), &body.as_bytes()[..16 << 10]].concat();
    let answer = raw(gw.running.addr, &start, None).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("too_large"), "{answer}");
    up.assert_untouched();

    let up = Upstream::ok().await;
    let gw = Gateway::start(
        &[("p.toml", &RULES.replace("UPSTREAM", &up.url()))],
        Opts {
            limits: "body_bytes = 134217728".into(),
            ..Opts::default()
        },
    )
    .await;
    let cases = [
        ("pseudonymised", body),
        ("dropped", format!(r#"{{"event":"e","contact":"{huge}"}}"#)),
    ];
    for (what, body) in &cases {
        let r = send(
            &client(),
            request(
                "POST",
                &gw.url("/p/x"),
                &[("content-type", "application/json")],
                body.clone(),
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{what}: {}", r.text());
    }
    let records = up.records();
    assert_eq!(records.len(), 2);
    for (rec, (what, _)) in records.iter().zip(&cases) {
        assert!(rec.complete, "{what}");
        assert!(rec.body.len() < 200, "{what}: {} bytes", rec.body.len());
        assert!(!rec.body_str().contains(marker), "{what}");
        assert!(rec.body_str().starts_with(r#"{"event":"e""#), "{what}");
    }
}

/// Content-Type and Content-Encoding are the caller's strings: the partner
/// gets scrim's own Content-Type (media type, `charset=utf-8` at most), and
/// a refusal never repeats an unknown type or coding (the leak audit checks
/// every error body for the values sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_parameters_and_odd_types_never_leave_or_echo() {
    let (gw, up) = gateway().await;
    let c = client();
    let sent = [
        format!("application/json; profile={RAW}"),
        format!("application/json; charset=utf-8; x-user={RAW}"),
        "application/vnd.bypass%40example.com+json".to_string(),
    ];
    for ct in &sent {
        let r = send(
            &c,
            request(
                "POST",
                &gw.url("/p/x"),
                &[("content-type", ct)],
                r#"{"event":"e"}"#,
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{ct}: {}", r.text());
    }
    let got: Vec<String> = up
        .records()
        .iter()
        .map(|r| r.header("content-type").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        got,
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json"
        ]
    );
    for (ct, ce) in [
        (format!("text/{RAW}"), "identity".to_string()),
        ("application/json".to_string(), format!("gzip, {RAW}")),
        (
            "application/json; charset=utf-8; charset=utf-16".to_string(),
            "identity".to_string(),
        ),
    ] {
        let r = send(
            &c,
            request(
                "POST",
                &gw.url("/p/x"),
                &[("content-type", &ct), ("content-encoding", &ce)],
                r#"{"event":"e"}"#,
            ),
        )
        .await;
        assert_eq!(r.status, 415, "{ct} {ce}: {}", r.text());
        assert!(!r.text().contains("bypass"), "{}", r.text());
    }
    assert_eq!(up.records().len(), 3);
}

/// Bracket, dotted and PHP-mangled names under a `*` keep, and URL shapes
/// that browsers read with a user and password: the upstream sees no raw
/// value, in bodies or query strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bracket_names_and_url_shapes_never_reach_the_upstream() {
    const STAR: &str = r#"
upstream = "UPSTREAM"
[fields]
"*" = "keep"
"email" = "pseudonymise"
"user_email" = "pseudonymise"
"password" = "drop"
"u" = "strip_query"
"page" = { action = "strip_query", keep_params = ["utm_source"] }
[query]
"*" = "keep"
"email" = "pseudonymise"
"user_email" = "pseudonymise"
"password" = "drop"
"#;
    let up = Upstream::ok().await;
    let gw = Gateway::start(
        &[("p.toml", &STAR.replace("UPSTREAM", &up.url()))],
        Opts::default(),
    )
    .await;
    let c = client();
    let secret = "bypass.alice%40example.com";
    let names = [
        "email[]",
        "email%5B%5D",
        "email[0]",
        "user[email]",
        "user.email",
        "user+email",
        "password[]",
        // Rack reads runs of `[` and `]` as separators, paired or not.
        "]email",
        "]]email",
        "]]password",
        "user]email",
        "user]]email",
        "a[b]user_email",
    ];
    let mut sent = 0;
    for name in names {
        let body = format!("{name}={secret}&event=e");
        let r = send(
            &c,
            request(
                "POST",
                &gw.url("/p/x"),
                &[("content-type", "application/x-www-form-urlencoded")],
                body,
            ),
        )
        .await;
        assert!(r.status < 300, "{name}: {} {}", r.status, r.text());
        let q = name.replace('[', "%5B").replace(']', "%5D");
        let r = send(
            &c,
            request(
                "GET",
                &gw.url(&format!("/p/x?{q}={secret}&event=e")),
                &[],
                Bytes::new(),
            ),
        )
        .await;
        assert!(r.status < 300, "{name} (query): {} {}", r.status, r.text());
        sent += 2;
    }
    // JSON behind an invisible prefix, in a query string.
    for q in [
        "%EF%BB%BF%7B%22email%22:%22bypass.alice%40example.com%22%7D",
        "%0C%5B%7B%22email%22:%22bypass.alice%40example.com%22%7D%5D",
        "%E2%80%8B%7B%22email%22:1,%22x%22:%22bypass.alice%22%7D",
    ] {
        let r = send(
            &c,
            request("GET", &gw.url(&format!("/p/x?{q}")), &[], Bytes::new()),
        )
        .await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert!(r.text().contains("invalid_form"), "{q}: {}", r.text());
    }
    for url in [
        "https:///bypass.alice:pw@host/p",
        "https:bypass.alice:pw@host/p",
        "https:////bypass.alice:pw@host",
        "http:bypass.alice@example.com@host/",
        "https:\\\\bypass.alice@host",
        "ht\ttps://bypass.alice@host",
    ] {
        let doc = serde_json::json!({"event": "e", "u": url, "page": "https://shop.example/p?utm_source=news;email=bypass.alice@example.com#bypass.alice"});
        let r = send(
            &c,
            request(
                "POST",
                &gw.url("/p/x"),
                &[("content-type", "application/json")],
                doc.to_string(),
            ),
        )
        .await;
        assert!(r.status < 300, "{url:?}: {} {}", r.status, r.text());
        sent += 1;
    }
    let records = up.records();
    assert_eq!(records.len(), sent);
    for rec in &records {
        let text = format!("{} {}", rec.path, rec.body_str());
        assert!(
            !text.contains("bypass.alice"),
            "raw value forwarded: {text}"
        );
        let decoded = scrim::rewrite::form::decode(text.as_bytes(), 0).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&decoded).contains("bypass.alice"),
            "{text}"
        );
        assert!(
            text.contains("event=e") || text.contains(r#""event":"e""#),
            "{text}"
        );
    }
}

/// Raw bytes that are not UTF-8 but percent-decode to UTF-8 with the escape
/// before them (`%C6` + raw 0x96 reads as `Ɩ` to one parser, `%C6` + U+FFFD
/// to another). In a form body scrim refuses them with 400, even under a
/// `keep` rule; in a query string the HTTP parser already refuses the raw
/// byte with 400. Nothing reaches the upstream either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_that_parsers_read_differently_are_refused() {
    let up = Upstream::ok().await;
    let rules = format!(
        "upstream = \"{}\"\n[fields]\nv = \"keep\"\n[query]\nv = \"keep\"\n",
        up.url()
    );
    let gw = Gateway::start(&[("p.toml", &rules)], Opts::default()).await;
    let query = b"GET /p/x?v=%C6\x96 HTTP/1.1\r\nHost: scrim\r\nConnection: close\r\n\r\n";
    let answer = raw(gw.running.addr, query, None).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let body = b"v=%C6\x96&w=1";
    let mut form = format!(
        "POST /p/x HTTP/1.1\r\nHost: scrim\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    form.extend_from_slice(body);
    let answer = raw(gw.running.addr, &form, None).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains(r#""code":"invalid_form""#) && answer.contains("UTF-8"),
        "{answer}"
    );
    up.assert_untouched();
}

/// The URL path is data: with `paths`, only listed paths leave, with their
/// placeholders rewritten; without, every segment is screened for personal
/// data; either way dot-segments, encoded separators and NUL are refused.
/// Nothing refused reaches the partner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_paths_are_decided_by_templates_or_screened() {
    let up = Upstream::ok().await;
    let templated = format!(
        "upstream = \"{}/base\"\nhosts = [\"claimed.example\"]\npaths = [\"/v1/batch\", \"/users/{{id}}/events\", \"/files/**\"]\n\
         [path_params]\nid = {{ action = \"pseudonymise\", normalise = \"email\" }}\n[fields]\n\"**\" = \"keep\"\n",
        up.url()
    );
    let screened = format!("upstream = \"{}\"\n[fields]\n\"**\" = \"keep\"\n", up.url());
    let gw = Gateway::start(
        &[("t.toml", &templated), ("s.toml", &screened)],
        Opts::default(),
    )
    .await;
    let send = |target: &str, host: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    let refused = [
        ("/t/v1/track", "scrim", "404", "path_not_allowed"),
        ("/t/v1/batch/", "scrim", "404", "path_not_allowed"),
        ("/t/users/a/b/events", "scrim", "404", "path_not_allowed"),
        ("/t/v1/batch/../../admin", "scrim", "400", "invalid_path"),
        ("/t/v1/%2e%2e/admin", "scrim", "400", "invalid_path"),
        ("/t/users/a%2fb/events", "scrim", "400", "invalid_path"),
        ("/t/files/../../v1/admin", "scrim", "400", "invalid_path"),
        (
            "/t/files/x/bob@example.com",
            "scrim",
            "400",
            "personal_data_in_path",
        ),
        ("/admin", "claimed.example", "404", "path_not_allowed"),
        (
            "/s/users/alice@example.com",
            "scrim",
            "400",
            "personal_data_in_path",
        ),
        (
            "/s/users/alice%40example.com",
            "scrim",
            "400",
            "personal_data_in_path",
        ),
        (
            "/s/ip/203.0.113.77/x",
            "scrim",
            "400",
            "personal_data_in_path",
        ),
        ("/s/a/..;x/b", "scrim", "400", "invalid_path"),
        ("/s/a/%252e%252e/b", "scrim", "400", "invalid_path"),
        ("/s/a%5cb", "scrim", "400", "invalid_path"),
        ("/s/a%00b", "scrim", "400", "invalid_path"),
        ("/s/a%zzb", "scrim", "400", "invalid_path"),
    ];
    for (target, host, status, code) in refused {
        let answer = raw(gw.running.addr, send(target, host).as_bytes(), None).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{target}: {answer}"
        );
        assert!(answer.contains(code), "{target}: {answer}");
        assert!(
            !answer.contains("example.com") && !answer.contains("203.0.113"),
            "no value in the refusal: {answer}"
        );
    }
    up.assert_untouched();
    for (target, host) in [
        ("/t/v1/b%61tch?x=1", "scrim"),
        ("/t/users/Alice@Example.com/events", "scrim"),
        ("/users/alice%40example.com/events", "claimed.example"),
        ("/t/files/a/b.txt", "scrim"),
        ("/s/v1/track/2024-05-01", "scrim"),
    ] {
        let answer = raw(gw.running.addr, send(target, host).as_bytes(), None).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{target}: {answer}");
    }
    let seen: Vec<String> = up.records().iter().map(|r| r.path.clone()).collect();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(
        seen[0], "/base/v1/batch",
        "literals are sent as the template writes them; the query has no rule"
    );
    assert!(
        seen[1].starts_with("/base/users/") && seen[1].ends_with("/events"),
        "{seen:?}"
    );
    assert!(!seen[1].to_ascii_lowercase().contains("alice"), "{seen:?}");
    assert_eq!(
        seen[1], seen[2],
        "one person, one pseudonym, however the path spells the email"
    );
    assert_eq!(seen[3], "/base/files/a/b.txt");
    assert_eq!(seen[4], "/v1/track/2024-05-01");
}
