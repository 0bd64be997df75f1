//! Aggregate-only recipients on the gateway: the [`StoreUpstream`] that the
//! request path sends an aggregate recipient's rewritten body to (it folds
//! the events into the store and answers 202), and the flusher task that
//! closes windows and sends their reports.
//!
//! Durability: the caller's 202 waits for the store's commit; a window is
//! turned into its report in one store transaction; a report is deleted
//! only after its partner answered 2xx. A crash between any two steps
//! loses nothing, and at worst sends a report again, with the same
//! `scrim-report-id`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Uri};
use tokio::sync::watch;

use super::error::ProxyError;
use super::handler::outbound::{OutboundBody, OutboundHead};
use super::routes::{Destination, Route};
use super::upstream::{Captured, Reply, Upstream};
use super::{State, full};
use crate::aggregate::config::AggregateConfig;
use crate::aggregate::{Report, events_of, fold, time};
use crate::ops::audit::ReportEvent;
use crate::policy::BodyFormat;
use crate::policy::aggregate::AggregateRules;
use crate::store::embedded::Embedded;
use crate::store::{FoldOutcome, Store, StoreError, WindowLimits};

/// The header that names a report, the same on every retry of one window.
pub const REPORT_ID_HEADER: &str = "scrim-report-id";

/// The aggregate store of a running gateway, opened when the first
/// aggregate recipient needs it (a gateway without one never creates
/// `[aggregate] dir`).
pub struct Aggregates {
    config: AggregateConfig,
    store: Mutex<Option<Arc<dyn Store>>>,
}

impl std::fmt::Debug for Aggregates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregates")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Aggregates {
    /// Not opened yet.
    pub fn new(config: AggregateConfig) -> Aggregates {
        Aggregates {
            config,
            store: Mutex::new(None),
        }
    }

    /// The store, opened now if it is not yet (a failed open is tried again
    /// on the next call).
    pub fn store(&self) -> Result<Arc<dyn Store>, StoreError> {
        let mut slot = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let opened: Arc<dyn Store> = match &self.config.store {
            Some(url) => Arc::new(crate::store::redis::Redis::open(url)?),
            None => Arc::new(Embedded::open(&self.config.dir)?),
        };
        *slot = Some(opened.clone());
        Ok(opened)
    }

    /// The store if it is open.
    pub fn opened(&self) -> Option<Arc<dyn Store>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `[aggregate]` of scrim.toml.
    pub fn config(&self) -> &AggregateConfig {
        &self.config
    }
}

/// What a body stored for an aggregate recipient came to.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    /// Events in the body (all accepted: folded, or counted).
    pub accepted: u64,
    /// How the store took them.
    pub outcome: FoldOutcome,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An aggregate recipient's "upstream": the store. It takes the rewritten
/// body whole (events are decided as a whole, never streamed), folds every
/// event, and answers once they are durable.
pub(crate) struct StoreUpstream<'a> {
    pub(crate) recipient: &'a str,
    pub(crate) rules: &'a Arc<AggregateRules>,
    pub(crate) records: Option<&'a crate::policy::aggregate::FieldPath>,
    pub(crate) aggregates: &'a Aggregates,
}

/// The body format of the rewritten body, from the Content-Type the body
/// plan set; `None`: the request had no body (no events).
fn format_of(headers: &HeaderMap) -> Option<BodyFormat> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(if ct.starts_with("application/x-www-form-urlencoded") {
        BodyFormat::Form
    } else if ct.starts_with("application/x-ndjson")
        || ct.starts_with("application/jsonl")
        || ct.starts_with("application/x-jsonlines")
    {
        BodyFormat::Ndjson
    } else {
        BodyFormat::Json
    })
}

