//! Rewrite throughput: scrim against serde_json baselines, same run, same
//! input, one thread, `Throughput::Bytes` everywhere.
//!
//! ```text
//! cargo bench --bench rewrite                 # full run (~3-4 min on 2 cores)
//! cargo bench --bench rewrite -- --test       # each function once (smoke)
//! cargo bench --bench rewrite -- realistic/16k
//! ```
//!
//! Groups (function names in brackets):
//!
//! * `realistic/{1k,16k,1m,ndjson_1m}`: rules that pseudonymise 3 fields
//!   (`userId`, `anonymousId`, `traits.email` with `normalise = "email"`),
//!   drop 3 (`traits.phone`, `traits.address`, `context.userAgent`) and keep
//!   the rest through container `keep`s (no `**`).
//!   [`scrim`] `Engine::rewrite`;
//!   [`serde_value_rewrite`] `serde_json::Value` parse, the same edits on the
//!   tree (pseudonyms from the same `ScopedKey`), `serde_json::to_writer`;
//!   [`serde_validate`] `serde_json::from_slice::<IgnoredAny>` (parse only,
//!   no output: a floor, not a competitor). NDJSON baselines work line by line.
//! * `keepdrop/16k`: the same rule shape without transforms, scrim against
//!   `IgnoredAny` validation.
//! * `pseudonym/one`: one `ScopedKey::pseudonymise_into` of a 20-byte email
//!   into a reused `Vec` (target <= 100 ns), and a whole tiny document
//!   `{"userId":"user-123456"}` through the engine.
//! * `chunked/{16k,1m}`: the realistic rewrite fed in 4 KiB chunks through
//!   `body_rewriter().feed/finish`, against the whole buffer at once.
//!
//! Before anything is timed, every scrim output is checked: valid JSON, none
//! of the raw pseudonymised values left in it, equal (as a JSON value) to the
//! serde baseline's output, and identical bytes whether fed whole or chunked.
//!
//! Clock: wall time by default. On a shared, busy machine (CI runners, a dev
//! box compiling in the background) wall time mostly measures the scheduler;
//! `SCRIM_BENCH_CLOCK=cpu` times the bench thread's CPU time instead
//! (`CLOCK_THREAD_CPUTIME_ID`, Linux only), which is far steadier there. It
//! still shares caches and cores with the rest of the machine, so quote
//! numbers from a quiet machine either way, and compare only within one run.

use std::hint::black_box;
use std::time::Duration;

use aho_corasick::AhoCorasick;
use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput};
use serde_json::Value;

use scrim::policy::BodyFormat;
use scrim::pseudonym::{DEFAULT_BITS, KeyRing, ScopedKey};
use scrim::rewrite::Engine;

mod baseline;
mod corpus;

use baseline::*;

const CHUNK: usize = 4096;
const SEED: u64 = 0x5c41_2025;

// ---------------------------------------------------------------------------
// scrim

fn scrim(engine: &Engine, format: BodyFormat, input: &[u8]) -> Vec<u8> {
    engine.rewrite(format, input).unwrap().body
}

fn scrim_chunked(engine: &Engine, format: BodyFormat, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rw = engine.body_rewriter(format);
    for chunk in input.chunks(CHUNK) {
        rw.feed(chunk, &mut out).unwrap();
    }
    rw.finish(&mut out).unwrap();
    out
}

// ---------------------------------------------------------------------------
// Fixtures and the checks run before timing

struct Fixtures {
    key: ScopedKey,
    single: Engine,
    batch: Engine,
    keepdrop: Engine,
    tiny: Engine,
    e1k: corpus::Body,
    b16k: corpus::Body,
    b1m: corpus::Body,
    nd1m: corpus::Body,
}

