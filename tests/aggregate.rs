//! Aggregate-only recipients through the running gateway: events answered
//! 202 once stored, a report per closed window at the recording upstream in
//! the contract's shape, groups under k only counted, no subject in any
//! report, all-or-none bodies, late events, retries with one report id, and
//! the metrics and `/rules` view. Windows of 1 s; every wait is bounded.

mod support;

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use support::*;

/// The current second: events of a test carry it as their time (epoch
/// seconds), so they land in one window, which closes 3 s after it ends
/// (`lateness = "3s"`): a margin of at least three seconds to send them,
/// also on a busy machine (an event that misses it is counted as late, and
/// the report the test waits for never comes).
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rule(upstream: &str) -> String {
    format!(
        r#"recipient = "stats"
upstream  = "{upstream}/v1/ingest"
mode      = "aggregate"
records   = "batch"
paths     = ["/v1/events"]

[headers]
set = {{ authorization = "Bearer partner-token-123" }}

[fields]
"batch.userId"  = "pseudonymise"
"batch.event"   = "keep"
"batch.ts"      = "keep"
"batch.revenue" = "keep"

[aggregate]
window   = "1s"
lateness = "3s"
time     = "ts"
subject  = "userId"
k        = 2
group_by = ["event"]

[aggregate.measures]
events  = "count"
users   = "distinct_subjects"
revenue = {{ sum = "revenue", min = 0, max = 100 }}

[[allow]]
lint = "P008"
reason = "test threshold"

[[tests]]
name = "the user leaves as a pseudonym"
input = '{{"batch":[{{"userId":"u","event":"e"}}]}}'
transformed = ["batch.userId"]
"#
    )
}

fn opts() -> Opts {
    Opts {
        aggregate: "flush_interval_ms = 50\nretry_initial_ms = 100\nretry_max_ms = 400\n".into(),
        ..Opts::default()
    }
}

fn event(user: &str, ev: &str, revenue: f64, ts: u64) -> Value {
    json!({"userId": user, "event": ev, "ts": ts, "revenue": revenue, "email": format!("{user}@example.com")})
}

async fn post(gw: &Gateway, body: &Value) -> Resp {
    send(
        &client(),
        request(
            "POST",
            &gw.url("/stats/v1/events"),
            &[("content-type", "application/json")],
            Bytes::from(body.to_string()),
        ),
    )
    .await
}

/// The report bodies the upstream received, parsed.
fn reports(up: &Upstream) -> Vec<(Recorded, Value)> {
    up.records()
        .into_iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).expect("a report is JSON");
            (r, v)
        })
        .collect()
}

