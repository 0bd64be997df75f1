//! The rule files shipped in `rules/` compile and pass their own `[[tests]]`
//! (as `scrim check rules/` and the gateway's loader require).

use std::path::PathBuf;

#[test]
fn shipped_rule_files_load_and_pass_their_tests() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    let policies = scrim::policy::load_verified(&[dir]).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let mut names: Vec<&str> = policies.iter().map(|p| p.recipient.as_str()).collect();
    names.sort();
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
    for p in &policies {
        assert!(!p.tests.is_empty(), "{} has no [[tests]]", p.recipient);
    }
}

#[test]
fn shipped_rule_files_pass_the_strict_check() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args(["check", "--strict", "--message-format", "short"])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    // Every accepted warning says why.
    for p in scrim::policy::load_all(&[dir]).unwrap() {
        for a in &p.allows {
            assert!(a.reason.len() > 20, "{}: {:?}", p.recipient, a);
        }
    }
}

/// One run shows every problem of a file, in file order, each at its place.
#[test]
fn check_shows_every_problem_of_a_file() {
    let dir = std::env::temp_dir().join(format!("scrim-multi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("multi.toml");
    std::fs::write(
        &file,
        r#"upstream = "https://api.example"
max_depth = 5000
[fields]
"user.email" = "pseudonymize"
"ip" = { action = "truncate_ip", v4_prefx = 24 }
"a..b" = "keep"
"ts" = { action = "coarsen_time", unit = "hours" }
"x" = "keep"
[query]
v = "kep"
[[tests]]
name = "t"
input = '{}'
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args(["check", "--message-format", "short"])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let places: Vec<&str> = stderr
        .lines()
        .filter_map(|l| {
            l.split(": error[")
                .next()
                .filter(|_| l.contains(": error["))
        })
        .map(|p| p.rsplit_once("multi.toml:").map_or(p, |(_, lc)| lc))
        .collect();
    assert_eq!(
        places,
        ["2:13", "4:16", "5:34", "6:1", "7:42", "10:5", "12:8"],
        "{stderr}"
    );
    assert!(stderr.contains("7 errors"), "{stderr}");
}
