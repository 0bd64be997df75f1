//! One request, top to bottom, as phases:
//!
//! 1. admission: a concurrency permit, or 503 `overloaded` at once;
//! 2. route: the recipient, from a claimed Host or the path (404
//!    `unknown_recipient`, 400 `ambiguous_host`);
//! 3. the recipient's admission: header limits (431), its rate limit (429);
//! 4. outbound head: the rewritten URL path (404, 400), the rewritten query,
//!    the upstream URI, the minimised headers;
//! 5. body plan: content type and encoding (415), declared length (413);
//! 6. body: a [`RewritingBody`] decodes and rewrites the caller's frames at
//!    the pace they must keep (408); read whole up to the buffering threshold
//!    under the buffer budget (503), streamed beyond it;
//! 7. upstream: the partner over HTTP, or the capture upstream, behind the
//!    [`Upstream`] trait;
//! 8. finish: [`Exchange::finish`] answers every outcome and writes the audit
//!    line and the metrics (for a caller that went away, the exchange's drop
//!    does, with 499).
//!
//! Fail closed by construction: an upstream takes only an [`OutboundBody`],
//! the rewriter's output (or no body, or a body the rule file lets through
//! untouched, under the same size limit). A body up to the buffering
//! threshold is rewritten completely before anything is sent; a larger one
//! streams, and a late refusal aborts the upstream request (no clean end of
//! body).

pub(super) mod outbound;
mod outcome;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use hyper::body::{Body, Incoming};

use super::body::{self, BodyKind, Decoder, Encoding};
use super::error::ProxyError;
use super::headers;
use super::routes::{Route, RuleSet};
use super::upstream::{Reply, RouteUpstream, Upstream};
use super::{ProxyBody, State};
use crate::config::Limits;
use crate::consent;
use crate::policy::BodyFormat;
use crate::rewrite::BodyRewriter;
use outbound::{OutboundBody, OutboundHead, Pace, PacedBody, RewritingBody, Whole};
use outcome::{Exchange, Outcome, Tally};

/// Handles one request; never fails (a refusal is a JSON error response).
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<ProxyBody> {
    let mut exchange = Exchange::new(state.clone(), req.method());
    let outcome = match proxy(&state, &mut exchange, req).await {
        Ok(reply) => Outcome::from(reply),
        Err(refusal) => Outcome::Refused(refusal),
    };
    exchange.finish(outcome)
}

/// The phases in order; the first refusal ends the request.
async fn proxy(
    state: &State,
    exchange: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Reply, ProxyError> {
    let limits = &state.config.limits;
    exchange.admit()?;
    let rules = state.rules.load_full();
    let (parts, incoming) = req.into_parts();
    let (route, rest) = route(&rules, &parts, exchange)?;
    admit_to(route, &parts.headers, limits)?;
    let upstream = RouteUpstream::of(route, state);
    let mut head = outbound_head(route, &upstream, &parts, rest, &mut exchange.tally)?;
    let plan = body_plan(route, &parts, &incoming, &mut head.headers, limits)?;
    if route.engine.policy().decides_events() {
        let decided = Decided {
            route,
            parts: &parts,
        };
        return decided
            .send(state, &upstream, head, plan, incoming, &mut exchange.tally)
            .await;
    }
    send_body(state, &upstream, head, plan, incoming, &mut exchange.tally).await
}

/// Route: the recipient the request is for. The recipient must not depend
/// on which of the Host header and the request-target's authority a reader
/// believes: two Host headers are refused (RFC 9112 3.2), and an authority
/// that routes elsewhere than the Host header too.
fn route<'r>(
    rules: &'r RuleSet,
    parts: &'r Parts,
    exchange: &mut Exchange,
) -> Result<(&'r Arc<Route>, &'r str), ProxyError> {
    let path = parts.uri.path();
    let mut host_headers = parts
        .headers
        .get_all(header::HOST)
        .iter()
        .map(|h| h.to_str().ok());
    let host_header = host_headers.next();
    let ambiguous = host_headers.next().is_some() || {
        match (parts.uri.authority(), host_header) {
            (Some(a), Some(h)) if Some(a.as_str()) != h => {
                let route = |host| rules.resolve(host, path).map(|(r, rest)| (&r.name, rest));
                h.is_none() || route(Some(a.as_str())) != route(h)
            }
            _ => false,
        }
    };
    let host = match parts.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => host_header.flatten(),
    };
    let resolved = rules.resolve(host, path);
    if ambiguous {
        exchange.named_only(resolved.map(|(r, _)| r));
        return Err(ProxyError::AmbiguousHost);
    }
    let (route, rest) = resolved.ok_or_else(|| unknown_recipient(rules, path))?;
    exchange.route_to(route);
    Ok((route, rest))
}

