//! The audit event: one structured log line per request, emitted in one
//! place. It holds counts, statuses and field paths (keys that do not look
//! like identifiers already shown as `<key>`), never a value.

use std::time::Duration;

use crate::rewrite::Stats;

/// Everything the audit line says about one request.
#[derive(Debug, Default)]
pub struct RequestEvent {
    /// Recipient, or `unknown`.
    pub recipient: String,
    /// HTTP method.
    pub method: String,
    /// Final status sent to the caller.
    pub status: u16,
    /// Error code when refused (`invalid_json`, `too_large`...).
    pub code: Option<&'static str>,
    /// Field counts of the body and query rewrite.
    pub stats: Stats,
    /// Decoded request body bytes.
    pub bytes_in: u64,
    /// Minimised bytes forwarded.
    pub bytes_out: u64,
    /// The body was streamed (above the buffering threshold).
    pub streamed: bool,
    /// A streamed upstream request was aborted after a late error.
    pub aborted: bool,
    /// Events withheld before rewriting, by reason (`consent`, `gpc`,
    /// `list:<name>`): counts only.
    pub withheld: Vec<(String, u64)>,
    /// Time to the response head.
    pub duration: Duration,
}

impl RequestEvent {
    /// Emits the line (target `scrim::audit`, level info).
    pub fn emit(&self) {
        let dropped_paths = self.stats.dropped_paths.join(",");
        let withheld_total: u64 = self.withheld.iter().map(|(_, n)| n).sum();
        let withheld_reasons = self
            .withheld
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(
            target: "scrim::audit",
            recipient = %self.recipient,
            method = %self.method,
            status = self.status,
            code = self.code.unwrap_or(""),
            kept = self.stats.kept,
            dropped = self.stats.dropped,
            transformed = self.stats.transformed,
            not_applicable = self.stats.not_applicable,
            dropped_paths = %dropped_paths,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            streamed = self.streamed,
            aborted = self.aborted,
            withheld = withheld_total,
            withheld_reasons = %withheld_reasons,
            duration_ms = self.duration.as_secs_f64() * 1000.0,
            "request"
        );
    }
}

/// One line per aggregate report sent (or attempted): counts only, never a
/// group key or a value.
#[derive(Debug, Default)]
pub struct ReportEvent<'a> {
    /// Recipient.
    pub recipient: &'a str,
    /// The report id (`scrim-report-id`, a hash of recipient and window).
    pub report_id: &'a str,
    /// Window start, RFC 3339.
    pub window_start: String,
    /// The partner's status, 0 when it could not be reached.
    pub status: u16,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// What the report holds.
    pub counts: crate::aggregate::ReportCounts,
}

impl ReportEvent<'_> {
    /// Emits the line (target `scrim::audit`, level info).
    pub fn emit(&self) {
        tracing::info!(
            target: "scrim::audit",
            recipient = %self.recipient,
            report_id = %self.report_id,
            window_start = %self.window_start,
            status = self.status,
            attempt = self.attempt,
            groups = self.counts.groups,
            events = self.counts.events,
            suppressed_groups = self.counts.suppressed_groups,
            suppressed_events = self.counts.suppressed_events,
            late = self.counts.late,
            cut_events = self.counts.cut_events,
            "aggregate report"
        );
    }
}