fn json_values(format: BodyFormat, bytes: &[u8]) -> Vec<Value> {
    match format {
        BodyFormat::Ndjson => lines(bytes)
            .map(|l| {
                serde_json::from_slice(l)
                    .unwrap_or_else(|e| panic!("scrim NDJSON line is not JSON: {e}"))
            })
            .collect(),
        _ => vec![
            serde_json::from_slice(bytes)
                .unwrap_or_else(|e| panic!("scrim output is not JSON: {e}")),
        ],
    }
}

/// Name, engine, format, corpus and the serde baseline that must agree.
type CheckCase<'a> = (
    &'static str,
    &'a Engine,
    BodyFormat,
    &'a corpus::Body,
    fn(&[u8], &ScopedKey) -> Vec<u8>,
);

impl Fixtures {
    fn new() -> Fixtures {
        let fx = Fixtures {
            key: KeyRing::test_ring().scoped(SCOPE),
            single: engine(&rules("", true)),
            batch: engine(&rules("batch.", true)),
            keepdrop: engine(&rules("batch.", false)),
            tiny: engine(TINY_RULES),
            e1k: corpus::single_1k(SEED),
            b16k: corpus::batch(SEED + 1, 16 * 1024),
            b1m: corpus::batch(SEED + 2, 1 << 20),
            nd1m: corpus::ndjson(SEED + 3, 1 << 20),
        };
        fx.check();
        fx
    }