/// The 404 for a request no rule file claims: the recipient it asked for
/// (the path's first segment, shown only when it reads as a recipient name:
/// letters, at most four digits, nothing the path screen flags) and the nearest
/// loaded recipient, or the loaded ones.
#[cold]
fn unknown_recipient(rules: &RuleSet, path: &str) -> ProxyError {
    const LISTED: usize = 10;
    let asked = path
        .strip_prefix('/')
        .and_then(|rest| rest.split('/').next())
        .filter(|name| {
            // A name, not a number or an identifier: recipient names are
            // words (`segment`, `ga4`), and the first segment of a
            // misrouted request may be a user id or a phone number.
            let digits = name.bytes().filter(u8::is_ascii_digit).count();
            (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && name.bytes().any(|b| b.is_ascii_alphabetic())
                && digits <= 4
                && !crate::rewrite::path::looks_personal(name)
        });
    let mut loaded: Vec<&str> = rules.routes.keys().map(String::as_str).collect();
    loaded.sort_unstable();
    let help = match asked.and_then(|a| crate::policy::suggest(a, &loaded)) {
        Some(near) => Some(format!("did you mean \"{near}\"?")),
        None if loaded.is_empty() => Some("no rule files are loaded".to_string()),
        None => {
            let mut list = loaded[..loaded.len().min(LISTED)].join(", ");
            if loaded.len() > LISTED {
                list.push_str(&format!(" and {} more", loaded.len() - LISTED));
            }
            Some(format!("the loaded recipients are: {list}"))
        }
    };
    ProxyError::UnknownRecipient {
        asked: asked.map(str::to_string),
        help,
    }
}

/// The recipient's admission, after routing (an unknown recipient is 404
/// whatever its headers): header limits (hyper enforces them while parsing
/// HTTP/1.1; this also covers HTTP/2), then the recipient's rate limit, so
/// a refused request takes no token.
fn admit_to(route: &Route, headers: &HeaderMap, limits: &Limits) -> Result<(), ProxyError> {
    if headers.len() > limits.header_count {
        return Err(ProxyError::HeadersTooLarge("count"));
    }
    if headers::size(headers) > limits.header_bytes {
        return Err(ProxyError::HeadersTooLarge("bytes"));
    }
    if let Some((_, limiter)) = &route.limiter
        && let Err(not_until) = limiter.check()
    {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return Err(ProxyError::RateLimited { retry_after: wait });
    }
    Ok(())
}

/// Outbound head: the path and query rewritten, the upstream's URI for
/// them, the minimised headers. Their fields are counted in `tally`, with
/// the body's.
fn outbound_head(
    route: &Route,
    upstream: &impl Upstream,
    parts: &Parts,
    rest: &str,
    tally: &mut Tally,
) -> Result<OutboundHead, ProxyError> {
    // The path is data: screened, or matched against the recipient's
    // templates with its placeholders rewritten.
    let path = route.engine.rewrite_path(rest).map_err(ProxyError::Path)?;
    let mut stats = path.stats;
    // Query string: the same default deny, with the [query] rules.
    let query = match parts.uri.query() {
        Some(q) if !q.is_empty() => {
            let r = route
                .engine
                .rewrite_query(q.as_bytes())
                .map_err(ProxyError::Invalid)?;
            stats.absorb(&r.stats);
            stats
                .dropped_paths
                .extend(r.stats.dropped_paths.iter().map(|p| format!("?{p}")));
            String::from_utf8(r.body).map_err(|_| ProxyError::Internal("query encoding"))?
        }
        _ => String::new(),
    };
    tally.stats = stats;
    let path = match path.path.as_str() {
        "" => "/",
        p => p,
    };
    Ok(OutboundHead {
        method: parts.method.clone(),
        uri: upstream.target(path, &query)?,
        headers: headers::outbound(&parts.headers, &route.allow, &route.set),
    })
}

/// How the body goes, decided from the head alone.
// One per request, on the stack: boxing the rewriter would cost an
// allocation per request.
#[allow(clippy::large_enum_variant)]
enum BodyPlan<'r> {
    /// No body.
    Empty,
    /// Through untouched, by the rule file's explicit choice.
    Untouched,
    /// Decoded, then rewritten by the recipient's rewriter for its format.
    Rewrite(Encoding, BodyFormat, BodyRewriter<'r>),
}

/// Body plan: the body's handling from its Content-Type, its
/// Content-Encoding and its declared length, and the body's Content-Type
/// (and Content-Encoding, untouched) on the outbound `headers`.
fn body_plan<'r>(
    route: &'r Route,
    parts: &Parts,
    incoming: &Incoming,
    headers: &mut HeaderMap,
    limits: &Limits,
) -> Result<BodyPlan<'r>, ProxyError> {
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let kind = body::classify(
        content_type,
        !incoming.is_end_stream(),
        matches!(
            parts.method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        ),
        &route.engine.policy().passthrough_content_types,
    )?;
    let passthrough = &route.engine.policy().passthrough_content_types;
    let encoding = parts.headers.get(header::CONTENT_ENCODING);
    let encoding_str = match encoding {
        Some(v) => Some(v.to_str().map_err(|_| {
            body::unsupported_encoding("this content encoding".into(), passthrough)
        })?),
        None => None,
    };
    check_declared_length(&parts.headers, encoding_str, limits.body_bytes)?;
    Ok(match kind {
        BodyKind::Empty => BodyPlan::Empty,
        BodyKind::Passthrough => {
            if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                headers.insert(header::CONTENT_TYPE, ct.clone());
            }
            if let Some(enc) = encoding {
                headers.insert(header::CONTENT_ENCODING, enc.clone());
            }
            BodyPlan::Untouched
        }
        BodyKind::Rewrite(format) => {
            let encoding = body::encoding(encoding_str, passthrough)?;
            // scrim's own Content-Type: the caller's parameters stay behind.
            let ct = body::outbound_content_type(format, content_type.unwrap_or(""));
            if let Ok(v) = HeaderValue::from_str(&ct) {
                headers.insert(header::CONTENT_TYPE, v);
            }
            BodyPlan::Rewrite(encoding, format, route.engine.body_rewriter(format))
        }
    })
}

