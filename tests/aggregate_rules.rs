//! `mode = "aggregate"` rule files through `scrim check`: located errors
//! with help, the aggregate lints (`P008` small k, `P009` personal group,
//! `P010` weak noise) and their `[[allow]]`, and `scrim inventory`.

use std::path::PathBuf;
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn scrim(args: &[&str], name: &str, text: &str) -> Run {
    let d = std::env::temp_dir().join(format!("scrim-agg-rules-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let p: PathBuf = d.join("stats.toml");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args(args)
        .arg(&p)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&d);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check(name: &str, text: &str) -> Run {
    scrim(&["check", "--color", "never"], name, text)
}

const FIELDS: &str = r#"
[fields]
"batch.userId"  = "pseudonymise"
"batch.event"   = "keep"
"batch.country" = "keep"
"batch.ts"      = { action = "coarsen_time", unit = "hour" }
"batch.revenue" = "keep"

[[tests]]
name = "the user is a pseudonym"
input = '{"batch":[{"userId":"u1","event":"a"}]}'
transformed = ["batch.userId"]
"#;

/// A valid aggregate file with `aggregate` replaced by the given lines.
fn file(aggregate: &str) -> String {
    format!(
        "upstream = \"http://127.0.0.1:9/ingest\"\nmode = \"aggregate\"\nrecords = \"batch\"\n{FIELDS}\n{aggregate}"
    )
}

const GOOD: &str = r#"[aggregate]
window   = "1h"
lateness = "5m"
time     = "ts"
subject  = "userId"
k        = 10
group_by = ["event", "country"]
[aggregate.measures]
events  = "count"
users   = "distinct_subjects"
revenue = { sum = "revenue", min = 0, max = 10000 }
"#;

#[test]
fn a_good_file_passes_strict() {
    let r = scrim(
        &["check", "--strict", "--color", "never"],
        "good",
        &file(GOOD),
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

#[test]
fn errors_are_located_with_help() {
    for (aggregate, says, help) in [
        (
            GOOD.replace("window   = \"1h\"", "window   = \"2d\""),
            "window must be between 1s and 1d",
            "",
        ),
        (
            GOOD.replace("window   = \"1h\"", "window   = \"hourly\""),
            "window is not a duration",
            "\"30s\", \"5m\"",
        ),
        (
            GOOD.replace("subject  = \"userId\"", "subject  = \"event\""),
            "the subject must be pseudonymised by [fields], but \"event\" leaves as keep",
            "add \"batch.event\" = \"pseudonymise\" to [fields]",
        ),
        (
            GOOD.replace("subject  = \"userId\"", "subject  = \"email\""),
            "the subject \"email\" is dropped by [fields]",
            "",
        ),
        (
            GOOD.replace("\"event\", \"country\"", "\"event\", \"plan\""),
            "group_by field \"plan\" is dropped by [fields], so it would always be missing",
            "allow \"batch.plan\" in [fields]",
        ),
        (
            GOOD.replace("\"event\", \"country\"", "\"event\", \"*\""),
            "group_by must be an exact field path",
            "",
        ),
        (
            GOOD.replace(
                "users   = \"distinct_subjects\"",
                "users   = \"distinct_users\"",
            ),
            "unknown measure",
            "did you mean \"distinct_subjects\"?",
        ),
        (
            GOOD.replace("min = 0, max = 10000", "min = 10, max = 1"),
            "min is greater than max",
            "",
        ),
        (
            GOOD.replace("min = 0, max = 10000", "mni = 0"),
            "unknown measure option `mni`",
            "did you mean \"min\"?",
        ),
        (
            GOOD.replace("k        = 10", "k        = 0"),
            "k must be between 1 and 1000000",
            "",
        ),
        (
            format!("{GOOD}[aggregate.noise]\nepsilon = 1.0\nmax_events_per_subject = 5\n")
                .replace("min = 0, max = 10000", "min = 0"),
            "with noise, sum needs both min and max",
            "",
        ),
        (
            GOOD.replace("time     = \"ts\"", "time     = \"sent_at\""),
            "time field \"sent_at\" is dropped by [fields]",
            "",
        ),
    ] {
        let r = check("err", &file(&aggregate));
        assert_eq!(r.code, 1, "{aggregate}: {}", r.stderr);
        assert!(
            r.stderr.contains("error[E012]"),
            "{aggregate}: {}",
            r.stderr
        );
        assert!(r.stderr.contains(says), "{aggregate}: {}", r.stderr);
        assert!(r.stderr.contains(help), "{aggregate}: {}", r.stderr);
        assert!(r.stderr.contains('^'), "a caret: {}", r.stderr);
        assert!(r.stderr.contains("stats.toml:"), "located: {}", r.stderr);
    }
}

#[test]
fn mode_and_aggregate_go_together() {
    let r = check(
        "mode-missing",
        &file(GOOD).replace("mode = \"aggregate\"\n", ""),
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("[aggregate] is only read with mode = \"aggregate\""),
        "{}",
        r.stderr
    );
    let r = check("no-aggregate", &file(""));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("mode = \"aggregate\" needs an [aggregate] table"),
        "{}",
        r.stderr
    );
    let r = check(
        "bad-mode",
        &file(GOOD).replace("mode = \"aggregate\"", "mode = \"agregate\""),
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("error[E002]: unknown mode"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("did you mean \"aggregate\"?"),
        "{}",
        r.stderr
    );
    let r = check(
        "unknown-key",
        &file(&GOOD.replace("k        = 10", "kk = 10")),
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unknown key `kk`"), "{}", r.stderr);
}

/// The lint codes reported.
fn warnings(name: &str, text: &str) -> Vec<String> {
    let r = scrim(
        &["check", "--color", "never", "--message-format", "short"],
        name,
        text,
    );
    assert_eq!(r.code, 0, "warnings only: {}", r.stderr);
    r.stderr
        .lines()
        .filter_map(|l| {
            l.split_once(": warning[")
                .map(|(_, rest)| rest[..4].to_string())
        })
        .collect()
}

#[test]
fn lints_warn_and_can_be_accepted() {
    assert_eq!(warnings("clean", &file(GOOD)), Vec::<String>::new());
    let small_k = GOOD.replace("k        = 10", "k        = 2");
    assert_eq!(warnings("k", &file(&small_k)), vec!["P008"]);
    let g = GOOD.replace("\"event\", \"country\"", "\"event\", \"userId\"");
    assert_eq!(warnings("group", &file(&g)), vec!["P009"]);
    let g = GOOD.replace("\"event\", \"country\"", "\"event\", \"ip\"");
    let text = file(&g).replace("[fields]\n", "[fields]\n\"batch.ip\" = \"keep\"\n");
    let found = warnings("group-ip", &text);
    assert!(found.contains(&"P009".to_string()), "{found:?}");
    // A coarsened time is generalised: no warning.
    let g = GOOD.replace("\"event\", \"country\"", "\"event\", \"ts\"");
    assert_eq!(warnings("coarse", &file(&g)), Vec::<String>::new());
    let weak = format!("{GOOD}[aggregate.noise]\nepsilon = 20\nmax_events_per_subject = 5\n");
    assert_eq!(warnings("noise", &file(&weak)), vec!["P010"]);
    let ok_noise = format!("{GOOD}[aggregate.noise]\nepsilon = 0.5\nmax_events_per_subject = 5\n");
    assert_eq!(warnings("noise-ok", &file(&ok_noise)), Vec::<String>::new());
    // Accepted with a reason: quiet.
    let accepted = format!(
        "{}\n[[allow]]\nlint = \"P008\"\nreason = \"internal statistics team\"\n",
        file(&small_k)
    );
    assert_eq!(warnings("accepted", &accepted), Vec::<String>::new());
}

#[test]
fn inventory_shows_groups_and_measures_never_events() {
    let r = scrim(&["inventory"], "inv", &file(GOOD));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.stdout;
    assert!(out.contains("### Aggregate only"), "{out}");
    assert!(out.contains("No event leaves"), "{out}");
    for needed in [
        "event", "country", "events", "users", "revenue", "k = 10", "1h",
    ] {
        assert!(out.contains(needed), "{needed} missing: {out}");
    }
}

#[test]
fn tests_can_state_the_report() {
    let case = |report: &str| {
        format!(
            "{}\n[[tests]]\nname = \"report\"\ninput = '{{\"batch\":[{{\"userId\":\"a\",\"event\":\"v\",\"country\":\"DE\",\"revenue\":20000}},{{\"userId\":\"b\",\"event\":\"v\",\"country\":\"DE\",\"revenue\":5}}]}}'\nreport = '{report}'\n",
            file(&GOOD.replace("k        = 10", "k        = 2"))
        )
    };
    // Two users in one group: reported, the revenue clamped to the max.
    let good = case(
        r#"{"groups":[{"key":{"event":"v","country":"DE"},"events":2,"users":2,"revenue":10005}],"suppressed":{"groups":0,"events":0}}"#,
    );
    let r = scrim(&["test"], "report-ok", &good);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let bad = case(r#"{"groups":[],"suppressed":{"groups":1,"events":2}}"#);
    let r = check("report-bad", &bad);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("error[E008]"), "{}", r.stderr);
    assert!(
        r.stderr.contains("report differs at `groups`"),
        "{}",
        r.stderr
    );
    let r = check("report-not-json", &case("[1"));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("`report` must be a JSON object"),
        "{}",
        r.stderr
    );
}
