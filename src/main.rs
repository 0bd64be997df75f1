//! The `scrim` command line: parse arguments, call into the library.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use scrim::policy::{self, BodyFormat, CompiledPolicy, PolicyError};
use scrim::pseudonym::{self, KeyRing};
use scrim::rewrite::Engine;

/// scrim: an egress privacy gateway. Only the fields a recipient's rules
/// allow leave, pseudonymised or generalised as the rules say.
#[derive(Parser)]
#[command(name = "scrim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: services send partner-bound requests to it, it
    /// forwards only what each recipient's rules allow. Reloads rules on
    /// SIGHUP and on changes in the rules directory; drains and exits on
    /// SIGTERM.
    ///
    /// Example: scrim serve --config scrim.toml --log-format json
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
    ///
    /// Example: scrim check --strict rules/
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
    ///
    /// Example: scrim test rules/segment.toml
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
    /// Example: scrim rewrite --rules rules --recipient segment --explain event.json
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
        /// Body format (default: from the file extension, .ndjson/.jsonl for
        /// NDJSON, otherwise JSON).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Print, per field, its path, the deciding selector, the action and
        /// the outcome to stderr. Never a value.
        #[arg(long)]
        explain: bool,
        /// Input file; standard input when absent or "-".
        file: Option<PathBuf>,
    },
    /// Generate a new key (32 bytes from the OS RNG). With --keys, add it to
    /// that key ring file (created with mode 0600 if missing); otherwise print
    /// a new key ring to stdout.
    ///
    /// Example: scrim keygen --keys /etc/scrim/keys.toml --activate
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
            file,
        } => rewrite(rules, &recipient, keys, test_key, format, explain, file),
        Command::Keygen { keys, id, activate } => keygen(keys, id, activate),
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
        .with_writer(writer);
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
        problems.extend(policy::test_failures(p));
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
        let failures = policy::test_failures(p);
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

fn rewrite(
    rules: PathBuf,
    recipient: &str,
    keys: Option<PathBuf>,
    test_key: bool,
    format: Option<Format>,
    explain: bool,
    file: Option<PathBuf>,
) -> ExitCode {
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
            _ => BodyFormat::Json,
        },
    };
    let engine = Engine::new(policy, &ring);
    let mut input: Box<dyn Read> = match &file {
        Some(f) if f.as_os_str() != "-" => match std::fs::File::open(f) {
            Ok(fh) => Box::new(fh),
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                return ExitCode::from(1);
            }
        },
        _ => Box::new(std::io::stdin().lock()),
    };
    let mut rw = engine.body_rewriter(format);
    if explain {
        rw.explain();
    }
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(128 * 1024);
    // A single JSON document is written only once it is complete, so a
    // refusal leaves nothing on stdout; NDJSON streams.
    let stream = format == BodyFormat::Ndjson;
    let result = loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break rw.finish(&mut out),
            Ok(n) => n,
            Err(e) => {
                eprintln!("read error: {e}");
                return ExitCode::from(1);
            }
        };
        if let Err(e) = rw.feed(&chunk[..n], &mut out) {
            break Err(e);
        }
        if stream && out.len() >= 64 * 1024 {
            if stdout.write_all(&out).is_err() {
                return ExitCode::from(1);
            }
            out.clear();
        }
    };
    match result {
        Ok(stats) => {
            if stdout.write_all(&out).is_err() {
                return ExitCode::from(1);
            }
            if format == BodyFormat::Json && stdout.is_terminal() {
                let _ = stdout.write_all(b"\n");
            }
            let _ = stdout.flush();
            if explain {
                print_explain(rw.explained());
            }
            eprintln!(
                "kept {}, transformed {}, dropped {} ({} not applicable), documents {}",
                stats.kept, stats.transformed, stats.dropped, stats.not_applicable, stats.documents
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            if stream {
                let _ = stdout.write_all(&out);
            }
            if explain {
                print_explain(rw.explained());
            }
            eprintln!("refused: {e}");
            ExitCode::from(1)
        }
    }
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