impl Upstream for StoreUpstream<'_> {
    fn target(&self, path: &str, _query: &str) -> Result<Uri, ProxyError> {
        Uri::try_from(path).map_err(|_| ProxyError::Internal("upstream uri"))
    }

    /// Events are decided as a whole: the body is read whole.
    fn streams(&self) -> bool {
        false
    }

    async fn send(
        &self,
        head: OutboundHead,
        body: OutboundBody<'_, '_>,
    ) -> Result<Reply, ProxyError> {
        let OutboundBody::Whole(whole) = body else {
            return Err(ProxyError::Internal(
                "store upstream given a streaming body",
            ));
        };
        let format = format_of(&head.headers);
        let bytes = whole.into_bytes(&mut HeaderMap::new());
        let events = match format {
            Some(format) => events_of(&bytes, format, self.records).map_err(ProxyError::Events)?,
            None => Vec::new(),
        };
        let now = unix_now();
        let folded = events
            .iter()
            .enumerate()
            .map(|(i, e)| fold(self.rules, e, i, now))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ProxyError::Events)?;
        let accepted = folded.len() as u64;
        if folded.is_empty() {
            return Ok(Reply::Stored(Stored {
                accepted,
                outcome: FoldOutcome::default(),
            }));
        }
        let store = self
            .aggregates
            .store()
            .map_err(|e| unavailable(self.recipient, &e))?;
        let (recipient, rules) = (self.recipient.to_string(), self.rules.clone());
        let limits = WindowLimits {
            max_groups: self.aggregates.config.max_groups_per_window,
        };
        let outcome =
            tokio::task::spawn_blocking(move || store.fold(&recipient, &rules, &folded, limits))
                .await
                .map_err(|_| ProxyError::StoreUnavailable)?
                .map_err(|e| unavailable(self.recipient, &e))?;
        Ok(Reply::Stored(Stored { accepted, outcome }))
    }
}

fn unavailable(recipient: &str, e: &StoreError) -> ProxyError {
    tracing::warn!(recipient = %recipient, error = %e, "aggregate store did not take the events");
    ProxyError::StoreUnavailable
}

/// Per recipient: open windows and reports not yet taken by the partner
/// (empty when the store is not open or cannot be read).
pub fn open_and_unsent(state: &State) -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    let Some(store) = state.aggregates.opened() else {
        return out;
    };
    let recipients: Vec<String> = state
        .rules
        .load()
        .routes
        .values()
        .filter(|r| r.engine.policy().aggregate.is_some())
        .map(|r| r.name.clone())
        .collect();
    for (recipient, n) in store.open_windows(&recipients).unwrap_or_default() {
        out.entry(recipient).or_insert((0, 0)).0 = n;
    }
    for report in store.pending(&recipients).unwrap_or_default() {
        out.entry(report.recipient).or_insert((0, 0)).1 += 1;
    }
    out
}

/// When a report may be tried again.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    attempts: u32,
    next: Instant,
}

/// The delay after `attempts` failures: `initial * 2^(attempts-1)`, at
/// most `max`, times a random factor in [0.5, 1) (jitter, so replicas and
/// reports do not retry in step).
fn retry_delay(config: &AggregateConfig, attempts: u32) -> Duration {
    let exp = config
        .retry_initial
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(config.retry_max);
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        f64::from(u16::from_le_bytes(b)) / 65536.0
    } else {
        0.5
    };
    exp.mul_f64(0.5 + r / 2.0)
}

/// Starts the flusher: every `flush_interval`, it closes the windows that
/// are due (end + lateness has passed) into reports, updates the open
/// windows gauge, and sends each pending report whose retry time has come.
pub fn spawn_flusher(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let deliveries = Arc::new(Deliveries::default());
        let interval = state.aggregates.config.flush_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            flush_once(&state, &deliveries).await;
        }
    });
}

/// Reports being sent, and when each failed one may be tried again. Each
/// report is sent by a task of its own, so a partner that is slow or down
/// delays neither the closing of windows nor other recipients' reports.
#[derive(Default)]
struct Deliveries {
    backoff: Mutex<HashMap<String, Backoff>>,
    in_flight: Mutex<std::collections::HashSet<String>>,
    /// Taken by their partner (and being deleted): a round that read the
    /// pending reports before the deletion must not send them again.
    sent: Mutex<std::collections::HashSet<String>>,
}

