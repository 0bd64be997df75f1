//! No key material and no raw personal value reaches a log line (at the most
//! verbose level scrim allows), an error body, a metric or `/rules`.
//!
//! One gateway, a broad mix of requests (rewritten, refused, failing
//! upstream, every body type, identity headers, query strings), logs captured
//! in memory at TRACE through scrim's own log filter.

mod support;

use bytes::Bytes;
use support::leaks::Capture;
use support::*;

/// Values that must never show anywhere but in the upstream's input.
const SECRETS: &[&str] = &[
    "leak.alice@example.com",
    "Leak.Alice@Example.COM",
    "leak-user-42",
    "203.0.113.77",
    "+44 20 7946 0958",
    "leak-cookie-123",
    "leak-internal-token",
    "leak.query@example.org",
    "leak-partner-secret-xyz",
    "leak-password-hunter2",
    "4111111111111111",
];

const RULES: &str = r#"
upstream = "UPSTREAM"
[headers]
allow = ["content-type"]
set = { authorization = "env:SCRIM_NO_LEAKS_PARTNER_TOKEN" }
[query]
v = "keep"
cid = "pseudonymise"
[fields]
"event" = "keep"
"userId" = "pseudonymise"
"**.email" = { action = "pseudonymise", normalise = "email" }
"context.ip" = "truncate_ip"
"note" = "scan"
"props" = "keep"
"props.password" = "drop"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_personal_or_secret_reaches_logs_errors_metrics_or_rules() {
    let logs = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(scrim::ops::log_filter("trace"))
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // Global: the gateway's tasks run on the runtime's worker threads.
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");
    // SAFETY: set before the gateway starts, read once when rules load; no
    // other thread of this test binary reads the environment.
    unsafe {
        std::env::set_var(
            "SCRIM_NO_LEAKS_PARTNER_TOKEN",
            "Bearer leak-partner-secret-xyz",
        )
    };

    let up = Upstream::ok().await;
    let dead = Upstream::start(Mode::Reset).await;
    let rules = RULES.replace("UPSTREAM", &up.url());
    let dead_rules = RULES.replace("UPSTREAM", &dead.url());
    let gw = Gateway::start(
        &[("p.toml", &rules), ("dead.toml", &dead_rules)],
        Opts::default(),
    )
    .await;
    let c = client();

    let event = r#"{"event":"signup","userId":"leak-user-42","email":"Leak.Alice@Example.COM","context":{"ip":"203.0.113.77"},"note":"call +44 20 7946 0958 or leak.alice@example.com, card 4111111111111111","props":{"password":"leak-password-hunter2","plan":"pro"},"extra":"leak-user-42"}"#;
    let identity = [
        ("content-type", "application/json"),
        ("cookie", "session=leak-cookie-123"),
        ("authorization", "Bearer leak-internal-token"),
        ("x-forwarded-for", "203.0.113.77"),
    ];
    let mut error_bodies = Vec::new();
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, Vec<u8>);
    let mut cases: Vec<Case> = vec![
        (
            gw.url("/p/v1?v=2&cid=leak-user-42&email=leak.query%40example.org"),
            identity.to_vec(),
            event.as_bytes().to_vec(),
        ),
        // Refused: invalid JSON right after personal values.
        (
            gw.url("/p/v1"),
            identity.to_vec(),
            br#"{"email":"leak.alice@example.com","userId":"leak-user-42"#.to_vec(),
        ),
        // Refused: duplicate key holding personal values.
        (
            gw.url("/p/v1"),
            identity.to_vec(),
            br#"{"email":"leak.alice@example.com","email":"leak.query@example.org"}"#.to_vec(),
        ),
        // Refused: a lone surrogate after a personal value.
        (
            gw.url("/p/v1"),
            identity.to_vec(),
            br#"{"userId":"leak-user-42\ud800"}"#.to_vec(),
        ),
        // A personal value as a key.
        (
            gw.url("/p/v1"),
            identity.to_vec(),
            br#"{"props":{"leak.alice@example.com":{"a":1,"a":2}}}"#.to_vec(),
        ),
        // Unsupported type and encoding.
        (
            gw.url("/p/v1"),
            vec![("content-type", "text/plain")],
            event.as_bytes().to_vec(),
        ),
        (
            gw.url("/p/v1"),
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "br"),
            ],
            event.as_bytes().to_vec(),
        ),
        // NDJSON and form.
        (
            gw.url("/p/v1"),
            vec![("content-type", "application/x-ndjson")],
            format!("{event}\n{event}\n").into_bytes(),
        ),
        (
            gw.url("/p/v1"),
            vec![("content-type", "application/x-www-form-urlencoded")],
            b"userId=leak-user-42&email=leak.alice%40example.com&x=leak-password-hunter2".to_vec(),
        ),
        (
            gw.url("/p/v1"),
            vec![("content-type", "application/x-www-form-urlencoded")],
            b"userId=leak-user-42%zz".to_vec(),
        ),
        // The partner fails.
        (
            gw.url("/dead/v1"),
            identity.to_vec(),
            event.as_bytes().to_vec(),
        ),
        // Unknown recipient with personal data in the path and query.
        (
            gw.url("/leak.alice@example.com/x?e=leak.query@example.org"),
            identity.to_vec(),
            event.as_bytes().to_vec(),
        ),
    ];
    for (url, headers, body) in cases.drain(..) {
        let r = send(&c, request("POST", &url, &headers, Bytes::from(body))).await;
        if r.status >= 400 {
            error_bodies.push(r.text());
        }
    }
    let forwarded = up.records();
    assert!(
        !forwarded.is_empty(),
        "the valid requests reached the upstream"
    );
    assert!(error_bodies.len() >= 8, "{error_bodies:?}");

    let metrics = gw.admin_get("/metrics").await.text();
    let rules_view = gw.admin_get("/rules").await.text();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log_text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        log_text.contains("scrim::audit"),
        "audit lines were captured"
    );
    assert!(
        log_text.contains("TRACE") && log_text.contains("hyper"),
        "dependencies' trace output was captured too"
    );

    let secret_b64 = {
        use base64::Engine as _;
        let bytes: Vec<u8> = (0..gw.secret_hex.len() / 2)
            .map(|i| u8::from_str_radix(&gw.secret_hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let mut places = vec![
        ("logs", log_text),
        ("metrics", metrics),
        ("/rules", rules_view),
    ];
    for b in error_bodies {
        places.push(("error bodies", b));
    }
    for (place, text) in &places {
        for s in SECRETS {
            assert!(!text.contains(s), "{s:?} appears in {place}");
        }
        assert!(
            !text.contains(&gw.secret_hex),
            "key material (hex) appears in {place}"
        );
        assert!(
            !text.contains(&secret_b64),
            "key material (base64) appears in {place}"
        );
    }
}