/// A declared length over the limit is refused before anything is read or
/// sent (encoded bodies are checked as they decode).
fn check_declared_length(
    headers: &HeaderMap,
    encoding: Option<&str>,
    limit: u64,
) -> Result<(), ProxyError> {
    if encoding.is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"))
        && let Some(declared) = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        && declared > limit
    {
        return Err(ProxyError::TooLarge { limit });
    }
    Ok(())
}

/// Body and upstream: the body read as planned, at its pace, and the
/// request sent. A rewritten body waits whole up to the buffering
/// threshold (holding its share of the buffer budget until the upstream
/// answers) and streams beyond it, if the upstream takes streams. What the
/// body came to is counted in `tally`.
async fn send_body(
    state: &State,
    upstream: &RouteUpstream<'_>,
    head: OutboundHead,
    plan: BodyPlan<'_>,
    incoming: Incoming,
    tally: &mut Tally,
) -> Result<Reply, ProxyError> {
    let limits = &state.config.limits;
    let timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
    let caller = PacedBody::new(incoming, Pace::new(limits, Instant::now()), timer);
    match plan {
        BodyPlan::Empty => {
            // The query's fields count like a body's.
            tally.complete = true;
            let body = OutboundBody::Whole(Whole::empty());
            upstream.send(head, body).await
        }
        BodyPlan::Untouched => {
            let whole = caller.read_untouched(limits.body_bytes).await?;
            tally.bytes_in = whole.len();
            tally.bytes_out = whole.len();
            tally.complete = true;
            upstream.send(head, OutboundBody::Whole(whole)).await
        }
        BodyPlan::Rewrite(encoding, _, rewriter) => {
            let decoder = Decoder::new(encoding, limits.body_bytes);
            let mut body = RewritingBody::new(caller, decoder, rewriter, tally);
            let threshold = upstream.streams().then_some(limits.stream_threshold_bytes);
            let out = match body.buffer(threshold, &state.buffered).await? {
                Some(whole) => OutboundBody::Whole(whole),
                None => OutboundBody::Streaming(&mut body),
            };
            upstream.send(head, out).await
        }
    }
}