impl Deliveries {
    fn backoff(&self) -> std::sync::MutexGuard<'_, HashMap<String, Backoff>> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One round of the flusher (see [`spawn_flusher`]).
async fn flush_once(state: &Arc<State>, deliveries: &Arc<Deliveries>) {
    let rules = state.rules.load_full();
    let aggregate_routes: Vec<(Arc<Route>, Arc<AggregateRules>)> = rules
        .routes
        .values()
        .filter_map(|r| r.engine.policy().aggregate.clone().map(|a| (r.clone(), a)))
        .collect();
    let store = match state.aggregates.opened() {
        Some(s) => s,
        // Nothing to do until an aggregate recipient exists.
        None if aggregate_routes.is_empty() => return,
        None => match state.aggregates.store() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "aggregate store cannot be opened");
                return;
            }
        },
    };
    let now = unix_now();
    for (route, rules) in &aggregate_routes {
        let horizon = now.saturating_sub(rules.lateness_secs);
        let (s, name, r) = (store.clone(), route.name.clone(), rules.clone());
        let made = tokio::task::spawn_blocking(move || s.close(&name, &r, horizon)).await;
        match made {
            Ok(Ok(reports)) => {
                for report in reports {
                    state.metrics.aggregate.report(&route.name, "made");
                    state
                        .metrics
                        .aggregate
                        .suppressed(&route.name, report.counts.suppressed_groups);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(recipient = %route.name, error = %e, "aggregate windows could not be closed")
            }
            Err(_) => tracing::warn!(recipient = %route.name, "aggregate window closing failed"),
        }
    }
    let names: Vec<String> = aggregate_routes
        .iter()
        .map(|(r, _)| r.name.clone())
        .collect();
    let (s, n) = (store.clone(), names.clone());
    if let Ok(Ok(open)) = tokio::task::spawn_blocking(move || s.open_windows(&n)).await {
        for (route, _) in &aggregate_routes {
            let n = open.get(&route.name).copied().unwrap_or(0);
            state.metrics.aggregate.windows_open(&route.name, n);
        }
    }
    let s = store.clone();
    let pending = match tokio::task::spawn_blocking(move || s.pending(&names)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "aggregate reports could not be read");
            return;
        }
        Err(_) => return,
    };
    {
        let in_flight = deliveries.in_flight();
        deliveries
            .backoff()
            .retain(|id, _| in_flight.contains(id) || pending.iter().any(|r| &r.id == id));
        deliveries
            .sent()
            .retain(|id| pending.iter().any(|r| &r.id == id));
    }
    for report in pending {
        let due = deliveries
            .backoff()
            .get(&report.id)
            .is_none_or(|b| b.next <= Instant::now());
        if !due
            || deliveries.sent().contains(&report.id)
            || !deliveries.in_flight().insert(report.id.clone())
        {
            continue;
        }
        // A report whose recipient is gone waits until it comes back.
        let Some(route) = rules.routes.get(&report.recipient).cloned() else {
            deliveries.in_flight().remove(&report.id);
            continue;
        };
        let (state, deliveries, store) = (state.clone(), deliveries.clone(), store.clone());
        tokio::spawn(async move {
            let id = report.id.clone();
            deliver(&state, &deliveries, store, &route, report).await;
            deliveries.in_flight().remove(&id);
        });
    }
}

