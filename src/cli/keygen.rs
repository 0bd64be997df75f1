//! `scrim keygen`: a new key, into a key ring file or printed.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::pseudonym;

/// Adds a key to the ring at `keys` (creating it), or prints a new ring.
pub fn run(keys: Option<PathBuf>, id: Option<String>, activate: bool) -> ExitCode {
    match keys {
        Some(path) => match pseudonym::keygen(&path, id.as_deref(), activate) {
            Ok(id) => {
                eprintln!(
                    "added key \"{id}\" to {}{}",
                    path.display(),
                    if activate { " (active)" } else { "" }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        None => match pseudonym::keygen_text(id.as_deref()) {
            Ok((_, text)) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
    }
}
