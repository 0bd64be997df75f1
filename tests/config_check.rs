//! The server configuration from the operator's side, run as the built
//! binary: `scrim serve` refuses to start without rule files (unless
//! `--allow-no-rules`), and `scrim check --config` validates a
//! configuration offline, every problem located.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_scrim");

/// A directory removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p =
            std::env::temp_dir().join(format!("scrim-config-check-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SCRIM_KEYS_FILE")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A key ring with one 32-byte secret (its hex, to check it never shows).
const SECRET_HEX: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";

fn key_ring() -> String {
    format!("active = \"k1\"\n\n[keys]\nk1 = \"hex:{SECRET_HEX}\"\n")
}

/// A rule file without lint warnings.
const RULE: &str = r#"upstream = "capture:"
paths = ["/v1/track"]

[fields]
event = "keep"

[[tests]]
name = "only the event leaves"
input = '{"event":"signup","email":"a@b.example"}'
expect = '{"event":"signup"}'
"#;

/// A configuration for a serve test: both listeners on free loopback ports,
/// the key ring and rules beside it.
fn serve_config(rules_dir: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n\
         [rules]\ndir = \"{rules_dir}\"\nwatch = true\n\n\
         [keys]\nfile = \"keys.toml\"\nallow_ephemeral = false\n\n\
         [limits]\nshutdown_grace_ms = 100\n"
    )
}

// ---------------------------------------------------------------- serve

