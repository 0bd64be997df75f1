//! Memory amplification of the rewrite engine: peak heap bytes allocated
//! while rewriting one body, divided by the body's size, for the input
//! shapes that cost the most per byte. Run with
//! `cargo bench --bench amplification`; it prints a Markdown table and fails
//! if any shape costs more than 100x its size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use scrim::policy::{BodyFormat, compile_str};
use scrim::pseudonym::KeyRing;
use scrim::rewrite::Engine;

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only
// counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RULES: &str = r#"
upstream = "https://p.example"
[fields]
"keep" = "keep"
"obj" = "keep"
"**.email" = { action = "pseudonymise", normalise = "email" }
"text" = "scan"
"blob" = { action = "embedded_json", encoding = "base64" }
"blob.**" = "keep"
"list" = "keep"
"list.secret" = "drop"
"#;

const SIZE: usize = 1 << 20;

fn shapes() -> Vec<(&'static str, BodyFormat, Vec<u8>)> {
    let mut v = Vec::new();
    // Many tiny keys in one object (duplicate-key set, key arena).
    let mut s = String::from("{\"obj\":{");
    let mut i = 0;
    while s.len() < SIZE {
        s.push_str(&format!("\"k{i}\":1,"));
        i += 1;
    }
    s.push_str("\"end\":1}}");
    v.push((
        "one object of tiny keys, kept",
        BodyFormat::Json,
        s.into_bytes(),
    ));
    // The same, entered (decided key by key under `**.email`).
    let mut s = String::from("{\"x\":{");
    let mut i = 0;
    while s.len() < SIZE {
        s.push_str(&format!("\"k{i}\":1,"));
        i += 1;
    }
    s.push_str("\"email\":\"a@b.c\"}}");
    v.push((
        "one object of tiny keys, entered",
        BodyFormat::Json,
        s.into_bytes(),
    ));
    // Nesting to the depth limit, repeatedly.
    let one = format!("{}{}", "[".repeat(62), "]".repeat(62));
    let mut s = String::from("{\"keep\":[");
    while s.len() < SIZE {
        s.push_str(&one);
        s.push(',');
    }
    s.push_str("0]}");
    v.push((
        "nesting at the depth limit",
        BodyFormat::Json,
        s.into_bytes(),
    ));
    // Nested objects at the depth limit, with keys (path and key arena).
    let mut s = String::from("{\"x\":[");
    let deep = format!(
        "{}{}",
        "{\"a\":".repeat(62),
        "1".to_string() + &"}".repeat(62)
    );
    while s.len() < SIZE {
        s.push_str(&deep);
        s.push(',');
    }
    s.push_str("0]}");
    v.push((
        "nested objects at the depth limit, entered",
        BodyFormat::Json,
        s.into_bytes(),
    ));
    // An escape flood in a pseudonymised string (unescape buffer).
    let s = format!("{{\"email\":\"{}\"}}", "\\u0041".repeat(SIZE / 6));
    v.push((
        "escape flood, pseudonymised",
        BodyFormat::Json,
        s.into_bytes(),
    ));
    // An escape flood in scanned free text.
    let s = format!("{{\"text\":\"{}\"}}", "mail a@b.co \\n ".repeat(SIZE / 17));
    v.push((
        "free text with many finds, scanned",
        BodyFormat::Json,
        s.into_bytes(),
    ));
    // Base64 embedded JSON (decode, rewrite, encode).
    let inner = format!("{{\"a\":[{}0]}}", "1,".repeat(SIZE / 3));
    let s = format!(
        "{{\"blob\":\"{}\"}}",
        base64::engine::general_purpose::STANDARD.encode(inner)
    );
    v.push(("base64 embedded JSON", BodyFormat::Json, s.into_bytes()));
    // An array of small objects with a drop inside a keep.
    let mut s = String::from("{\"list\":[");
    while s.len() < SIZE {
        s.push_str("{\"a\":1,\"secret\":2},");
    }
    s.push_str("{}]}");
    v.push((
        "array of objects, drop under keep",
        BodyFormat::Json,
        s.into_bytes(),
    ));
    // NDJSON of tiny documents.
    let s = "{\"email\":\"a@b.c\",\"z\":1}\n".repeat(SIZE / 24);
    v.push((
        "NDJSON of tiny documents",
        BodyFormat::Ndjson,
        s.into_bytes(),
    ));
    // Many tiny form parameters.
    let s = "email=a%40b.c&z=1&".repeat(SIZE / 18);
    v.push(("form of tiny parameters", BodyFormat::Form, s.into_bytes()));
    v
}

fn main() {
    let engine = Engine::new(
        Arc::new(compile_str(RULES, "amp.toml", "amp").expect("rules")),
        &KeyRing::test_ring(),
    );
    println!(
        "| input shape | body bytes | peak heap, whole body | x | peak heap, 4 KiB chunks, output drained | x |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut worst: f64 = 0.0;
    for (name, format, body) in shapes() {
        // Whole body at once: the output buffer is included.
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let out = engine.rewrite(format, &body);
        let whole = PEAK.load(Ordering::Relaxed) - base;
        assert!(out.is_ok(), "{name}: {:?}", out.err());
        drop(out);
        // Streaming: fed 4 KiB at a time, output drained after each chunk.
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let mut rw = engine.body_rewriter(format);
        let mut out = Vec::new();
        for c in body.chunks(4096) {
            rw.feed(c, &mut out).expect("feed");
            out.clear();
        }
        rw.finish(&mut out).expect("finish");
        drop(rw);
        drop(out);
        let streamed = PEAK.load(Ordering::Relaxed) - base;
        let (a, b) = (
            whole as f64 / body.len() as f64,
            streamed as f64 / body.len() as f64,
        );
        worst = worst.max(a).max(b);
        println!(
            "| {name} | {} | {} | {a:.1} | {} | {b:.1} |",
            body.len(),
            whole,
            streamed
        );
    }
    println!("\nworst: {worst:.1}x the body size");
    assert!(worst <= 100.0, "a request costs more than 100x its size");
}
