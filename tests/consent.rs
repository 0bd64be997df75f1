//! Consent, Global Privacy Control and suppression lists through the
//! running gateway: batches mixing consenting, refusing, silent and
//! suppressed users reach the recording upstream without the withheld
//! events (byte for byte otherwise), a request whose events are all
//! withheld is answered 202 with nothing sent, `scrim-withheld` tells the
//! caller, metrics count by reason, and a list grown while the gateway
//! runs (by `scrim suppress add`, on stdin) applies within 2 s.

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use support::*;

use scrim::pseudonym::{KeyRing, Normalise};

fn rule(upstream: &str) -> String {
    format!(
        r#"recipient = "ads"
upstream  = "{upstream}"
records   = "batch"
paths     = ["/v1/batch", "/pixel"]

[headers]
allow = ["content-type"]

[query]
ev  = "keep"
uid = "pseudonymise"

[fields]
"sentAt"             = "keep"
"batch.event"        = "keep"
"batch.userId"       = "pseudonymise"
"batch.traits.email" = {{ action = "pseudonymise", normalise = "email" }}

[consent]
purpose = "advertising"
field   = "consent"

[suppress]
subject = ["userId", {{ field = "traits.email", normalise = "email" }}, "uid"]
lists   = ["optout", "erasure"]

[[tests]]
name = "a consenting user leaves as a pseudonym"
input = '{{"batch":[{{"userId":"u","event":"e","consent":["advertising"]}}]}}'
transformed = ["batch.userId"]
withheld = 0
"#
    )
}

async fn post(gw: &Gateway, body: &str, headers: &[(&str, &str)]) -> Resp {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    send(
        &client(),
        request(
            "POST",
            &gw.url("/ads/v1/batch"),
            &h,
            Bytes::from(body.to_string()),
        ),
    )
    .await
}

/// Adds `ids` to list `name` of the gateway's `[suppress] dir` with its
/// key ring, then waits until the gateway holds `expect` entries in it.
async fn add(gw: &Gateway, name: &str, n: Normalise, ids: &[&str], expect: usize) {
    let keys = KeyRing::load(&gw.keys_file).unwrap();
    let mut it = ids.iter().map(|s| s.to_string());
    scrim::consent::list::add_to_file(
        &gw.dir.join("suppress"),
        name,
        &keys,
        Some(n),
        &mut it,
        &mut |_| {},
    )
    .unwrap();
    wait_entries(gw, name, expect, Duration::from_secs(5)).await;
}

async fn wait_entries(gw: &Gateway, name: &str, expect: usize, within: Duration) {
    let line = format!("scrim_suppress_list_entries{{list=\"{name}\"}} {expect}");
    let deadline = Instant::now() + within;
    loop {
        if gw.admin_get("/metrics").await.text().contains(&line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "list {name} never held {expect} entries"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_mixed_batch_reaches_the_partner_without_refusing_silent_and_suppressed_users() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("ads.toml", &rule(&up.url()))], Opts::default()).await;
    add(&gw, "optout", Normalise::None, &["u4"], 1).await;
    add(&gw, "erasure", Normalise::Email, &["five@example.com"], 1).await;

    let body = r#"{"sentAt":"2026-12-08T01:00:00.5Z","batch":[
        {"event":"Buy","userId":"u1","consent":["analytics","Advertising"],"price":1.50},
        {"event":"Buy","userId":"u2","consent":{"advertising":false}},
        {"event":"Buy","userId":"u3"},
        {"event":"Buy","userId":"u4","consent":["advertising"]},
        {"event":"Buy","userId":"u5","consent":["advertising"],"traits":{"email":" Five@Example.COM"}},
        {"event":"Buy","userId":"u6","consent":{"ADVERTISING":"granted"},"traits":{"email":"six@example.com"}},
        {"event":"Buy","userId":"u7","consent":"denied"}
    ]}"#;
    let r = post(&gw, body, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers.get("scrim-withheld").unwrap(), "5");
    let got = up.only();
    let expect = format!(
        r#"{{"sentAt":"2026-12-08T01:00:00.5Z","batch":[{{"event":"Buy","userId":"{}"}},{{"event":"Buy","userId":"{}","traits":{{"email":"{}"}}}}]}}"#,
        gw.pseudonym("ads", "u1"),
        gw.pseudonym("ads", "u6"),
        gw.pseudonym("ads", "six@example.com"),
    );
    assert_eq!(got.body_str(), expect);
    // Quoted: a pseudonym (base64url) may hold any short run of letters.
    for never in [
        "\"u2\"",
        "\"u3\"",
        "\"u4\"",
        "\"u5\"",
        "\"u7\"",
        "Example.COM",
        "\"consent\"",
    ] {
        assert!(
            !got.body_str().contains(never),
            "{never} reached the partner"
        );
    }

    let m = gw.admin_get("/metrics").await.text();
    let count = |reason: &str| {
        metric(
            &m,
            &format!("scrim_withheld_events_total{{recipient=\"ads\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(count("consent"), Some(3));
    assert_eq!(count("list:optout"), Some(1));
    assert_eq!(count("list:erasure"), Some(1));
    assert_eq!(count("gpc"), None);
    assert!(
        !m.contains("\"u4\"") && !m.contains("five@"),
        "an identifier in /metrics"
    );
}

#[tokio::test]
async fn sec_gpc_withholds_every_event_and_nothing_is_sent() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("ads.toml", &rule(&up.url()))], Opts::default()).await;
    let body = r#"{"batch":[{"event":"A","userId":"u1","consent":["advertising"]},{"event":"B","userId":"u2","consent":["advertising"]}]}"#;
    let r = post(&gw, body, &[("sec-gpc", "1")]).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json(), json!({"forwarded": 0, "withheld": 2}));
    assert!(
        up.records().is_empty(),
        "something was sent under Sec-GPC: 1"
    );
    // Any other value of the header is not the signal; without it, both leave.
    let r = post(&gw, body, &[("sec-gpc", "0")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers.get("scrim-withheld").is_none());
    assert_eq!(up.records().len(), 1);
    assert!(up.only().body_str().contains(&gw.pseudonym("ads", "u2")));
    let m = gw.admin_get("/metrics").await.text();
    assert_eq!(
        metric(
            &m,
            "scrim_withheld_events_total{recipient=\"ads\",reason=\"gpc\"}"
        ),
        Some(2)
    );
    assert_eq!(
        metric(&m, "scrim_requests_total{recipient=\"ads\",status=\"202\"}"),
        Some(1)
    );
}

