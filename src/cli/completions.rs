//! `scrim completions`: a shell's completion script, from the clap
//! definitions in [`super::args`], so it never falls behind them.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use super::args::Cli;

/// Prints the completion script for `shell`.
pub fn run(shell: Shell) -> ExitCode {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "scrim", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scrim: {e}");
            ExitCode::from(2)
        }
    }
}