#[test]
fn serve_refuses_to_start_without_a_rules_directory() {
    let d = Dir::new("serve-missing");
    d.write("keys.toml", &key_ring());
    let config = d.write("scrim.toml", &serve_config("rules"));
    let o = run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).lines().next().unwrap_or_default(),
        format!(
            "scrim: rules: the rules directory {} does not exist: set rules.dir in the \
             configuration (--config) to the directory of the recipients' rule files, or mount \
             them there",
            d.path("rules")
        )
    );
    // --allow-no-rules needs the directory: rule files added later could
    // not be watched for in a directory that does not exist.
    let o = run(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--allow-no-rules",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the rules directory") && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn serve_refuses_an_empty_rules_directory_unless_allowed() {
    let d = Dir::new("serve-empty");
    d.write("keys.toml", &key_ring());
    std::fs::create_dir(d.0.join("rules")).unwrap();
    // Not a rule file: only *.toml files are.
    d.write("rules/README.md", "rule files go here\n");
    let config = d.write("scrim.toml", &serve_config("rules"));
    let o = run(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).lines().next().unwrap_or_default(),
        format!(
            "scrim: rules: no rule file (*.toml) in the rules directory {}: put the recipients' \
             rule files there or set rules.dir in the configuration (--config); to start with no \
             recipient anyway (every request refused until rule files appear), pass \
             --allow-no-rules",
            d.path("rules")
        )
    );

    // With the flag it starts with no recipient, and a rule file that
    // appears later is loaded.
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--allow-no-rules",
        ])
        .env_remove("SCRIM_KEYS_FILE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = log_lines(&mut child);
    let started = wait_for(&lines, "scrim listening");
    assert!(started.contains("recipients=0"), "{started}");
    d.write("rules/shop.toml", RULE);
    let reloaded = wait_for(&lines, "rules reloaded");
    assert!(reloaded.contains("recipients=1"), "{reloaded}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The child's stderr, line by line, through a channel.
fn log_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first log line containing `what`; fails after 20 s.
fn wait_for(lines: &mpsc::Receiver<String>, what: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no log line with {what:?}; the log:\n{}", seen.join("\n"));
}

// ---------------------------------------------------------------- check --config

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A self-signed certificate and its key, as PEM.
fn cert_and_key() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

/// A configuration with every kind of problem: each is shown, located at
/// its setting, in one run, and the short secret of the key ring never.
#[test]
fn check_config_reports_every_problem_located() {
    let d = Dir::new("check-all");
    let short = "5ec7e75ec7e75ec7";
    d.write(
        "keys.toml",
        &format!("active = \"k1\"\n[keys]\nk1 = \"hex:{short}\"\n"),
    );
    let config = d.write(
        "scrim.toml",
        "[listen]\naddress = \"127.0.0.1:8080\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\n\
         [limits]\nbody_bytes = \"ten\"\nconcurency = 4\n\n\
         [rules]\ndir = \"rulez\"\n\n\
         [keys]\nfile = \"keys.toml\"\n\n\
         [log]\nformt = \"json\"\n",
    );
    d.write("key.pem", "not a key\n");
    let file = config.display().to_string();
    let o = run(&["check", "--config", &file, "--message-format", "short"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            format!(
                "{file}:7:14: error[C001]: `limits.body_bytes` must be a whole number of bytes (0 or more), found a string"
            ),
            format!(
                "{file}:8:1: error[C001]: unknown key `concurency` in `[limits]` (help: did you mean \"concurrency\"?)"
            ),
            format!(
                "{file}:17:1: error[C001]: unknown key `formt` in `[log]` (help: did you mean \"format\"?)"
            ),
            format!(
                "{file}:11:7: error[C003]: the rules directory {} does not exist (help: rules.dir is relative to the configuration file's directory; point it at the directory of the recipients' rule files)",
                d.path("rulez")
            ),
            format!(
                "{file}:14:8: error[C004]: key ring: {}:3:6: key `k1`: the secret is 8 bytes; at least 32 random bytes are required",
                d.path("keys.toml")
            ),
            format!(
                "{file}:3:12: error[C005]: {}: No such file or directory (os error 2)",
                d.path("cert.pem")
            ),
            format!(
                "{file}:4:11: error[C005]: {}: no private key found",
                d.path("key.pem")
            ),
            "7 errors".to_string(),
        ]
    );
    assert!(!err.contains(short), "{err}");
    assert_eq!(stdout(&o), "");

    // The human form: the source line and a caret under the setting.
    let o = run(&["check", "--config", &file]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("error[C001]: unknown key `concurency` in `[limits]`\n --> "),
        "{err}"
    );
    assert!(
        err.contains(
            "8 | concurency = 4\n  | ^^^^^^^^^^\n  |\n  = help: did you mean \"concurrency\"?"
        ),
        "{err}"
    );
    assert!(
        err.contains("7 | body_bytes = \"ten\"\n  |              ^^^^^\n"),
        "{err}"
    );
    assert!(!err.contains(short), "{err}");
}

/// A good configuration: rules, key ring and TLS all check; exit 0.
#[test]
fn check_config_passes_a_configuration_that_serves() {
    let d = Dir::new("check-ok");
    d.write("keys.toml", &key_ring());
    d.write("etc/rules/shop.toml", RULE);
    let (cert, key) = cert_and_key();
    d.write("etc/tls/cert.pem", &cert);
    d.write("etc/tls/key.pem", &key);
    // Relative paths are relative to the configuration's directory, not
    // to the working directory.
    let config = d.write(
        "etc/scrim.toml",
        &format!(
            "[listen]\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n\
             [rules]\ndir = \"rules\"\n[keys]\nfile = \"{}\"\nallow_ephemeral = false\n",
            d.path("keys.toml")
        ),
    );
    let file = config.display().to_string();
    let o = run(&["check", "--config", &file, "--strict"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("ok: {file}: 1 rule file: shop\n"));
    assert_eq!(stderr(&o), "");

    // A certificate and a key that do not belong together.
    let (_, other_key) = cert_and_key();
    d.write("etc/tls/key.pem", &other_key);
    let o = run(&["check", "--config", &file, "--message-format", "short"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "{file}:3:11: error[C005]: listen.tls_cert and listen.tls_key cannot serve TLS \
             together: "
        )),
        "{err}"
    );
    assert!(err.ends_with("\n1 error\n"), "{err}");
}

/// The rules directory, its rule files and the key ring's absence.
#[test]
fn check_config_rules_directory_and_key_ring() {
    let d = Dir::new("check-rules");
    std::fs::create_dir(d.0.join("rules")).unwrap();
    let config = d.write("scrim.toml", "[keys]\nallow_ephemeral = false\n");
    let file = config.display().to_string();
    let o = run(&["check", "--config", &file, "--message-format", "short"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "{file}: error[C003]: no rule file (*.toml) in the rules directory {} (help: scrim serve \
             refuses to start without rule files (unless --allow-no-rules): put the recipients' \
             rule files there or point rules.dir at them)\n\
             {file}:2:19: error[C004]: no key ring (keys.file or SCRIM_KEYS_FILE) and \
             keys.allow_ephemeral = false: scrim serve would refuse to start (help: create one \
             with `scrim keygen --keys FILE` and set keys.file)\n\
             2 errors\n",
            d.path("rules")
        )
    );

    // A rule file with problems: shown as `scrim check` shows them, in its
    // own file. No key ring with the ephemeral default is a warning only.
    d.write(
        "rules/shop.toml",
        "upstream = \"capture:\"\n[fields]\nevent = \"keeep\"\n",
    );
    let config = d.write("scrim.toml", "");
    let o = run(&["check", "--config", &file, "--message-format", "short"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "{}:3:9: error[E004]: unknown action \"keeep\"",
            d.path("rules/shop.toml")
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}: warning[C004]: no key ring")),
        "{err}"
    );
    assert!(err.ends_with("\n1 error, 1 warning\n"), "{err}");

    d.write("rules/shop.toml", RULE);
    let o = run(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("ok: {file}: 1 rule file: shop (1 warning)\n")
    );
    let o = run(&["check", "--config", &file, "--strict"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).ends_with("1 warning (--strict)\n"),
        "{}",
        stderr(&o)
    );

    // A configuration that cannot be read is an I/O error, exit 2.
    let o = run(&["check", "--config", &d.path("nope.toml")]);
    assert_eq!(o.status.code(), Some(2));
}

/// Basic errors of a rule file (unknown keys, a wrong type) are all shown
/// in one run, each located, in plain words.
#[test]
fn a_rule_file_shows_every_unknown_key_and_wrong_type() {
    let d = Dir::new("rule-shape");
    let rule = d.write(
        "shop.toml",
        "upstream = \"capture:\"\nrecipent = \"shop\"\nmax_depth = \"deep\"\n\n\
         [headers]\nalow = [\"content-type\"]\n\n[fields]\nevent = \"keep\"\n",
    );
    let file = rule.display().to_string();
    let o = run(&["check", &file, "--message-format", "short"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "{file}:2:1: error[E001]: unknown key `recipent` (help: did you mean \"recipient\"?)\n\
             {file}:3:13: error[E001]: `max_depth` must be a whole number, found a string\n\
             {file}:6:1: error[E001]: unknown key `alow` in `[headers]` (help: did you mean \"allow\"?)\n\
             3 errors\n"
        )
    );
    let o = run(&["check", &file]);
    let err = stderr(&o);
    assert!(
        err.contains("3 | max_depth = \"deep\"\n  |             ^^^^^^\n"),
        "{err}"
    );
}
