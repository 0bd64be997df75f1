//! `scrim serve` killed with SIGKILL, and restarted on the same store: no
//! event answered 202 is lost or counted twice, no unsent report is lost,
//! and every attempt to send a window's report, before and after a crash,
//! carries the same `scrim-report-id`. A process on loopback, a recording
//! partner in this test whose answer the test switches; every wait is
//! bounded.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_scrim");

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One HTTP/1.1 exchange on a fresh connection: status and body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    check()
}

/// A report as the partner received it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: serde_json::Value,
    answered: u16,
}

/// The partner: records every request, answers with the status the test
/// sets.
struct Partner {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Partner {
    fn start(status: u16) -> Partner {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(status));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (st, g) = (status.clone(), got.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (st, g) = (st.clone(), g.clone());
                std::thread::spawn(move || serve(conn, &st, &g));
            }
        });
        Partner { addr, status, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// Serves requests on one connection until it closes.
fn serve(conn: TcpStream, status: &AtomicU16, got: &Mutex<Vec<Received>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut len = 0usize;
        let mut id = String::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "scrim-report-id" => id = v.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answered = status.load(Ordering::SeqCst);
        got.lock().unwrap().push(Received {
            id,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            answered,
        });
        let reply = format!("HTTP/1.1 {answered} X\r\ncontent-length: 2\r\n\r\n{{}}");
        if conn.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// `scrim serve` on a directory that outlives it (rules, key ring, store).
struct Serve {
    child: Option<Child>,
    dir: PathBuf,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Serve {
    fn setup(tag: &str, partner: SocketAddr) -> Serve {
        let dir = std::env::temp_dir().join(format!("scrim-crash-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rules")).unwrap();
        let rule = format!(
            r#"recipient = "stats"
upstream  = "http://{partner}/ingest"
mode      = "aggregate"
records   = "batch"
[fields]
"batch.userId" = "pseudonymise"
"batch.event"  = "keep"
"batch.ts"     = "keep"
[aggregate]
window   = "1s"
lateness = "5s"
time     = "ts"
subject  = "userId"
k        = 2
group_by = ["event"]
[aggregate.measures]
events = "count"
users  = "distinct_subjects"
"#
        );
        std::fs::write(dir.join("rules/stats.toml"), rule).unwrap();
        std::fs::write(
            dir.join("keys.toml"),
            format!(
                "active = \"k1\"\n[keys]\nk1 = \"hex:{}\"\n",
                "ab".repeat(32)
            ),
        )
        .unwrap();
        let (listen, admin) = (free_addr(), free_addr());
        let config = format!(
            "[listen]\naddress = \"{listen}\"\n[admin]\naddress = \"{admin}\"\n\
             [rules]\ndir = \"rules\"\nwatch = false\n[keys]\nfile = \"keys.toml\"\n\
             [upstream]\nresponse_timeout_ms = 2000\n\
             [aggregate]\ndir = \"spool\"\nflush_interval_ms = 50\nretry_initial_ms = 100\nretry_max_ms = 200\n"
        );
        std::fs::write(dir.join("scrim.toml"), config).unwrap();
        Serve {
            child: None,
            dir,
            listen,
            admin,
        }
    }

    fn start(&mut self) {
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(self.dir.join("scrim.toml"))
            .env_remove("SCRIM_KEYS_FILE")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let admin = self.admin;
        assert!(
            eventually(Duration::from_secs(20), || http(
                admin, "GET", "/readyz", ""
            )
            .0 == 200),
            "scrim serve never became ready"
        );
    }

    /// SIGKILL (`Child::kill` on Unix), and reaped.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn sigkill_loses_no_accepted_event_and_keeps_the_report_id() {
    let partner = Partner::start(503);
    let mut s = Serve::setup("kill", partner.addr);
    s.start();

    // Events of one window, each body answered 202 before the next; killed
    // right after the last 202, while the window is still open.
    let t = now();
    let mut accepted = 0u64;
    let mut users = BTreeSet::new();
    let mut per_event = std::collections::BTreeMap::<&str, u64>::new();
    let mut users_of = std::collections::BTreeMap::<&str, BTreeSet<String>>::new();
    for i in 0..30u64 {
        let batch: Vec<serde_json::Value> = (0..=(i % 3))
            .map(|j| {
                let user = format!("user-{}", (i * 7 + j) % 11);
                users.insert(user.clone());
                let event = if j % 2 == 0 { "view" } else { "buy" };
                *per_event.entry(event).or_default() += 1;
                users_of.entry(event).or_default().insert(user.clone());
                serde_json::json!({"userId": user, "event": event, "ts": t})
            })
            .collect();
        let n = batch.len() as u64;
        let (status, body) = http(
            s.listen,
            "POST",
            "/stats/e",
            &serde_json::json!({ "batch": batch }).to_string(),
        );
        assert_eq!(status, 202, "{body}");
        assert_eq!(body, format!("{{\"accepted\":{n}}}"));
        accepted += n;
    }
    s.kill9();
    let killed_at = now();

    // Restarted on the same store: the window closes and its report is
    // made and sent; the partner refuses it (503), so it is retried.
    s.start();
    assert!(
        eventually(Duration::from_secs(15), || partner.received().len() >= 2),
        "the report was never sent (killed at {killed_at}, window {t})"
    );
    // Killed again while the report is unsent.
    s.kill9();
    let refused = partner.received();
    assert!(refused.iter().all(|r| r.answered == 503));

    // The partner takes it now; restarted, the same report goes out.
    partner.status.store(200, Ordering::SeqCst);
    s.start();
    assert!(
        eventually(Duration::from_secs(15), || partner
            .received()
            .iter()
            .any(|r| r.answered == 200)),
        "the unsent report was lost in the crash"
    );
    // Taken once: nothing more is sent for it.
    std::thread::sleep(Duration::from_millis(600));
    let all = partner.received();
    let taken: Vec<&Received> = all.iter().filter(|r| r.answered == 200).collect();
    assert_eq!(taken.len(), 1, "sent again after a 2xx: {all:?}");
    let ids: BTreeSet<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one window, one report id: {ids:?}");
    assert_eq!(ids.iter().next().map(|i| i.len()), Some(32));
    assert!(
        all.iter().all(|r| r.body == all[0].body),
        "the report is the same on every attempt"
    );

    // Every accepted event, exactly once.
    let report = &taken[0].body;
    assert_eq!(report["recipient"], "stats");
    let groups = report["groups"].as_array().unwrap();
    let reported: u64 = groups.iter().map(|g| g["events"].as_u64().unwrap()).sum();
    let suppressed = report["suppressed"]["events"].as_u64().unwrap();
    assert_eq!(reported + suppressed, accepted, "{report}");
    assert_eq!(suppressed, 0, "every group has at least k users: {report}");
    assert_eq!(groups.len(), per_event.len(), "{report}");
    for (event, n) in &per_event {
        let g = groups
            .iter()
            .find(|g| g["key"]["event"] == *event)
            .unwrap_or_else(|| panic!("{event} missing: {report}"));
        assert_eq!(g["events"], *n, "{event}: {report}");
        assert_eq!(
            g["users"],
            users_of[event].len(),
            "{event}: exact distinct users"
        );
    }
    let text = report.to_string();
    for u in &users {
        assert!(!text.contains(u.as_str()), "a subject in the report");
    }
}
