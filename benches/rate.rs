//! A constant-rate (open-loop) HTTP load generator for `benches/load.sh`:
//! latency below saturation, where wrk (closed-loop) cannot measure it.
//!
//! ```sh
//! cargo bench --bench rate -- URL BODY_FILE RATE SECONDS [CONNECTIONS]
//! ```
//!
//! Request `i` is due at `start + i / RATE`. Its latency is counted from
//! when it was due, not from when it was sent, so a server that stalls is
//! charged for every request that waited behind the stall (no coordinated
//! omission). At most CONNECTIONS (default 64) requests are in flight;
//! a request that finds none free waits, and that wait counts too. Prints
//! one line: `rate=... sent=... ok=... errors=... p50_us=... p99_us=...
//! p999_us=... max_us=...`, and exits 1 when any request failed or the
//! rate was not reached within 2%.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [url, body_file, rate, seconds, rest @ ..] = args.as_slice() else {
        eprintln!("usage: cargo bench --bench rate -- URL BODY_FILE RATE SECONDS [CONNECTIONS]");
        std::process::exit(2);
    };
    let rate: f64 = rate.parse().expect("RATE: requests per second");
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let conns: usize = rest.first().map_or(64, |c| c.parse().expect("CONNECTIONS"));
    let body = Bytes::from(std::fs::read(body_file).expect("BODY_FILE readable"));
    let uri: http::Uri = url.parse().expect("URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(run(uri, body, rate, seconds, conns));
    println!("{}", report.line());
    let short = report.rate < rate * 0.98;
    if report.errors > 0 || short {
        std::process::exit(1);
    }
}

struct Report {
    rate: f64,
    sent: usize,
    ok: usize,
    errors: usize,
    /// Sorted latencies in microseconds.
    latencies: Vec<u64>,
}

impl Report {
    fn pct(&self, p: f64) -> u64 {
        if self.latencies.is_empty() {
            return 0;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }

    fn line(&self) -> String {
        format!(
            "rate={:.0} sent={} ok={} errors={} p50_us={} p99_us={} p999_us={} max_us={}",
            self.rate,
            self.sent,
            self.ok,
            self.errors,
            self.pct(0.50),
            self.pct(0.99),
            self.pct(0.999),
            self.latencies.last().copied().unwrap_or(0)
        )
    }
}

async fn run(uri: http::Uri, body: Bytes, rate: f64, seconds: f64, conns: usize) -> Report {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(conns)
        .build_http::<Full<Bytes>>();
    let slots = Arc::new(Semaphore::new(conns));
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let permit = slots.clone().acquire_owned().await.expect("semaphore");
        let (client, uri, body) = (client.clone(), uri.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let req = http::Request::post(uri)
                .header("content-type", "application/json")
                .body(Full::new(body))
                .expect("request");
            let ok = match client.request(req).await {
                Ok(resp) => {
                    let success = resp.status().is_success();
                    success && resp.into_body().collect().await.is_ok()
                }
                Err(_) => false,
            };
            drop(permit);
            (ok, due.elapsed())
        }));
    }
    let sent_by = start.elapsed();
    let mut report = Report {
        rate: total as f64 / sent_by.as_secs_f64().max(1e-9),
        sent: total,
        ok: 0,
        errors: 0,
        latencies: Vec::with_capacity(total),
    };
    for t in tasks {
        match t.await {
            Ok((true, latency)) => {
                report.ok += 1;
                report.latencies.push(latency.as_micros() as u64);
            }
            _ => report.errors += 1,
        }
    }
    report.latencies.sort_unstable();
    report
}
