//! Suppression lists in a real `redis-server` (started here on a free
//! loopback port, stopped at the end): two gateways on one store both
//! apply an addition within 2 s, a gateway whose store goes away keeps its
//! last good copy and says so (`/readyz`, `scrim_suppress_store_up`), and
//! one that never loaded the lists is not ready and refuses (503), then
//! serves once the store is there.
//!
//! Needs `redis-server` (Debian package `redis-server`). Without it these
//! tests say they were skipped, unless `SCRIM_REQUIRE_TOOLS` names
//! `redis-server`: then they fail.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use support::redis::{RedisServer, free_port, redis_present};
use support::*;

use scrim::pseudonym::{KeyRing, Normalise};

const SECRET: &str = "5d1c0ffee0ddba11c0ffee0ddba115d1c0ffee0ddba11c0ffee0ddba11abcdef";

fn rule(upstream: &str) -> String {
    format!(
        r#"recipient = "ads"
upstream  = "{upstream}"
records   = "batch"
paths     = ["/v1/batch"]
[fields]
"batch.event"  = "keep"
"batch.userId" = "pseudonymise"
[consent]
purpose = "advertising"
field   = "consent"
[suppress]
subject = ["userId"]
lists   = ["optout"]
[[tests]]
name = "a consenting user leaves as a pseudonym"
input = '{{"batch":[{{"userId":"u","event":"e","consent":["advertising"]}}]}}'
transformed = ["batch.userId"]
"#
    )
}

fn opts(url: &str) -> Opts {
    Opts {
        suppress: format!("store = \"{url}\"\n"),
        secret_hex: Some(SECRET.into()),
        ..Opts::default()
    }
}

async fn post(gw: &Gateway, user: &str) -> Resp {
    let body = json!({"batch": [{"event": "Buy", "userId": user, "consent": ["advertising"]}]});
    send(
        &client(),
        request(
            "POST",
            &gw.url("/ads/v1/batch"),
            &[("content-type", "application/json")],
            Bytes::from(body.to_string()),
        ),
    )
    .await
}

fn add(gw: &Gateway, url: &str, ids: &[&str]) {
    let keys = KeyRing::load(&gw.keys_file).unwrap();
    let mut it = ids.iter().map(|s| s.to_string());
    scrim::consent::source::add_to_store(
        url,
        "optout",
        &keys,
        Some(Normalise::None),
        &mut it,
        &mut |_| {},
    )
    .unwrap();
}

/// Waits until `user` is withheld by `gw` (202), at most `within`.
async fn until_withheld(gw: &Gateway, user: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let r = post(gw, user).await;
        if r.status == 202 {
            assert_eq!(r.json(), json!({"forwarded": 0, "withheld": 1}));
            return start.elapsed();
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            start.elapsed() < within,
            "{user} was not withheld within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn until_metric(gw: &Gateway, line: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if gw.admin_get("/metrics").await.text().contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "never saw {line}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_gateways_on_one_store_both_apply_an_addition_within_2s() {
    if !redis_present() {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::ok().await;
    let a = Gateway::start(&[("ads.toml", &rule(&up.url()))], opts(&redis.url())).await;
    let b = Gateway::start(&[("ads.toml", &rule(&up.url()))], opts(&redis.url())).await;
    for gw in [&a, &b] {
        assert_eq!(gw.admin_get("/readyz").await.status, 200);
        assert_eq!(post(gw, "u1").await.status, 200);
    }
    add(&a, &redis.url(), &["u1", "u2"]);
    let added = Instant::now();
    until_withheld(&a, "u1", Duration::from_secs(2)).await;
    until_withheld(
        &b,
        "u1",
        Duration::from_secs(2).saturating_sub(added.elapsed()),
    )
    .await;
    assert_eq!(post(&b, "u2").await.status, 202);
    assert_eq!(post(&b, "u3").await.status, 200);
    // A second addition: only what was appended is read.
    add(&b, &redis.url(), &["u3"]);
    until_withheld(&a, "u3", Duration::from_secs(2)).await;
    for gw in [&a, &b] {
        until_metric(
            gw,
            "scrim_suppress_list_entries{list=\"optout\"} 3",
            Duration::from_secs(2),
        )
        .await;
    }
    let sent = up.records();
    assert!(
        sent.iter()
            .all(|r| !r.body_str().contains(&a.pseudonym("ads", "u2"))),
        "a suppressed user reached the partner"
    );
}

#[tokio::test]
async fn a_store_that_goes_away_leaves_the_last_good_copy_in_force() {
    if !redis_present() {
        return;
    }
    let redis = RedisServer::start();
    let url = redis.url();
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("ads.toml", &rule(&up.url()))], opts(&url)).await;
    add(&gw, &url, &["u1"]);
    until_withheld(&gw, "u1", Duration::from_secs(2)).await;
    until_metric(&gw, "scrim_suppress_store_up 1", Duration::from_secs(2)).await;
    let before = up.records().len();
    redis.stop();
    until_metric(&gw, "scrim_suppress_store_up 0", Duration::from_secs(5)).await;
    let ready = gw.admin_get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert!(
        ready
            .text()
            .contains("store unreachable, serving the last good copy"),
        "{}",
        ready.text()
    );
    // Still withheld from the copy in memory; others still forwarded.
    assert_eq!(post(&gw, "u1").await.status, 202);
    assert_eq!(post(&gw, "u2").await.status, 200);
    let sent = up.records();
    assert_eq!(sent.len(), before + 1);
    assert!(sent[before].body_str().contains(&gw.pseudonym("ads", "u2")));
}

#[tokio::test]
async fn a_replica_that_never_loaded_the_lists_is_not_ready_and_refuses() {
    if !redis_present() {
        return;
    }
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let up = Upstream::ok().await;
    let gw = Gateway::start(&[("ads.toml", &rule(&up.url()))], opts(&url)).await;
    let ready = gw.admin_get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("suppression lists not loaded"));
    let r = post(&gw, "u1").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error().0, "suppression_unavailable");
    assert!(up.records().is_empty(), "forwarded without its lists");
    // The store comes up (with u1 on the list before this replica ever
    // read it): ready, and u1 is withheld from the first request.
    let redis = RedisServer::start_on(port);
    add(&gw, &redis.url(), &["u1"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.admin_get("/readyz").await.status != 200 {
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(post(&gw, "u1").await.status, 202);
    assert_eq!(post(&gw, "u2").await.status, 200);
    assert_eq!(up.records().len(), 1);
}
