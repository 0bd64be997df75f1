//! Prometheus metrics (prometheus-client). One struct, one place that records:
//! nothing here can take a field value, only counts, statuses and names.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::policy::action::ACTION_NAMES;
use crate::rewrite::Stats;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct RequestLabels {
    recipient: String,
    status: u16,
    /// The refusal's code; a forwarded or accepted request has none, and
    /// its series no `code` label.
    code: Option<&'static str>,
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("recipient", self.recipient.as_str()).encode(encoder.encode_label())?;
        ("status", self.status).encode(encoder.encode_label())?;
        if let Some(code) = self.code {
            ("code", code).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleVersionLabels {
    recipient: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FieldLabels {
    recipient: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    recipient: String,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecipientLabels {
    recipient: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    recipient: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    recipient: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListLabels {
    list: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type HistogramFamily = Family<RecipientLabels, Histogram, fn() -> Histogram>;

/// Every metric scrim exports. Recipient labels only ever hold names of
/// loaded recipients (or `unknown`), so a caller cannot grow cardinality.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    fields: Family<FieldLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    bytes_in: Family<RecipientLabels, Counter>,
    bytes_out: Family<RecipientLabels, Counter>,
    duration: HistogramFamily,
    upstream_errors: Family<UpstreamLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    rules_loaded: Gauge,
    inflight: Gauge,
    shed: Counter,
    captured: Counter,
    missing_credentials: Family<RecipientLabels, Counter>,
    rule_versions: Family<RuleVersionLabels, Gauge>,
    /// The series of `rule_versions` now set, to remove on the next load.
    rule_versions_set: std::sync::Mutex<Vec<RuleVersionLabels>>,
    withheld: Family<ReasonLabels, Counter>,
    suppress_store_up: Gauge,
    suppress_loaded: Gauge,
    suppress_entries: Family<ListLabels, Gauge>,
    suppress_reload_errors: Counter,
    /// Aggregate recipients' series.
    pub aggregate: AggregateMetrics,
}

fn duration_histogram() -> Histogram {
    // 250 µs to ~8 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("scrim");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by recipient, final status and, for a refusal, its code",
            requests.clone(),
        );
        let fields = Family::<FieldLabels, Counter>::default();
        registry.register(
            "fields",
            "Body, query and form fields by outcome (kept, dropped, transformed, not_applicable)",
            fields.clone(),
        );
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "field_actions",
            "Body, query and form fields by the action that decided them (drop: every field removed)",
            actions.clone(),
        );
        let bytes_in = Family::<RecipientLabels, Counter>::default();
        registry.register(
            "request_bytes",
            "Decoded request body bytes received",
            bytes_in.clone(),
        );
        let bytes_out = Family::<RecipientLabels, Counter>::default();
        registry.register(
            "forwarded_bytes",
            "Minimised body bytes forwarded",
            bytes_out.clone(),
        );
        let duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head",
            duration.clone(),
        );
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by kind (connect, timeout, reset, aborted)",
            upstream_errors.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "rule_reloads",
            "Rule reloads by result (ok, error)",
            reloads.clone(),
        );
        let rules_loaded = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "rules_loaded",
            "Recipients currently loaded",
            rules_loaded.clone(),
        );
        let inflight = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "inflight_requests",
            "Requests being handled",
            inflight.clone(),
        );
        let shed = Counter::<u64, AtomicU64>::default();
        registry.register(
            "shed",
            "Requests refused with 503 at the concurrency cap or the buffer budget",
            shed.clone(),
        );
        let captured = Counter::<u64, AtomicU64>::default();
        registry.register(
            "captured",
            "Requests answered by the capture upstream",
            captured.clone(),
        );
        let missing_credentials = Family::<RecipientLabels, Counter>::default();
        registry.register(
            "missing_credentials",
            "Rule loads where an env: header credential was not set",
            missing_credentials.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "The running scrim's version (always 1)",
            build.clone(),
        );
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        let rule_versions = Family::<RuleVersionLabels, Gauge>::default();
        registry.register(
            "rule_version_info",
            "The rule version loaded for each recipient (SHA-256 prefix of its rule file; always 1)",
            rule_versions.clone(),
        );
        let withheld = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "withheld_events",
            "Events withheld before rewriting, by recipient and reason (consent, gpc, list:<name>)",
            withheld.clone(),
        );
        let suppress_store_up = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "suppress_store_up",
            "1 when the last poll of the suppression lists' source succeeded, 0 while the last good copy is served",
            suppress_store_up.clone(),
        );
        let suppress_loaded = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "suppress_loaded",
            "1 once every suppression list the rules name was loaded",
            suppress_loaded.clone(),
        );
        let suppress_entries = Family::<ListLabels, Gauge>::default();
        registry.register(
            "suppress_list_entries",
            "Entries of each suppression list in force",
            suppress_entries.clone(),
        );
        let suppress_reload_errors = Counter::<u64, AtomicU64>::default();
        registry.register(
            "suppress_reload_errors",
            "Suppression list polls that failed (the last good copy stays)",
            suppress_reload_errors.clone(),
        );
        let aggregate = AggregateMetrics::register(&mut registry);
        Metrics {
            withheld,
            suppress_store_up,
            suppress_loaded,
            suppress_entries,
            suppress_reload_errors,
            registry,
            requests,
            fields,
            actions,
            bytes_in,
            bytes_out,
            duration,
            upstream_errors,
            reloads,
            rules_loaded,
            inflight,
            shed,
            captured,
            missing_credentials,
            rule_versions,
            rule_versions_set: std::sync::Mutex::new(Vec::new()),
            aggregate,
        }
    }

    /// `n` events of `recipient` withheld for `reason` (`consent`, `gpc`,
    /// `list:<name>`; list names come from loaded rule files).
    pub fn withheld(&self, recipient: &str, reason: &str, n: u64) {
        self.withheld
            .get_or_create(&ReasonLabels {
                recipient: recipient.to_string(),
                reason: reason.to_string(),
            })
            .inc_by(n);
    }

    /// The suppression lists' state after a poll.
    pub fn suppression(
        &self,
        loaded: bool,
        store_up: bool,
        sizes: &[(String, usize)],
        errors: usize,
    ) {
        self.suppress_loaded.set(i64::from(loaded));
        self.suppress_store_up.set(i64::from(store_up));
        for (list, n) in sizes {
            self.suppress_entries
                .get_or_create(&ListLabels { list: list.clone() })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.suppress_reload_errors.inc_by(errors as u64);
    }

    /// Handles on one recipient's series, resolved once (when its rules
    /// load) so a request only does atomic adds.
    pub fn recipient(&self, recipient: &str) -> RecipientMetrics {
        let r = || RecipientLabels {
            recipient: recipient.to_string(),
        };
        let field = |outcome| {
            self.fields
                .get_or_create(&FieldLabels {
                    recipient: recipient.to_string(),
                    outcome,
                })
                .clone()
        };
        RecipientMetrics {
            recipient: recipient.to_string(),
            requests: self.requests.clone(),
            by_status: std::sync::Mutex::new(Vec::new()),
            duration: self.duration.get_or_create(&r()).clone(),
            kept: field("kept"),
            transformed: field("transformed"),
            dropped: field("dropped"),
            not_applicable: field("not_applicable"),
            actions: ACTION_NAMES
                .iter()
                .map(|action| {
                    self.actions
                        .get_or_create(&ActionLabels {
                            recipient: recipient.to_string(),
                            action,
                        })
                        .clone()
                })
                .collect(),
            bytes_in: self.bytes_in.get_or_create(&r()).clone(),
            bytes_out: self.bytes_out.get_or_create(&r()).clone(),
        }
    }

    /// Records a finished request, with its refusal code if it was refused.
    pub fn request(
        &self,
        recipient: &str,
        status: u16,
        code: Option<&'static str>,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                recipient: recipient.to_string(),
                status,
                code,
            })
            .inc();
        self.duration
            .get_or_create(&RecipientLabels {
                recipient: recipient.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records field outcomes and byte counts of a rewrite (through the
    /// recipient's handles: one path for both).
    pub fn rewrite(&self, recipient: &str, stats: &Stats, bytes_in: u64, bytes_out: u64) {
        self.recipient(recipient)
            .rewrite(stats, bytes_in, bytes_out);
    }

    /// Records an upstream failure (`connect`, `timeout`, `reset`, `aborted`).
    pub fn upstream_error(&self, recipient: &str, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamLabels {
                recipient: recipient.to_string(),
                kind,
            })
            .inc();
    }

    /// Records a rule reload.
    pub fn reload(&self, ok: bool, loaded: usize) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        if ok {
            self.rules_loaded.set(loaded as i64);
        }
    }

    /// The rule versions now loaded, `(recipient, version)`: one series
    /// each; the series of versions no longer loaded are removed.
    pub fn rule_versions<'a>(&self, loaded: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let now: Vec<RuleVersionLabels> = loaded
            .into_iter()
            .map(|(recipient, version)| RuleVersionLabels {
                recipient: recipient.to_string(),
                version: version.to_string(),
            })
            .collect();
        let mut set = self
            .rule_versions_set
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for old in set.iter().filter(|old| !now.contains(old)) {
            self.rule_versions.remove(old);
        }
        for labels in &now {
            self.rule_versions.get_or_create(labels).set(1);
        }
        *set = now;
    }

    /// A credential header whose environment variable is unset.
    pub fn missing_credential(&self, recipient: &str) {
        self.missing_credentials
            .get_or_create(&RecipientLabels {
                recipient: recipient.to_string(),
            })
            .inc();
    }

    /// In-flight gauge up / down.
    pub fn inflight(&self, delta: i64) {
        self.inflight.inc_by(delta);
    }

    /// A request shed at the concurrency cap or the buffer budget.
    pub fn shed(&self) {
        self.shed.inc();
    }

    /// A request answered by the capture upstream.
    pub fn captured(&self) {
        self.captured.inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// One recipient's series (see [`Metrics::recipient`]).
#[derive(Debug)]
pub struct RecipientMetrics {
    recipient: String,
    requests: Family<RequestLabels, Counter>,
    by_status: std::sync::Mutex<Vec<(u16, Option<&'static str>, Counter)>>,
    duration: Histogram,
    kept: Counter,
    transformed: Counter,
    dropped: Counter,
    not_applicable: Counter,
    /// One counter per action, in the order of `ACTION_NAMES`.
    actions: Vec<Counter>,
    bytes_in: Counter,
    bytes_out: Counter,
}

impl RecipientMetrics {
    /// Records a finished request, with its refusal code if it was refused.
    pub fn request(&self, status: u16, code: Option<&'static str>, elapsed: Duration) {
        let counter = {
            let mut cache = self.by_status.lock().unwrap_or_else(|p| p.into_inner());
            match cache.iter().find(|(s, c, _)| *s == status && *c == code) {
                Some((_, _, c)) => c.clone(),
                None => {
                    let c = self
                        .requests
                        .get_or_create(&RequestLabels {
                            recipient: self.recipient.clone(),
                            status,
                            code,
                        })
                        .clone();
                    cache.push((status, code, c.clone()));
                    c
                }
            }
        };
        counter.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Records field outcomes and byte counts of a rewrite.
    pub fn rewrite(&self, stats: &Stats, bytes_in: u64, bytes_out: u64) {
        let not_applicable = stats.not_applicable;
        for (c, n) in [
            (&self.kept, stats.kept),
            (&self.transformed, stats.transformed),
            (&self.dropped, stats.dropped - not_applicable),
            (&self.not_applicable, not_applicable),
        ] {
            if n > 0 {
                c.inc_by(n);
            }
        }
        for (c, (_, n)) in self.actions.iter().zip(stats.by_action.iter()) {
            if n > 0 {
                c.inc_by(n);
            }
        }
        self.bytes_in.inc_by(bytes_in);
        self.bytes_out.inc_by(bytes_out);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    recipient: String,
    outcome: &'static str,
}

/// The aggregate recipients' series: events folded (and not), windows
/// open, reports sent and retried, groups suppressed. Counts only.
#[derive(Debug, Clone)]
pub struct AggregateMetrics {
    events: Family<OutcomeLabels, Counter>,
    windows_open: Family<RecipientLabels, Gauge>,
    reports: Family<OutcomeLabels, Counter>,
    suppressed: Family<RecipientLabels, Counter>,
}

impl AggregateMetrics {
    fn register(registry: &mut Registry) -> AggregateMetrics {
        let m = AggregateMetrics {
            events: Family::default(),
            windows_open: Family::default(),
            reports: Family::default(),
            suppressed: Family::default(),
        };
        registry.register(
            "aggregate_events",
            "Aggregate events by outcome: folded, late (window already reported), cut (group cap), capped (per-subject cap)",
            m.events.clone(),
        );
        registry.register(
            "aggregate_windows_open",
            "Aggregate windows open (holding events, not yet reported)",
            m.windows_open.clone(),
        );
        registry.register(
            "aggregate_reports",
            "Aggregate reports by result: made, sent (a 2xx), retried (a failed attempt)",
            m.reports.clone(),
        );
        registry.register(
            "aggregate_groups_suppressed",
            "Aggregate groups suppressed for having fewer than k distinct subjects",
            m.suppressed.clone(),
        );
        m
    }

    /// `n` events of `recipient` ended as `outcome` (`folded`, `late`,
    /// `cut`, `capped`).
    pub fn events(&self, recipient: &str, outcome: &'static str, n: u64) {
        if n > 0 {
            self.events
                .get_or_create(&OutcomeLabels {
                    recipient: recipient.to_string(),
                    outcome,
                })
                .inc_by(n);
        }
    }

    /// `recipient` has `n` windows open.
    pub fn windows_open(&self, recipient: &str, n: u64) {
        self.windows_open
            .get_or_create(&RecipientLabels {
                recipient: recipient.to_string(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A report of `recipient` was `made`, `sent` or `retried`.
    pub fn report(&self, recipient: &str, result: &'static str) {
        self.reports
            .get_or_create(&OutcomeLabels {
                recipient: recipient.to_string(),
                outcome: result,
            })
            .inc();
    }

    /// `n` groups of `recipient` were suppressed.
    pub fn suppressed(&self, recipient: &str, n: u64) {
        self.suppressed
            .get_or_create(&RecipientLabels {
                recipient: recipient.to_string(),
            })
            .inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::action::Action;
    use crate::rewrite::Outcome;

    #[test]
    fn exposition_has_the_families() {
        let m = Metrics::new();
        m.request("segment", 200, None, Duration::from_millis(3));
        m.request(
            "segment",
            400,
            Some("invalid_json"),
            Duration::from_millis(1),
        );
        let mut stats = Stats {
            kept: 3,
            dropped: 2,
            not_applicable: 1,
            transformed: 1,
            ..Default::default()
        };
        for (action, outcome) in [
            (Action::Keep, Outcome::Kept),
            (Action::Keep, Outcome::Kept),
            (Action::Keep, Outcome::Kept),
            (Action::MaskEmail, Outcome::Transformed),
            (Action::Drop, Outcome::Dropped),
            (Action::MaskEmail, Outcome::NotApplicable),
        ] {
            stats.by_action.add(&action, outcome);
        }
        m.rewrite("segment", &stats, 100, 40);
        let r = m.recipient("ga4");
        r.request(204, None, Duration::from_millis(1));
        r.request(204, None, Duration::from_millis(1));
        r.request(429, Some("rate_limited"), Duration::from_millis(1));
        m.rule_versions([("ga4", "aaaa"), ("segment", "bbbb")]);
        m.rule_versions([("ga4", "cccc"), ("segment", "bbbb")]);
        r.rewrite(&stats, 10, 5);
        m.reload(true, 4);
        let text = m.encode();
        assert!(
            text.contains("scrim_requests_total{recipient=\"segment\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("scrim_fields_total{recipient=\"segment\",outcome=\"dropped\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("scrim_fields_total{recipient=\"segment\",outcome=\"not_applicable\"} 1"),
            "{text}"
        );
        assert!(text.contains("scrim_rules_loaded 4"), "{text}");
        assert!(
            text.contains(
                "scrim_requests_total{recipient=\"segment\",status=\"400\",code=\"invalid_json\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "scrim_requests_total{recipient=\"ga4\",status=\"429\",code=\"rate_limited\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "scrim_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        // A reload replaces a recipient's version series.
        assert!(
            text.contains("scrim_rule_version_info{recipient=\"ga4\",version=\"cccc\"} 1"),
            "{text}"
        );
        assert!(!text.contains("aaaa"), "{text}");
        assert!(
            text.contains("scrim_rule_version_info{recipient=\"segment\",version=\"bbbb\"} 1"),
            "{text}"
        );
        for (recipient, action, n) in [
            ("segment", "keep", 3),
            ("segment", "mask_email", 1),
            ("segment", "drop", 2),
            ("ga4", "keep", 3),
            ("ga4", "drop", 2),
            ("ga4", "scan", 0),
        ] {
            let line = format!(
                "scrim_field_actions_total{{recipient=\"{recipient}\",action=\"{action}\"}} {n}\n"
            );
            assert!(text.contains(&line), "{line}{text}");
        }
        assert!(
            text.contains("scrim_requests_total{recipient=\"ga4\",status=\"204\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("scrim_forwarded_bytes_total{recipient=\"ga4\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("scrim_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
