//! `scrim diff`: what two versions of a recipient's rules send differently,
//! on a sample.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use super::args::{DiffFormat, Format};
use super::sniff;
use crate::policy::{self, BodyFormat, CompiledPolicy};

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
        let loaded: Vec<&str> = all.iter().map(|p| p.recipient.as_str()).collect();
        return all
            .iter()
            .find(|p| p.recipient == name)
            .map(|p| (p.clone(), true))
            .ok_or_else(|| {
                eprintln!(
                    "{}: no rules for recipient \"{name}\"\nhelp: {}",
                    path.display(),
                    super::unknown_recipient_help(name, &loaded)
                );
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

/// Rewrites the sample under both versions and reports the difference;
/// exit code 1 when the new version reveals more.
pub fn run(
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
        Some(f) => f.into(),
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
    let mut differ = crate::tools::diff::Differ::new(&old_p, &new_p, record_format);
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
