//! `serve` refuses to start without a usable key ring, unless the documented
//! ephemeral default is allowed.

use std::path::PathBuf;

use scrim::config::Config;
use scrim::proxy::{ServeError, start};

fn config(keys: &str) -> Config {
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules");
    // The shipped rules include an aggregate recipient: its store goes to
    // a temp dir, never into the repository.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let spool = std::env::temp_dir().join(format!("scrim-keys-{}-spool-{n}", std::process::id()));
    let text = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n[rules]\ndir = {:?}\nwatch = false\n[keys]\n{keys}\n[aggregate]\ndir = {:?}\n",
        rules.to_str().unwrap(),
        spool.to_str().unwrap()
    );
    Config::parse(&text, "keys-test.toml").unwrap()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scrim-keys-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("keys.toml");
    std::fs::write(&p, contents).unwrap();
    p
}

#[tokio::test]
async fn a_missing_key_ring_stops_serve() {
    let r = start(config("file = \"/nonexistent/scrim/keys.toml\"")).await;
    assert!(matches!(r, Err(ServeError::Keys(_))), "{:?}", r.err());
}

#[tokio::test]
async fn a_short_secret_stops_serve_without_showing_it() {
    let p = temp_file(
        "short",
        "active = \"k1\"\n[keys]\nk1 = \"hex:00112233445566778899aabbccddeeff\"\n",
    );
    let r = start(config(&format!("file = {:?}", p.to_str().unwrap()))).await;
    let msg = match r {
        Err(ServeError::Keys(m)) => m.to_string(),
        other => panic!("expected a key ring error, got {:?}", other.err()),
    };
    assert!(msg.contains("32"), "{msg}");
    assert!(!msg.contains("00112233445566778899aabbccddeeff"), "{msg}");
}

#[tokio::test]
async fn no_key_ring_and_no_ephemeral_stops_serve() {
    // SAFETY: this test binary reads SCRIM_KEYS_FILE only through Config::parse.
    unsafe { std::env::remove_var("SCRIM_KEYS_FILE") };
    let r = start(config("allow_ephemeral = false")).await;
    assert!(matches!(r, Err(ServeError::Keys(_))), "{:?}", r.err());
}

#[tokio::test]
async fn the_ephemeral_default_starts() {
    unsafe { std::env::remove_var("SCRIM_KEYS_FILE") };
    let running = start(config("allow_ephemeral = true"))
        .await
        .expect("starts");
    assert!(running.state.keys.is_ephemeral());
    running.shutdown();
    running.wait().await;
}
