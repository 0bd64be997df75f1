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
