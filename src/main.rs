//! The `scrim` command line: parse arguments, call into the library.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use scrim::policy::{self, BodyFormat, CompiledPolicy, PolicyError};
use scrim::pseudonym::{self, KeyRing};
use scrim::rewrite::Engine;

/// scrim: an egress privacy gateway. Only the fields a recipient's rules
/// allow leave, pseudonymised or generalised as the rules say.
#[derive(Parser)]
#[command(name = "scrim", version, about, long_about = None, after_help = TOP_EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: services send partner-bound requests to it, it
    /// forwards only what each recipient's rules allow. Reloads rules on
    /// SIGHUP and on changes in the rules directory; drains and exits on
    /// SIGTERM. Exit code 0 after a clean drain; 1 when it cannot start
    /// (configuration, key ring, rule files or listeners).
    #[command(after_help = SERVE_EXAMPLES)]
    Serve {
        /// Server configuration (defaults apply when the file is absent and
        /// no --config was given).
        #[arg(long, default_value = "scrim.toml")]
        config: PathBuf,
        /// Log format (overrides log.format).
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
    /// Validate rule files (syntax, selectors, actions, options), run their
    /// [[tests]] and the privacy lint. Each problem is shown with its source
    /// line and a caret; warnings do not fail the check unless --strict.
    /// Exit code 0: no errors; 1: rule errors (or warnings with --strict);
    /// 2: a path cannot be read.
    #[command(after_help = CHECK_EXAMPLES)]
    Check {
        /// Rule files or directories of *.toml files.
        #[arg(default_value = "rules")]
        rules: Vec<PathBuf>,
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
    /// Print the JSON Schema (draft 7) of rule files or of scrim.toml, for
    /// editor completion, hover help and validation. The copies in schema/
    /// are this output; editors find them through .taplo.toml or a
    /// `#:schema` first line.
    ///
    /// Examples:
    ///   scrim schema rules > schema/rules.schema.json
    ///   scrim schema config > schema/scrim.schema.json
    #[command(verbatim_doc_comment)]
    Schema {
        /// Which file's schema.
        #[arg(value_enum)]
        of: SchemaOf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemaOf {
    /// Rule files (rules/*.toml).
    Rules,
    /// The server configuration (scrim.toml).
    Config,
}

/// How rule-file problems are shown.
#[derive(clap::Args, Clone, Copy)]
struct OutputArgs {
    /// Colour: auto (when the output is a terminal and NO_COLOR is unset),
    /// always or never.
    #[arg(long, value_enum, default_value = "auto")]
    color: ColorArg,
    /// human: source line, caret and help; short: one line per problem,
    /// `file:line:col: error[CODE]: message (help: ...)`, for tools.
    #[arg(long, value_enum, default_value = "human")]
    message_format: MessageFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MessageFormat {
    Human,
    Short,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
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
  scrim check --message-format short rules/ga4.toml   # one line per problem

A lint warning accepted on review is allowed in the rule file itself:
  [[allow]]
  lint = \"P001\"
  selector = \"user.ip\"
  reason = \"why this is acceptable\"";

const TEST_EXAMPLES: &str = "Examples:
  scrim test                            # every *.toml in rules/
  scrim test rules/segment.toml";

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

const INVENTORY_EXAMPLES: &str = "Examples:
  scrim inventory                       # every rule file in rules/, Markdown
  scrim inventory rules/ga4.toml --format json";

#[derive(Clone, Copy, ValueEnum)]
enum DiffFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum InventoryFormat {
    Markdown,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Ndjson,
    Form,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, log_format } => serve(&config, log_format),
        Command::Check {
            rules,
            strict,
            output,
        } => check(&rules, strict, output),
        Command::Test { rules, output } => test(&rules, output),
        Command::Rewrite {
            rules,
            recipient,
            keys,
            test_key,
            format,
            explain,
            no_progress,
            skip_refused,
            file,
        } => rewrite(
            rules,
            &recipient,
            keys,
            test_key,
            format,
            RewriteOptions {
                explain,
                progress: !no_progress,
                skip_refused,
            },
            file,
        ),
        Command::Diff {
            old,
            new,
            sample,
            recipient,
            sample_format,
            format,
        } => diff(
            &old,
            &new,
            &sample,
            recipient.as_deref(),
            sample_format,
            format,
        ),
        Command::Inventory { rules, format } => inventory(&rules, format),
        Command::Keygen { keys, id, activate } => keygen(keys, id, activate),
        Command::Schema { of } => schema(of),
    }
}

fn schema(of: SchemaOf) -> ExitCode {
    let schema = match of {
        SchemaOf::Rules => scrim::schema::rules(),
        SchemaOf::Config => scrim::schema::config(),
    };
    match std::io::stdout().write_all(scrim::schema::render(&schema).as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scrim: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve(path: &std::path::Path, log_format: Option<LogFormatArg>) -> ExitCode {
    let config = if path.exists() {
        match scrim::config::Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    } else if path == std::path::Path::new("scrim.toml") {
        scrim::config::Config::default()
    } else {
        eprintln!("{}: no such file", path.display());
        return ExitCode::from(1);
    };
    let format = match log_format {
        Some(LogFormatArg::Json) => scrim::config::LogFormat::Json,
        Some(LogFormatArg::Text) => scrim::config::LogFormat::Text,
        None => config.log_format,
    };
    // Flushes buffered log lines when serve returns.
    let _log_guard = init_logging(format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(scrim::proxy::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("scrim: {e}");
            ExitCode::from(1)
        }
    }
}

/// Logs go through a dedicated writer thread, so a request never waits on a
/// write to stderr; the queue is not lossy (audit lines are never dropped).
fn init_logging(
    format: scrim::config::LogFormat,
    level: &str,
) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let filter = scrim::ops::log_filter(level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(scrim::ops::logbuf::Batched::new(writer));
    match format {
        scrim::config::LogFormat::Json => builder.json().flatten_event(true).init(),
        scrim::config::LogFormat::Text => builder.with_ansi(false).init(),
    }
    guard
}

/// Shows rule-file problems: with the source line and a caret for people,
/// or one line each for tools.
struct Reporter {
    color: bool,
    format: MessageFormat,
    sources: HashMap<String, Option<String>>,
}

impl Reporter {
    /// `terminal`: whether the stream the problems go to is a terminal.
    fn new(args: OutputArgs, terminal: bool) -> Self {
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

    fn eprint(&mut self, e: &PolicyError) {
        let text = self.render(e);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", text.trim_end());
        if self.format == MessageFormat::Human {
            let _ = writeln!(err);
        }
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Loads the rule files; on problems, shows them and returns the exit code
/// (2 when a path cannot be read, 1 for rule errors).
fn load(rules: &[PathBuf], reporter: &mut Reporter) -> Result<Vec<Arc<CompiledPolicy>>, ExitCode> {
    if let Err(e) = policy::rule_files(rules) {
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

fn check(rules: &[PathBuf], strict: bool, output: OutputArgs) -> ExitCode {
    let mut reporter = Reporter::new(output, std::io::stderr().is_terminal());
    let policies = match load(rules, &mut reporter) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut problems = Vec::new();
    for p in &policies {
        problems.extend(scrim::selftest::test_failures(p));
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

fn test(rules: &[PathBuf], output: OutputArgs) -> ExitCode {
    let mut reporter = Reporter::new(output, std::io::stderr().is_terminal());
    let policies = match load(rules, &mut reporter) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (mut passed, mut failed) = (0, 0);
    for p in &policies {
        if p.tests.is_empty() {
            println!("{}: no [[tests]]", p.source.display());
        }
        let failures = scrim::selftest::test_failures(p);
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

/// How `scrim rewrite` reports and what it does with refused NDJSON lines.
struct RewriteOptions {
    explain: bool,
    progress: bool,
    skip_refused: bool,
}

fn rewrite(
    rules: PathBuf,
    recipient: &str,
    keys: Option<PathBuf>,
    test_key: bool,
    format: Option<Format>,
    options: RewriteOptions,
    file: Option<PathBuf>,
) -> ExitCode {
    let RewriteOptions {
        explain,
        progress,
        skip_refused,
    } = options;
    let mut reporter = Reporter::new(
        OutputArgs {
            color: ColorArg::Auto,
            message_format: MessageFormat::Human,
        },
        std::io::stderr().is_terminal(),
    );
    let policies = match load(&[rules], &mut reporter) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some(policy) = policies.into_iter().find(|p| p.recipient == recipient) else {
        eprintln!("unknown recipient \"{recipient}\"");
        return ExitCode::from(1);
    };
    let ring = if test_key {
        KeyRing::test_ring()
    } else if let Some(path) = keys {
        match KeyRing::load(&path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    } else {
        eprintln!(
            "warning: no key ring (--keys or SCRIM_KEYS_FILE): using a random ephemeral key; pseudonyms will differ on every run"
        );
        match KeyRing::ephemeral() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    };
    let engine = Engine::new(policy, &ring);
    let mut size = None;
    let mut input: Box<dyn Read + Send> = match &file {
        Some(f) if f.as_os_str() != "-" => match std::fs::File::open(f) {
            Ok(fh) => {
                size = fh.metadata().ok().map(|m| m.len()).filter(|_| f.is_file());
                Box::new(fh)
            }
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                return ExitCode::from(2);
            }
        },
        _ => Box::new(std::io::stdin()),
    };
    let format = match format {
        Some(Format::Json) => BodyFormat::Json,
        Some(Format::Ndjson) => BodyFormat::Ndjson,
        Some(Format::Form) => BodyFormat::Form,
        None => match file
            .as_ref()
            .and_then(|f| f.extension())
            .and_then(|e| e.to_str())
        {
            Some("ndjson" | "jsonl") => BodyFormat::Ndjson,
            Some("json") => BodyFormat::Json,
            // Standard input or another extension: NDJSON when the first
            // line is a whole JSON value and more follows, else JSON.
            _ => {
                let head = match peek_lines(&mut input) {
                    Ok(h) => h,
                    Err(e) => {
                        eprintln!("read error: {e}");
                        return ExitCode::from(2);
                    }
                };
                let format = match sniff(&head) {
                    BodyFormat::Ndjson => BodyFormat::Ndjson,
                    _ => BodyFormat::Json,
                };
                input = Box::new(std::io::Cursor::new(head).chain(input));
                format
            }
        },
    };
    let bar = progress_bar(progress, size);
    if format == BodyFormat::Ndjson && (skip_refused || !explain) {
        return rewrite_ndjson(&engine, input, skip_refused, &bar);
    }
    let mut rw = engine.body_rewriter(format);
    if explain {
        rw.explain();
    }
    rw.track_completed();
    // Straight to the file descriptor: the standard handle's line buffering
    // would look for line feeds in every byte written.
    let mut stdout = match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            eprintln!("stdout: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = Vec::new();
    // A single JSON document (or form body) is read whole and written only
    // once it is complete, so a refusal leaves nothing on stdout; NDJSON
    // (here only with --explain) streams.
    let stream = format == BodyFormat::Ndjson;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut whole = Vec::with_capacity(size.map_or(0, |s| s as usize));
    let result = loop {
        let n = match input.read(&mut chunk) {
            Ok(0) if stream => break rw.finish(&mut out),
            Ok(0) => {
                out.reserve(whole.len() + whole.len() / 8);
                break rw.feed(&whole, &mut out).and_then(|()| rw.finish(&mut out));
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.finish_and_clear();
                eprintln!("read error: {e}");
                return ExitCode::from(2);
            }
        };
        bar.inc(n as u64);
        if !stream {
            whole.extend_from_slice(&chunk[..n]);
            continue;
        }
        if let Err(e) = rw.feed(&chunk[..n], &mut out) {
            break Err(e);
        }
        show_records(&bar, rw.documents());
        if out.len() >= 64 * 1024 {
            let done = completed_lines(&out);
            if stdout.write_all(&out[..done]).is_err() {
                return ExitCode::from(1);
            }
            out.drain(..done);
        }
    };
    bar.finish_and_clear();
    match result {
        Ok(stats) => {
            // In pieces the size of a cache, not one write of the whole.
            if out.chunks(1 << 20).any(|c| stdout.write_all(c).is_err()) {
                return ExitCode::from(2);
            }
            if format == BodyFormat::Json && stdout.is_terminal() {
                let _ = stdout.write_all(b"\n");
            }
            let _ = stdout.flush();
            if explain {
                print_explain(rw.explained());
            }
            eprintln!("{}", field_counts(&stats));
            eprintln!("{}", summary(&stats, stats.documents, 0));
            ExitCode::SUCCESS
        }
        Err(e) => {
            if stream {
                let _ = stdout.write_all(&out[..completed_lines(&out)]);
            }
            if explain {
                print_explain(rw.explained());
            }
            eprintln!("refused: {e}");
            if format == BodyFormat::Json && e.kind == scrim::rewrite::ErrorKind::TrailingData {
                eprintln!("help: several documents, one per line? use --format ndjson");
            }
            // Only records that were written count: for NDJSON, the lines
            // before the refused one; for JSON or a form body, none.
            let stats = if stream {
                rw.completed().unwrap_or_default()
            } else {
                Default::default()
            };
            eprintln!("{}", field_counts(&stats));
            eprintln!("{}", summary(&stats, stats.documents, 1));
            ExitCode::from(1)
        }
    }
}

/// The output of completed NDJSON records: each ends with its line feed,
/// and no rewritten record holds a raw one.
fn completed_lines(out: &[u8]) -> usize {
    memchr::memrchr(b'\n', out).map_or(0, |i| i + 1)
}

/// NDJSON: whole lines are fed to the engine (so each is read by its fast
/// path), and output is written as records complete. A refused line ends
/// the run, or with `--skip-refused` is left out (and reported) and the
/// run goes on with the next line.
///
/// Reading and writing run on threads of their own, so that copying bytes
/// in and out of the kernel overlaps with rewriting; a few buffers of
/// [`NDJSON_PIECE`] bytes go round, so memory stays flat whatever the size
/// of the input.
fn rewrite_ndjson(
    engine: &Engine,
    input: Box<dyn Read + Send>,
    skip_refused: bool,
    bar: &indicatif::ProgressBar,
) -> ExitCode {
    use std::sync::mpsc::sync_channel;
    let stdout = match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            eprintln!("stdout: {e}");
            return ExitCode::from(2);
        }
    };
    // Whole lines in; empty buffers back to be filled again.
    let (lines_tx, lines_rx) = sync_channel::<std::io::Result<Vec<u8>>>(2);
    let (spare_in_tx, spare_in_rx) = sync_channel::<Vec<u8>>(4);
    // Output out; empty buffers back.
    let (out_tx, out_rx) = sync_channel::<Vec<u8>>(2);
    let (spare_out_tx, spare_out_rx) = sync_channel::<Vec<u8>>(4);
    let reader = std::thread::spawn(move || read_lines(input, &lines_tx, &spare_in_rx));
    let writer = std::thread::spawn(move || write_pieces(stdout, &out_rx, &spare_out_tx));
    let outcome = rewrite_pieces(
        engine,
        &lines_rx,
        &spare_in_tx,
        &out_tx,
        &spare_out_rx,
        skip_refused,
        bar,
    );
    drop(out_tx);
    drop(lines_rx);
    let wrote = writer.join().is_ok_and(|r| r.is_ok());
    let _ = reader.join();
    bar.finish_and_clear();
    let (totals, refused, failure) = match outcome {
        Ok(x) => x,
        Err(e) => {
            eprintln!("read error: {e}");
            return ExitCode::from(2);
        }
    };
    if !wrote {
        return ExitCode::from(2);
    }
    if let Some((e, done)) = failure {
        eprintln!("refused: {e}");
        eprintln!("{}", field_counts(&done));
        eprintln!("{}", summary(&totals, totals.documents, 1));
        return ExitCode::from(1);
    }
    if !skip_refused {
        eprintln!("{}", field_counts(&totals));
    }
    eprintln!("{}", summary(&totals, totals.documents, refused));
    if refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Bytes read at a time for NDJSON (a line longer than this grows the
/// buffer it is read into).
const NDJSON_PIECE: usize = 256 * 1024;

/// The reader thread: sends the input as pieces of whole lines (the last
/// piece may end without a line feed), then an empty piece at the end.
fn read_lines(
    mut input: Box<dyn Read + Send>,
    lines: &std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>,
    spare: &std::sync::mpsc::Receiver<Vec<u8>>,
) {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut buf = spare.try_recv().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(&carry);
        carry.clear();
        let start = buf.len();
        buf.resize(start + NDJSON_PIECE, 0);
        let n = loop {
            match input.read(&mut buf[start..]) {
                Ok(n) => break Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                let _ = lines.send(Err(e));
                return;
            }
        };
        buf.truncate(start + n);
        if n == 0 {
            if !buf.is_empty() && lines.send(Ok(buf)).is_err() {
                return;
            }
            let _ = lines.send(Ok(Vec::new()));
            return;
        }
        match memchr::memrchr(b'\n', &buf[start..]) {
            Some(i) => {
                carry.extend_from_slice(&buf[start + i + 1..]);
                buf.truncate(start + i + 1);
                if lines.send(Ok(buf)).is_err() {
                    return;
                }
            }
            // No line ends here yet: keep reading into the same line.
            None => carry = buf,
        }
    }
}

/// The writer thread: writes each piece, hands the buffer back.
fn write_pieces(
    mut stdout: std::fs::File,
    pieces: &std::sync::mpsc::Receiver<Vec<u8>>,
    spare: &std::sync::mpsc::SyncSender<Vec<u8>>,
) -> std::io::Result<()> {
    for piece in pieces {
        stdout.write_all(&piece)?;
        let _ = spare.try_send(piece);
    }
    stdout.flush()
}

/// What an NDJSON run ends with: the counts of the records written, how
/// many were refused and left out, and the refusal that ended the run.
type NdjsonOutcome = (
    scrim::rewrite::Stats,
    u64,
    Option<(scrim::rewrite::RewriteError, scrim::rewrite::Stats)>,
);

/// The rewriting stage of [`rewrite_ndjson`].
#[allow(clippy::too_many_arguments)]
fn rewrite_pieces(
    engine: &Engine,
    lines: &std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    spare_in: &std::sync::mpsc::SyncSender<Vec<u8>>,
    out_tx: &std::sync::mpsc::SyncSender<Vec<u8>>,
    spare_out: &std::sync::mpsc::Receiver<Vec<u8>>,
    skip_refused: bool,
    bar: &indicatif::ProgressBar,
) -> std::io::Result<NdjsonOutcome> {
    let mut totals = scrim::rewrite::Stats::default();
    let mut refused = 0u64;
    // Lines before the current rewriter's first one.
    let mut lines_before = 0u64;
    let mut rw = engine.body_rewriter(BodyFormat::Ndjson);
    rw.track_completed();
    // Bytes fed to the current rewriter before the piece being fed, and
    // where in the input it started.
    let mut fed_before = 0u64;
    let mut rw_start = 0u64;
    let mut failure = None;
    for piece in lines {
        let piece = piece?;
        let eof = piece.is_empty();
        bar.inc(piece.len() as u64);
        let mut out = spare_out.try_recv().unwrap_or_default();
        out.clear();
        out.reserve(piece.len() + piece.len() / 4);
        let mut at = 0;
        loop {
            let rest = &piece[at..];
            let fed = rw.feed(rest, &mut out).and_then(|()| {
                if eof {
                    rw.finish(&mut out).map(|_| ())
                } else {
                    Ok(())
                }
            });
            let Err(mut e) = fed else {
                fed_before += rest.len() as u64;
                break;
            };
            // The records before the refused one stand.
            out.truncate(completed_lines(&out));
            let done = rw.completed().unwrap_or_default();
            let line = lines_before + e.line.unwrap_or(1);
            let rel = (e.offset.saturating_sub(fed_before) as usize).min(rest.len());
            // Where in the whole input, not in this rewriter's part of it.
            e.offset += rw_start;
            e.line = Some(line);
            totals.absorb(&done);
            totals.documents += done.documents;
            if !skip_refused {
                failure = Some((e, done));
                break;
            }
            refused += 1;
            e.line = None;
            bar.suspend(|| eprintln!("line {line}: refused: {e}"));
            // Go on after the refused line, with a fresh rewriter.
            let next = memchr::memchr(b'\n', &rest[rel..]).map_or(rest.len(), |i| rel + i + 1);
            lines_before = line;
            at += next;
            rw_start += fed_before + next as u64;
            fed_before = 0;
            rw = engine.body_rewriter(BodyFormat::Ndjson);
            rw.track_completed();
            if at >= piece.len() && !eof {
                break;
            }
        }
        let _ = spare_in.try_send(piece);
        if !out.is_empty() && out_tx.send(out).is_err() {
            // The writer stopped (stdout closed): it reports.
            break;
        }
        if failure.is_some() || eof {
            break;
        }
        show_records(bar, totals.documents + rw.documents());
    }
    if failure.is_none() {
        let last = rw.completed().unwrap_or_default();
        totals.absorb(&last);
        totals.documents += last.documents;
    }
    Ok((totals, refused, failure))
}

/// The progress bar's message: records so far and per second.
fn show_records(bar: &indicatif::ProgressBar, records: u64) {
    if bar.is_hidden() {
        return;
    }
    let secs = bar.elapsed().as_secs_f64();
    if secs > 0.0 {
        bar.set_message(format!(
            "{records} records ({:.0}/s)",
            records as f64 / secs
        ));
    }
}

/// A progress bar on stderr: drawn only when stderr is a terminal
/// (indicatif's stderr target hides itself otherwise), never when asked not to.
fn progress_bar(enabled: bool, size: Option<u64>) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(size, ProgressDrawTarget::stderr());
    let template = if size.is_some() {
        "{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left) {msg}"
    } else {
        "{spinner} {bytes} ({bytes_per_sec}) {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// The end-of-run field counts.
fn field_counts(stats: &scrim::rewrite::Stats) -> String {
    format!(
        "kept {}, transformed {}, dropped {} ({} not applicable), documents {}",
        stats.kept, stats.transformed, stats.dropped, stats.not_applicable, stats.documents
    )
}

/// Reads the start of `input` for [`sniff`]: up to the first line and a
/// little of the next (or the end, or 64 KiB).
fn peek_lines(input: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 8192];
    while head.len() < 64 * 1024 {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        head.extend_from_slice(&chunk[..n]);
        let text = head.trim_ascii_start();
        if let Some(nl) = text.iter().position(|&b| b == b'\n')
            && !text[nl..].trim_ascii().is_empty()
        {
            break;
        }
    }
    Ok(head)
}

/// The end-of-run summary: fields per action, records, refused records.
fn summary(stats: &scrim::rewrite::Stats, records: u64, refused: u64) -> String {
    let mut parts: Vec<String> = stats
        .by_action
        .nonzero()
        .into_iter()
        .map(|(name, n)| {
            if name == "drop" && stats.not_applicable > 0 {
                format!("{name} {n} ({} not applicable)", stats.not_applicable)
            } else {
                format!("{name} {n}")
            }
        })
        .collect();
    parts.push(format!("records {records}"));
    parts.push(format!("refused records {refused}"));
    parts.join(", ")
}

fn print_explain(entries: &[scrim::rewrite::Explained]) {
    let mut err = std::io::stderr().lock();
    for e in entries {
        let sel = match (&e.selector, e.inherited) {
            (Some(s), _) => s.clone(),
            (None, true) => "(kept container)".into(),
            (None, false) => "(default deny)".into(),
        };
        let _ = writeln!(
            err,
            "{:<40} {:<28} {:<14} {}",
            if e.path.is_empty() { "(root)" } else { &e.path },
            sel,
            e.action,
            e.outcome
        );
    }
}

fn keygen(keys: Option<PathBuf>, id: Option<String>, activate: bool) -> ExitCode {
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

/// Loads one recipient's rules for `scrim diff`: a file, or a directory with
/// `--recipient`. A file that does not set `recipient` takes `name` (when
/// given) instead of its file name; one that sets another is refused when
/// `strict`. Also says whether the recipient was named explicitly (in the
/// file, or by choosing it from a directory). Errors are printed; `Err`
/// means exit code 2.
fn load_one(
    path: &std::path::Path,
    name: Option<&str>,
    strict: bool,
) -> Result<(Arc<CompiledPolicy>, bool), ()> {
    if path.is_dir() {
        let Some(name) = name else {
            eprintln!(
                "{}: is a directory; name the recipient with --recipient",
                path.display()
            );
            return Err(());
        };
        let all = policy::load_all(&[path.to_path_buf()]).map_err(|errors| {
            for e in &errors {
                eprintln!("{e}");
            }
        })?;
        return all
            .into_iter()
            .find(|p| p.recipient == name)
            .map(|p| (p, true))
            .ok_or_else(|| {
                eprintln!("{}: no rules for recipient \"{name}\"", path.display());
            });
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| eprintln!("{}: cannot read rule file: {e}", path.display()))?;
    let explicit =
        toml::from_str::<policy::raw::RawRuleFile>(&text).is_ok_and(|raw| raw.recipient.is_some());
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let mut p = policy::compile_str(&text, &path.display().to_string(), name.unwrap_or(stem))
        .map_err(|e| eprintln!("{e}"))?;
    p.source = path.to_path_buf();
    if let Some(name) = name
        && strict
        && p.recipient != name
    {
        eprintln!(
            "{}: the rules are for recipient \"{}\", not \"{name}\"",
            path.display(),
            p.recipient
        );
        return Err(());
    }
    Ok((Arc::new(p), explicit))
}

/// Guesses a sample's format from its first bytes: a first line that is a
/// whole JSON value followed by more lines is NDJSON; anything else starting
/// with `{` or `[` is JSON; the rest a form body.
fn sniff(head: &[u8]) -> BodyFormat {
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

fn diff(
    old: &std::path::Path,
    new: &std::path::Path,
    sample: &std::path::Path,
    recipient: Option<&str>,
    sample_format: Option<Format>,
    format: DiffFormat,
) -> ExitCode {
    use std::io::BufRead;
    // The new version names the recipient (with --recipient, that name):
    // an old file that does not set `recipient` takes it too, whatever its
    // file name (`git show main:rules/x.toml > /tmp/x-old.toml`).
    let Ok((new_p, new_explicit)) = load_one(new, recipient, true) else {
        return ExitCode::from(2);
    };
    let name = recipient.unwrap_or(&new_p.recipient).to_string();
    let Ok((old_p, old_explicit)) = load_one(old, Some(&name), recipient.is_some()) else {
        return ExitCode::from(2);
    };
    if old_p.recipient != new_p.recipient && old_explicit && new_explicit {
        eprintln!(
            "the two rule files are for different recipients (\"{}\" and \"{}\")",
            old_p.recipient, new_p.recipient
        );
        return ExitCode::from(2);
    }
    let stdin = sample.as_os_str() == "-";
    let reader: Box<dyn Read> = if stdin {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(sample) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("{}: {e}", sample.display());
                return ExitCode::from(2);
            }
        }
    };
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, reader);
    let body_format = match sample_format {
        Some(Format::Json) => BodyFormat::Json,
        Some(Format::Ndjson) => BodyFormat::Ndjson,
        Some(Format::Form) => BodyFormat::Form,
        None => match sample.extension().and_then(|e| e.to_str()) {
            Some("ndjson" | "jsonl") => BodyFormat::Ndjson,
            Some("json") => BodyFormat::Json,
            _ => match reader.fill_buf() {
                Ok(head) => sniff(head),
                Err(e) => {
                    eprintln!("{}: {e}", sample.display());
                    return ExitCode::from(2);
                }
            },
        },
    };
    let record_format = if body_format == BodyFormat::Ndjson {
        BodyFormat::Json
    } else {
        body_format
    };
    let mut differ = scrim::tools::diff::Differ::new(&old_p, &new_p, record_format);
    let mut buf = Vec::new();
    if body_format == BodyFormat::Ndjson {
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    if !buf.trim_ascii().is_empty() {
                        differ.record(&buf);
                    }
                }
                Err(e) => {
                    eprintln!("{}: {e}", sample.display());
                    return ExitCode::from(2);
                }
            }
        }
    } else {
        if let Err(e) = reader.read_to_end(&mut buf) {
            eprintln!("{}: {e}", sample.display());
            return ExitCode::from(2);
        }
        differ.record(&buf);
    }
    let result = differ.finish();
    let text = match format {
        DiffFormat::Text => result.to_text(),
        DiffFormat::Json => serde_json::to_string_pretty(&result).unwrap_or_default() + "\n",
    };
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(text.as_bytes()).is_err() {
        return ExitCode::from(2);
    }
    if result.reveals_more {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn inventory(rules: &[PathBuf], format: InventoryFormat) -> ExitCode {
    if let Err(e) = policy::rule_files(rules) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let mut reporter = Reporter::new(
        OutputArgs {
            color: ColorArg::Auto,
            message_format: MessageFormat::Human,
        },
        std::io::stderr().is_terminal(),
    );
    let policies = match load(rules, &mut reporter) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let inv = scrim::tools::inventory::build(&policies);
    let text = match format {
        InventoryFormat::Markdown => inv.to_markdown(),
        InventoryFormat::Json => inv.to_json() + "\n",
    };
    if std::io::stdout().lock().write_all(text.as_bytes()).is_err() {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
