//! The shared aggregate store on a real `redis-server` (started here on a
//! free loopback port, stopped at the end): two replicas fold into one
//! window, one of them sends the one report, distinct counts and the `k`
//! test are global, a report lease goes to one replica at a time, and a
//! store that is down is 503 `store_unavailable`.
//!
//! Needs `redis-server` (Debian package `redis-server`; `.ci/run` installs
//! it). Without it these tests say they were skipped, unless
//! `SCRIM_REQUIRE_TOOLS` names `redis-server`: then they fail.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use support::redis::{RedisServer, free_port, redis_present};
use support::*;

use scrim::store::Store;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rule(upstream: &str) -> String {
    format!(
        r#"recipient = "stats"
upstream  = "{upstream}/ingest"
mode      = "aggregate"
records   = "batch"
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
[[allow]]
lint = "P005"
reason = "tested here"
"#
    )
}

fn opts(redis: &str) -> Opts {
    Opts {
        aggregate: format!(
            "store = \"{redis}\"\nflush_interval_ms = 50\nretry_initial_ms = 100\nretry_max_ms = 400\n"
        ),
        ..Opts::default()
    }
}

async fn post(gw: &Gateway, events: Vec<Value>) -> Resp {
    send(
        &client(),
        request(
            "POST",
            &gw.url("/stats/e"),
            &[("content-type", "application/json")],
            Bytes::from(json!({ "batch": events }).to_string()),
        ),
    )
    .await
}

#[tokio::test]
async fn two_replicas_share_one_window_and_one_report() {
    if !redis_present() {
        return;
    }
    let redis = RedisServer::start();
    let up = Upstream::ok().await;
    let a = Gateway::start(&[("stats.toml", &rule(&up.url()))], opts(&redis.url())).await;
    // The same key ring on both replicas, as in production.
    let b = start_with_keys(&a, &rule(&up.url()), &opts(&redis.url())).await;
    let t = now();
    let ev = |user: &str, event: &str, revenue: f64| json!({"userId": user, "event": event, "ts": t, "revenue": revenue});
    // "view": u1..u3 on a, u3..u5 on b: 5 users, u3 on both.
    // "buy": one user on each replica: 2 users globally, so k = 2 holds.
    let r = post(
        &a,
        vec![
            ev("u1", "view", 1.0),
            ev("u2", "view", 2.0),
            ev("u3", "view", 3.0),
            ev("u1", "buy", 10.0),
        ],
    )
    .await;
    assert_eq!(r.json(), json!({"accepted": 4}), "{}", r.text());
    let r = post(
        &b,
        vec![
            ev("u3", "view", 4.0),
            ev("u4", "view", 5.0),
            ev("u5", "view", 6.0),
            ev("u9", "buy", 20.0),
        ],
    )
    .await;
    assert_eq!(r.json(), json!({"accepted": 4}), "{}", r.text());

    up.wait_for(Duration::from_secs(15), |r| !r.is_empty())
        .await;
    // Both replicas run a flusher: still one report.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = up.records();
    assert_eq!(got.len(), 1, "one report for one window: {got:?}");
    let report: Value = serde_json::from_slice(&got[0].body).unwrap();
    let group = |event: &str| {
        report["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"]["event"] == event)
            .cloned()
            .unwrap_or_else(|| panic!("{event} missing: {report}"))
    };
    assert_eq!(group("view")["events"], 6, "{report}");
    assert_eq!(
        group("view")["users"],
        5,
        "u3 counted once across replicas: {report}"
    );
    assert_eq!(group("view")["revenue"], 21, "{report}");
    assert_eq!(group("buy")["users"], 2, "{report}");
    assert_eq!(report["suppressed"], json!({"groups": 0, "events": 0}));
    assert_eq!(got[0].header("scrim-report-id").map(str::len), Some(32));
    for u in ["u1", "u3", "u9"] {
        assert!(!got[0].body_str().contains(&a.pseudonym("stats", u)));
    }
    drop(b);
}

