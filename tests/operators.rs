//! Refusals that say how to fix, and what operators see: the unknown
//! recipient's 404 with the nearest loaded one, the 415 listing what a
//! recipient takes, the hint for NDJSON sent as JSON, the 502's cause in
//! the log; the `code` label on the requests counter, `scrim_build_info`,
//! each recipient's rule version as a metric, and the last refused reload
//! on `/rules`. Through the gateway, on loopback.

mod support;

use support::*;

fn rule(recipient: &str, upstream: &str, rest: &str) -> String {
    format!("recipient = \"{recipient}\"\nupstream = \"{upstream}\"\n{rest}\n")
}

const JSON: (&str, &str) = ("content-type", "application/json");

async fn metrics(gw: &Gateway) -> String {
    gw.admin_get("/metrics").await.text()
}

/// The log lines that name `recipient`.
fn log_lines_of(recipient: &str) -> Vec<String> {
    let needle = format!("recipient={recipient} ");
    leaks::audit()
        .log_text()
        .lines()
        .filter(|l| l.contains(&needle) || l.ends_with(&format!("recipient={recipient}")))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_recipient_is_named_with_the_nearest_loaded_one() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(
        &[
            ("segment.toml", &rule("segment", &up.url(), "")),
            ("ga4.toml", &rule("ga4", &up.url(), "")),
        ],
        Opts::default(),
    )
    .await;
    let c = client();
    let body = "{\"event\":\"x\",\"email\":\"carol.unknown@example.org\"}";
    let refusal = |path: &'static str| {
        let c = c.clone();
        let url = gw.url(path);
        async move {
            let resp = send(&c, request("POST", &url, &[JSON], body)).await;
            assert_eq!(resp.status, 404, "{path}: {}", resp.text());
            let (code, message, recipient) = resp.error();
            assert_eq!(code, "unknown_recipient");
            assert_eq!(recipient, serde_json::Value::Null);
            assert!(!message.contains("carol"), "{message}");
            message
        }
    };
    // A near miss: what was asked, and the fix.
    let m = refusal("/segmnt/v1/track").await;
    assert!(m.contains("\"segmnt\""), "{m}");
    assert!(m.contains("did you mean \"segment\"?"), "{m}");
    // Nothing near: the loaded recipients, sorted.
    let m = refusal("/mixpanel/track").await;
    assert!(m.contains("\"mixpanel\""), "{m}");
    assert!(m.contains("the loaded recipients are: ga4, segment"), "{m}");
    // A first segment that is not a name, or holds personal data, is not
    // echoed.
    for path in [
        "/alice.smith@example.com/track",
        "/4155550123/track",
        "/u12345678/track",
        "/",
    ] {
        let m = refusal(path).await;
        assert!(
            m.starts_with("no recipient matches this request"),
            "{path}: {m}"
        );
        assert!(!m.contains("alice") && !m.contains("5550123"), "{m}");
        assert!(!m.contains("12345678"), "{m}");
        assert!(m.contains("ga4, segment"), "{m}");
    }
    up.assert_untouched();
    let text = metrics(&gw).await;
    assert!(
        text.contains(
            "scrim_requests_total{recipient=\"unknown\",status=\"404\",code=\"unknown_recipient\"} 6"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_415_lists_the_types_and_encodings_the_recipient_takes() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(
        &[(
            "csv.toml",
            &rule(
                "csv",
                &up.url(),
                "passthrough_content_types = [\"text/csv\"]\n[fields]\n\"event\" = \"keep\"\n",
            ),
        )],
        Opts::default(),
    )
    .await;
    let c = client();
    let url = gw.url("/csv/e");
    let takes = |message: &str| {
        for part in [
            "application/json",
            "application/x-ndjson",
            "application/x-www-form-urlencoded",
            "identity, gzip or deflate",
            "untouched: text/csv",
        ] {
            assert!(message.contains(part), "{part} missing in: {message}");
        }
        assert!(!message.contains("not shown"), "{message}");
    };
    for (ct, named) in [
        ("text/plain", "content type text/plain is not handled"),
        (
            "application/x-bob-jones-profile",
            "this content type is not handled",
        ),
    ] {
        let resp = send(
            &c,
            request("POST", &url, &[("content-type", ct)], "event,x"),
        )
        .await;
        assert_eq!(resp.status, 415, "{}", resp.text());
        let (code, message, _) = resp.error();
        assert_eq!(code, "unsupported_content_type");
        assert!(message.starts_with(named), "{message}");
        assert!(!message.contains("bob"), "{message}");
        takes(&message);
    }
    for (ce, named) in [
        ("br", "content encoding br is not handled"),
        ("x-dave-codec", "this content encoding is not handled"),
    ] {
        let resp = send(
            &c,
            request(
                "POST",
                &url,
                &[JSON, ("content-encoding", ce)],
                "{\"event\":\"x\"}",
            ),
        )
        .await;
        assert_eq!(resp.status, 415, "{}", resp.text());
        let (code, message, _) = resp.error();
        assert_eq!(code, "unsupported_content_encoding");
        assert!(message.starts_with(named), "{message}");
        assert!(!message.contains("dave"), "{message}");
        takes(&message);
    }
    up.assert_untouched();
    let text = metrics(&gw).await;
    for (code, n) in [
        ("unsupported_content_type", 2),
        ("unsupported_content_encoding", 2),
    ] {
        let line =
            format!("scrim_requests_total{{recipient=\"csv\",status=\"415\",code=\"{code}\"}} {n}");
        assert!(text.contains(&line), "{line}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_sent_as_json_is_told_to_use_the_ndjson_type() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(
        &[(
            "lines.toml",
            &rule("lines", &up.url(), "[fields]\n\"event\" = \"keep\"\n"),
        )],
        Opts::default(),
    )
    .await;
    let body = "{\"event\":\"erin.secret.value\"}\n{\"event\":\"frank.secret.value\"}\n";
    let resp = send(
        &client(),
        request("POST", &gw.url("/lines/e"), &[JSON], body),
    )
    .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    let (code, message, _) = resp.error();
    assert_eq!(code, "invalid_json");
    assert!(
        message.contains("send them as application/x-ndjson"),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");
    up.assert_untouched();
    // The same lines under the NDJSON type go through.
    let resp = send(
        &client(),
        request(
            "POST",
            &gw.url("/lines/e"),
            &[("content-type", "application/x-ndjson")],
            body,
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    // Other JSON errors get no such hint.
    let resp = send(
        &client(),
        request("POST", &gw.url("/lines/e"), &[JSON], "{\"event\":"),
    )
    .await;
    assert_eq!(resp.status, 400);
    assert!(!resp.error().1.contains("ndjson"), "{}", resp.text());
}

/// Sends one request to `recipient` and returns the 502's message after
/// checking its status, code and that the log line names `cause`.
async fn unreachable(gw: &Gateway, recipient: &str, cause: &str) -> String {
    let resp = send(
        &client(),
        request(
            "POST",
            &gw.url(&format!("/{recipient}/e")),
            &[JSON],
            "{\"event\":\"x\"}",
        ),
    )
    .await;
    assert_eq!(resp.status, 502, "{recipient}: {}", resp.text());
    let (code, message, _) = resp.error();
    assert_eq!(code, "upstream_unreachable");
    let lines = log_lines_of(recipient);
    let field = format!("cause=\"{cause}\"");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("partner unreachable") && l.contains(&field)),
        "{recipient}: no log line with {field}: {lines:#?}"
    );
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_logs_its_cause() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let reset = Upstream::start(Mode::Reset).await;
    let pki = pki("scrim untrusted CA", &["localhost", "127.0.0.1"], false);
    let tls = Upstream::start_tls(Mode::Reply(Reply::ok("{}")), server_tls(&pki)).await;
    let gw = Gateway::start(
        &[
            (
                "refused.toml",
                &rule("refused", &format!("http://127.0.0.1:{closed_port}"), ""),
            ),
            (
                "nodns.toml",
                &rule(
                    "nodns",
                    "http://scrim-no-such-partner.invalid",
                    "allow_plain_http = true",
                ),
            ),
            ("resets.toml", &rule("resets", &reset.url(), "")),
            (
                "untrusted.toml",
                &rule(
                    "untrusted",
                    &format!("https://localhost:{}", tls.port()),
                    "",
                ),
            ),
        ],
        Opts::default(),
    )
    .await;
    let m = unreachable(&gw, "refused", "connection_refused").await;
    assert!(m.contains("connection refused"), "{m}");
    let m = unreachable(&gw, "nodns", "dns").await;
    assert!(m.contains("host name did not resolve"), "{m}");
    let m = unreachable(&gw, "resets", "reset").await;
    assert!(m.contains("reset"), "{m}");
    let m = unreachable(&gw, "untrusted", "tls_verification").await;
    assert!(m.contains("certificate did not verify"), "{m}");
    assert!(tls.records().is_empty());
    // The metric keeps its coarse kind.
    let text = metrics(&gw).await;
    for (recipient, kind) in [
        ("refused", "connect"),
        ("nodns", "connect"),
        ("resets", "reset"),
        ("untrusted", "connect"),
    ] {
        let line =
            format!("scrim_upstream_errors_total{{recipient=\"{recipient}\",kind=\"{kind}\"}} 1");
        assert!(text.contains(&line), "{line}\n{text}");
    }
    assert!(
        text.contains(
            "scrim_requests_total{recipient=\"refused\",status=\"502\",code=\"upstream_unreachable\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_their_code_and_build_and_rule_versions_are_metrics() {
    let up = Upstream::ok().await;
    let gw = Gateway::start(
        &[(
            "live.toml",
            &rule("live", &up.url(), "[fields]\n\"event\" = \"keep\"\n"),
        )],
        Opts::default(),
    )
    .await;
    let c = client();
    let url = gw.url("/live/e");
    let ok = send(&c, request("POST", &url, &[JSON], "{\"event\":\"x\"}")).await;
    assert_eq!(ok.status, 200);
    let bad = send(&c, request("POST", &url, &[JSON], "{\"event\":")).await;
    assert_eq!(bad.status, 400);
    let text = metrics(&gw).await;
    // A forwarded request has no code label; a refusal has its code.
    assert!(
        text.contains("scrim_requests_total{recipient=\"live\",status=\"200\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "scrim_requests_total{recipient=\"live\",status=\"400\",code=\"invalid_json\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "scrim_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let version = |rules: &serde_json::Value| {
        rules["recipients"][0]["version"]
            .as_str()
            .expect("a version")
            .to_string()
    };
    let v1 = version(&gw.admin_get("/rules").await.json());
    assert_eq!(v1.len(), 16);
    let series =
        |v: &str| format!("scrim_rule_version_info{{recipient=\"live\",version=\"{v}\"}} 1\n");
    assert!(text.contains(&series(&v1)), "{text}");
    // A reload with a changed file: the new version, and the old one gone.
    gw.write_rule(
        "live.toml",
        &rule(
            "live",
            &up.url(),
            "[fields]\n\"event\" = \"keep\"\n\"n\" = \"keep\"\n",
        ),
    );
    assert_eq!(gw.running.reload().ok(), Some(1));
    let v2 = version(&gw.admin_get("/rules").await.json());
    assert_ne!(v1, v2);
    let text = metrics(&gw).await;
    assert!(text.contains(&series(&v2)), "{text}");
    assert!(!text.contains(&v1), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_shows_the_last_reload_error_until_a_reload_succeeds() {
    let up = Upstream::ok().await;
    let good = rule("live", &up.url(), "[fields]\n\"event\" = \"keep\"\n");
    let gw = Gateway::start(&[("live.toml", &good)], Opts::default()).await;
    let rules = gw.admin_get("/rules").await.json();
    assert_eq!(
        rules["last_reload_error"],
        serde_json::Value::Null,
        "{rules}"
    );
    // An unknown action on line 4.
    gw.write_rule(
        "live.toml",
        &rule("live", &up.url(), "[fields]\n\"event\" = \"keep_it_all\"\n"),
    );
    let err = gw
        .running
        .reload()
        .expect_err("an unknown action is refused");
    assert_eq!(err.problems().len(), 1, "{err}");
    let rules = gw.admin_get("/rules").await.json();
    let failure = &rules["last_reload_error"];
    assert!(failure["at"].as_u64().unwrap() > 0, "{rules}");
    let problems = failure["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{rules}");
    assert!(
        problems[0]["file"].as_str().unwrap().ends_with("live.toml"),
        "{rules}"
    );
    assert_eq!(problems[0]["line"], 4, "{rules}");
    let message = problems[0]["message"].as_str().unwrap();
    assert!(message.contains("error[E004]: unknown action"), "{message}");
    // The old rules still serve and are still listed.
    assert_eq!(rules["recipients"][0]["recipient"], "live");
    let resp = send(
        &client(),
        request("POST", &gw.url("/live/e"), &[JSON], "{\"event\":\"x\"}"),
    )
    .await;
    assert_eq!(resp.status, 200);
    // A file that is not TOML: the error is replaced.
    gw.write_rule("broken.toml", "this is [not toml");
    assert!(gw.running.reload().is_err());
    let rules = gw.admin_get("/rules").await.json();
    let problems = rules["last_reload_error"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["file"].as_str().unwrap().ends_with("broken.toml")),
        "{rules}"
    );
    // Fixed: the error is gone.
    std::fs::remove_file(gw.rules_dir.join("broken.toml")).unwrap();
    gw.write_rule("live.toml", &good);
    assert_eq!(gw.running.reload().ok(), Some(1));
    let rules = gw.admin_get("/rules").await.json();
    assert_eq!(
        rules["last_reload_error"],
        serde_json::Value::Null,
        "{rules}"
    );
    let text = metrics(&gw).await;
    assert!(
        text.contains("scrim_rule_reloads_total{result=\"error\"} 2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_file_that_cannot_be_served_is_a_located_reload_error() {
    let up = Upstream::ok().await;
    let good = rule("live", &up.url(), "[fields]\n\"event\" = \"keep\"\n");
    let gw = Gateway::start(&[("live.toml", &good)], Opts::default()).await;
    // Valid rules whose CA file is missing: found when the route is built.
    gw.write_rule(
        "live.toml",
        &rule(
            "live",
            &up.url(),
            "ca_file = \"no-such-ca.pem\"\n[fields]\n\"event\" = \"keep\"\n",
        ),
    );
    let err = gw
        .running
        .reload()
        .expect_err("a missing CA file is refused");
    assert!(
        matches!(err, scrim::ops::rules::RulesError::Setup(_)),
        "{err:?}"
    );
    let rules = gw.admin_get("/rules").await.json();
    let problems = rules["last_reload_error"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{rules}");
    assert!(
        problems[0]["file"].as_str().unwrap().ends_with("live.toml"),
        "{rules}"
    );
    assert_eq!(problems[0]["line"], 0, "{rules}");
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-ca.pem"),
        "{rules}"
    );
    // The old rules still serve.
    let resp = send(
        &client(),
        request("POST", &gw.url("/live/e"), &[JSON], "{\"event\":\"x\"}"),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
}

/// `ops` sees the gateway through a rule store and read-only handles: no
/// file of it imports the proxy (imports run `proxy` -> `ops` only).
#[test]
fn ops_imports_nothing_from_the_proxy() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("crate::proxy"),
                "{} imports the proxy",
                path.display()
            );
        }
    }
    assert!(files >= 5, "only {files} files in src/ops");
}
