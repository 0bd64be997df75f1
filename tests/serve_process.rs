//! `scrim serve` as the operator runs it, a process driven by signals and
//! files: the ephemeral-key warning, one JSON audit line per request, reload
//! on a change in the rules directory and on SIGHUP (a bad file keeps the old
//! rules), and a clean exit on SIGTERM. Loopback only; every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_scrim");

const CAPTURE_RULE: &str = r#"recipient = "cap"
upstream = "capture:"

[fields]
"event" = "keep"
"userId" = "pseudonymise"
"#;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One HTTP/1.1 exchange on a fresh connection: status and the whole
/// response text (head and body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// A running `scrim serve` with its stderr collected line by line.
struct Serve {
    child: Child,
    dir: PathBuf,
    listen: SocketAddr,
    admin: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    fn start(tag: &str) -> Serve {
        let dir = std::env::temp_dir().join(format!("scrim-serve-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        std::fs::write(dir.join("rules/cap.toml"), CAPTURE_RULE).unwrap();
        let (listen, admin) = (free_addr(), free_addr());
        let config = format!(
            "[listen]\naddress = \"{listen}\"\n[admin]\naddress = \"{admin}\"\n\
             [rules]\ndir = \"{}\"\nwatch = true\n[log]\nlevel = \"info\"\n",
            dir.join("rules").display()
        );
        std::fs::write(dir.join("scrim.toml"), config).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--log-format", "json", "--config"])
            .arg(dir.join("scrim.toml"))
            .env_remove("SCRIM_KEYS_FILE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let s = Serve {
            child,
            dir,
            listen,
            admin,
            lines,
        };
        assert!(
            eventually(Duration::from_secs(15), || {
                TcpStream::connect(s.admin).is_ok() && http(s.admin, "GET", "/readyz", "").0 == 200
            }),
            "scrim serve never became ready:\n{}",
            s.log()
        );
        s
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
            })
            .collect()
    }

    fn metric(&self, series: &str) -> Option<u64> {
        let (_, text) = http(self.admin, "GET", "/metrics", "");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// `scrim_rule_reloads_total{result}` now (0 before the first).
    fn reloads(&self, result: &str) -> u64 {
        self.metric(&format!("scrim_rule_reloads_total{{result=\"{result}\"}}"))
            .unwrap_or(0)
    }

    /// Waits until `scrim_rule_reloads_total{result}` passes `before`.
    fn assert_reloads_pass(&self, result: &str, before: u64, what: &str) {
        assert!(
            eventually(Duration::from_secs(10), || self.reloads(result) > before),
            "{what}:\n{}",
            self.log()
        );
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with the pid of a child this test spawned and has
        // not yet reaped; it touches no memory.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn serve_warns_audits_reloads_and_stops_on_signals() {
    let mut s = Serve::start("signals");

    // No key ring configured: a loud warning, and it still serves.
    let warned = s.json_lines().into_iter().any(|l| {
        l["level"] == "WARN"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("ephemeral key"))
    });
    assert!(warned, "no ephemeral-key warning:\n{}", s.log());

    // One JSON audit line per request: counts and dropped paths, never a
    // value.
    let (status, _) = http(
        s.listen,
        "POST",
        "/cap/e",
        r#"{"event":"signup","userId":"alice-4711","email":"alice@example.com"}"#,
    );
    assert_eq!(status, 202);
    assert!(eventually(Duration::from_secs(5), || {
        s.json_lines().iter().any(|l| l["target"] == "scrim::audit")
    }));
    let audit: Vec<_> = s
        .json_lines()
        .into_iter()
        .filter(|l| l["target"] == "scrim::audit")
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    let a = &audit[0];
    assert_eq!(a["recipient"], "cap");
    assert_eq!(a["method"], "POST");
    assert_eq!(a["status"], 202);
    assert_eq!(a["kept"], 1);
    assert_eq!(a["transformed"], 1);
    assert_eq!(a["dropped"], 1);
    assert_eq!(a["dropped_paths"], "email");
    assert!(a["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{a}");
    assert!(!s.log().contains("alice"), "a value reached the log");

    // A new rule file in the directory is picked up by the watcher.
    std::fs::write(
        s.dir.join("rules/second.toml"),
        CAPTURE_RULE.replace("\"cap\"", "\"second\""),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            http(s.admin, "GET", "/rules", "").1.contains("\"second\"")
        }),
        "the watcher did not load second.toml:\n{}",
        s.log()
    );
    assert_eq!(http(s.listen, "POST", "/second/e", "{}").0, 202);

    // A broken file is refused and counted; the rules in force stay.
    let errors = s.reloads("error");
    std::fs::write(s.dir.join("rules/broken.toml"), "upstream = \n").unwrap();
    s.assert_reloads_pass("error", errors, "the broken file was not refused");
    assert_eq!(http(s.listen, "POST", "/second/e", "{}").0, 202);
    std::fs::remove_file(s.dir.join("rules/broken.toml")).unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        s.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("rules reloaded"))
            .count()
            >= 2
    }));

    // SIGHUP reloads without any change on disk.
    std::thread::sleep(Duration::from_millis(500)); // let the watcher settle
    let ok = s.reloads("ok");
    s.signal(libc::SIGHUP);
    s.assert_reloads_pass("ok", ok, "SIGHUP did not reload");
    assert!(s.log().contains("SIGHUP: reloading rules"), "{}", s.log());

    // SIGTERM: stop accepting, drain, exit 0.
    s.signal(libc::SIGTERM);
    let end = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "scrim did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}:\n{}", s.log());
    assert!(
        eventually(Duration::from_secs(2), || s.log().contains("shutting down")),
        "{}",
        s.log()
    );
    assert!(TcpStream::connect(s.listen).is_err());
}