    /// Not timed: makes sure every bench measures a real, correct rewrite.
    fn check(&self) {
        let cases: [CheckCase<'_>; 4] = [
            (
                "1k",
                &self.single,
                BodyFormat::Json,
                &self.e1k,
                serde_single,
            ),
            ("16k", &self.batch, BodyFormat::Json, &self.b16k, |i, k| {
                serde_batch(i, k, true)
            }),
            ("1m", &self.batch, BodyFormat::Json, &self.b1m, |i, k| {
                serde_batch(i, k, true)
            }),
            (
                "ndjson_1m",
                &self.single,
                BodyFormat::Ndjson,
                &self.nd1m,
                serde_ndjson,
            ),
        ];
        for (name, engine, format, body, baseline) in cases {
            let input = &body.bytes[..];
            let rewritten = engine
                .rewrite(format, input)
                .unwrap_or_else(|e| panic!("{name}: scrim refused the corpus: {e}"));
            let out = &rewritten.body;
            let got = json_values(format, out);
            let want = json_values(format, &baseline(input, &self.key));
            assert!(got == want, "{name}: scrim and the serde baseline disagree");
            // The raw identifiers are in the input and nowhere in the output.
            let ac = AhoCorasick::new(&body.secrets).unwrap();
            assert!(ac.is_match(input), "{name}: corpus lost its secrets");
            if let Some(m) = ac.find(out.as_slice()) {
                panic!(
                    "{name}: raw value #{} survived the rewrite",
                    m.pattern().as_usize()
                );
            }
            let s = &rewritten.stats;
            assert!(
                s.transformed > 0 && s.dropped > 0 && s.kept > 0,
                "{name}: {s:?}"
            );
            assert_eq!(
                scrim_chunked(engine, format, input),
                *out,
                "{name}: chunked output differs"
            );
            eprintln!(
                "corpus {name:>9}: {:>8} bytes in, {:>8} out ({} documents, {} kept, {} dropped, {} transformed)",
                input.len(),
                out.len(),
                s.documents,
                s.kept,
                s.dropped,
                s.transformed
            );
        }
        // keep/drop: same as the Value baseline without transforms.
        let input = &self.b16k.bytes[..];
        let out = scrim(&self.keepdrop, BodyFormat::Json, input);
        let want = json_values(BodyFormat::Json, &serde_batch(input, &self.key, false));
        assert!(
            json_values(BodyFormat::Json, &out) == want,
            "keepdrop: scrim and the serde baseline disagree"
        );
        // Tiny document.
        let out = scrim(&self.tiny, BodyFormat::Json, TINY_DOC);
        let want = format!(
            r#"{{"userId":"{}"}}"#,
            self.key.pseudonymise(b"user-123456", DEFAULT_BITS)
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert_eq!(EMAIL.len(), 20);
    }
}

const TINY_DOC: &[u8] = br#"{"userId":"user-123456"}"#;
const EMAIL: &[u8] = b"alice.mu@example.com";

// ---------------------------------------------------------------------------
// Benches

fn realistic<M: Measurement>(c: &mut Criterion<M>, fx: &Fixtures) {
    let cases: [(&str, &Engine, BodyFormat, &[u8]); 4] = [
        ("realistic/1k", &fx.single, BodyFormat::Json, &fx.e1k.bytes),
        ("realistic/16k", &fx.batch, BodyFormat::Json, &fx.b16k.bytes),
        ("realistic/1m", &fx.batch, BodyFormat::Json, &fx.b1m.bytes),
        (
            "realistic/ndjson_1m",
            &fx.single,
            BodyFormat::Ndjson,
            &fx.nd1m.bytes,
        ),
    ];
    for (name, engine, format, input) in cases {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function("scrim", |b| {
            b.iter(|| scrim(engine, format, black_box(input)))
        });
        let key = &fx.key;
        match (format, name) {
            (BodyFormat::Ndjson, _) => {
                g.bench_function("serde_value_rewrite", |b| {
                    b.iter(|| serde_ndjson(black_box(input), key))
                });
                g.bench_function("serde_validate", |b| {
                    b.iter(|| validate_ndjson(black_box(input)))
                });
            }
            (_, "realistic/1k") => {
                g.bench_function("serde_value_rewrite", |b| {
                    b.iter(|| serde_single(black_box(input), key))
                });
                g.bench_function("serde_validate", |b| b.iter(|| validate(black_box(input))));
            }
            _ => {
                g.bench_function("serde_value_rewrite", |b| {
                    b.iter(|| serde_batch(black_box(input), key, true))
                });
                g.bench_function("serde_validate", |b| b.iter(|| validate(black_box(input))));
            }
        }
        g.finish();
    }
}

fn keepdrop<M: Measurement>(c: &mut Criterion<M>, fx: &Fixtures) {
    let input = &fx.b16k.bytes[..];
    let mut g = c.benchmark_group("keepdrop/16k");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("scrim", |b| {
        b.iter(|| scrim(&fx.keepdrop, BodyFormat::Json, black_box(input)))
    });
    g.bench_function("serde_validate", |b| b.iter(|| validate(black_box(input))));
    g.finish();
}

fn pseudonym<M: Measurement>(c: &mut Criterion<M>, fx: &Fixtures) {
    use hmac::{Hmac, KeyInit, Mac};
    let mut g = c.benchmark_group("pseudonym/one");
    g.throughput(Throughput::Bytes(EMAIL.len() as u64));
    let mut buf = Vec::with_capacity(64);
    g.bench_function("pseudonymise_into_email_20b", |b| {
        b.iter(|| {
            buf.clear();
            fx.key
                .pseudonymise_into(black_box(EMAIL), DEFAULT_BITS, &mut buf);
            black_box(&buf);
        })
    });
    // The floor: HMAC-SHA256 alone with its key state precomputed (the
    // inner and outer pads hashed once), as `ScopedKey` holds it.
    let mac = Hmac::<sha2::Sha256>::new_from_slice(&[7u8; 32]).unwrap();
    g.bench_function("hmac_sha256_bare", |b| {
        b.iter(|| black_box(mac.clone().chain_update(black_box(EMAIL)).finalize()))
    });
    g.throughput(Throughput::Bytes(TINY_DOC.len() as u64));
    g.bench_function("scrim_tiny_doc", |b| {
        b.iter(|| scrim(&fx.tiny, BodyFormat::Json, black_box(TINY_DOC)))
    });
    g.finish();

    // One user, many events: the identifier repeats across a batch and is
    // pseudonymised once per body (the memo), against a batch where every
    // identifier differs.
    let mut g = c.benchmark_group("pseudonym/batch_of_64");
    let same = repeated_ids(64, true);
    let distinct = repeated_ids(64, false);
    g.throughput(Throughput::Elements(64));
    g.bench_function("same_user", |b| {
        b.iter(|| scrim(&fx.tiny, BodyFormat::Ndjson, black_box(&same)))
    });
    g.bench_function("distinct_users", |b| {
        b.iter(|| scrim(&fx.tiny, BodyFormat::Ndjson, black_box(&distinct)))
    });
    g.finish();
}

/// `n` NDJSON lines `{"userId":"..."}`, all for one user or each for another.
fn repeated_ids(n: usize, same: bool) -> Vec<u8> {
    (0..n)
        .map(|i| {
            let id = if same { 0 } else { i };
            format!("{{\"userId\":\"user-{id:06}\"}}\n")
        })
        .collect::<String>()
        .into_bytes()
}

fn chunked<M: Measurement>(c: &mut Criterion<M>, fx: &Fixtures) {
    for (name, input) in [
        ("chunked/16k", &fx.b16k.bytes),
        ("chunked/1m", &fx.b1m.bytes),
    ] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function("scrim_whole", |b| {
            b.iter(|| scrim(&fx.batch, BodyFormat::Json, black_box(input)))
        });
        g.bench_function("scrim_chunks_4k", |b| {
            b.iter(|| scrim_chunked(&fx.batch, BodyFormat::Json, black_box(input)))
        });
        g.finish();
    }
}

