//! `scrim test`: each rule file's `[[tests]]`, one line per case.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use super::args::OutputArgs;
use super::{Reporter, RulesGiven, load};

/// Runs every case and prints `ok` or `FAIL` for each; exit code 1 when
/// one fails.
pub fn run(rules: &[PathBuf], output: OutputArgs) -> ExitCode {
    let mut reporter = Reporter::new(output, std::io::stderr().is_terminal());
    let policies = match load(rules, RulesGiven::Arguments("test"), &mut reporter) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (mut passed, mut failed) = (0, 0);
    for p in &policies {
        if p.tests.is_empty() {
            println!("{}: no [[tests]]", p.source.display());
        }
        let failures = crate::selftest::test_failures(p);
        for t in &p.tests {
            match failures
                .iter()
                .find(|e| e.line == t.line && e.message.contains(&format!("\"{}\"", t.name)))
            {
                None => {
                    passed += 1;
                    println!("ok    {} :: {}", p.recipient, t.name);
                }
                Some(e) => {
                    failed += 1;
                    println!(
                        "FAIL  {} :: {} ({}:{})",
                        p.recipient,
                        t.name,
                        p.source.display(),
                        t.line
                    );
                    let _ = std::io::stdout().flush();
                    reporter.eprint(e);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