#[tokio::test]
async fn a_batch_of_only_refusing_and_silent_users_is_answered_202() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("ads.toml", &rule(&up.url()))], Opts::default()).await;
    let body = r#"{"batch":[{"event":"A","userId":"u1","consent":[]},{"event":"B","userId":"u2"},{"event":"C","userId":"u3","consent":null}]}"#;
    let r = post(&gw, body, &[]).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json(), json!({"forwarded": 0, "withheld": 3}));
    assert_eq!(r.headers.get("scrim-withheld").unwrap(), "3");
    assert!(up.records().is_empty());
    // A body with no events at all is forwarded (nothing to withhold; the
    // engine leaves out the empty array).
    let r = post(&gw, r#"{"sentAt":"x","batch":[]}"#, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.headers.get("scrim-withheld").is_none());
    assert_eq!(up.only().body_str(), r#"{"sentAt":"x"}"#);
}

#[tokio::test]
async fn ndjson_lines_and_single_event_documents_are_decided_one_by_one() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("ads.toml", &rule(&up.url()))], Opts::default()).await;
    add(&gw, "optout", Normalise::None, &["u3"], 1).await;
    // Without `batch`, a line is one event (its userId is outside [fields]'s
    // batch.*, so only sentAt leaves of it).
    let body = concat!(
        "{\"sentAt\":\"1\",\"userId\":\"u1\",\"consent\":[\"advertising\"]}\n",
        "{\"sentAt\":\"2\",\"userId\":\"u2\",\"consent\":[\"analytics\"]}\n",
        "{\"sentAt\":\"3\",\"userId\":\"u3\",\"consent\":[\"advertising\"]}\n",
        "{\"sentAt\":\"4\",\"batch\":[{\"event\":\"x\",\"userId\":\"u3\",\"consent\":[\"advertising\"]},{\"event\":\"y\",\"userId\":\"u9\",\"consent\":[\"advertising\"]}]}\n",
    );
    let r = send(
        &client(),
        request(
            "POST",
            &gw.url("/ads/v1/batch"),
            &[("content-type", "application/x-ndjson")],
            Bytes::from(body),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers.get("scrim-withheld").unwrap(), "3");
    let expect = format!(
        "{{\"sentAt\":\"1\"}}\n{{\"sentAt\":\"4\",\"batch\":[{{\"event\":\"y\",\"userId\":\"{}\"}}]}}\n",
        gw.pseudonym("ads", "u9")
    );
    assert_eq!(up.only().body_str(), expect);
}