/// A second gateway with the key ring of `a` (pseudonyms must agree
/// across replicas for distinct counts to be global).
async fn start_with_keys(a: &Gateway, rule: &str, opts: &Opts) -> Gateway {
    // Gateway::start makes a key ring of its own: this one uses a's.
    let dir = TempDir::new("replica");
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("stats.toml"), rule).unwrap();
    let config = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [rules]\ndir = {}\nwatch = false\n[keys]\nfile = {}\nallow_ephemeral = false\n\
         [aggregate]\ndir = {}\n{}\n",
        toml_path(&rules_dir),
        toml_path(&a.keys_file),
        toml_path(&dir.join("spool")),
        opts.aggregate
    );
    let config = scrim::config::Config::parse(&config, "replica.toml").unwrap();
    let running = scrim::proxy::start(config).await.unwrap();
    Gateway {
        audit: leaks::AuditOnDrop {
            state: running.state.clone(),
            secret_hex: a.secret_hex.clone(),
        },
        running,
        rules_dir,
        keys_file: a.keys_file.clone(),
        secret_hex: a.secret_hex.clone(),
        dir,
    }
}

#[tokio::test]
async fn a_report_lease_goes_to_one_replica_at_a_time() {
    if !redis_present() {
        return;
    }
    let redis = RedisServer::start();
    let one = scrim::store::redis::Redis::open(&redis.url()).unwrap();
    let two = scrim::store::redis::Redis::open(&redis.url()).unwrap();
    assert!(one.claim("stats", "r1", 300).unwrap());
    assert!(!two.claim("stats", "r1", 300).unwrap(), "held by the first");
    assert!(
        one.claim("stats", "r1", 300).unwrap(),
        "the holder keeps it"
    );
    assert!(
        two.claim("stats", "r2", 300).unwrap(),
        "one lease per report"
    );
    // The holder dies: its lease runs out, another replica takes over.
    drop(one);
    std::thread::sleep(Duration::from_millis(450));
    assert!(two.claim("stats", "r1", 300).unwrap());
}

#[tokio::test]
async fn a_store_that_is_down_is_503_and_stores_nothing() {
    if !redis_present() {
        return;
    }
    let up = Upstream::ok().await;
    let nothing = format!("redis://127.0.0.1:{}", free_port());
    let gw = Gateway::start(&[("stats.toml", &rule(&up.url()))], opts(&nothing)).await;
    let r = post(&gw, vec![json!({"userId": "u1", "event": "view"})]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error().0, "store_unavailable");
    // Up now: the next body is stored (the store is opened on demand).
    let redis = RedisServer::start();
    drop(gw);
    let gw = Gateway::start(&[("stats.toml", &rule(&up.url()))], opts(&redis.url())).await;
    let r = post(&gw, vec![json!({"userId": "u1", "event": "view"})]).await;
    assert_eq!(r.json(), json!({"accepted": 1}));
}

/// A partner that records report ids and answers with the status the test
/// sets (loopback, one thread per connection).
struct Partner {
    addr: std::net::SocketAddr,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, u16)>>>,
}

