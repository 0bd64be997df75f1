//! The command line's arguments, as clap reads them.
//!
//! Doc comments in this module are help text: clap prints each one under
//! `--help`. Value enums and flattened groups have none on purpose (one would
//! add a line to the help), so this module opts out of `missing_docs`; and
//! what reads as links or HTML there (`[[tests]]`, `k<YYYYMMDD>`) is
//! rule-file syntax and placeholders, for the terminal, not for rustdoc.
#![allow(
    missing_docs,
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags
)]

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::policy::BodyFormat;

/// scrim: an egress privacy gateway. Only the fields a recipient's rules
/// allow leave, pseudonymised or generalised as the rules say.
#[derive(Parser)]
#[command(name = "scrim", version, about, long_about = None, after_help = TOP_EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `scrim suppress ...`.
#[derive(Subcommand)]
pub enum SuppressCommand {
    /// Add identifiers to a list (created by the first add): given as
    /// arguments, or one per line on stdin (for bulk imports of millions).
    /// Each is normalised and hashed with the list key derived from the
    /// configuration's key ring; the list holds no identifier. Uses
    /// `[suppress] dir` (or `store`) of the configuration. Exit code 0 when
    /// added; 1 on any error.
    #[command(after_help = SUPPRESS_EXAMPLES)]
    Add {
        /// Server configuration whose key ring and lists are used.
        #[arg(long, default_value = "scrim.toml")]
        config: PathBuf,
        /// The list (`optout`, `erasure`...).
        #[arg(long)]
        list: String,
        /// Normalisation before hashing: none, email, lower, trim, phone.
        /// Default: the list's own (none for a new list). It must match
        /// the `[suppress] subject` normalisation of the rules that use
        /// the list.
        #[arg(long)]
        normalise: Option<String>,
        /// No progress bar (it is drawn only on a terminal anyway).
        #[arg(long)]
        no_progress: bool,
        /// Identifiers; none: one per line on stdin.
        ids: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway: services send partner-bound requests to it, it
    /// forwards only what each recipient's rules allow. Reloads rules on
    /// SIGHUP and on changes in the rules directory; drains and exits on
    /// SIGTERM. Exit code 0 after a clean drain; 1 when it cannot start
    /// (configuration, key ring, rule files or listeners). It refuses to
    /// start when the rules directory (rules.dir) is missing or holds no
    /// rule file, unless --allow-no-rules.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve {
        /// Server configuration (defaults apply when the file is absent and
        /// no --config was given).
        #[arg(long, default_value = "scrim.toml")]
        config: PathBuf,
        /// Log format (overrides log.format).
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
        /// Start even when the rules directory holds no rule file: no
        /// recipient, every request refused (404) until rule files appear
        /// there and load. The directory must exist.
        #[arg(long)]
        allow_no_rules: bool,
    },
    /// Validate rule files (syntax, selectors, actions, options), run their
    /// [[tests]] and the privacy lint. Each problem is shown with its source
    /// line and a caret; warnings do not fail the check unless --strict.
    /// With --config, validate a server configuration offline instead: its
    /// keys and values, the rules directory (rules.dir) and its rule files,
    /// the key ring and the TLS files. Exit code 0: no errors; 1: errors (or
    /// warnings with --strict); 2: a path cannot be read.
    #[command(after_help = CHECK_EXAMPLES)]
    Check {
        /// Rule files or directories of *.toml files.
        #[arg(default_value = "rules")]
        rules: Vec<PathBuf>,
        /// Check this server configuration (scrim.toml) and everything it
        /// names, rather than rule files given as arguments.
        #[arg(long, value_name = "FILE", conflicts_with = "rules")]
        config: Option<PathBuf>,
        /// Fail (exit 1) on any lint warning too.
        #[arg(long)]
        strict: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Run every [[tests]] case of the rule files, under the fixed test key.
    /// Exit code 0: all pass; 1: a case fails or a file is invalid; 2: a path
    /// cannot be read.
    #[command(after_help = TEST_EXAMPLES)]
    Test {
        /// Rule files or directories of *.toml files.
        #[arg(default_value = "rules")]
        rules: Vec<PathBuf>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Rewrite a body (JSON, NDJSON or form) with a recipient's rules, as the
    /// gateway would, and print the result. Exit code 1 means the input was
    /// refused; for NDJSON, output written before the refusal must be
    /// discarded.
    ///
    /// The input is streamed: a large NDJSON file is read and written in
    /// chunks, never held whole. On a terminal, a progress bar on stderr shows
    /// bytes, records and throughput. At the end, stderr gets a summary of
    /// fields per action, e.g. `keep 120034, pseudonymise 40011, drop 80022,
    /// records 40011, refused records 0`.
    #[command(after_help = REWRITE_EXAMPLES)]
    Rewrite {
        /// Rules directory (or file).
        #[arg(long, default_value = "rules")]
        rules: PathBuf,
        /// Recipient whose rules apply.
        #[arg(long)]
        recipient: String,
        /// Key ring file (default: $SCRIM_KEYS_FILE; without either, a random
        /// ephemeral key is used and a warning printed).
        #[arg(long, env = "SCRIM_KEYS_FILE")]
        keys: Option<PathBuf>,
        /// Use the fixed, documented test key (as [[tests]] do).
        #[arg(long, conflicts_with = "keys")]
        test_key: bool,
        /// Body format (default: .ndjson/.jsonl NDJSON, .json JSON; other
        /// files and standard input: NDJSON when the first line is a whole
        /// JSON value followed by more lines, otherwise JSON).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Print, per field, its path, the deciding selector, the action and
        /// the outcome to stderr. Never a value.
        #[arg(long)]
        explain: bool,
        /// Never show the progress bar (it is shown only when stderr is a
        /// terminal anyway).
        #[arg(long)]
        no_progress: bool,
        /// NDJSON only: leave refused lines out (reported on stderr by line
        /// number, never by content) and go on with the next; the exit code is
        /// still 1 when any line was refused, but the output holds every other
        /// line and may be used.
        #[arg(long, conflicts_with = "explain")]
        skip_refused: bool,
        /// Input file; standard input when absent or "-".
        file: Option<PathBuf>,
    },
    /// Compare two versions of one recipient's rules on sample data: per
    /// field path, what newly leaves, what is newly dropped and whose action
    /// changed, with the number of records affected; query parameters and
    /// headers are compared from the rules alone. Never prints a value.
    ///
    /// Exit code 0: nothing newly leaves (only drops, or no change); 1: a
    /// field, parameter or header newly leaves, or leaves under an action
    /// that reveals more (drop < redact < hash_sha256, pseudonymise <
    /// truncate_ip, coarsen_time, bucket, mask_email, strip_query < scan <
    /// keep); 2: usage, I/O or rule file error.
    #[command(after_help = DIFF_EXAMPLES)]
    Diff {
        /// The old rule file (or a rules directory, with --recipient).
        old: PathBuf,
        /// The new rule file (or a rules directory, with --recipient).
        new: PathBuf,
        /// Sample data: JSON (one record), NDJSON (one record per line) or a
        /// form body; "-" for standard input.
        sample: PathBuf,
        /// Recipient to pick from rules directories (with files: the name of
        /// a file that does not set `recipient`; one that sets another is
        /// refused). Default with files: the new file's recipient.
        #[arg(long)]
        recipient: Option<String>,
        /// Format of the sample (default: .ndjson/.jsonl NDJSON, .json JSON,
        /// otherwise detected from the content).
        #[arg(long, value_enum)]
        sample_format: Option<Format>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: DiffFormat,
    },
    /// List, per recipient, which fields, query parameters and headers leave
    /// and in which form, from the compiled rules (not from data), with the
    /// default deny spelt out. Markdown is ready for a record of processing
    /// activities (GDPR Art. 30) or a privacy review; JSON is for tooling.
    /// Never prints a secret: the upstream as its host only, header values
    /// set from the environment as env:NAME, literal ones as (literal).
    ///
    /// Exit code 0: ok; 1: a rule file is invalid; 2: usage or I/O error.
    #[command(after_help = INVENTORY_EXAMPLES)]
    Inventory {
        /// Rule files or directories of *.toml files.
        #[arg(default_value = "rules")]
        rules: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "markdown")]
        format: InventoryFormat,
    },
    /// Generate a new key (32 bytes from the OS RNG). With --keys, add it to
    /// that key ring file (created with mode 0600 if missing); otherwise print
    /// a new key ring to stdout. The secret is never printed when --keys is
    /// given.
    #[command(after_help = KEYGEN_EXAMPLES)]
    Keygen {
        /// Key ring file to add the key to.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Key id (default: k<YYYYMMDD>).
        #[arg(long)]
        id: Option<String>,
        /// Make the new key the active one.
        #[arg(long)]
        activate: bool,
    },
    /// Suppression lists: opt-outs and erasure requests, as keyed hashes
    /// (never identifiers), applied by every gateway within 2 s.
    #[command(subcommand)]
    Suppress(SuppressCommand),
    /// Print the JSON Schema (draft 7) of rule files or of scrim.toml, for
    /// editor completion, hover help and validation. The copies in schema/
    /// are this output; editors find them through .taplo.toml or a
    /// `#:schema` first line.
    #[command(after_help = SCHEMA_EXAMPLES)]
    Schema {
        /// Which file's schema.
        #[arg(value_enum)]
        of: SchemaOf,
    },
    /// Print a completion script for a shell to standard output: commands,
    /// options and their values complete on Tab. Install it where the shell
    /// looks for completions (see the examples).
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page scrim(1), or a command's page (scrim-rewrite(1),
    /// ...), as roff to standard output; with --dir, write every page into a
    /// directory instead, for packaging (scrim.1, scrim-serve.1, ...).
    #[command(after_help = MAN_EXAMPLES)]
    Man {
        /// The command whose page to print (default: scrim(1), which lists
        /// the commands).
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(COMMANDS))]
        command: Option<String>,
        /// Write scrim.1 and one page per command into this directory
        /// (created if missing) and list the files written.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}

