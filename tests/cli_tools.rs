//! The rule-author tools, run as the built binary: `scrim diff`,
//! `scrim inventory`, and the batch summary of `scrim rewrite`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_scrim");

/// A directory removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("scrim-cli-tools-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary with `input` on its standard input.
fn run_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn repo_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

const OLD: &str = r#"
recipient = "shop"
upstream = "https://api.shop.example:8443/v1/hook/PATHSECRET"
[headers]
allow = ["content-type"]
set = { authorization = "env:SHOP_TOKEN", x-static = "LITERALSECRET" }
[query]
v = "keep"
[fields]
"event" = "keep"
"user.id" = "pseudonymise"
"user.email" = "drop"
"ip" = "truncate_ip"
"ts" = { action = "coarsen_time", unit = "hour" }
"items.sku" = "keep"
"ctx" = "embedded_json"
"ctx.locale" = "keep"
"meta" = "keep"
"#;

const NEW: &str = r#"
recipient = "shop"
upstream = "https://api.shop.example:8443/v1/hook/PATHSECRET"
[headers]
allow = ["content-type", "user-agent"]
set = { authorization = "env:SHOP_TOKEN2", x-static = "OTHERLITERAL" }
[query]
v = "keep"
cid = "pseudonymise"
[fields]
"event" = "keep"
"user.id" = "keep"
"user.email" = { action = "pseudonymise", normalise = "email" }
"ip" = { action = "truncate_ip", v4_prefix = 16 }
"ts" = { action = "coarsen_time", unit = "minute" }
"items.sku" = "keep"
"items.price" = "keep"
"ctx" = "embedded_json"
"ctx.locale" = "keep"
"ctx.tz" = "keep"
"meta" = "keep"
"meta.debug" = "drop"
"#;

/// A value that must never show up in any output.
const DISTINCT: &str = "zebra-quokka-4417@distinct.example";

fn sample(records: usize) -> String {
    let mut s = String::new();
    for i in 0..records {
        s.push_str(&format!(
            r#"{{"event":"buy","user":{{"id":"u-{i}","email":"{DISTINCT}"}},"ip":"203.0.113.9","ts":"2024-05-01T13:45:12Z","items":[{{"sku":"A","price":3}},{{"sku":"B","price":4}}],"ctx":"{{\"locale\":\"en\",\"tz\":\"{DISTINCT}\"}}","meta":{{"debug":"{DISTINCT}","v":1}}}}"#
        ));
        s.push('\n');
    }
    // One record without most fields: counts must say 3, not 4.
    s.push_str("{\"event\":\"view\"}\n");
    s
}

fn diff_fixture(name: &str) -> (Dir, PathBuf, PathBuf, PathBuf) {
    let d = Dir::new(name);
    let old = d.write("old/shop.toml", OLD);
    let new = d.write("new/shop.toml", NEW);
    let s = d.write("sample.ndjson", &sample(3));
    (d, old, new, s)
}

#[test]
fn diff_reports_what_newly_leaves_per_path_with_counts_and_exits_1() {
    let (_d, old, new, s) = diff_fixture("diff1");
    let o = run(&["diff", p(&old), p(&new), p(&s)]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", stderr(&o));
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(needle))
            .unwrap_or_else(|| panic!("no line for {needle} in\n{out}"))
            .to_string()
    };
    // Array indices are normalised: one line for every items[i].price.
    let l = line("items[].price");
    assert!(l.contains("keep") && l.contains("3 record(s)"), "{l}");
    assert!(!out.contains("items[0]") && !out.contains("items[1]"));
    // Inside the embedded document.
    let l = line("ctx>tz");
    assert!(l.contains("keep") && l.contains("reveals more"), "{l}");
    let l = line("user.email");
    assert!(
        l.contains("pseudonymise") && l.contains("3 record(s)"),
        "{l}"
    );
    let l = line("user.id");
    assert!(l.contains("pseudonymise -> keep"), "{l}");
    // A field inside a container that was kept whole, now dropped.
    let l = line("meta.debug");
    assert!(l.contains("was keep") && !l.contains("reveals more"), "{l}");
    // Options: a finer time unit reveals more, a shorter IP prefix does not.
    let l = line("ts ");
    assert!(l.contains("minute") && l.contains("reveals more"), "{l}");
    let l = line("ip ");
    assert!(l.contains("/16") && !l.contains("reveals more"), "{l}");
    // Static comparison of query parameters and headers.
    assert!(line("newly leaves:    cid").contains("pseudonymise"));
    assert!(out.contains("header allow user-agent"), "{out}");
    assert!(
        line("options changed: header set x-static").contains("(literal) -> (literal, changed)")
    );
    assert!(
        line("options changed: header set authorization")
            .contains("env:SHOP_TOKEN -> env:SHOP_TOKEN2")
    );
    // Unchanged fields are not listed.
    assert!(!out.contains("event"), "{out}");
    assert!(!out.contains("ctx>locale"), "{out}");
}

#[test]
fn diff_never_prints_a_value() {
    let (_d, old, new, s) = diff_fixture("diff-values");
    for format in ["text", "json"] {
        for (a, b) in [(&old, &new), (&new, &old)] {
            let o = run(&["diff", p(a), p(b), p(&s), "--format", format]);
            let all = stdout(&o) + &stderr(&o);
            assert!(matches!(o.status.code(), Some(0 | 1)), "{all}");
            for secret in [
                DISTINCT,
                "distinct.example",
                "zebra",
                "u-1",
                "203.0.113",
                "2024-05-01",
                "LITERALSECRET",
                "OTHERLITERAL",
                "PATHSECRET",
                "test.",
            ] {
                assert!(!all.contains(secret), "{secret} leaked in {format}:\n{all}");
            }
        }
    }
}

