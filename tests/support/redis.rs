//! A real `redis-server` for the tests of the shared stores (aggregate
//! windows, suppression lists): started on a free loopback port in a
//! directory of its own, without persistence, and killed on drop.
//!
//! Without `redis-server` on the PATH these tests say they were skipped,
//! unless `SCRIM_REQUIRE_TOOLS` names `redis-server`: then they fail.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Whether redis-server can be run (see the module comment).
pub fn redis_present() -> bool {
    if on_path("redis-server") {
        return true;
    }
    let required = std::env::var("SCRIM_REQUIRE_TOOLS").unwrap_or_default();
    assert!(
        !required
            .split(|c: char| c == ',' || c.is_whitespace())
            .any(|t| t == "redis-server"),
        "redis-server is not installed, and SCRIM_REQUIRE_TOOLS says it must be"
    );
    println!("skipped: redis-server is not installed");
    false
}

/// A loopback port nothing listens on (yet).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of this test: loopback, no persistence, its own port
/// and directory; killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl RedisServer {
    /// On a free port.
    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    /// On `port` (a store that comes back where it was).
    pub fn start_on(port: u16) -> RedisServer {
        let dir = TempDir::new("redis");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "yes"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if scrim::store::redis::Redis::open(&server.url()).is_ok_and(|r| r.ping().is_ok()) {
                break;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(25));
        }
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it now (a store that goes away).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