#[tokio::test]
async fn a_request_without_body_is_decided_by_its_query_string() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("ads.toml", &rule(&up.url()))], Opts::default()).await;
    add(&gw, "optout", Normalise::None, &["u3"], 1).await;
    let get = |q: &str| {
        let url = gw.url(&format!("/ads/pixel?{q}"));
        async move { send(&client(), request("GET", &url, &[], Bytes::new())).await }
    };
    // No consent parameter: withheld (missing = "withhold").
    let r = get("ev=view&uid=u1").await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json(), json!({"forwarded": 0, "withheld": 1}));
    // Consent given: forwarded, the consent parameter itself dropped.
    let r = get("ev=view&uid=u1&consent=analytics%2Cadvertising").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // On the opt-out list: withheld.
    let r = get("ev=view&uid=u3&consent=granted").await;
    assert_eq!(r.status, 202, "{}", r.text());
    let recs = up.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(
        recs[0].path,
        format!("/pixel?ev=view&uid={}", gw.pseudonym("ads", "u1"))
    );
}

#[tokio::test]
async fn what_the_engine_refuses_is_still_refused_and_records_must_be_an_array() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("ads.toml", &rule(&up.url()))], Opts::default()).await;
    // A duplicate key in a kept event: the engine refuses the whole body.
    let r = post(
        &gw,
        r#"{"batch":[{"event":"a","event":"b","consent":["advertising"]}]}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = post(&gw, r#"{"batch":{"event":"a"}}"#, &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().0, "records_not_array");
    let r = post(
        &gw,
        r#"{"batch":[{"event":"a","consent":["advertising"]},]}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(up.records().is_empty());
}

#[tokio::test]
async fn scrim_suppress_add_on_stdin_applies_to_the_running_gateway_within_2s() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("ads.toml", &rule(&up.url()))], Opts::default()).await;
    let body = r#"{"batch":[{"event":"A","userId":"late-user","consent":["advertising"]}]}"#;
    assert_eq!(post(&gw, body, &[]).await.status, 200);
    let config = gw.dir.write(
        "scrim-cli.toml",
        format!(
            "[keys]\nfile = {}\n\n[suppress]\ndir = {}\n",
            toml_path(&gw.keys_file),
            toml_path(&gw.dir.join("suppress"))
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args(["suppress", "add", "--list", "optout", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"someone-else\nlate-user\n\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let added = Instant::now();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2 added, 2 entries"), "{stderr}");
    assert!(!stderr.contains("late-user"), "an identifier in the output");
    let file = std::fs::read(gw.dir.join("suppress").join("optout.list")).unwrap();
    assert!(!String::from_utf8_lossy(&file).contains("late-user"));
    let mut forwarded = 1;
    loop {
        let r = post(&gw, body, &[]).await;
        if r.status == 200 {
            forwarded += 1;
        }
        if r.status == 202 {
            assert_eq!(r.json(), json!({"forwarded": 0, "withheld": 1}));
            break;
        }
        assert!(
            added.elapsed() < Duration::from_secs(2),
            "the addition did not apply within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.records().len(), forwarded);
    // And it stays applied.
    assert_eq!(post(&gw, body, &[]).await.status, 202);
    assert_eq!(up.records().len(), forwarded);
}

#[tokio::test]
async fn a_list_whose_normalisation_no_subject_has_keeps_its_last_good_copy() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("ads.toml", &rule(&up.url()))], Opts::default()).await;
    add(&gw, "optout", Normalise::None, &["u1"], 1).await;
    // A list rebuilt with `--normalise phone`: no subject of the rule file
    // is normalised so; it is refused, and the last good copy stays.
    let keys = KeyRing::load(&gw.keys_file).unwrap();
    let path = gw.dir.join("suppress").join("optout.list");
    std::fs::remove_file(&path).unwrap();
    let mut ids = ["u1".to_string(), "u2".to_string()].into_iter();
    scrim::consent::list::add_to_file(
        &gw.dir.join("suppress"),
        "optout",
        &keys,
        Some(Normalise::Phone),
        &mut ids,
        &mut |_| {},
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let m = gw.admin_get("/metrics").await.text();
    assert!(
        m.contains("scrim_suppress_list_entries{list=\"optout\"} 1"),
        "the refused list replaced the good copy"
    );
    assert!(metric(&m, "scrim_suppress_reload_errors_total").unwrap_or(0) > 0);
    let r = post(
        &gw,
        r#"{"batch":[{"event":"A","userId":"u1","consent":["advertising"]}]}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
}
