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

const RULE: &str = r#"upstream = "capture:"

[fields]
event = "keep"
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
