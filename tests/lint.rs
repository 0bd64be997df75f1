//! `scrim check` from outside: diagnostics with carets and help, the privacy
//! lint, `--strict`, `[[allow]]` entries and exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

const HEAD: &str = "upstream = \"http://127.0.0.1:9\"\npaths = [\"/**\"]\n";
const TESTS: &str = "\n[[tests]]\nname = \"empty stays empty\"\ninput = '{}'\nexpect = '{}'\n";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scrim-lint-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(name: &str, text: &str) -> PathBuf {
    let p = dir(name).join("x.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn scrim(args: &[&str], path: &Path) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args(args)
        .arg(path)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check(name: &str, text: &str) -> Run {
    scrim(&["check", "--color", "never"], &write(name, text))
}

/// The lint codes reported, one per line of `--message-format short`.
fn codes(name: &str, text: &str) -> Vec<String> {
    let r = scrim(
        &["check", "--color", "never", "--message-format", "short"],
        &write(name, text),
    );
    r.stderr
        .lines()
        .filter_map(|l| {
            l.split_once(": warning[")
                .map(|(_, rest)| rest[..4].to_string())
        })
        .collect()
}

fn fields(body: &str) -> String {
    format!("{HEAD}[fields]\n{body}{TESTS}")
}

#[test]
fn p001_keep_on_personal_keys() {
    for key in [
        "user.email",
        "User_Email",
        "userEmail",
        "user-email",
        "context.ip",
        "geo.*",
        "data.user_data.em",
        "data.user_data.*",
        "$distinct_id",
        "context.traits",
        "traits.*",
        "context.device.name",
        "shipping_address.line1",
        "access_token",
        "gclid",
    ] {
        let text = fields(&format!("{key:?} = \"keep\"\n"));
        assert_eq!(codes("p001", &text), ["P001"], "{key}");
    }
    // Not personal: `ip` is a whole word only; a bare name under events.
    for key in [
        "tips_total",
        "recipient",
        "shipping",
        "events.name",
        "props.*",
        "em",
        "is_mobile",
        "email_verified",
        "emails_sent",
        "ip_country",
        "contract_address",
        "tel_aviv",
        "token_count",
        "max_tokens",
    ] {
        let text = fields(&format!("{key:?} = \"keep\"\n"));
        assert!(codes("p001-no", &text).is_empty(), "{key}");
    }
    // Personal, but not kept verbatim.
    let text = fields("\"user.email\" = \"pseudonymise\"\n");
    assert!(codes("p001-ps", &text).is_empty());
    // Query parameters too, named `query:NAME`.
    let r = check(
        "p001-q",
        &format!("{HEAD}[query]\nuid = \"keep\"\nv = \"keep\"\n{TESTS}"),
    );
    assert!(r.stderr.contains("warning[P001]"), "{}", r.stderr);
    assert!(
        r.stderr.contains("selector = \"query:uid\""),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.matches("warning[P001]").count(), 1, "{}", r.stderr);
}

#[test]
fn p002_unkeyed_hash() {
    let text = fields("em = \"hash_sha256\"\n");
    assert_eq!(codes("p002", &text), ["P002"]);
    let text = fields("em = \"pseudonymise\"\n");
    assert!(codes("p002-no", &text).is_empty());
}

#[test]
fn p003_keep_under_globstar() {
    assert_eq!(codes("p003", &fields("\"**.plan\" = \"keep\"\n")), ["P003"]);
    assert_eq!(codes("p003-all", &fields("\"**\" = \"keep\"\n")), ["P003"]);
    // The query string's catch-all.
    let query = |body: &str| format!("{HEAD}[query]\n{body}{TESTS}");
    assert_eq!(codes("p003-query", &query("\"*\" = \"keep\"\n")), ["P003"]);
    assert!(codes("p003-query-named", &query("v = \"keep\"\n")).is_empty());
    assert!(
        codes(
            "p003-no",
            &fields("\"props.*\" = \"keep\"\n\"**.plan\" = \"drop\"\n")
        )
        .is_empty()
    );
}

#[test]
fn p004_wide_ip_prefix() {
    let t = |opts: &str| fields(&format!("addr = {{ action = \"truncate_ip\"{opts} }}\n"));
    assert_eq!(codes("p004-4", &t(", v4_prefix = 28")), ["P004"]);
    assert_eq!(codes("p004-6", &t(", v6_prefix = 56")), ["P004"]);
    assert!(codes("p004-no", &t(", v4_prefix = 24, v6_prefix = 48")).is_empty());
    assert!(codes("p004-def", &t("")).is_empty());
}

#[test]
fn p005_no_tests() {
    let r = check("p005", &format!("{HEAD}[fields]\na = \"keep\"\n"));
    assert!(r.stderr.contains("warning[P005]"), "{}", r.stderr);
    assert!(codes("p005-no", &fields("a = \"keep\"\n")).is_empty());
    // File-level: accepted without a selector.
    let allowed = format!(
        "{HEAD}[fields]\na = \"keep\"\n[[allow]]\nlint = \"no-tests\"\nreason = \"generated file, tested upstream\"\n"
    );
    assert!(codes("p005-allow", &allowed).is_empty());
}

#[test]
fn p007_no_paths() {
    let bare = "upstream = \"http://127.0.0.1:9\"\n[fields]\na = \"keep\"\n";
    let r = check("p007", &format!("{bare}{TESTS}"));
    assert!(r.stderr.contains("warning[P007]"), "{}", r.stderr);
    assert!(r.stderr.contains("no `paths`"), "{}", r.stderr);
    assert_eq!(r.code, 0, "a warning alone does not fail check");
    assert_eq!(codes("p007-codes", &format!("{bare}{TESTS}")), ["P007"]);
    // Any `paths` list answers it, templates with placeholders included.
    let templated = format!(
        "upstream = \"http://127.0.0.1:9\"\npaths = [\"/u/{{id}}\"]\n[path_params]\nid = \"pseudonymise\"\n[fields]\na = \"keep\"\n{TESTS}"
    );
    assert!(codes("p007-paths", &templated).is_empty());
    let allowed = format!(
        "{bare}{TESTS}\n[[allow]]\nlint = \"no-paths\"\nreason = \"the partner takes one fixed path\"\n"
    );
    assert!(codes("p007-allow", &allowed).is_empty());
}

#[test]
fn path_templates_errors_are_located_and_say_how_to_fix() {
    for (rules, says) in [
        (
            "paths = [\"/u/{id}\"]\n",
            "placeholder {id} has no entry in [path_params]",
        ),
        (
            "paths = [\"/u/{id}\"]\n[path_params]\nid = \"drop\"\n",
            "`drop` yields no value",
        ),
        (
            "paths = [\"/u\"]\n[path_params]\nid = \"keep\"\n",
            "path parameter `id` is used by no template",
        ),
        (
            "[path_params]\nid = \"keep\"\n",
            "[path_params] without `paths`",
        ),
        ("paths = []\n", "`paths` is empty"),
        ("paths = [\"/a/../b\"]\n", "dot-segments"),
        (
            "paths = [\"/u/{a}\", \"/u/{b}\"]\n[path_params]\na = \"keep\"\nb = \"keep\"\n",
            "matches the same paths as \"/u/{a}\" on line 2",
        ),
    ] {
        let text =
            format!("upstream = \"http://127.0.0.1:9\"\n{rules}[fields]\na = \"keep\"\n{TESTS}");
        let r = check("paths-err", &text);
        assert_eq!(r.code, 1, "{rules}: {}", r.stderr);
        assert!(r.stderr.contains("error[E011]"), "{rules}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{rules}: {}", r.stderr);
        assert!(
            r.stderr.contains('^'),
            "a caret under the problem: {}",
            r.stderr
        );
    }
}

#[test]
fn p006_stale_allow_and_allow_suppresses_exactly_its_selector() {
    let body = "\"user.email\" = \"keep\"\n\"user.phone\" = \"keep\"\n";
    let allow = "\n[[allow]]\nlint = \"P001\"\nselector = \"user.email\"\nreason = \"CRM partner needs the address (DPA 2024-07, s.3)\"\n";
    let text = format!("{HEAD}[fields]\n{body}{TESTS}{allow}");
    let r = scrim(
        &["check", "--message-format", "short"],
        &write("allow", &text),
    );
    assert_eq!(r.stderr.matches("warning[P001]").count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("\"user.phone\""), "{}", r.stderr);
    assert!(
        !r.stderr.contains("\"user.email\" verbatim"),
        "{}",
        r.stderr
    );

    // The same entry once the field is no longer kept: stale.
    let text = format!("{HEAD}[fields]\n\"user.email\" = \"pseudonymise\"\n{TESTS}{allow}");
    let r = scrim(
        &["check", "--message-format", "short"],
        &write("stale", &text),
    );
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("warning[P006]"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    // At the entry's `lint = ...` line.
    let lint_line = text.lines().position(|l| l.starts_with("lint =")).unwrap() + 1;
    assert!(line.contains(&format!("x.toml:{lint_line}:8:")), "{line}");
}

#[test]
fn p006_a_duplicate_allow_says_it_duplicates_the_first() {
    let allow = "\n[[allow]]\nlint = \"P001\"\nselector = \"user.email\"\nreason = \"CRM partner (DPA s.3)\"\n";
    let text = format!(
        "{HEAD}[fields]\n\"user.email\" = \"keep\"\n{TESTS}{allow}{}",
        allow.replace("\"user.email\"", "\"user.\\\"email\\\"\"")
    );
    let r = scrim(
        &["check", "--message-format", "short"],
        &write("dup-allow", &text),
    );
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("warning["))
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    let first = text
        .lines()
        .position(|l| l.starts_with("[[allow]]"))
        .unwrap()
        + 1;
    assert!(lines[0].contains("warning[P006]"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("duplicates the entry on line {first}")),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains("no longer occurs"), "{}", lines[0]);
}

#[test]
fn strict_turns_warnings_into_failure() {
    let path = write("strict", &fields("em = \"hash_sha256\"\n"));
    let lax = scrim(&["check", "--color", "never"], &path);
    assert_eq!(lax.code, 0, "{}", lax.stderr);
    assert!(lax.stdout.contains("1 warning"), "{}", lax.stdout);
    let strict = scrim(&["check", "--strict", "--color", "never"], &path);
    assert_eq!(strict.code, 1, "{}", strict.stderr);
    assert!(
        strict.stderr.contains("1 warning (--strict)"),
        "{}",
        strict.stderr
    );
    let clean = write("strict-clean", &fields("em = \"pseudonymise\"\n"));
    assert_eq!(scrim(&["check", "--strict"], &clean).code, 0);
}

#[test]
fn caret_under_the_offending_value_and_did_you_mean() {
    let text = format!("{HEAD}[fields]\n\"user.email\" = \"pseudonymize\"\n{TESTS}");
    let r = check("caret", &text);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .starts_with("error[E004]: unknown action \"pseudonymize\""),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("x.toml:4:16"), "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    let src = lines
        .iter()
        .position(|l| l.ends_with("\"user.email\" = \"pseudonymize\""))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    let value_col = lines[src].find("\"pseudonymize\"").unwrap();
    assert_eq!(lines[src + 1].find('^'), Some(value_col), "{}", r.stderr);
    assert_eq!(
        lines[src + 1].trim_end().len(),
        value_col + "\"pseudonymize\"".len()
    );
    assert!(
        r.stderr.contains("help: did you mean \"pseudonymise\"?"),
        "{}",
        r.stderr
    );
    // The same problem in the one-line form.
    let r = scrim(
        &["check", "--message-format", "short"],
        &write("caret-short", &text),
    );
    let first = r.stderr.lines().next().unwrap();
    assert!(first.ends_with(
        "x.toml:4:16: error[E004]: unknown action \"pseudonymize\" (help: did you mean \"pseudonymise\"?)"
    ), "{first}");
}

#[test]
fn warnings_have_a_caret_on_the_selector() {
    let r = check("warn-caret", &fields("\"user.email\" = \"keep\"\n"));
    assert!(r.stderr.starts_with("warning[P001]"), "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    let src = lines
        .iter()
        .position(|l| l.ends_with("\"user.email\" = \"keep\""))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    let col = lines[src].find("\"user.email\"").unwrap();
    assert_eq!(lines[src + 1].find('^'), Some(col), "{}", r.stderr);
    assert!(
        r.stderr.contains("[[allow]] lint = \"P001\""),
        "{}",
        r.stderr
    );
}

#[test]
fn errors_in_a_table_form_action_point_at_the_option() {
    let text =
        format!("{HEAD}[fields.\"user.age\"]\naction = \"bucket\"\nbounds = [30, 20]\n{TESTS}");
    let r = scrim(
        &["check", "--message-format", "short"],
        &write("table", &text),
    );
    assert!(
        r.stderr.contains("x.toml:5:10: error[E004]"),
        "{}",
        r.stderr
    );
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let path = write("colour", &fields("a = \"keeep\"\n"));
    // Not a terminal here: auto means no colour.
    assert!(!scrim(&["check"], &path).stderr.contains('\u{1b}'));
    assert!(
        scrim(&["check", "--color", "always"], &path)
            .stderr
            .contains('\u{1b}')
    );
}

#[test]
fn a_missing_path_is_exit_2() {
    let r = scrim(&["check"], Path::new("/nonexistent/scrim/rules"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("E010"), "{}", r.stderr);
}

#[test]
fn a_failing_test_shows_its_output_to_the_author_but_logs_one_line_without_values() {
    let text = format!(
        "{HEAD}[fields]\nemail = \"keep\"\n\n[[tests]]\nname = \"email is pseudonymised\"\ninput = '{{\"email\":\"alice@example.com\"}}'\nexpect = '{{}}'\n\n[[allow]]\nlint = \"P001\"\nselector = \"email\"\nreason = \"shown in a failing test\"\n"
    );
    let path = write("failing", &text);
    let r = scrim(&["check", "--color", "never"], &path);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("error[E008]: test \"email is pseudonymised\" failed: output differs"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("[[tests]]"),
        "the case's header is shown: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("alice@example.com"),
        "the author sees the output: {}",
        r.stderr
    );

    // What the gateway logs: one line per problem, no value.
    let errors = scrim::policy::load_verified(&[path]).unwrap_err();
    assert_eq!(errors.len(), 1);
    let line = errors[0].to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(!line.contains("alice"), "{line}");
    assert!(line.contains("error[E008]"), "{line}");
}