/// The body phase of a recipient whose events are decided one by one
/// (`[consent]`, `[suppress]`): the body is read whole and decoded, its
/// withheld events are cut out of the caller's bytes, and only what stays
/// is rewritten and sent. Every event withheld: nothing is sent, 202.
struct Decided<'r> {
    route: &'r Route,
    parts: &'r Parts,
}

impl Decided<'_> {
    async fn send(
        &self,
        state: &State,
        upstream: &RouteUpstream<'_>,
        head: OutboundHead,
        plan: BodyPlan<'_>,
        incoming: Incoming,
        tally: &mut Tally,
    ) -> Result<Reply, ProxyError> {
        let policy = self.route.engine.policy();
        // Fail closed: a replica that never loaded its lists cannot tell
        // who opted out.
        if policy.suppress.is_some() && !state.suppression.health().loaded {
            return Err(ProxyError::SuppressionUnavailable);
        }
        let lists = state.suppression.lists();
        let cx = consent::Context {
            policy,
            lists: &lists,
            gpc: consent::gpc_header(self.parts.headers.get("sec-gpc").map(HeaderValue::as_bytes)),
        };
        let limits = &state.config.limits;
        match plan {
            BodyPlan::Empty => {
                let query = self.parts.uri.query().unwrap_or("");
                let d = consent::decide_query(&cx, query.as_bytes()).map_err(ProxyError::Decide)?;
                tally.complete = true;
                if let Some(reply) = withheld(d, tally) {
                    return Ok(reply);
                }
                upstream
                    .send(head, OutboundBody::Whole(Whole::empty()))
                    .await
            }
            // Refused when the rules load: a body decided per event is read.
            BodyPlan::Untouched => Err(ProxyError::Internal("untouched body with [consent]")),
            BodyPlan::Rewrite(encoding, format, _) => {
                let timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
                let caller = PacedBody::new(incoming, Pace::new(limits, Instant::now()), timer);
                let decoder = Decoder::new(encoding, limits.body_bytes);
                let (raw, _held) = outbound::read_decoded(caller, decoder, &state.buffered).await?;
                tally.bytes_in = raw.len() as u64;
                let d = consent::decide(&cx, format, &raw).map_err(ProxyError::Decide)?;
                let kept = d.body.clone();
                if let Some(reply) = withheld(d, tally) {
                    tally.complete = true;
                    return Ok(reply);
                }
                let input = kept.as_deref().unwrap_or(&raw);
                let rewritten = self
                    .route
                    .engine
                    .rewrite(format, input)
                    .map_err(ProxyError::Invalid)?;
                let whole = Whole::rewritten(rewritten.body);
                tally.stats.absorb(&rewritten.stats);
                tally.stats.documents += rewritten.stats.documents;
                let room = crate::rewrite::MAX_DROPPED_PATHS
                    .saturating_sub(tally.stats.dropped_paths.len());
                tally
                    .stats
                    .dropped_paths
                    .extend(rewritten.stats.dropped_paths.into_iter().take(room));
                tally.bytes_out = whole.len();
                tally.complete = true;
                upstream.send(head, OutboundBody::Whole(whole)).await
            }
        }
    }
}

/// Counts what was withheld in `tally`; when every event was, the reply
/// (202, nothing sent).
fn withheld(d: consent::Decided, tally: &mut Tally) -> Option<Reply> {
    let all = d.all_withheld();
    tally.withheld = d.withheld;
    all.then(|| Reply::Withheld(tally.withheld.total()))
}
