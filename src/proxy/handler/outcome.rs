//! How a request ends, and the one place that answers, audits and counts
//! it.
//!
//! Every request ends in exactly one [`Outcome`] (forwarded, accepted without
//! forwarding, or refused), or the caller goes away first (499).
//! [`Exchange`] is the request's context from its first line to its last:
//! [`Exchange::finish`] turns the outcome into the response, and it, or the
//! drop of a request the caller abandoned, writes the audit line and records
//! the metrics. Nothing else on the request path does either.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use super::super::aggregate::Stored;
use super::super::error::ProxyError;
use super::super::routes::{Destination, Route};
use super::super::upstream::Reply;
use super::super::{ProxyBody, State, full};
use crate::ops::audit::RequestEvent;
use crate::rewrite::Stats;

/// The response header that tells the caller how many of its events were
/// withheld (consent, GPC, suppression) when the rest was forwarded.
pub const WITHHELD_HEADER: &str = "scrim-withheld";

/// How a request ended, for [`Exchange::finish`].
#[derive(Debug)]
pub enum Outcome {
    /// Forwarded in minimised form; the partner's response (cleaned of
    /// hop-by-hop fields and `Set-Cookie`) goes back to the caller.
    Forwarded(Response<ProxyBody>),
    /// Accepted without forwarding: answered 202 by scrim itself.
    Accepted(Accepted),
    /// Refused, or failed at the partner: a JSON error, and nothing was
    /// forwarded (a streamed request was aborted, never ended cleanly).
    Refused(ProxyError),
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Outcome {
        match reply {
            Reply::Relayed(response) => Outcome::Forwarded(response),
            Reply::Captured => Outcome::Accepted(Accepted::Captured),
            Reply::Stored(stored) => Outcome::Accepted(Accepted::Stored(stored)),
            Reply::Withheld(n) => Outcome::Accepted(Accepted::Withheld(n)),
        }
    }
}

/// Why a request was answered 202 instead of being forwarded. This is the
/// place for the contract's other 202s too (events stored for an aggregate
/// recipient, every event withheld by consent or suppression): each a
/// variant with its own 202 body, answered and counted by
/// [`Exchange::finish`].
#[derive(Debug)]
pub enum Accepted {
    /// Recorded by the capture upstream (see `/captured`), sent nowhere.
    Captured,
    /// Every event of the body durably stored for an aggregate recipient:
    /// `{"accepted":N}`.
    Stored(Stored),
    /// Every event withheld by consent, GPC or a suppression list; nothing
    /// was sent: `{"forwarded":0,"withheld":N}`.
    Withheld(u64),
}