/// One attempt at one report: the lease, the POST, the audit line, then
/// the report deleted (2xx) or its next attempt set.
async fn deliver(
    state: &State,
    deliveries: &Deliveries,
    store: Arc<dyn Store>,
    route: &Route,
    report: Report,
) {
    let lease_ms = u64::try_from(state.config.upstream.response_timeout.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(2)
        .max(1000);
    let (s, r, id) = (store.clone(), report.recipient.clone(), report.id.clone());
    match tokio::task::spawn_blocking(move || s.claim(&r, &id, lease_ms)).await {
        Ok(Ok(true)) => {}
        // Another replica is sending it, or the store did not answer.
        _ => return,
    }
    let attempt = deliveries
        .backoff()
        .get(&report.id)
        .map_or(1, |b| b.attempts + 1);
    let status = send_report(state, route, &report).await;
    ReportEvent {
        recipient: &report.recipient,
        report_id: &report.id,
        window_start: time::rfc3339(report.start),
        status,
        attempt,
        counts: report.counts,
    }
    .emit();
    if (200..300).contains(&status) {
        state.metrics.aggregate.report(&report.recipient, "sent");
        deliveries.backoff().remove(&report.id);
        deliveries.sent().insert(report.id.clone());
        let (s, r, id) = (store, report.recipient.clone(), report.id.clone());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.delete_report(&r, &id)).await {
            // Sent again later, with the same id: the partner can tell.
            tracing::warn!(recipient = %report.recipient, error = %e, "a sent report could not be deleted");
        }
    } else {
        state.metrics.aggregate.report(&report.recipient, "retried");
        let next = Instant::now() + retry_delay(&state.aggregates.config, attempt);
        deliveries.backoff().insert(
            report.id.clone(),
            Backoff {
                attempts: attempt,
                next,
            },
        );
    }
}

/// POSTs `report` to the recipient's `upstream` (exactly) with the rule
/// file's `[headers] set` and `scrim-report-id`. The partner's status, 0
/// when it could not be reached in time.
async fn send_report(state: &State, route: &Route, report: &Report) -> u16 {
    let Ok(id) = HeaderValue::from_str(&report.id) else {
        return 0;
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &route.set {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(REPORT_ID_HEADER, id);
    let body = Bytes::from(report.body.clone());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    match &route.upstream {
        Destination::Capture => {
            state.captured.record(Captured {
                at: 0,
                recipient: report.recipient.clone(),
                method: "POST".into(),
                path: "/".into(),
                headers: headers
                    .iter()
                    .map(|(k, v)| {
                        let shown = if route.set.iter().any(|(n, _)| n == k) {
                            "(set by rule)".to_string()
                        } else {
                            String::from_utf8_lossy(v.as_bytes()).into_owned()
                        };
                        (k.as_str().to_string(), shown)
                    })
                    .collect(),
                body_bytes: body.len(),
                body: report.body.clone(),
            });
            202
        }
        Destination::Http {
            scheme,
            authority,
            base_path,
        } => {
            let path = if base_path.is_empty() {
                "/"
            } else {
                base_path.as_str()
            };
            let Ok(uri) = Uri::builder()
                .scheme(scheme.clone())
                .authority(authority.clone())
                .path_and_query(path)
                .build()
            else {
                return 0;
            };
            let mut req = Request::new(full(body));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = uri;
            *req.headers_mut() = headers;
            let client = route.client.as_ref().unwrap_or(&state.client);
            let timeout = state.config.upstream.response_timeout;
            match tokio::time::timeout(timeout, client.request(req)).await {
                Ok(Ok(resp)) => resp.status().as_u16(),
                Ok(Err(_)) | Err(_) => 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter() {
        let config = AggregateConfig {
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_millis(1000),
            ..AggregateConfig::default()
        };
        for (attempts, base) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (30, 1000),
        ] {
            let d = retry_delay(&config, attempts).as_millis() as u64;
            assert!((base / 2..=base).contains(&d), "{attempts}: {d}");
        }
    }

    #[test]
    fn the_body_format_comes_from_the_planned_content_type() {
        let mut h = HeaderMap::new();
        assert_eq!(format_of(&h), None);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert_eq!(format_of(&h), Some(BodyFormat::Json));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        assert_eq!(format_of(&h), Some(BodyFormat::Ndjson));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        assert_eq!(format_of(&h), Some(BodyFormat::Form));
    }
}
