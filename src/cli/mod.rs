//! The `scrim` commands, one file each; `main.rs` parses the command line
//! ([`args`]) and calls the command's `run`. What the commands share is here:
//! showing rule-file problems and loading rule files for a command.

pub mod args;
pub mod check;
pub mod completions;
pub mod diff;
pub mod inventory;
pub mod keygen;
pub mod man;
pub mod rewrite;
pub mod schema;
pub mod serve;
pub mod suppress;
pub mod test;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::policy::{self, BodyFormat, CompiledPolicy, PolicyError};
use args::{ColorArg, MessageFormat, OutputArgs};

/// Shows rule-file problems: with the source line and a caret for people,
/// or one line each for tools.
pub(crate) struct Reporter {
    color: bool,
    format: MessageFormat,
    sources: HashMap<String, Option<String>>,
}

impl Reporter {
    /// `terminal`: whether the stream the problems go to is a terminal.
    pub(crate) fn new(args: OutputArgs, terminal: bool) -> Self {
        let color = match args.color {
            ColorArg::Always => true,
            ColorArg::Never => false,
            ColorArg::Auto => terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        };
        Reporter {
            color,
            format: args.message_format,
            sources: HashMap::new(),
        }
    }

    /// For commands without output options: human format, coloured when
    /// stderr is a terminal (and NO_COLOR is unset).
    pub(crate) fn stderr_human() -> Self {
        Reporter::new(
            OutputArgs {
                color: ColorArg::Auto,
                message_format: MessageFormat::Human,
            },
            std::io::stderr().is_terminal(),
        )
    }

    fn render(&mut self, e: &PolicyError) -> String {
        if self.format == MessageFormat::Short {
            return format!("{e}\n");
        }
        let source = self
            .sources
            .entry(e.file.clone())
            .or_insert_with(|| std::fs::read_to_string(&e.file).ok());
        policy::diag::render(e, source.as_deref(), self.color)
    }

    pub(crate) fn eprint(&mut self, e: &PolicyError) {
        let text = self.render(e);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", text.trim_end());
        if self.format == MessageFormat::Human {
            let _ = writeln!(err);
        }
    }
}

pub(crate) fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// How a command is told where its rule files are, for the help shown when
/// that path does not exist (most often: no `rules/` in the current
/// directory, the default).
#[derive(Clone, Copy)]
pub(crate) enum RulesGiven {
    /// `--rules DIR` (`scrim rewrite`).
    Flag,
    /// As arguments (`scrim check DIR...`): the command's name.
    Arguments(&'static str),
}

impl RulesGiven {
    fn help(self) -> String {
        match self {
            RulesGiven::Flag => {
                "pass the rules directory (or one rule file) with --rules DIR; without --rules, ./rules is read".into()
            }
            RulesGiven::Arguments(command) => format!(
                "pass the rules directory (or rule files) as arguments: scrim {command} DIR; without one, ./rules is read"
            ),
        }
    }
}

/// Loads the rule files; on problems, shows them and returns the exit code
/// (2 when a path cannot be read, 1 for rule errors).
pub(crate) fn load(
    rules: &[PathBuf],
    given: RulesGiven,
    reporter: &mut Reporter,
) -> Result<Vec<Arc<CompiledPolicy>>, ExitCode> {
    if let Err(e) = policy::rule_files(rules) {
        let e = if std::path::Path::new(&e.file).exists() {
            e
        } else {
            e.with_help(given.help())
        };
        reporter.eprint(&e);
        return Err(ExitCode::from(2));
    }
    let policies = policy::load_all(rules).map_err(|errors| {
        for e in &errors {
            reporter.eprint(e);
        }
        eprintln!("{}", plural(errors.len(), "error"));
        ExitCode::from(1)
    })?;
    if policies.is_empty() {
        eprintln!(
            "no rule files (*.toml) found in {}",
            rules
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Err(ExitCode::from(1));
    }
    Ok(policies)
}

/// What to say about a `--recipient` that no loaded rule file is for: the
/// nearest loaded recipient, or the list of them.
pub(crate) fn unknown_recipient_help(name: &str, loaded: &[&str]) -> String {
    match policy::suggest(name, loaded) {
        Some(near) => format!("did you mean \"{near}\"?"),
        None => format!("the rules are for: {}", loaded.join(", ")),
    }
}

/// Guesses a sample's format from its first bytes: a first line that is a
/// whole JSON value followed by more lines is NDJSON; anything else starting
/// with `{` or `[` is JSON; the rest a form body.
pub(crate) fn sniff(head: &[u8]) -> BodyFormat {
    let text = head.trim_ascii_start();
    if !text.starts_with(b"{") && !text.starts_with(b"[") {
        return BodyFormat::Form;
    }
    if let Some(nl) = text.iter().position(|&b| b == b'\n') {
        let first = &text[..nl];
        let rest = text[nl..].trim_ascii();
        if !rest.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(first).is_ok() {
            return BodyFormat::Ndjson;
        }
    }
    BodyFormat::Json
}