impl Accepted {
    fn into_response(self) -> Response<ProxyBody> {
        let body = match self {
            Accepted::Captured => Bytes::from_static(b"{\"captured\":true}"),
            Accepted::Stored(s) => Bytes::from(format!("{{\"accepted\":{}}}", s.accepted)),
            Accepted::Withheld(n) => Bytes::from(format!("{{\"forwarded\":0,\"withheld\":{n}}}")),
        };
        let mut resp = Response::new(full(body));
        *resp.status_mut() = StatusCode::ACCEPTED;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// What the audit line and the metrics say about a request's fields and
/// bytes. The outbound head counts the path and query's fields; the body
/// phase the rest when the body ends: whole (every field below) or cut
/// short (`bytes_in` and `streamed` only).
#[derive(Debug, Default)]
pub struct Tally {
    /// Field counts of the path, the query and the body; reported only for
    /// a request rewritten whole.
    pub stats: Stats,
    /// Decoded request body bytes.
    pub bytes_in: u64,
    /// Minimised body bytes sent (or to be sent) upstream.
    pub bytes_out: u64,
    /// The body outgrew the buffering threshold and streamed.
    pub streamed: bool,
    /// The whole request was rewritten: its counts go to the rewrite
    /// metrics.
    pub complete: bool,
    /// Events withheld before rewriting, by reason.
    pub withheld: crate::consent::Withheld,
}

impl Tally {
    /// A streamed request that ended before its body did was aborted
    /// upstream.
    fn aborted(&self) -> bool {
        self.streamed && !self.complete
    }
}

/// One request's context, from admission to the audit line.
pub struct Exchange {
    state: Arc<State>,
    start: Instant,
    method: Method,
    /// The concurrency permit, held until the request ends.
    permit: Option<OwnedSemaphorePermit>,
    /// The recipient the request resolved to.
    route: Option<Arc<Route>>,
    /// The request is counted under `route`; false when its host was
    /// ambiguous, which names the recipient in the refusal but counts it
    /// under `unknown`.
    routed: bool,
    /// Fields and bytes, as far as the body got.
    pub tally: Tally,
    /// The audit line was written.
    done: bool,
}

impl Exchange {
    /// A request that just arrived.
    pub fn new(state: Arc<State>, method: &Method) -> Exchange {
        Exchange {
            state,
            start: Instant::now(),
            method: method.clone(),
            permit: None,
            route: None,
            routed: false,
            tally: Tally::default(),
            done: false,
        }
    }

    /// Admission: a concurrency permit, or 503 `overloaded` at once. An
    /// admitted request counts in the in-flight gauge until it ends.
    pub fn admit(&mut self) -> Result<(), ProxyError> {
        let permit = self
            .state
            .inflight
            .clone()
            .try_acquire_owned()
            .map_err(|_| ProxyError::Overloaded)?;
        self.permit = Some(permit);
        self.state.metrics.inflight(1);
        Ok(())
    }

    /// The request is for `route`, and counted under it.
    pub fn route_to(&mut self, route: &Arc<Route>) {
        self.route = Some(route.clone());
        self.routed = true;
    }

    /// The request named `route` but is refused before routing: the
    /// refusal names it, the audit line and the metrics say `unknown`.
    pub fn named_only(&mut self, route: Option<&Arc<Route>>) {
        self.route = route.cloned();
        self.routed = false;
    }

    /// The end of every answered request: the response for `outcome` (the
    /// error-to-status map is [`ProxyError::into_response`]), the audit line
    /// and the metrics.
    pub fn finish(mut self, outcome: Outcome) -> Response<ProxyBody> {
        let (response, code) = match outcome {
            Outcome::Forwarded(response) => (response, None),
            Outcome::Accepted(accepted) => {
                match &accepted {
                    Accepted::Captured => self.state.metrics.captured(),
                    Accepted::Stored(s) => {
                        let m = &self.state.metrics.aggregate;
                        let recipient = self.recipient();
                        m.events(recipient, "folded", s.outcome.folded);
                        m.events(recipient, "late", s.outcome.late);
                        m.events(recipient, "cut", s.outcome.cut);
                        m.events(recipient, "capped", s.outcome.capped);
                    }
                    Accepted::Withheld(_) => {}
                }
                (accepted.into_response(), None)
            }
            Outcome::Refused(e) => {
                self.count_refusal(&e);
                let code = e.code();
                let named = self.route.as_ref().map(|r| r.name.as_str());
                (e.into_response(named), Some(code))
            }
        };
        let mut response = response;
        let withheld = self.tally.withheld.total();
        if withheld > 0 && code.is_none() {
            response
                .headers_mut()
                .insert(WITHHELD_HEADER, HeaderValue::from(withheld));
        }
        self.record(response.status().as_u16(), code);
        response
    }

    /// The counters a refusal adds besides the request's own.
    fn count_refusal(&self, e: &ProxyError) {
        let metrics = &self.state.metrics;
        let recipient = self.recipient();
        if self.tally.aborted() {
            metrics.upstream_error(recipient, "aborted");
            tracing::warn!(recipient = %recipient, code = e.code(), "streamed upstream request aborted");
        }
        match e {
            ProxyError::Unreachable(cause) => {
                metrics.upstream_error(recipient, cause.kind());
                tracing::warn!(
                    recipient = %recipient,
                    cause = cause.label(),
                    // The host alone: an upstream URL may carry userinfo.
                    host = self.route.as_ref().map_or("", |r| match &r.upstream {
                        Destination::Http { authority, .. } => authority.host(),
                        Destination::Capture => "",
                    }),
                    "partner unreachable: {}",
                    cause.describe()
                );
            }
            ProxyError::Timeout(_) => metrics.upstream_error(recipient, "timeout"),
            ProxyError::Overloaded | ProxyError::BufferFull => metrics.shed(),
            _ => {}
        }
    }

    /// The recipient the request is counted under.
    fn recipient(&self) -> &str {
        match &self.route {
            Some(route) if self.routed => &route.name,
            _ => "unknown",
        }
    }

    /// The audit line and the request's metrics; the rewrite's counts too
    /// when the whole request was rewritten.
    fn record(&mut self, status: u16, code: Option<&'static str>) {
        self.done = true;
        let duration = self.start.elapsed();
        let tally = std::mem::take(&mut self.tally);
        match &self.route {
            Some(route) if self.routed => {
                route.metrics.request(status, code, duration);
                if tally.complete {
                    route
                        .metrics
                        .rewrite(&tally.stats, tally.bytes_in, tally.bytes_out);
                }
            }
            _ => self
                .state
                .metrics
                .request("unknown", status, code, duration),
        }
        // Withheld events count whatever became of the rest: they were
        // never going to be sent.
        let withheld = tally.withheld.by_reason();
        if let Some(route) = self.route.as_ref().filter(|_| self.routed) {
            for (reason, n) in &withheld {
                self.state.metrics.withheld(&route.name, reason, *n);
            }
        }
        RequestEvent {
            recipient: self.recipient().to_string(),
            method: self.method.as_str().to_string(),
            status,
            code,
            aborted: tally.aborted(),
            stats: if tally.complete {
                tally.stats
            } else {
                Stats::default()
            },
            bytes_in: tally.bytes_in,
            bytes_out: tally.bytes_out,
            streamed: tally.streamed,
            withheld,
            duration,
        }
        .emit();
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.done {
            // The caller disconnected and hyper dropped the request half-way:
            // nobody to answer, but the line is written, with 499 (client
            // closed request).
            self.record(499, Some("client_closed"));
        }
        if self.permit.is_some() {
            self.state.metrics.inflight(-1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_capture_is_accepted_with_202_and_its_json_body() {
        let resp = Accepted::Captured.into_response();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{\"captured\":true}");
    }

    #[test]
    fn only_a_streamed_body_that_did_not_end_whole_was_aborted() {
        let tally = |streamed, complete| Tally {
            streamed,
            complete,
            ..Tally::default()
        };
        assert!(tally(true, false).aborted());
        assert!(!tally(true, true).aborted());
        assert!(!tally(false, false).aborted());
        assert!(!tally(false, true).aborted());
    }
}