/// The commands' names, as `scrim man` takes them (a unit test holds this
/// list to the subcommands above).
pub const COMMANDS: [&str; 11] = [
    "serve",
    "check",
    "test",
    "rewrite",
    "diff",
    "inventory",
    "keygen",
    "suppress",
    "schema",
    "completions",
    "man",
];

#[derive(Clone, Copy, ValueEnum)]
pub enum SchemaOf {
    /// Rule files (rules/*.toml).
    Rules,
    /// The server configuration (scrim.toml).
    Config,
}

/// How rule-file problems are shown.
#[derive(clap::Args, Clone, Copy)]
pub struct OutputArgs {
    /// Colour: auto (when the output is a terminal and NO_COLOR is unset),
    /// always or never.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorArg,
    /// human: source line, caret and help; short: one line per problem,
    /// `file:line:col: error[CODE]: message (help: ...)`, for tools.
    #[arg(long, value_enum, default_value = "human")]
    pub message_format: MessageFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MessageFormat {
    Human,
    Short,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

// Every line here stays within 90 columns: clap re-wraps help text at 100
// columns when the output is not a terminal, and a wrapped example no longer
// pastes as one command.
const TOP_EXAMPLES: &str = "Getting started:
  scrim check rules/                    # validate the rule files, run their tests
  scrim rewrite --recipient example --test-key --explain event.json
  scrim serve                           # the gateway, on the built-in defaults

`scrim <command> --help` has each command's options and examples.";

const SERVE_EXAMPLES: &str = "Examples:
  scrim serve                           # ./scrim.toml, or the built-in defaults
  scrim serve --config /etc/scrim/scrim.toml --log-format json
  SCRIM_KEYS_FILE=/run/secrets/keys.toml scrim serve
  kill -HUP $(pidof scrim)              # reload the rules (a bad file keeps the old)
  kill -TERM $(pidof scrim)             # stop accepting, drain in-flight requests, exit

Then send partner-bound requests to http://127.0.0.1:8080/<recipient>/<path>;
/metrics, /healthz, /readyz and /rules are on the admin listener (127.0.0.1:9090).";

const CHECK_EXAMPLES: &str = "Examples:
  scrim check                           # every *.toml in rules/
  scrim check --strict rules/           # for CI: lint warnings fail too
  scrim check --config /etc/scrim/scrim.toml   # the configuration, its rules, keys, TLS
  scrim check --message-format short rules/ga4.toml   # one line per problem

A lint warning accepted on review is allowed in the rule file itself:
  [[allow]]
  lint = \"P001\"
  selector = \"user.ip\"
  reason = \"why this is acceptable\"";

const TEST_EXAMPLES: &str = "Examples:
  scrim test                            # every *.toml in rules/
  scrim test rules/segment.toml";

const SUPPRESS_EXAMPLES: &str = "Examples:
  scrim suppress add --list optout user-123 user-456
  scrim suppress add --list erasure --normalise email < erasure-requests.txt
  scrim suppress add --config /etc/scrim/scrim.toml --list optout --no-progress < ids.txt

A running gateway applies an addition within 2 s (list files are polled; with
[suppress] store, every replica polls Redis). scrim withholds the person's
future events; it does not delete what a partner already holds.";

const KEYGEN_EXAMPLES: &str = "Examples:
  scrim keygen > keys.toml              # a new key ring with one active key
  scrim keygen --keys /etc/scrim/keys.toml --id k2027   # add a key, not active yet
  scrim keygen --keys keys.toml --activate   # add a key and make it active at once

Rotation with several replicas: add the key (not active), roll the file out to
every replica, then set active = \"k2027\" everywhere and restart them (the key
ring is read at start). See docs/operations.md.";

const REWRITE_EXAMPLES: &str = "Examples:
  scrim rewrite --recipient segment --test-key --explain event.json
  scrim rewrite --recipient ga4 --keys keys.toml events.ndjson > out.ndjson
  zcat events.ndjson.gz | scrim rewrite --recipient ga4 --test-key > out.ndjson
  scrim rewrite --recipient ga4 --keys keys.toml --skip-refused events.ndjson

Without --format: .ndjson/.jsonl is NDJSON, .json JSON; other files and
standard input are NDJSON when the first line is a whole JSON value and more
lines follow, otherwise JSON.

The summary on stderr counts fields per action: a field that left kept or
transformed under its action, every field removed (default deny, drop, an
action that could not apply) under drop. Containers entered are not counted.";

const DIFF_EXAMPLES: &str = "Examples:
  scrim diff rules/ga4.toml ga4-new.toml sample.ndjson
  scrim diff --recipient ga4 old-rules/ rules/ sample.ndjson --format json
  git show main:rules/ga4.toml > /tmp/ga4-old.toml
  scrim diff /tmp/ga4-old.toml rules/ga4.toml sample.json

Two files that do not set `recipient` are compared as the new file's
recipient, whatever their file names.

Paths: array indices are written [] (items[].sku); a field inside an
embedded_json document is written with > (ctx>locale).";

const SCHEMA_EXAMPLES: &str = "Examples:
  scrim schema rules > schema/rules.schema.json
  scrim schema config > schema/scrim.schema.json";

const COMPLETIONS_EXAMPLES: &str = "Examples:
  scrim completions bash > ~/.local/share/bash-completion/completions/scrim
  scrim completions zsh > ~/.zfunc/_scrim     # with fpath+=(~/.zfunc) before compinit
  scrim completions fish > ~/.config/fish/completions/scrim.fish

A new shell picks the script up; in the current one, `source` it (bash, fish).";

const MAN_EXAMPLES: &str = "Examples:
  scrim man | man -l -                  # read scrim(1) without installing it
  scrim man rewrite | man -l -          # one command's page, scrim-rewrite(1)
  scrim man --dir ~/.local/share/man/man1   # install every page; then `man scrim`
  scrim man --dir /usr/share/man/man1   # as a package would (as root)";

const INVENTORY_EXAMPLES: &str = "Examples:
  scrim inventory                       # every rule file in rules/, Markdown
  scrim inventory rules/ga4.toml --format json";

#[derive(Clone, Copy, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum InventoryFormat {
    Markdown,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Ndjson,
    Form,
}

impl From<Format> for BodyFormat {
    fn from(f: Format) -> BodyFormat {
        match f {
            Format::Json => BodyFormat::Json,
            Format::Ndjson => BodyFormat::Ndjson,
            Format::Form => BodyFormat::Form,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn commands_lists_every_subcommand_in_order() {
        let names: Vec<String> = super::Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert_eq!(names, super::COMMANDS);
    }
}
