//! `scrim serve`: the gateway.

use std::process::ExitCode;

use super::args::LogFormatArg;

/// Loads the configuration (or the defaults), starts logging and runs the
/// gateway until it drains. `allow_no_rules`: start even when the rules
/// directory holds no rule file.
pub fn run(
    path: &std::path::Path,
    log_format: Option<LogFormatArg>,
    allow_no_rules: bool,
) -> ExitCode {
    let mut config = if path.exists() {
        match crate::config::Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
    } else if path == std::path::Path::new("scrim.toml") {
        crate::config::Config::default()
    } else {
        eprintln!("{}: no such file", path.display());
        return ExitCode::from(1);
    };
    config.allow_no_rules = allow_no_rules;
    let format = match log_format {
        Some(LogFormatArg::Json) => crate::config::LogFormat::Json,
        Some(LogFormatArg::Text) => crate::config::LogFormat::Text,
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
    match runtime.block_on(crate::proxy::serve(config)) {
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
    format: crate::config::LogFormat,
    level: &str,
) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let filter = crate::ops::log_filter(level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::ops::logbuf::Batched::new(writer));
    match format {
        crate::config::LogFormat::Json => builder.json().flatten_event(true).init(),
        crate::config::LogFormat::Text => builder.with_ansi(false).init(),
    }
    guard
}
