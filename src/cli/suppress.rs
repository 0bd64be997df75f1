//! `scrim suppress add`: identifiers onto a suppression list, as keyed
//! hashes, with the key ring and list location of a configuration.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use crate::consent::list::{self, Added};
use crate::consent::source;
use crate::pseudonym::Normalise;

/// Adds `ids` (or, without any, the lines of stdin) to list `name`.
pub fn add(
    config: &Path,
    name: &str,
    normalise: Option<&str>,
    ids: Vec<String>,
    progress: bool,
) -> ExitCode {
    match run_add(config, name, normalise, ids, progress) {
        Ok((added, where_)) => {
            eprintln!(
                "list \"{name}\" ({where_}): {} added, {} entries",
                added.new, added.total
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scrim suppress add: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_add(
    config_path: &Path,
    name: &str,
    normalise: Option<&str>,
    ids: Vec<String>,
    progress: bool,
) -> Result<(Added, String), String> {
    if !crate::policy::consent::is_list_name(name) {
        return Err("a list name is 1 to 64 characters of `A-Z a-z 0-9 _ -`".into());
    }
    let asked = match normalise {
        None => None,
        Some("none") => Some(Normalise::None),
        Some(n) => Some(Normalise::parse(n).ok_or_else(|| {
            format!(
                "unknown normalisation \"{}\" (expected none, {})",
                n.escape_debug(),
                Normalise::NAMES.join(", ")
            )
        })?),
    };
    let config = if config_path.exists() {
        crate::config::Config::load(config_path).map_err(|e| e.to_string())?
    } else if config_path == Path::new("scrim.toml") {
        crate::config::Config::default()
    } else {
        return Err(format!("{}: no such file", config_path.display()));
    };
    // The lists must be made with the gateway's key: never an ephemeral one.
    let Some(keys_file) = &config.keys_file else {
        return Err(
            "no key ring configured (keys.file or SCRIM_KEYS_FILE): list entries are made with it"
                .into(),
        );
    };
    let keys = crate::pseudonym::KeyRing::load(keys_file).map_err(|e| e.to_string())?;
    let bar = super::rewrite::progress_bar(progress, None);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {pos} identifiers ({per_sec}) {msg}")
    {
        bar.set_style(style);
    }
    let mut tick = |n: u64| bar.set_position(n);
    let stdin;
    let mut lines;
    let mut args;
    let it: &mut dyn Iterator<Item = String> = if ids.is_empty() {
        stdin = std::io::stdin();
        lines = stdin.lock().lines().map_while(Result::ok);
        &mut lines
    } else {
        args = ids.into_iter();
        &mut args
    };
    let result = match &config.suppress.store {
        Some(url) => source::add_to_store(url, name, &keys, asked, it, &mut tick)
            .map(|a| (a, "redis store".to_string())),
        None => {
            list::add_to_file(&config.suppress.dir, name, &keys, asked, it, &mut tick).map(|a| {
                (
                    a,
                    list::list_path(&config.suppress.dir, name)
                        .display()
                        .to_string(),
                )
            })
        }
    };
    bar.finish_and_clear();
    result.map_err(|e| e.to_string())
}