impl Partner {
    fn start(status: u16) -> Partner {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(status));
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (st, g) = (status.clone(), got.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (st, g) = (st.clone(), g.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    loop {
                        let (mut len, mut id, mut line) = (0usize, String::new(), String::new());
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let l = line.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = l.split_once(':') {
                                match k.to_ascii_lowercase().as_str() {
                                    "content-length" => len = v.trim().parse().unwrap_or(0),
                                    "scrim-report-id" => id = v.trim().to_string(),
                                    _ => {}
                                }
                            }
                        }
                        let mut body = vec![0u8; len];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        let answered = st.load(Ordering::SeqCst);
                        g.lock().unwrap().push((id, answered));
                        let reply =
                            format!("HTTP/1.1 {answered} X\r\ncontent-length: 2\r\n\r\n{{}}");
                        if conn.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Partner { addr, status, got }
    }

    fn received(&self) -> Vec<(String, u16)> {
        self.got.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_report_left_by_a_replica_that_stops_is_sent_by_another() {
    if !redis_present() {
        return;
    }
    let redis = RedisServer::start();
    let partner = Partner::start(503);
    let url = format!("http://{}", partner.addr);
    // A short response timeout makes the report lease short (twice it, at
    // least 1 s).
    let opts = Opts {
        response_timeout_ms: 500,
        ..opts(&redis.url())
    };
    let a = Gateway::start(&[("stats.toml", &rule(&url))], opts.clone()).await;
    let t = now();
    let events = vec![
        json!({"userId": "u1", "event": "view", "ts": t}),
        json!({"userId": "u2", "event": "view", "ts": t}),
    ];
    assert_eq!(post(&a, events).await.json(), json!({"accepted": 2}));
    // Only `a` runs: it holds the report's lease while the partner refuses.
    let deadline = Instant::now() + Duration::from_secs(15);
    while partner.received().len() < 2 {
        assert!(Instant::now() < deadline, "the report was never tried");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let b = start_with_keys(&a, &rule(&url), &opts).await;
    // `a` stops for good, holding the lease; the partner recovers.
    drop(a);
    partner
        .status
        .store(200, std::sync::atomic::Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !partner.received().iter().any(|(_, s)| *s == 200) {
        assert!(Instant::now() < deadline, "no replica took the report over");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = partner.received();
    assert_eq!(got.iter().filter(|(_, s)| *s == 200).count(), 1, "{got:?}");
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(ids.len(), 1, "one report id across replicas: {got:?}");
    let open = b.admin_get("/rules").await.json();
    assert_eq!(
        open["recipients"][0]["aggregate"]["unsent_reports"], 0,
        "{open}"
    );
}

#[tokio::test]
async fn late_events_are_reported_in_the_window_they_arrived_in() {
    if !redis_present() {
        return;
    }
    use scrim::aggregate::Folded;
    use scrim::store::WindowLimits;
    let redis = RedisServer::start();
    let store = scrim::store::redis::Redis::open(&redis.url()).unwrap();
    let policy = scrim::policy::compile_str(
        "upstream = \"http://127.0.0.1:9\"\nmode = \"aggregate\"\n[fields]\nu = \"pseudonymise\"\ne = \"keep\"\n\
         [aggregate]\nwindow = \"10s\"\nsubject = \"u\"\nk = 1\ngroup_by = [\"e\"]\n[aggregate.measures]\nevents = \"count\"\n",
        "x.toml",
        "x",
    )
    .unwrap();
    let rules = policy.aggregate.unwrap();
    let ev = |window: u64, arrival_window: u64, subject: &str| Folded {
        window,
        arrival_window,
        group: "[\"a\"]".into(),
        subject: subject.into(),
        values: vec![None],
    };
    let limits = WindowLimits { max_groups: 10 };
    let out = store
        .fold("x", &rules, &[ev(10, 10, "s1")], limits)
        .unwrap();
    assert_eq!(out.folded, 1);
    let made = store.close("x", &rules, 20).unwrap();
    assert_eq!(made.len(), 1);
    // Window 10 is reported: an event for it arriving in window 20 is late
    // and counted in window 20's report; window 20 opens for it.
    let out = store
        .fold("x", &rules, &[ev(10, 20, "s2"), ev(20, 20, "s3")], limits)
        .unwrap();
    assert_eq!((out.late, out.folded), (1, 1));
    let made = store.close("x", &rules, 30).unwrap();
    assert_eq!(made.len(), 1);
    let body: Value = serde_json::from_str(&made[0].body).unwrap();
    assert_eq!(body["late"], 1, "{body}");
    assert_eq!(body["groups"][0]["events"], 1, "{body}");
    // Closing again makes nothing: each window is reported once.
    assert!(store.close("x", &rules, 30).unwrap().is_empty());
    assert_eq!(store.pending(&["x".to_string()]).unwrap().len(), 2);
}
