//! `scrim inventory`: what each recipient receives, for review.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::args::InventoryFormat;
use super::{Reporter, RulesGiven, load};

/// Prints the inventory of the rule files, as Markdown or JSON.
pub fn run(rules: &[PathBuf], format: InventoryFormat) -> ExitCode {
    let mut reporter = Reporter::stderr_human();
    let policies = match load(rules, RulesGiven::Arguments("inventory"), &mut reporter) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let inv = crate::tools::inventory::build(&policies);
    let text = match format {
        InventoryFormat::Markdown => inv.to_markdown(),
        InventoryFormat::Json => inv.to_json() + "\n",
    };
    if std::io::stdout().lock().write_all(text.as_bytes()).is_err() {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