#[test]
fn diff_in_reverse_only_drops_except_what_comes_back() {
    let d = Dir::new("diff-drops");
    let old = d.write("old.toml", NEW);
    // NEW minus some fields: only drops and less revealing actions.
    let fewer = NEW
        .replace("\"items.price\" = \"keep\"\n", "")
        .replace("\"user.id\" = \"keep\"", "\"user.id\" = \"pseudonymise\"")
        .replace(
            "allow = [\"content-type\", \"user-agent\"]",
            "allow = [\"content-type\"]",
        );
    let new = d.write("new.toml", &fewer);
    let s = d.write("s.ndjson", &sample(2));
    let o = run(&["diff", p(&old), p(&new), p(&s)]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("items[].price") && out.contains("was keep"),
        "{out}"
    );
    assert!(out.contains("keep -> pseudonymise"), "{out}");
    assert!(out.contains("nothing newly leaves"), "{out}");
}

#[test]
fn diff_identical_rules_exit_0_with_no_change() {
    let (_d, _old, new, s) = diff_fixture("diff-same");
    let o = run(&["diff", p(&new), p(&new), p(&s)]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert_eq!(out.matches("no change").count(), 3, "{out}");
    assert!(out.contains("4 record(s)"), "{out}");
}

#[test]
fn diff_json_output_is_machine_readable() {
    let (_d, old, new, s) = diff_fixture("diff-json");
    let o = run(&["diff", p(&old), p(&new), p(&s), "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["recipient"], "shop");
    assert_eq!(v["records"], 4);
    assert_eq!(v["reveals_more"], true);
    let fields = v["fields"].as_array().unwrap();
    let price = fields
        .iter()
        .find(|f| f["path"] == "items[].price")
        .unwrap();
    assert_eq!(price["change"], "newly_leaves");
    assert_eq!(price["old"], serde_json::Value::Null);
    assert_eq!(price["new"]["action"], "keep");
    assert_eq!(price["records"], 3);
    let id = fields.iter().find(|f| f["path"] == "user.id").unwrap();
    assert_eq!(id["change"], "action_changed");
    assert_eq!(id["old"]["action"], "pseudonymise");
    let q = v["query"].as_array().unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["name"], "cid");
    let h = v["headers"].as_array().unwrap();
    assert!(
        h.iter()
            .any(|x| x["name"] == "user-agent" && x["reveals_more"] == true)
    );
}

#[test]
fn diff_takes_directories_with_recipient_and_a_json_sample() {
    let (d, old, new, _) = diff_fixture("diff-dirs");
    let one = d.write("one.json", sample(1).lines().next().unwrap());
    let (od, nd) = (old.parent().unwrap(), new.parent().unwrap());
    let o = run(&["diff", "--recipient", "shop", p(od), p(nd), p(&one)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("1 record(s)"));
    // A sample without a telling extension is detected as NDJSON.
    let sniffed = d.write("sample.txt", &sample(2));
    let o = run(&["diff", p(&old), p(&new), p(&sniffed)]);
    assert!(
        stdout(&o).contains("3 record(s) compared"),
        "{}",
        stdout(&o)
    );
    // A directory without --recipient is a usage error.
    let o = run(&["diff", p(od), p(nd), p(&one)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--recipient"));
}

#[test]
fn diff_reports_a_container_that_becomes_a_leaf() {
    let d = Dir::new("diff-container");
    let old = d.write(
        "old/x.toml",
        "upstream = \"https://x.example\"\n[fields]\n\"user.id\" = \"keep\"\n",
    );
    let new = d.write(
        "new/x.toml",
        "upstream = \"https://x.example\"\n[fields]\n\"user.id\" = \"keep\"\n\"user\" = \"redact\"\n",
    );
    let s1 = d.write("s1.json", r#"{"user":{"id":"u1"}}"#);
    let o = run(&["diff", p(&old), p(&new), p(&s1)]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("user     (container) -> redact"), "{out}");
    assert!(out.contains("user.id  was keep"), "{out}");
    // Nothing of `user` left before; now "[redacted]" does.
    let s2 = d.write("s2.json", r#"{"user":{"name":"x"}}"#);
    let o = run(&["diff", p(&old), p(&new), p(&s2)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("user  redact  1 record(s)  (reveals more)"));
}

#[test]
fn diff_of_two_files_without_recipient_uses_the_new_files_name() {
    let d = Dir::new("diff-stems");
    let body = "upstream = \"https://x.example\"\n[fields]\n\"id\" = \"pseudonymise\"\n";
    let old = d.write("tmp/x-old.toml", body);
    let new = d.write("rules/x.toml", body);
    let s = d.write("s.json", r#"{"id":"a"}"#);
    let o = run(&["diff", p(&old), p(&new), p(&s)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("recipient x:"), "{out}");
    // Same name, so same default pseudonym scope: no change at all.
    assert!(out.contains("Body fields\n  no change"), "{out}");
    // --recipient names both.
    let o = run(&["diff", "--recipient", "y", p(&old), p(&new), p(&s)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("recipient y:"));
    // One file names it: the other takes that name.
    let named = d.write("named/z.toml", &format!("recipient = \"x\"\n{body}"));
    let o = run(&["diff", p(&old), p(&named), p(&s)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Both name it, differently: refused.
    let other = d.write("named/w.toml", &format!("recipient = \"w\"\n{body}"));
    let o = run(&["diff", p(&named), p(&other), p(&s)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("different recipients"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn diff_usage_io_and_rule_errors_exit_2() {
    let (d, old, new, s) = diff_fixture("diff-errors");
    let o = run(&["diff", p(&old), p(&new), "/nonexistent/sample.ndjson"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["diff", p(&old), "/nonexistent/new.toml", p(&s)]);
    assert_eq!(o.status.code(), Some(2));
    let bad = d.write(
        "bad.toml",
        "recipient = \"shop\"\nupstream = \"https://x.example\"\n[fields]\na = \"kep\"\n",
    );
    let o = run(&["diff", p(&old), p(&bad), p(&s)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.toml:4"), "{}", stderr(&o));
    let other = d.write(
        "other.toml",
        "recipient = \"other\"\nupstream = \"https://x.example\"\n",
    );
    let o = run(&["diff", p(&old), p(&other), p(&s)]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["diff", p(&old)]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn inventory_markdown_on_the_shipped_rules() {
    let o = run(&["inventory", p(&repo_rules())]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    for r in [
        "amplitude",
        "example",
        "ga4",
        "meta_capi",
        "mixpanel",
        "segment",
        "snowplow",
        "tiktok",
    ] {
        assert!(out.contains(&format!("## Recipient `{r}`")), "{r}");
    }
    assert!(out.contains("| `measurement_id` | keep |"), "{out}");
    assert!(
        out.contains("| `client_id` | pseudonymise | keyed HMAC-SHA256, scope \"ga4\", 128 bits |")
    );
    assert!(out.contains("`x-api-key` | set by the gateway: `env:EXAMPLE_API_KEY`"));
    assert!(
        out.contains("| `ip` | truncate_ip | IPv4 /24, IPv6 /48 |"),
        "{out}"
    );
    assert!(out.contains("rounded down to the hour"));
    assert!(out.contains("Upstream host: `www.google-analytics.com`"));
    assert!(
        out.contains(
            "Only these paths leave (any other is refused): `/v1/track`, `/users/{user}/events`."
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "| `{user}` | pseudonymise | keyed HMAC-SHA256, scope \"example\", 128 bits |"
        ),
        "{out}"
    );
    assert!(!out.contains("https://"));
    assert_eq!(
        out.matches("Everything else is dropped: every other request header.")
            .count(),
        9
    );
}

#[test]
fn inventory_json_on_the_shipped_rules_has_the_documented_shape() {
    let o = run(&["inventory", p(&repo_rules()), "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], 2);
    let rs = v["recipients"].as_array().unwrap();
    let names: Vec<&str> = rs
        .iter()
        .map(|r| r["recipient"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "amplitude",
            "example",
            "ga4",
            "meta_capi",
            "mixpanel",
            "segment",
            "snowplow",
            "stats",
            "tiktok"
        ]
    );
    for r in rs {
        for key in [
            "rule_file",
            "rule_version",
            "upstream_host",
            "routing_hosts",
            "fields",
            "query",
            "headers_allowed",
            "headers_set",
            "passthrough_content_types",
        ] {
            assert!(!r[key].is_null(), "{key} missing");
        }
        assert!(r["paths"].is_array(), "every shipped file lists its paths");
        assert!(r["path_params"].is_array());
        assert_eq!(r["everything_else"], "dropped");
        assert_eq!(r["catch_all"], serde_json::json!([]));
        assert!(r["accepted_warnings"].is_array());
        assert!(r["precedence_notes"].is_array());
    }
    let ga4 = &rs[2];
    let page = ga4["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["selector"] == "events.params.page_location")
        .unwrap();
    assert_eq!(page["action"], "strip_query");
    assert!(page["detail"].as_str().unwrap().contains("utm_source"));
    assert_eq!(page["leaves"], true);
}

#[test]
fn inventory_never_shows_literal_header_values_or_url_paths() {
    let d = Dir::new("inv");
    let f = d.write("shop.toml", OLD);
    for format in ["markdown", "json"] {
        let o = run(&["inventory", p(&f), "--format", format]);
        assert_eq!(o.status.code(), Some(0));
        let out = stdout(&o);
        assert!(!out.contains("LITERALSECRET"), "{out}");
        assert!(!out.contains("PATHSECRET"), "{out}");
        assert!(out.contains("(literal)"), "{out}");
        assert!(out.contains("env:SHOP_TOKEN"), "{out}");
        assert!(out.contains("api.shop.example:8443"), "{out}");
        assert!(out.contains("user.email"), "{out}");
    }
    let md = stdout(&run(&["inventory", p(&f)]));
    assert!(md.contains("| `user.email` | drop | removed |"), "{md}");
    assert!(
        md.contains("Any path leaves as written once no segment holds"),
        "{md}"
    );
    assert!(md.contains("Everything else is dropped: every other body field."));
}

#[test]
fn inventory_says_when_a_catch_all_lets_everything_else_leave() {
    let d = Dir::new("inv-catch-all");
    let all = d.write(
        "all.toml",
        "upstream = \"https://all.example\"\n[query]\n\"*\" = \"keep\"\n[fields]\n\"**\" = \"keep\"\n\"user.email\" = \"drop\"\n[[allow]]\nlint = \"P003\"\nselector = \"**\"\nreason = \"internal warehouse\"\n",
    );
    let top = d.write(
        "top.toml",
        "upstream = \"https://top.example\"\n[fields]\n\"*\" = \"pseudonymise\"\n",
    );
    let md = stdout(&run(&["inventory", p(&all)]));
    assert!(
        !md.contains("Anything not listed is dropped before"),
        "{md}"
    );
    assert!(
        !md.contains("Everything else is dropped: every other body field"),
        "{md}"
    );
    assert!(
        !md.contains("Everything else is dropped: every other query parameter"),
        "{md}"
    );
    assert!(
        md.contains("Every other body field (at any depth) leaves under `**` as keep (verbatim)."),
        "{md}"
    );
    assert!(
        md.contains("Every other query parameter leaves under `*` as keep (verbatim)."),
        "{md}"
    );
    // Headers have no catch-all.
    assert!(md.contains("Everything else is dropped: every other request header."));
    let md = stdout(&run(&["inventory", p(&top)]));
    assert!(
        md.contains("Every other top-level body field leaves under `*` as pseudonymise"),
        "{md}"
    );
    assert!(md.contains("No query parameter leaves."), "{md}");

    let o = run(&["inventory", p(&d.0), "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = &v["recipients"][0];
    assert_eq!(all["recipient"], "all");
    assert_eq!(all["everything_else"], "leaves");
    let sections: Vec<(&str, &str, &str)> = all["catch_all"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["section"].as_str().unwrap(),
                c["selector"].as_str().unwrap(),
                c["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(sections, [("fields", "**", "keep"), ("query", "*", "keep")]);
    assert_eq!(v["recipients"][1]["everything_else"], "leaves");
}

#[test]
fn inventory_lists_accepted_warnings_and_precedence_traps() {
    let d = Dir::new("inv-allow");
    let f = d.write(
        "shop.toml",
        r#"upstream = "https://shop.example"
[fields]
"user.ip" = "keep"
"properties.*" = "keep"
"**.email" = "pseudonymise"
[[allow]]
lint = "personal-keep"
selector = "user.ip"
reason = "fraud checks (DPA s.3)"
[[allow]]
lint = "no-tests"
reason = "covered by the integration suite"
"#,
    );
    let md = stdout(&run(&["inventory", p(&f)]));
    assert!(md.contains("### Lint warnings accepted on review"), "{md}");
    assert!(
        md.contains("| P001 personal-keep | `user.ip` | fraud checks (DPA s.3) |"),
        "{md}"
    );
    assert!(
        md.contains("| P005 no-tests | (whole file) | covered by the integration suite |"),
        "{md}"
    );
    assert!(
        md.contains("an exact key beats `*`, which beats `**`"),
        "{md}"
    );
    assert!(
        md.contains(
            "- `properties.email` is decided by `properties.*` (keep), not by `**.email` (pseudonymise)."
        ),
        "{md}"
    );
    let o = run(&["inventory", p(&f), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v["recipients"][0];
    assert_eq!(r["everything_else"], "dropped");
    assert_eq!(
        r["accepted_warnings"][0],
        serde_json::json!({"lint": "P001", "name": "personal-keep", "selector": "user.ip", "reason": "fraud checks (DPA s.3)"})
    );
    assert_eq!(
        r["accepted_warnings"][1]["selector"],
        serde_json::Value::Null
    );
    assert_eq!(
        r["precedence_notes"],
        serde_json::json!([{"path": "properties.email", "decided_by": "properties.*", "action": "keep", "not_by": "**.email", "not_action": "pseudonymise"}])
    );
}

#[test]
fn inventory_errors() {
    let o = run(&["inventory", "/nonexistent/rules"]);
    assert_eq!(o.status.code(), Some(2));
    let d = Dir::new("inv-bad");
    let f = d.write(
        "x.toml",
        "upstream = \"https://x.example\"\n[fields]\na = \"kep\"\n",
    );
    let o = run(&["inventory", p(&f)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
}

#[test]
fn rewrite_summary_counts_per_action_exactly() {
    let (d, _old, new, s) = diff_fixture("rw-summary");
    let o = run(&[
        "rewrite",
        "--rules",
        p(&new),
        "--recipient",
        "shop",
        "--test-key",
        p(&s),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    // Per full record: event, user.id, 2 x (sku, price), ctx>locale, ctx>tz,
    // meta.v kept (9); user.email pseudonymised; ip, ts, ctx transformed;
    // meta.debug dropped. Plus the last record's event.
    let want = "keep 28, drop 3, pseudonymise 3, truncate_ip 3, coarsen_time 3, embedded_json 3, records 4, refused records 0";
    assert!(err.lines().any(|l| l == want), "{err}");
    // Piped stderr: no progress bar (no carriage returns, no escapes).
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
    assert_eq!(stdout(&o).lines().count(), 4);

    // A refusal is counted.
    let bad = d.write("bad.ndjson", &(sample(1) + "{\"a\":1,\"a\":2}\n"));
    let o = run(&[
        "rewrite",
        "--rules",
        p(&new),
        "--recipient",
        "shop",
        "--test-key",
        p(&bad),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    // Both lines, counting only the two records written: the refused one's
    // `a` (default deny) is not in `drop`.
    assert!(
        err.lines()
            .any(|l| l == "kept 10, transformed 4, dropped 1 (0 not applicable), documents 2"),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l
            == "keep 10, drop 1, pseudonymise 1, truncate_ip 1, coarsen_time 1, embedded_json 1, records 2, refused records 1"),
        "{err}"
    );

    // A refused JSON document: nothing was written, nothing is counted.
    let one = d.write("one.json", "{\"event\":\"a\",\"event\":1}");
    let o = run(&[
        "rewrite",
        "--rules",
        p(&new),
        "--recipient",
        "shop",
        "--test-key",
        p(&one),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.lines()
            .any(|l| l == "kept 0, transformed 0, dropped 0 (0 not applicable), documents 0"),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l == "records 0, refused records 1"),
        "{err}"
    );
}

/// Runs scrim with standard output sent to `out`, opened as the shell opens
/// it for `>` (`append`: as for `>>`).
fn run_into(args: &[&str], out: &Path, append: bool) -> Output {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(out)
        .unwrap();
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn rewrite_into_a_file_leaves_nothing_of_a_refused_document() {
    let d = Dir::new("rw-spill");
    let rules = d.write("shop.toml", NEW);
    // The kept part is larger than what is held before writing to a file
    // (a mebibyte), so parts of the document reach the file before the
    // refusal at its end.
    let events: Vec<String> = (0..40_000)
        .map(|i| format!("{{\"event\":\"e{i:040}\",\"x\":{i}}}"))
        .collect();
    let good = format!("[{}]", events.join(","));
    let bad = format!(
        "{},{{\"event\":\"a\",\"event\":\"b\"}}]",
        &good[..good.len() - 1]
    );
    let good_f = d.write("good.json", &good);
    let bad_f = d.write("bad.json", &bad);
    let args = |f: &Path| {
        [
            "rewrite",
            "--rules",
            p(&rules),
            "--recipient",
            "shop",
            "--test-key",
            p(f),
        ]
        .map(str::to_string)
    };
    let (good_args, bad_args) = (args(&good_f), args(&bad_f));
    let good_args: Vec<&str> = good_args.iter().map(String::as_str).collect();
    let bad_args: Vec<&str> = bad_args.iter().map(String::as_str).collect();

    // Written as it goes, the same bytes as through a pipe.
    let piped = run(&good_args);
    assert_eq!(piped.status.code(), Some(0), "{}", stderr(&piped));
    assert!(piped.stdout.len() > 2 << 20, "{}", piped.stdout.len());
    assert!(piped.stdout.ends_with(b"}]\n"));
    let out = d.0.join("out.json");
    let o = run_into(&good_args, &out, false);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), piped.stdout);

    // Refused at its very end: the file is cut back to nothing.
    let o = run_into(&bad_args, &out, false);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("duplicate"), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);

    // Standard error into the same file (`> out 2>&1`): the refusal is all
    // it holds, with no gap where the document was.
    let file = std::fs::File::create(&out).unwrap();
    let o = Command::new(BIN)
        .args(&bad_args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let both = std::fs::read_to_string(&out).unwrap();
    assert!(both.starts_with("refused: "), "{both:?}");
    assert!(!both.contains('\0') && !both.contains("e0000"), "{both:?}");

    // Appended to a file that holds something: that stays, and nothing of
    // the refused document is added.
    std::fs::write(&out, "earlier output\n").unwrap();
    let o = run_into(&bad_args, &out, true);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(&out).unwrap(), b"earlier output\n");
    let o = run_into(&good_args, &out, true);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut want = b"earlier output\n".to_vec();
    want.extend_from_slice(&piped.stdout);
    assert_eq!(std::fs::read(&out).unwrap(), want);
}

#[test]
fn rewrite_detects_ndjson_on_stdin_and_hints_at_it_for_json() {
    let d = Dir::new("rw-sniff");
    let rules = d.write("shop.toml", NEW);
    let input = "{\"event\":\"a\",\"x\":1}\n{\"event\":\"b\"}\n";
    let args = [
        "rewrite",
        "--rules",
        p(&rules),
        "--recipient",
        "shop",
        "--test-key",
    ];
    let o = run_stdin(&args, input);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "{\"event\":\"a\"}\n{\"event\":\"b\"}\n");
    // One document on stdin is still JSON.
    let o = run_stdin(&args, "{\"event\":\"a\",\n\"x\":1}\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "{\"event\":\"a\"}\n");
    // A .json file (or --format json) holding several documents: refused,
    // with a hint.
    let f = d.write("two.json", input);
    let mut with_file = args.to_vec();
    with_file.push(p(&f));
    let o = run(&with_file);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("trailing data after the JSON document"),
        "{err}"
    );
    assert!(err.contains("use --format ndjson"), "{err}");
}

#[test]
fn rewrite_skip_refused_leaves_out_bad_lines_and_counts_them() {
    let d = Dir::new("rw-skip");
    let rules = d.write("shop.toml", NEW);
    let input = format!(
        "{{\"event\":\"a\"}}\n{{\"event\":\"{DISTINCT}\",\"event\":1}}\n\n{{\"event\":\"b\"}}\nnot json {DISTINCT}\n{{\"event\":\"c\",\"x\":1}}\n"
    );
    let f = d.write("in.ndjson", &input);
    let o = run(&[
        "rewrite",
        "--rules",
        p(&rules),
        "--recipient",
        "shop",
        "--test-key",
        "--skip-refused",
        p(&f),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "{\"event\":\"a\"}\n{\"event\":\"b\"}\n{\"event\":\"c\"}\n"
    );
    let err = stderr(&o);
    assert!(err.contains("line 2: refused: duplicate key"), "{err}");
    assert!(err.contains("line 5: refused: invalid JSON"), "{err}");
    assert!(!err.contains(DISTINCT), "{err}");
    assert!(
        err.lines()
            .any(|l| l == "keep 3, drop 1, records 3, refused records 2"),
        "{err}"
    );
}

/// Large NDJSON, read in pieces: refused lines anywhere (one across the
/// point where the input is read in two), left out with `--skip-refused`,
/// ending the run without it; the records before a refusal are written
/// whole, and nothing of the refused one.
#[test]
fn rewrite_ndjson_refusals_in_a_large_input() {
    let d = Dir::new("rw-large");
    let rules = d.write("shop.toml", NEW);
    let bad = [3usize, 1_310, 1_311, 2_999];
    let mut input = String::new();
    let mut want = String::new();
    for i in 0..3_000 {
        if bad.contains(&i) {
            input.push_str(&format!(
                "{{\"event\":\"x{i}\",\"event\":\"{DISTINCT}\"}}\n"
            ));
        } else {
            let pad = "p".repeat(60 + i % 50);
            input.push_str(&format!("{{\"event\":\"e{i}\",\"pad\":\"{pad}\"}}\n"));
            want.push_str(&format!("{{\"event\":\"e{i}\"}}\n"));
        }
    }
    let f = d.write("in.ndjson", &input);
    let args = [
        "rewrite",
        "--rules",
        p(&rules),
        "--recipient",
        "shop",
        "--test-key",
    ];
    let o = run(&[&args[..], &["--skip-refused", p(&f)]].concat());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o) == want,
        "{} lines out",
        stdout(&o).lines().count()
    );
    let err = stderr(&o);
    for b in bad {
        assert!(
            err.contains(&format!("line {}: refused: duplicate key", b + 1)),
            "{err}"
        );
    }
    assert!(err.contains("records 2996, refused records 4"), "{err}");
    assert!(!err.contains(DISTINCT), "{err}");
    // Without --skip-refused: the records before the first refusal.
    let o = run(&[&args[..], &[p(&f)]].concat());
    assert_eq!(o.status.code(), Some(1));
    let first: String = want.lines().take(3).map(|l| format!("{l}\n")).collect();
    assert_eq!(stdout(&o), first);
    assert!(stderr(&o).contains("(line 4)"), "{}", stderr(&o));
}

#[test]
fn rewrite_explain_shows_decisions_inside_embedded_documents() {
    let (_d, _old, new, s) = diff_fixture("rw-explain");
    let o = run(&[
        "rewrite",
        "--rules",
        p(&new),
        "--recipient",
        "shop",
        "--test-key",
        "--explain",
        p(&s),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let err = stderr(&o);
    let tz = err
        .lines()
        .find(|l| l.starts_with("ctx>tz "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(tz.contains("ctx.tz") && tz.contains("kept"), "{tz}");
    assert!(!err.contains(DISTINCT));
}

#[test]
fn rewrite_missing_input_is_an_io_error() {
    let o = run(&[
        "rewrite",
        "--rules",
        p(&repo_rules()),
        "--recipient",
        "example",
        "--test-key",
        "/nonexistent/in.json",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn every_new_subcommand_has_examples_in_its_help() {
    for cmd in ["diff", "inventory", "rewrite"] {
        let o = run(&[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0));
        let out = stdout(&o);
        assert!(out.contains("Examples:"), "{cmd}: {out}");
        assert!(out.contains(&format!("scrim {cmd}")), "{cmd}: {out}");
    }
}

/// Every command's `--help` says what it does, its options and at least one
/// example that names the command itself.
#[test]
fn every_command_help_has_examples() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let text = stdout(&top);
    let commands = [
        "serve",
        "check",
        "test",
        "rewrite",
        "diff",
        "inventory",
        "keygen",
        "schema",
        "completions",
        "man",
    ];
    for c in commands {
        assert!(
            text.contains(&format!("  {c} ")),
            "{c} missing from scrim --help"
        );
    }
    assert!(text.contains("Getting started:"), "{text}");
    for c in commands {
        let o = run(&[c, "--help"]);
        assert!(o.status.success(), "scrim {c} --help failed");
        let help = stdout(&o);
        assert!(help.contains(&format!("Usage: scrim {c}")), "{c}: {help}");
        assert!(
            help.contains("Examples:"),
            "scrim {c} --help has no examples"
        );
        let examples = &help[help.find("Examples:").unwrap()..];
        assert!(
            examples.contains(&format!("scrim {c}")),
            "scrim {c} --help: the examples do not use the command"
        );
    }
    // Each example is one whole line, also when help is piped (clap wraps
    // long lines at 100 columns then): every line of an example block is an
    // indented command of several words, none is cut after `&&`, `|` or `\`.
    for c in [&[][..], &commands.map(|c| [c])[..]].concat() {
        let mut args: Vec<&str> = c.to_vec();
        args.push("--help");
        let help = stdout(&run(&args));
        for head in ["Examples:", "Getting started:"] {
            let Some(at) = help.find(head) else { continue };
            let block = help[at + head.len()..]
                .trim_start_matches('\n')
                .split("\n\n")
                .next()
                .unwrap();
            for line in block.lines() {
                let words = line.split_whitespace().count();
                assert!(
                    line.starts_with("  ") && words >= 2,
                    "scrim {args:?}: {line:?} is not a whole example"
                );
                let t = line.trim_end();
                assert!(
                    !t.ends_with("&&") && !t.ends_with('\\') && !t.ends_with('|'),
                    "scrim {args:?}: {line:?} continues on the next line"
                );
            }
            assert!(
                block.lines().any(|l| l.starts_with("  scrim ")),
                "scrim {args:?}: {block}"
            );
        }
    }
}

/// Runs the binary in `dir` (for the default `rules` path).
fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Every format's output ends with one line feed, also when it is not a
/// terminal, and a refused document still leaves nothing.
#[test]
fn rewrite_output_ends_with_a_newline() {
    let d = Dir::new("rw-newline");
    let rules = d.write("shop.toml", NEW);
    let args = [
        "rewrite",
        "--rules",
        p(&rules),
        "--recipient",
        "shop",
        "--test-key",
    ];
    fn with<'a>(args: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [args, extra].concat()
    }
    let json = d.write("one.json", "{\"event\":\"a\",\"x\":1}");
    let o = run(&with(&args, &[p(&json)]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "{\"event\":\"a\"}\n");
    // Into a regular file (the path that writes as it goes).
    let out = d.0.join("out.json");
    let o = run_into(&with(&args, &[p(&json)]), &out, false);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"{\"event\":\"a\"}\n");
    // A form body.
    let o = run_stdin(&with(&args, &["--format", "form"]), "event=a&x=1&v=2");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "event=a\n");
    // NDJSON whose last line has no line feed, streamed or with --explain.
    for extra in [
        &["--format", "ndjson"][..],
        &["--format", "ndjson", "--explain"],
    ] {
        let o = run_stdin(&with(&args, extra), "{\"event\":\"a\"}\n{\"event\":\"b\"}");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(
            stdout(&o),
            "{\"event\":\"a\"}\n{\"event\":\"b\"}\n",
            "{extra:?}"
        );
    }
    // Refused: nothing, not even the line feed, through a pipe or into a file.
    let bad = d.write("bad.json", "{\"event\":\"a\",\"event\":\"b\"}");
    let o = run(&with(&args, &[p(&bad)]));
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "{:?}", stdout(&o));
    let o = run_into(&with(&args, &[p(&bad)]), &out, false);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
    let o = run_stdin(&with(&args, &["--format", "form"]), "event=a&x=%zz");
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "{:?}", stdout(&o));
}

/// A form body is one record however many parameters it has.
#[test]
fn rewrite_counts_a_form_body_as_one_record() {
    let d = Dir::new("rw-form-records");
    let rules = d.write("shop.toml", NEW);
    let o = run_stdin(
        &[
            "rewrite",
            "--rules",
            p(&rules),
            "--recipient",
            "shop",
            "--test-key",
            "--format",
            "form",
        ],
        "event=a&ip=203.0.113.7&x=1&y=2",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.lines()
            .any(|l| l == "kept 1, transformed 1, dropped 2 (0 not applicable), documents 1"),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l == "keep 1, drop 2, truncate_ip 1, records 1, refused records 0"),
        "{err}"
    );
}

/// Without `rules/` in the current directory, each command says how to
/// give it the rules.
#[test]
fn a_missing_rules_directory_says_how_to_pass_it() {
    let d = Dir::new("no-rules");
    let o = run_in(
        &d.0,
        &["rewrite", "--recipient", "example", "--test-key", "-"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("no such file or directory"), "{err}");
    assert!(err.contains("with --rules DIR"), "{err}");
    // An explicit path that does not exist gets the same help.
    let o = run_in(
        &d.0,
        &["rewrite", "--rules", "rulez", "--recipient", "example", "-"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("with --rules DIR"), "{}", stderr(&o));
    for c in ["check", "test", "inventory"] {
        let o = run_in(&d.0, &[c]);
        assert_eq!(o.status.code(), Some(2), "{c}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("as arguments: scrim {c} DIR")),
            "{c}: {err}"
        );
    }
    // A rules directory that exists but is empty is another problem.
    std::fs::create_dir(d.0.join("rules")).unwrap();
    let o = run_in(&d.0, &["check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!stderr(&o).contains("as arguments"), "{}", stderr(&o));
}

/// `--recipient` naming no loaded rule file: the nearest loaded one, or
/// the list when none is near.
#[test]
fn an_unknown_recipient_suggests_the_nearest() {
    let rules = repo_rules();
    let o = run(&[
        "rewrite",
        "--rules",
        p(&rules),
        "--recipient",
        "segmnet",
        "--test-key",
        "/dev/null",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("unknown recipient \"segmnet\""), "{err}");
    assert!(err.contains("help: did you mean \"segment\"?"), "{err}");
    let o = run(&[
        "rewrite",
        "--rules",
        p(&rules),
        "--recipient",
        "zzzzzzzz",
        "--test-key",
        "/dev/null",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(!err.contains("did you mean"), "{err}");
    let listed = err
        .lines()
        .find_map(|l| l.strip_prefix("help: the rules are for: "))
        .unwrap_or_else(|| panic!("{err}"));
    for r in ["example", "ga4", "segment"] {
        assert!(listed.split(", ").any(|x| x == r), "{listed}");
    }
    // scrim diff with rules directories.
    let d = Dir::new("diff-recipient");
    let sample = d.write("s.json", "{\"event\":\"a\"}");
    let o = run(&[
        "diff",
        "--recipient",
        "ga44",
        p(&rules),
        p(&rules),
        p(&sample),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("help: did you mean \"ga4\"?"),
        "{}",
        stderr(&o)
    );
}

/// The completion scripts come from the clap definitions: every command and
/// its options complete. In bash (when installed) they are run for real.
#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _scrim"),
        ("zsh", "#compdef scrim"),
        ("fish", "complete -c scrim"),
    ] {
        let o = run(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.contains(marker), "{shell}: {script}");
        for word in [
            "rewrite",
            "inventory",
            "completions",
            "recipient",
            "skip-refused",
        ] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let o = run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());

    let d = Dir::new("completions");
    let script = d.0.join("scrim.bash");
    std::fs::write(&script, run(&["completions", "bash"]).stdout).unwrap();
    // COMP_WORDS as bash sets them for `scrim <words>` with the cursor at
    // the end of the last word; prints the candidates, one per line.
    let complete = |words: &str| -> Option<Vec<String>> {
        let cmd = format!(
            "source {}; COMP_WORDS=(scrim {words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _scrim scrim \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let o = Command::new("bash").args(["-c", &cmd]).output().ok()?;
        assert!(o.status.success(), "{}", stderr(&o));
        Some(stdout(&o).lines().map(str::to_string).collect())
    };
    let Some(commands) = complete("re") else {
        eprintln!("no bash here: the scripts were checked as text only");
        return;
    };
    assert_eq!(commands, ["rewrite"]);
    assert_eq!(complete("rewrite --rec").unwrap(), ["--recipient"]);
    assert_eq!(complete("man inv").unwrap(), ["inventory"]);
    let formats = complete("rewrite --format ''").unwrap();
    assert_eq!(formats, ["json", "ndjson", "form"]);
}

/// `scrim man`: scrim(1) on stdout, a command's page, every page into a
/// directory; the examples keep one command per line.
#[test]
fn man_pages() {
    let o = run(&["man"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let top = stdout(&o);
    assert!(top.lines().any(|l| l.starts_with(".TH scrim 1 ")), "{top}");
    for c in ["serve", "rewrite", "diff", "completions", "man"] {
        assert!(top.contains(&format!("scrim\\-{c}(1)")), "{c}: {top}");
    }
    assert!(!top.contains("scrim\\-help"), "{top}");

    let o = run(&["man", "rewrite"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(
        page.lines().any(|l| l.starts_with(".TH scrim-rewrite 1 ")),
        "{page}"
    );
    assert!(page.contains("\\-\\-recipient"), "{page}");
    assert!(page.contains("\\-\\-skip\\-refused"), "{page}");
    // The examples: each one a line of its own, in no-fill mode.
    let examples = &page[page.find(".SH EXAMPLES").expect("EXAMPLES")..];
    let nf = &examples[examples.find(".nf\n").expect(".nf")..examples.find(".fi\n").expect(".fi")];
    assert!(
        nf.lines().any(|l| l
            == "  scrim rewrite \\-\\-recipient segment \\-\\-test\\-key \\-\\-explain event.json"),
        "{nf}"
    );
    assert!(page.contains("\\fBscrim\\fR(1)"), "{page}");

    let o = run(&["man", "nonesuch"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());

    let d = Dir::new("man");
    let dir = d.0.join("man1");
    let o = run(&["man", "--dir", p(&dir)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut want: Vec<String> = [
        "serve",
        "check",
        "test",
        "rewrite",
        "diff",
        "inventory",
        "keygen",
        "suppress",
        "schema",
        "completions",
        "man",
    ]
    .iter()
    .map(|c| format!("scrim-{c}.1"))
    .chain(["scrim.1".to_string()])
    .collect();
    want.sort();
    assert_eq!(files, want);
    assert_eq!(
        std::fs::read_to_string(dir.join("scrim-rewrite.1")).unwrap(),
        page
    );
    assert_eq!(stdout(&o).lines().count(), want.len(), "{}", stdout(&o));

    // groff (when installed) reads every page without a warning.
    for f in &files {
        let Ok(g) = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(dir.join(f))
            .output()
        else {
            break;
        };
        assert!(
            g.status.success() && g.stderr.is_empty(),
            "{f}: {}",
            stderr(&g)
        );
    }
}

/// Every `section.option` that docs/operations.md names is an option of
/// scrim.toml (as `scrim schema config` describes it).
#[test]
fn operations_doc_names_only_real_server_options() {
    let o = run(&["schema", "config"]);
    assert_eq!(o.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sections = schema["properties"].as_object().unwrap();
    let options = |section: &str| -> Vec<String> {
        let def = sections[section]["allOf"][0]["$ref"]
            .as_str()
            .or(sections[section]["$ref"].as_str())
            .and_then(|r| r.rsplit('/').next())
            .unwrap_or_else(|| panic!("{section}: {}", sections[section]));
        schema["definitions"][def]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{def}"))
            .keys()
            .cloned()
            .collect()
    };
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let mut checked = 0;
    for quoted in doc.split('`').skip(1).step_by(2) {
        let Some((section, option)) = quoted.split_once('.') else {
            continue;
        };
        if !sections.contains_key(section)
            || !option
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            continue;
        }
        assert!(
            options(section).iter().any(|o| o == option),
            "docs/operations.md names `{quoted}`, which is not a scrim.toml option"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} options found");
}
