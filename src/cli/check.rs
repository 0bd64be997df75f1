//! `scrim check`: rule files validated, their tests run, the privacy lint;
//! with `--config`, a server configuration and everything it names.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::args::OutputArgs;
use super::{Reporter, RulesGiven, load, plural};
use crate::config::{CONFIG_KEYS, CONFIG_RULES, CONFIG_SYNTAX, CONFIG_TLS, Config};
use crate::policy::{self, CompiledPolicy, PolicyError};

/// Checks the rule files and reports every problem; exit code 0, 1 or 2
/// as `scrim check --help` says.
pub fn run(rules: &[PathBuf], strict: bool, output: OutputArgs) -> ExitCode {
    let mut reporter = Reporter::new(output, std::io::stderr().is_terminal());
    let policies = match load(rules, RulesGiven::Arguments("check"), &mut reporter) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut problems = Vec::new();
    for p in &policies {
        problems.extend(crate::selftest::test_failures(p));
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

/// Checks a server configuration offline: its keys and values, the rules
/// directory and its rule files (with their tests and the lint), the key
/// ring and the TLS files; every problem in one run, shown as rule-file
/// problems are. Exit code 0, 1 or 2 as for rule files.
pub fn run_config(path: &Path, strict: bool, output: OutputArgs) -> ExitCode {
    let mut reporter = Reporter::new(output, std::io::stderr().is_terminal());
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let e = PolicyError::whole_file(
                CONFIG_SYNTAX,
                file,
                format!("cannot read the configuration: {e}"),
            );
            reporter.eprint(&e);
            return ExitCode::from(2);
        }
    };
    let (config, mut problems) = Config::check_str(&text, &file);
    let mut policies = Vec::new();
    if let Some(mut config) = config {
        config.resolve_paths(path.parent().unwrap_or(Path::new("")));
        let doc = toml::de::DeTable::parse(&text).ok();
        let setting = Setting {
            file: &file,
            text: &text,
            doc: doc.as_ref().map(|d| d.get_ref()),
        };
        policies = check_rules(&config, &setting, &mut problems);
        check_keys(&config, &setting, &mut problems);
        check_tls(&config, &setting, &mut problems);
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
        "ok: {file}: {}: {}{}",
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

/// Places problems at the setting they are about in the configuration.
struct Setting<'a> {
    file: &'a str,
    text: &'a str,
    doc: Option<&'a toml::de::DeTable<'a>>,
}

impl Setting<'_> {
    /// Whether the configuration writes `path`.
    fn written(&self, path: &str) -> bool {
        self.span(path).is_some()
    }

    fn span(&self, path: &str) -> Option<std::ops::Range<usize>> {
        self.doc
            .and_then(|d| crate::config::setting_span(d, path, ""))
    }

    /// A problem with the value of `path`, or with the whole file when it
    /// is not written there (a default, or the environment).
    fn at(&self, code: &'static str, path: &str, message: String) -> PolicyError {
        match self.span(path) {
            Some(span) => PolicyError::at(code, self.file, self.text, span, message),
            None => PolicyError::whole_file(code, self.file, message),
        }
    }
}

/// The rules directory exists and holds rule files that load, pass their
/// tests and the lint.
fn check_rules(
    config: &Config,
    setting: &Setting<'_>,
    problems: &mut Vec<PolicyError>,
) -> Vec<std::sync::Arc<CompiledPolicy>> {
    let dir = &config.rules_dir;
    let where_from = if setting.written("rules.dir") {
        "rules.dir is relative to the configuration file's directory"
    } else {
        "rules.dir is not set: the default is `rules`, beside the configuration file"
    };
    if !dir.exists() {
        problems.push(
            setting
                .at(
                    CONFIG_RULES,
                    "rules.dir",
                    format!("the rules directory {} does not exist", dir.display()),
                )
                .with_help(format!(
                    "{where_from}; point it at the directory of the recipients' rule files"
                )),
        );
        return Vec::new();
    }
    match policy::rule_files(std::slice::from_ref(dir)) {
        Ok(files) if files.is_empty() => {
            problems.push(
                setting
                    .at(
                        CONFIG_RULES,
                        "rules.dir",
                        format!(
                            "no rule file (*.toml) in the rules directory {}",
                            dir.display()
                        ),
                    )
                    .with_help(
                        "scrim serve refuses to start without rule files (unless \
                         --allow-no-rules): put the recipients' rule files there or point \
                         rules.dir at them",
                    ),
            );
            return Vec::new();
        }
        Ok(_) => {}
        Err(e) => {
            problems.push(e);
            return Vec::new();
        }
    }
    match policy::load_all(std::slice::from_ref(dir)) {
        Ok(policies) => {
            for p in &policies {
                problems.extend(crate::selftest::test_failures(p));
                let text = std::fs::read_to_string(&p.source).unwrap_or_default();
                problems.extend(policy::lint::lint(p, &text));
            }
            policies
        }
        Err(errors) => {
            problems.extend(errors);
            Vec::new()
        }
    }
}