#[tokio::test]
async fn a_closed_window_is_reported_once_in_the_contract_shape() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("stats.toml", &rule(&up.url()))], opts()).await;
    let t = now();
    // signup: 3 users (4 events); purchase: 1 user (2 events, suppressed).
    let r = post(
        &gw,
        &json!({"batch": [event("alice-1", "signup", 10.0, t), event("bob-2", "signup", 250.0, t)]}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json(), json!({"accepted": 2}));
    let r = post(
        &gw,
        &json!({"batch": [
            event("carol-3", "signup", 1.5, t),
            event("alice-1", "signup", 0.0, t),
            event("dave-4", "purchase", 5.0, t),
            event("dave-4", "purchase", 6.0, t),
        ]}),
    )
    .await;
    assert_eq!(r.json(), json!({"accepted": 4}));

    let got = up
        .wait_for(Duration::from_secs(15), |r| !r.is_empty())
        .await;
    assert_eq!(got.len(), 1, "one report");
    let (rec, body) = &reports(&up)[0];
    assert_eq!(rec.method, "POST");
    assert_eq!(
        rec.path, "/v1/ingest",
        "the upstream exactly, not the caller's path"
    );
    assert_eq!(rec.header("content-type"), Some("application/json"));
    assert_eq!(
        rec.header("authorization"),
        Some("Bearer partner-token-123")
    );
    let id = rec.header("scrim-report-id").expect("a report id");
    assert_eq!(id.len(), 32);
    assert_eq!(
        body,
        &json!({
            "recipient": "stats",
            "window": {"start": scrim::aggregate::time::rfc3339(t), "end": scrim::aggregate::time::rfc3339(t + 1)},
            "groups": [{"key": {"event": "signup"}, "events": 4, "users": 3, "revenue": 111.5}],
            "suppressed": {"groups": 1, "events": 2},
            "late": 0
        })
    );
    let text = rec.body_str();
    for user in [
        "alice-1",
        "bob-2",
        "carol-3",
        "dave-4",
        "example.com",
        "purchase",
    ] {
        assert!(
            !text.contains(user),
            "{user} leaked into the report: {text}"
        );
    }
    for user in ["alice-1", "dave-4"] {
        let p = gw.pseudonym("stats", user);
        assert!(!text.contains(&p), "a subject pseudonym left in the report");
    }

    // Nothing is sent twice; the metrics and /rules say what happened.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(up.records().len(), 1, "sent once");
    let metrics = gw.admin_get("/metrics").await.text();
    for line in [
        "scrim_aggregate_events_total{recipient=\"stats\",outcome=\"folded\"} 6",
        "scrim_aggregate_reports_total{recipient=\"stats\",outcome=\"sent\"} 1",
        "scrim_aggregate_groups_suppressed_total{recipient=\"stats\"} 1",
        "scrim_aggregate_windows_open{recipient=\"stats\"} 0",
        "scrim_requests_total{recipient=\"stats\",status=\"202\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    let rules = gw.admin_get("/rules").await.json();
    let stats = rules["recipients"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["recipient"] == "stats"))
        .cloned()
        .unwrap_or_else(|| panic!("{rules}"));
    assert_eq!(stats["mode"], "aggregate", "{stats}");
    assert_eq!(stats["aggregate"]["open_windows"], 0, "{stats}");

    // The window is reported: an event for it now is late, and is counted
    // in the next report (of the window it arrived in; no time: arrival).
    let r = post(
        &gw,
        &json!({"batch": [event("erin-5", "signup", 1.0, t), {"userId": "frank-6", "event": "x"}]}),
    )
    .await;
    assert_eq!(r.json(), json!({"accepted": 2}));
    up.wait_for(Duration::from_secs(15), |r| r.len() >= 2).await;
    let all = reports(&up);
    assert_eq!(all.len(), 2);
    let (rec2, second) = &all[1];
    assert_eq!(second["late"], 1, "{second}");
    assert_ne!(second["window"], body["window"]);
    assert_eq!(second["suppressed"], json!({"groups": 1, "events": 1}));
    assert_ne!(
        rec2.header("scrim-report-id"),
        Some(id),
        "one id per window"
    );
}

#[tokio::test]
async fn a_body_with_an_event_without_subject_stores_nothing() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("stats.toml", &rule(&up.url()))], opts()).await;
    let t = now();
    let r = post(
        &gw,
        &json!({"batch": [event("alice-1", "signup", 1.0, t), {"event": "signup", "ts": t}]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let (code, message, recipient) = r.error();
    assert_eq!(code, "missing_subject");
    assert!(message.contains("event 1"), "{message}");
    assert_eq!(recipient, "stats");
    // `records` that is not an array.
    let r = post(&gw, &json!({"batch": {"userId": "x"}})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().0, "records_not_array");
    // A body without `records` is one event, read after [fields], which
    // only lets `batch.*` out here: it has no subject.
    let r = post(&gw, &event("bob-2", "signup", 1.0, t)).await;
    assert_eq!(r.error().0, "missing_subject");
    for user in ["bob-2", "carol-3"] {
        let r = post(&gw, &json!({"batch": [event(user, "signup", 1.0, t)]})).await;
        assert_eq!(r.json(), json!({"accepted": 1}));
    }
    up.wait_for(Duration::from_secs(15), |r| !r.is_empty())
        .await;
    let all = reports(&up);
    assert_eq!(all.len(), 1);
    // alice's event was refused with its body: only bob's and carol's.
    assert_eq!(all[0].1["groups"][0]["events"], 2, "{}", all[0].1);
}

#[tokio::test]
async fn ndjson_and_form_bodies_are_events_too() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("stats.toml", &rule(&up.url()))], opts()).await;
    let t = now();
    let nd = format!(
        "{}\n{}\n",
        json!({"batch": [{"userId": "a-1", "event": "view", "ts": t}]}),
        json!({"batch": [{"userId": "b-2", "event": "view", "ts": t}, {"userId": "a-1", "event": "view", "ts": t}]})
    );
    let r = send(
        &client(),
        request(
            "POST",
            &gw.url("/stats/v1/events"),
            &[("content-type", "application/x-ndjson")],
            Bytes::from(nd),
        ),
    )
    .await;
    assert_eq!(r.json(), json!({"accepted": 3}), "{}", r.text());
    // A form body is one event of its parameters.
    let r = send(
        &client(),
        request(
            "POST",
            &gw.url("/stats/v1/events"),
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from("userId=c-3&event=view"),
        ),
    )
    .await;
    assert_eq!(
        r.error().0,
        "missing_subject",
        "[fields] names batch.* only"
    );
    up.wait_for(Duration::from_secs(15), |r| !r.is_empty())
        .await;
    let all = reports(&up);
    assert_eq!(all[0].1["groups"][0]["key"], json!({"event": "view"}));
    assert_eq!(all[0].1["groups"][0]["users"], 2);
    assert_eq!(all[0].1["groups"][0]["events"], 3);
}

