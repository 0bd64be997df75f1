//! Suppression lists at 10 million entries: memory per entry, the time to
//! load a list file, and the cost per event of a look-up, beside the
//! keyed hash every look-up computes first (the look-up's floor) and a
//! decision on a realistic event without any list (consent only).
//!
//! ```sh
//! cargo bench --bench suppress            # 10 million entries
//! SCRIM_BENCH_LIST_ENTRIES=1000000 cargo bench --bench suppress
//! ```
//!
//! Prints, before criterion's figures, one line:
//! `entries=... bytes_per_entry=... file_bytes=... load_ms=... add_ms=...`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};

use scrim::consent::list::{ListData, entry_of};
use scrim::consent::{Context, ListSet, LoadedList, decide};
use scrim::policy::{BodyFormat, compile_str};
use scrim::pseudonym::{KeyRing, Normalise};

/// splitmix64: a fixed, fast stream of entries.
fn entries(n: usize, seed: u64) -> Vec<u128> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| (u128::from(next()) << 64) | u128::from(next()))
        .collect()
}

const RULE: &str = r#"
upstream = "https://x.example"
records  = "batch"
[fields]
"batch.event"  = "keep"
"batch.userId" = "pseudonymise"
[consent]
purpose = "advertising"
field   = "consent"
[suppress]
subject = ["userId"]
lists   = ["optout"]
"#;

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("SCRIM_BENCH_LIST_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let keys = KeyRing::test_ring();
    let key = keys.list_key(keys.active_id()).expect("test key");

    // What `scrim suppress add` does for n identifiers: hash, sort, merge.
    let t = Instant::now();
    let mut data = ListData {
        key_id: key.key_id().to_string(),
        normalise: Normalise::None,
        entries: Vec::new(),
    };
    data.merge(entries(n, 1));
    let add_ms = t.elapsed().as_secs_f64() * 1000.0;
    let bytes = data.to_bytes();
    let t = Instant::now();
    let loaded = ListData::parse(&bytes, "bench").expect("a list");
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let file_bytes = bytes.len();
    drop(bytes);
    // An identifier on the list, and one that is not.
    let present = "user-present";
    let mut data = loaded;
    data.merge(vec![entry_of(&key, Normalise::None, present)]);
    let mut set = ListSet::default();
    let t = Instant::now();
    let loaded_list = LoadedList::new(key.clone(), data, false);
    let index_ms = t.elapsed().as_secs_f64() * 1000.0;
    set.insert("optout".into(), std::sync::Arc::new(loaded_list));
    let list = set.get("optout").expect("list");
    let count = list.data.entries.len();
    let per_entry = (list.data.entries.capacity() * std::mem::size_of::<u128>()
        + list.index_bytes()) as f64
        / count as f64;
    println!(
        "entries={count} bytes_per_entry={per_entry:.2} file_bytes={file_bytes} load_ms={load_ms:.0} index_ms={index_ms:.0} add_ms={add_ms:.0}"
    );

    let mut g = c.benchmark_group(format!("suppress_{n}"));
    g.bench_function("keyed_hash_only", |b| {
        b.iter(|| entry_of(&key, Normalise::None, black_box("user-absent-123")))
    });
    g.bench_function("lookup_absent", |b| {
        b.iter(|| {
            list.contains(entry_of(
                &key,
                Normalise::None,
                black_box("user-absent-123"),
            ))
        })
    });
    g.bench_function("lookup_present", |b| {
        b.iter(|| list.contains(entry_of(&key, Normalise::None, black_box(present))))
    });
    g.bench_function("bisection_only", |b| {
        let e = entry_of(&key, Normalise::None, "user-absent-123");
        b.iter(|| list.contains(black_box(e)))
    });
    // Each look-up for another entry: the cache misses of a real stream of
    // events over a list larger than the cache.
    g.bench_function("bisection_random", |b| {
        let probes = entries(4096, 7);
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 4095;
            list.contains(black_box(probes[i]))
        })
    });

    // A realistic batch of 20 events: consent only, then with the list.
    let policy = compile_str(RULE, "bench.toml", "ads").expect("rule");
    let batch = format!(
        "{{\"batch\":[{}]}}",
        (0..20)
            .map(|i| format!(
                "{{\"event\":\"Order Completed\",\"userId\":\"user-{i}\",\"consent\":[\"analytics\",\"advertising\"],\"properties\":{{\"revenue\":12.5,\"sku\":\"SKU-{i}\"}}}}"
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let empty = ListSet::default();
    g.bench_function("decide_batch_of_20_without_list", |b| {
        let cx = Context {
            policy: &policy,
            lists: &empty,
            gpc: false,
        };
        b.iter(|| decide(&cx, BodyFormat::Json, black_box(batch.as_bytes())).expect("decided"))
    });
    g.bench_function("decide_batch_of_20_with_list", |b| {
        let cx = Context {
            policy: &policy,
            lists: &set,
            gpc: false,
        };
        b.iter(|| decide(&cx, BodyFormat::Json, black_box(batch.as_bytes())).expect("decided"))
    });
    let engine = scrim::rewrite::Engine::new(std::sync::Arc::new(policy.clone()), &keys);
    g.bench_function("rewrite_batch_of_20", |b| {
        b.iter(|| {
            engine
                .rewrite(BodyFormat::Json, black_box(batch.as_bytes()))
                .expect("rewritten")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
