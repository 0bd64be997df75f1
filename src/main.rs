//! The `scrim` command line: parse arguments, call the command in
//! [`scrim::cli`].

use std::process::ExitCode;

use clap::Parser;
use scrim::cli::args::{Cli, Command, SuppressCommand};
use scrim::cli::{
    check, completions, diff, inventory, keygen, man, rewrite, schema, serve, suppress, test,
};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            log_format,
            allow_no_rules,
        } => serve::run(&config, log_format, allow_no_rules),
        Command::Check {
            config: Some(config),
            strict,
            output,
            ..
        } => check::run_config(&config, strict, output),
        Command::Check {
            rules,
            config: None,
            strict,
            output,
        } => check::run(&rules, strict, output),
        Command::Test { rules, output } => test::run(&rules, output),
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
        } => rewrite::run(
            rules,
            &recipient,
            keys,
            test_key,
            format,
            rewrite::RewriteOptions {
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
        } => diff::run(
            &old,
            &new,
            &sample,
            recipient.as_deref(),
            sample_format,
            format,
        ),
        Command::Inventory { rules, format } => inventory::run(&rules, format),
        Command::Keygen { keys, id, activate } => keygen::run(keys, id, activate),
        Command::Suppress(SuppressCommand::Add {
            config,
            list,
            normalise,
            no_progress,
            ids,
        }) => suppress::add(&config, &list, normalise.as_deref(), ids, !no_progress),
        Command::Schema { of } => schema::run(of),
        Command::Completions { shell } => completions::run(shell),
        Command::Man { command, dir } => man::run(command.as_deref(), dir.as_deref()),
    }
}
