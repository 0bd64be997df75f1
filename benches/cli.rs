//! `scrim rewrite` as a whole process against the engine in process, on the
//! same rules and data, in one run.
//!
//! ```text
//! cargo build --release --locked && cargo bench --bench cli
//! SCRIM_CLI_BENCH_MB=256 cargo bench --bench cli     # a larger file
//! SCRIM_CLI_BENCH_GIB=1 cargo bench --bench cli      # and the 1 GiB memory check
//! cargo bench --bench cli -- --test                   # a small smoke run (CI)
//! ```
//!
//! It writes the corpus (`benches/corpus`, seeded: Segment-style events of
//! about 1-2 KB) as NDJSON and as one JSON batch, with the realistic bench
//! rules (3 fields pseudonymised, 3 dropped, the rest kept), into
//! `target/cli-bench/`. Then, best of five runs each, wall clock:
//!
//! * `engine`: `Engine::rewrite` on the whole file in this process (the
//!   engine's throughput for these rules and data);
//! * `serde_value`: a `serde_json::Value` parse, the same edits and
//!   serialisation, line by line (what a naive batch job does);
//! * `cli`: `target/release/scrim rewrite --test-key FILE > OUT`, the whole
//!   process: start-up, rule loading, reading, rewriting, writing a file.
//!
//! It prints MB/s (10^6 bytes per second) and the ratio of `cli` to `engine`
//! (target: at least 0.9). With `SCRIM_CLI_BENCH_GIB`, it also streams a
//! file of that many GiB through `scrim rewrite` and prints the peak RSS
//! (`/usr/bin/time`; target: under 64 MiB).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scrim::policy::BodyFormat;
use scrim::pseudonym::KeyRing;

mod baseline;
#[allow(dead_code)]
mod corpus;

const SEED: u64 = 0x5c41_2025;

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let mb: usize = std::env::var("SCRIM_CLI_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 2 } else { 64 });
    let runs = if smoke { 1 } else { 5 };
    // Where cargo builds: `CARGO_TARGET_DIR` when set, as for cargo itself.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("cli-bench");
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("cli-bench directory");
    let scrim = target.join("release/scrim");
    if !scrim.exists() {
        eprintln!(
            "{}: not built; run `cargo build --release --locked` first",
            scrim.display()
        );
        std::process::exit(2);
    }

    // Rules: NDJSON lines are events; the JSON file is one batch.
    let lines_rules = baseline::rules("", true);
    let batch_rules = baseline::rules("batch.", true);
    std::fs::write(rules.join("bench.toml"), &lines_rules).unwrap();
    let batch_dir = dir.join("rules-batch");
    std::fs::create_dir_all(&batch_dir).unwrap();
    std::fs::write(batch_dir.join("bench.toml"), &batch_rules).unwrap();

    let nd = corpus::ndjson(SEED, mb << 20).bytes;
    let batch = corpus::batch(SEED, mb << 20).bytes;
    let nd_path = dir.join("events.ndjson");
    let batch_path = dir.join("batch.json");
    std::fs::write(&nd_path, &nd).unwrap();
    std::fs::write(&batch_path, &batch).unwrap();

    let key = KeyRing::test_ring().scoped(baseline::SCOPE);
    println!("scrim rewrite against the engine, {mb} MB inputs, best of {runs}");
    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "format", "engine MB/s", "cli MB/s", "Value MB/s", "cli/engine", "cli/Value"
    );
    for (name, format, path, bytes, rules_dir) in [
        ("ndjson", BodyFormat::Ndjson, &nd_path, &nd, &rules),
        ("json", BodyFormat::Json, &batch_path, &batch, &batch_dir),
    ] {
        let text = if format == BodyFormat::Ndjson {
            &lines_rules
        } else {
            &batch_rules
        };
        let engine = baseline::engine(text);
        let in_process = best(runs, || {
            let out = engine
                .rewrite(format, bytes)
                .expect("the corpus is accepted");
            std::hint::black_box(out.body.len());
        });
        let value = best(runs, || {
            let out = if format == BodyFormat::Ndjson {
                baseline::serde_ndjson(bytes, &key)
            } else {
                baseline::serde_batch(bytes, &key, true)
            };
            std::hint::black_box(out.len());
        });
        let out_path = dir.join(format!("out.{name}"));
        let cli = best(runs, || {
            let out = std::fs::File::create(&out_path).unwrap();
            let status = Command::new(&scrim)
                .args(["rewrite", "--rules"])
                .arg(rules_dir)
                .args(["--recipient", "bench", "--test-key", "--format", name])
                .arg(path)
                .stdout(out)
                .stderr(Stdio::null())
                .status()
                .expect("run scrim");
            assert!(status.success(), "scrim rewrite failed");
        });
        // The same bytes as the engine in process (a JSON document or form
        // body ended with a line feed; NDJSON lines end with theirs).
        let written = std::fs::read(&out_path).unwrap();
        let mut expect = engine.rewrite(format, bytes).unwrap().body;
        if format != BodyFormat::Ndjson {
            expect.push(b'\n');
        }
        assert!(
            written == expect,
            "{name}: scrim rewrite output differs from the engine's"
        );
        let mbs = |d: Duration| bytes.len() as f64 / d.as_secs_f64() / 1e6;
        println!(
            "{:<8} {:>12.0} {:>12.0} {:>12.0} {:>10.2} {:>10.2}",
            name,
            mbs(in_process),
            mbs(cli),
            mbs(value),
            in_process.as_secs_f64() / cli.as_secs_f64(),
            value.as_secs_f64() / cli.as_secs_f64(),
        );
    }

    if let Some(gib) = std::env::var("SCRIM_CLI_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        memory(&scrim, &rules, &dir, &nd, gib);
    }
}

/// The shortest of `runs` timings of `f` (after one unmeasured warm-up).
fn best(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

/// Streams `gib` GiB of NDJSON (the corpus repeated) through `scrim rewrite`
/// from a pipe, output discarded, and prints the peak RSS.
fn memory(scrim: &Path, rules: &Path, dir: &Path, nd: &[u8], gib: u64) {
    let total = gib << 30;
    let mut child = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(dir.join("rss.txt"))
        .arg(scrim)
        .args(["rewrite", "--rules"])
        .arg(rules)
        .args([
            "--recipient",
            "bench",
            "--test-key",
            "--format",
            "ndjson",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("/usr/bin/time");
    let t = Instant::now();
    {
        // Whole copies of the corpus (whole lines), at least `total` bytes.
        let mut stdin = child.stdin.take().unwrap();
        let mut sent = 0u64;
        while sent < total {
            stdin.write_all(nd).unwrap();
            sent += nd.len() as u64;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "scrim rewrite failed on the streamed input"
    );
    let kib: u64 = std::fs::read_to_string(dir.join("rss.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let sent = total.div_ceil(nd.len() as u64) * nd.len() as u64;
    println!(
        "{:.2} GiB NDJSON through a pipe: peak RSS {:.1} MiB, {:.0} MB/s",
        sent as f64 / (1u64 << 30) as f64,
        kib as f64 / 1024.0,
        sent as f64 / secs / 1e6
    );
}