#[tokio::test]
async fn a_report_is_retried_with_the_same_id_while_the_partner_fails() {
    // The partner keeps failing.
    let up = Upstream::start(Mode::Reply(Reply::ok("{}").status(503))).await;
    let gw = Gateway::start(&[("stats.toml", &rule(&up.url()))], opts()).await;
    let t = now();
    for user in ["alice-1", "bob-2"] {
        let r = post(&gw, &json!({"batch": [event(user, "signup", 1.0, t)]})).await;
        assert_eq!(r.status, 202);
    }
    let got = up.wait_for(Duration::from_secs(15), |r| r.len() >= 3).await;
    assert!(got.len() >= 3, "retried: {}", got.len());
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.header("scrim-report-id").unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "the same report every time"
    );
    let metrics = gw.admin_get("/metrics").await.text();
    assert!(
        metrics.contains("scrim_aggregate_reports_total{recipient=\"stats\",outcome=\"retried\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("outcome=\"sent\""),
        "nothing counted as sent: {metrics}"
    );
    let open = gw.admin_get("/rules").await.json();
    let stats = open["recipients"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["recipient"] == "stats"))
        .cloned()
        .unwrap();
    assert_eq!(stats["aggregate"]["unsent_reports"], 1, "{stats}");
}

#[tokio::test]
async fn noise_caps_and_the_group_cap_are_stated_in_the_report() {
    let up = Upstream::ok().await;
    let noisy = rule(&up.url()).replace(
        "k        = 2\n",
        "k        = 2\nnoise    = { epsilon = 1.0, max_events_per_subject = 2 }\n",
    );
    let gw = Gateway::start(
        &[("stats.toml", &noisy)],
        Opts {
            aggregate: "flush_interval_ms = 50\nmax_groups_per_window = 2\n".into(),
            ..Opts::default()
        },
    )
    .await;
    let t = now();
    // alice: 4 events, only 2 folded (the per-subject cap); a third group
    // is over the cap of 2 groups: cut.
    let body = json!({"batch": [
        event("alice-1", "signup", 1.0, t),
        event("alice-1", "signup", 1.0, t),
        event("alice-1", "signup", 1.0, t),
        event("alice-1", "signup", 1.0, t),
        event("bob-2", "signup", 1.0, t),
        event("bob-2", "login", 1.0, t),
        event("carol-3", "logout", 1.0, t),
    ]});
    let r = post(&gw, &body).await;
    assert_eq!(r.json(), json!({"accepted": 7}), "{}", r.text());
    up.wait_for(Duration::from_secs(15), |r| !r.is_empty())
        .await;
    let all = reports(&up);
    assert_eq!(all.len(), 1);
    let report = &all[0].1;
    assert_eq!(report["noise"]["mechanism"], "laplace", "{report}");
    assert_eq!(report["noise"]["epsilon"], 1.0, "{report}");
    assert_eq!(report["noise"]["capped_events"], 2, "{report}");
    assert_eq!(report["cut"], json!({"events": 1}), "{report}");
    // signup has 2 users (k = 2): reported, with noisy whole counts.
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{report}");
    assert_eq!(groups[0]["key"], json!({"event": "signup"}));
    assert!(groups[0]["events"].is_u64(), "{report}");
    assert!(groups[0]["users"].is_u64(), "{report}");
    // login (bob alone) is below k.
    assert_eq!(report["suppressed"], json!({"groups": 1, "events": 1}));
    let metrics = gw.admin_get("/metrics").await.text();
    for line in [
        "scrim_aggregate_events_total{recipient=\"stats\",outcome=\"capped\"} 2",
        "scrim_aggregate_events_total{recipient=\"stats\",outcome=\"cut\"} 1",
        "scrim_aggregate_events_total{recipient=\"stats\",outcome=\"folded\"} 4",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}
