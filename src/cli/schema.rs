//! `scrim schema`: the JSON Schema of rule files or of `scrim.toml`.

use std::io::Write;
use std::process::ExitCode;

use super::args::SchemaOf;

/// Prints the schema.
pub fn run(of: SchemaOf) -> ExitCode {
    let schema = match of {
        SchemaOf::Rules => crate::schema::rules(),
        SchemaOf::Config => crate::schema::config(),
    };
    match std::io::stdout().write_all(crate::schema::render(&schema).as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scrim: {e}");
            ExitCode::from(1)
        }
    }
}
