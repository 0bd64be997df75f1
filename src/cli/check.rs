//! `scrim check`: rule files validated, their tests run, the privacy lint.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use super::args::OutputArgs;
use super::{Reporter, RulesGiven, load, plural};
use crate::policy;

/// Checks the rule files and reports every problem; exit code 0, 1 or 2
/// as `scrim check --help` says.
pub fn run(rules: &[PathBuf], strict: bool, output: OutputArgs) -> ExitCode {
    let mut reporter = Reporter::new(output, std::io::stderr().is_terminal());
    let policies = match load(rules, RulesGiven::Arguments("check"), &mut reporter) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut problems = Vec::new();
    for p in &policies {
        problems.extend(crate::selftest::test_failures(p));
        let text = std::fs::read_to_string(&p.source).unwrap_or_default();
        problems.extend(policy::lint::lint(p, &text));
    }
    let errors = problems.iter().filter(|e| e.is_error()).count();
    let warnings = problems.len() - errors;
    for e in &problems {
        reporter.eprint(e);
    }
    if errors > 0 || (strict && warnings > 0) {
        let mut summary = Vec::new();
        if errors > 0 {
            summary.push(plural(errors, "error"));
        }
        if warnings > 0 {
            summary.push(plural(warnings, "warning"));
        }
        let strict_note = if errors == 0 { " (--strict)" } else { "" };
        eprintln!("{}{strict_note}", summary.join(", "));
        return ExitCode::from(1);
    }
    println!(
        "ok: {}: {}{}",
        plural(policies.len(), "rule file"),
        policies
            .iter()
            .map(|p| p.recipient.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if warnings > 0 {
            format!(" ({})", plural(warnings, "warning"))
        } else {
            String::new()
        }
    );
    ExitCode::SUCCESS
}