fn all<M: Measurement>(c: &mut Criterion<M>) {
    let fx = Fixtures::new();
    realistic(c, &fx);
    keepdrop(c, &fx);
    pseudonym(c, &fx);
    chunked(c, &fx);
}

fn configure<M: Measurement>(c: Criterion<M>) -> Criterion<M> {
    c.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

/// What `criterion_main!` would generate, with the clock chosen by
/// `SCRIM_BENCH_CLOCK` (`wall`, the default, or `cpu`).
fn main() {
    let clock = std::env::var("SCRIM_BENCH_CLOCK").unwrap_or_default();
    match clock.as_str() {
        "" | "wall" => {
            eprintln!("clock: wall time");
            all(&mut configure(Criterion::default()));
        }
        #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
        "cpu" => {
            eprintln!("clock: CPU time of the bench thread (SCRIM_BENCH_CLOCK=cpu)");
            all(&mut configure(
                Criterion::default().with_measurement(cpu_clock::ThreadCpuTime),
            ));
        }
        other => panic!(
            "SCRIM_BENCH_CLOCK={other:?}: expected \"wall\" or \"cpu\" (cpu: 64-bit Linux only)"
        ),
    }
    Criterion::default().configure_from_args().final_summary();
}

/// Thread CPU time as a criterion measurement, through `clock_gettime` of the
/// C library std already links (no extra dependency).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod cpu_clock {
    use std::time::Duration;

    use criterion::measurement::{Measurement, ValueFormatter, WallTime};

    /// `struct timespec` on 64-bit Linux (`time_t` and `long` are 64-bit).
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }

    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }

    fn now_ns() -> u64 {
        let mut ts = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a
        // constant Linux has supported since 2.6.
        let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// Formats like wall time (durations, bytes per second).
    static WALL: WallTime = WallTime;

    pub struct ThreadCpuTime;

    impl Measurement for ThreadCpuTime {
        type Intermediate = u64;
        type Value = Duration;

        fn start(&self) -> u64 {
            now_ns()
        }
        fn end(&self, start: u64) -> Duration {
            Duration::from_nanos(now_ns().saturating_sub(start))
        }
        fn add(&self, a: &Duration, b: &Duration) -> Duration {
            *a + *b
        }
        fn zero(&self) -> Duration {
            Duration::ZERO
        }
        fn to_f64(&self, v: &Duration) -> f64 {
            v.as_nanos() as f64
        }
        fn formatter(&self) -> &dyn ValueFormatter {
            WALL.formatter()
        }
    }
}
