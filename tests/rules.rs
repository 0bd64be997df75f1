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
        ["amplitude", "example", "ga4", "meta_capi", "segment"]
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