/// The key ring is readable and valid, or its absence is allowed. A key
/// ring problem names the file and what is wrong, never its text.
fn check_keys(config: &Config, setting: &Setting<'_>, problems: &mut Vec<PolicyError>) {
    match &config.keys_file {
        Some(path) => {
            if let Err(e) = crate::pseudonym::KeyRing::load(path) {
                let from = if setting.written("keys.file") {
                    ""
                } else {
                    " (from SCRIM_KEYS_FILE)"
                };
                problems.push(setting.at(CONFIG_KEYS, "keys.file", format!("key ring{from}: {e}")));
            }
        }
        None if config.allow_ephemeral_key => problems.push(
            setting
                .at(
                    CONFIG_KEYS,
                    "keys.allow_ephemeral",
                    "no key ring (keys.file or SCRIM_KEYS_FILE): scrim serve would start with a \
                     random ephemeral key, and pseudonyms would change on every restart"
                        .into(),
                )
                .with_help("create one with `scrim keygen --keys FILE` and set keys.file")
                .warning(),
        ),
        None => problems.push(
            setting
                .at(
                    CONFIG_KEYS,
                    "keys.allow_ephemeral",
                    "no key ring (keys.file or SCRIM_KEYS_FILE) and keys.allow_ephemeral = \
                     false: scrim serve would refuse to start"
                        .into(),
                )
                .with_help("create one with `scrim keygen --keys FILE` and set keys.file"),
        ),
    }
}

/// The TLS files are readable PEM, and the certificate and key fit.
fn check_tls(config: &Config, setting: &Setting<'_>, problems: &mut Vec<PolicyError>) {
    use crate::proxy::upstream::read_pem_certs;
    let before = problems.len();
    if let Some(t) = &config.tls {
        if let Err(e) = read_pem_certs(&t.cert) {
            problems.push(setting.at(CONFIG_TLS, "listen.tls_cert", e.to_string()));
        }
        let key = match std::fs::read(&t.key) {
            Err(e) => Err(format!("{}: {e}", t.key.display())),
            Ok(data) => match rustls_pemfile::private_key(&mut data.as_slice()) {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(format!("{}: no private key found", t.key.display())),
                Err(e) => Err(format!("{}: invalid PEM: {e}", t.key.display())),
            },
        };
        if let Err(message) = key {
            problems.push(setting.at(CONFIG_TLS, "listen.tls_key", message));
        }
        if let Some(ca) = &t.client_ca
            && let Err(e) = read_pem_certs(ca)
        {
            problems.push(setting.at(CONFIG_TLS, "listen.client_ca", e.to_string()));
        }
        if problems.len() == before
            && let Err(e) = crate::proxy::tls_acceptor(t)
        {
            problems.push(setting.at(
                CONFIG_TLS,
                "listen.tls_key",
                format!("listen.tls_cert and listen.tls_key cannot serve TLS together: {e}"),
            ));
        }
    }
    if let Some(ca) = &config.upstream.extra_ca_file
        && let Err(e) = read_pem_certs(ca)
    {
        problems.push(setting.at(CONFIG_TLS, "upstream.extra_ca_file", e.to_string()));
    }
}
