//! One request, start to end: route, limits, decode, rewrite body, query and
//! headers, forward, relay the response.
//!
//! Fail closed by construction: the only bytes that reach the upstream
//! client are the rewriter's output (`out`), or, for a content type the
//! rule file lets through untouched, the caller's body under the same size
//! limit. A body up to the buffering threshold is rewritten completely before
//! anything is sent; a larger one streams, and a late error aborts the
//! upstream request (no clean end of body).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use http_body_util::channel::{Channel, Sender};
use hyper::body::{Body, Incoming};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::body::{self, BodyKind, Decoder};
use super::error::ProxyError;
use super::headers;
use super::routes::{Route, Upstream};
use super::upstream::Captured;
use super::{BoxError, ProxyBody, State, full};
use crate::ops::audit::RequestEvent;
use crate::rewrite::{BodyRewriter, Stats};

/// Handles one request; never fails (errors become JSON error responses).
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<ProxyBody> {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let Ok(_permit) = state.inflight.clone().try_acquire_owned() else {
        state.metrics.shed();
        state.metrics.request("unknown", 503, start.elapsed());
        let e = ProxyError::Overloaded;
        RequestEvent {
            recipient: "unknown".into(),
            method,
            status: 503,
            code: Some(e.code()),
            duration: start.elapsed(),
            ..Default::default()
        }
        .emit();
        return e.into_response(None);
    };
    let mut audit = Audit::new(state.clone(), start, method);
    let rules = state.rules.load_full();
    // The recipient must not depend on which of the Host header and the
    // request-target's authority a reader believes: two Host headers are
    // refused (RFC 9112 3.2), and an authority that routes elsewhere than
    // the Host header too.
    let path = req.uri().path().to_string();
    let mut host_headers = req
        .headers()
        .get_all(header::HOST)
        .iter()
        .map(|h| h.to_str().ok());
    let host_header = host_headers.next();
    let ambiguous = host_headers.next().is_some() || {
        match (req.uri().authority(), host_header) {
            (Some(a), Some(h)) if Some(a.as_str()) != h => {
                let route = |host: Option<&str>| {
                    rules
                        .resolve(host, &path)
                        .map(|(r, rest)| (r.name.clone(), rest.to_string()))
                };
                h.is_none() || route(Some(a.as_str())) != route(h)
            }
            _ => false,
        }
    };
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| host_header.flatten().map(str::to_string));
    let resolved = rules
        .resolve(host.as_deref(), &path)
        .map(|(r, rest)| (r.clone(), rest.to_string()));
    let result = match &resolved {
        _ if ambiguous => Err(ProxyError::AmbiguousHost),
        None => Err(ProxyError::UnknownRecipient),
        Some((route, rest)) => {
            audit.ev.recipient = route.name.clone();
            audit.route_metrics = Some(route.metrics.clone());
            forward(&state, route, req, rest, &mut audit.ev).await
        }
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            audit.ev.code = Some(e.code());
            match &e {
                ProxyError::Unreachable(kind) => {
                    state.metrics.upstream_error(&audit.ev.recipient, kind)
                }
                ProxyError::Timeout(_) => {
                    state.metrics.upstream_error(&audit.ev.recipient, "timeout")
                }
                ProxyError::BufferFull => state.metrics.shed(),
                _ => {}
            }
            e.into_response(resolved.as_ref().map(|(r, _)| r.name.as_str()))
        }
    };
    audit.finish(resp.status().as_u16());
    resp
}

/// The request's audit line and in-flight count, kept right even when the
/// caller disconnects and hyper drops the request future half-way: then the
/// line is emitted with status 499 (client closed request).
struct Audit {
    state: Arc<State>,
    route_metrics: Option<Arc<crate::ops::metrics::RecipientMetrics>>,
    start: Instant,
    ev: RequestEvent,
    done: bool,
}

impl Audit {
    fn new(state: Arc<State>, start: Instant, method: String) -> Audit {
        state.metrics.inflight(1);
        Audit {
            state,
            route_metrics: None,
            start,
            ev: RequestEvent {
                recipient: "unknown".into(),
                method,
                ..Default::default()
            },
            done: false,
        }
    }

    fn finish(&mut self, status: u16) {
        self.ev.status = status;
        self.ev.duration = self.start.elapsed();
        match &self.route_metrics {
            Some(m) => m.request(status, self.ev.duration),
            None => self
                .state
                .metrics
                .request(&self.ev.recipient, status, self.ev.duration),
        }
        self.ev.emit();
        self.done = true;
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if !self.done {
            self.ev.code = Some("client_closed");
            self.finish(499);
        }
        self.state.metrics.inflight(-1);
    }
}

async fn forward(
    state: &Arc<State>,
    route: &Arc<Route>,
    req: Request<Incoming>,
    rest: &str,
    ev: &mut RequestEvent,
) -> Result<Response<ProxyBody>, ProxyError> {
    let limits = &state.config.limits;
    let mut pace = Pace::new(limits, Instant::now());
    let (parts, incoming) = req.into_parts();

    // Header limits (hyper enforces them while parsing HTTP/1.1; this also
    // covers HTTP/2).
    if parts.headers.len() > limits.header_count {
        return Err(ProxyError::HeadersTooLarge("count"));
    }
    if headers::size(&parts.headers) > limits.header_bytes {
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

    let has_body = !incoming.is_end_stream();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let policy = route.engine.policy();
    let kind = body::classify(
        content_type,
        has_body,
        matches!(
            parts.method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        ),
        &policy.passthrough_content_types,
    )?;
    let encoding = parts.headers.get(header::CONTENT_ENCODING);
    let encoding_str = match encoding {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ProxyError::UnsupportedEncoding("(unprintable)".into()))?,
        ),
        None => None,
    };
    // A declared length over the limit is refused before anything is read or
    // sent (encoded bodies are checked as they decode).
    if encoding_str.is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"))
        && let Some(declared) = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        && declared > limits.body_bytes
    {
        return Err(ProxyError::TooLarge {
            limit: limits.body_bytes,
        });
    }

    let mut out_headers = headers::outbound(&parts.headers, &route.allow, &route.set);
    let path_and_query = if query.is_empty() {
        rest_or_root(&path.path).to_string()
    } else {
        format!("{}?{query}", rest_or_root(&path.path))
    };
    let uri = match &route.upstream {
        Upstream::Capture => None,
        Upstream::Http {
            scheme,
            authority,
            base_path,
        } => Some(
            Uri::builder()
                .scheme(scheme.clone())
                .authority(authority.clone())
                .path_and_query(format!("{base_path}{path_and_query}"))
                .build()
                .map_err(|_| ProxyError::Internal("upstream uri"))?,
        ),
    };
    let mut builder = Request::builder().method(parts.method.clone());
    if let Some(u) = &uri {
        builder = builder.uri(u.clone());
    }

    let client = route.client.as_ref().unwrap_or(&state.client);
    let response_timeout = state.config.upstream.response_timeout;

    match kind {
        BodyKind::Empty => {
            // The query's fields count like a body's.
            route.metrics.rewrite(&stats, 0, 0);
            ev.stats = stats;
            send_full(
                state,
                route,
                client,
                builder,
                out_headers,
                Bytes::new(),
                response_timeout,
                &path_and_query,
            )
            .await
        }
        BodyKind::Passthrough => {
            // Untouched, by the rule file's explicit choice; still limited.
            if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                out_headers.insert(header::CONTENT_TYPE, ct.clone());
            }
            if let Some(enc) = encoding {
                out_headers.insert(header::CONTENT_ENCODING, enc.clone());
            }
            let bytes = read_all(incoming, limits.body_bytes, &mut pace).await?;
            ev.bytes_in = bytes.len() as u64;
            ev.bytes_out = bytes.len() as u64;
            route.metrics.rewrite(&stats, ev.bytes_in, ev.bytes_out);
            ev.stats = stats;
            send_full(
                state,
                route,
                client,
                builder,
                out_headers,
                bytes,
                response_timeout,
                &path_and_query,
            )
            .await
        }
        BodyKind::Rewrite(format) => {
            let encoding = body::encoding(encoding_str)?;
            // scrim's own Content-Type: the caller's parameters stay behind.
            let ct = content_type.map_or_else(
                || body::outbound_content_type(format, ""),
                |ct| body::outbound_content_type(format, ct),
            );
            if let Ok(v) = HeaderValue::from_str(&ct) {
                out_headers.insert(header::CONTENT_TYPE, v);
            }
            let mut decoder = Decoder::new(encoding, limits.body_bytes);
            let mut rw = route.engine.body_rewriter(format);
            let mut pump = Pump {
                out: Vec::new(),
                bytes_in: 0,
                sent: 0,
                streaming: None,
                held: None,
            };
            let threshold = limits.stream_threshold_bytes;
            let result = read_and_rewrite(
                incoming,
                &mut decoder,
                &mut rw,
                &mut pump,
                &mut pace,
                threshold,
                state,
                route,
                client,
                &builder,
                &out_headers,
                &path_and_query,
            )
            .await;
            ev.bytes_in = pump.bytes_in;
            match result {
                Err(mut e) => {
                    if let Some(s) = pump.streaming.take() {
                        // A late error: the partner must not see a clean end
                        // of body.
                        s.sender
                            .abort("request refused after streaming began".into());
                        // The partner may have failed first (refused the
                        // connection, answered early): report that.
                        if s.task.is_finished() {
                            if let Ok(Err(upstream)) = s.task.await {
                                e = upstream;
                            }
                        } else {
                            s.task.abort();
                        }
                        ev.streamed = true;
                        ev.aborted = true;
                        state.metrics.upstream_error(&route.name, "aborted");
                        tracing::warn!(recipient = %route.name, code = e.code(), "streamed upstream request aborted");
                    }
                    Err(e)
                }
                Ok(body_stats) => {
                    stats.absorb(&body_stats);
                    stats.documents += body_stats.documents;
                    let room =
                        crate::rewrite::MAX_DROPPED_PATHS.saturating_sub(stats.dropped_paths.len());
                    stats
                        .dropped_paths
                        .extend(body_stats.dropped_paths.into_iter().take(room));
                    let out_len = pump.sent + pump.out.len() as u64;
                    ev.bytes_out = out_len;
                    route.metrics.rewrite(&stats, pump.bytes_in, out_len);
                    ev.stats = stats;
                    match pump.streaming.take() {
                        Some(mut s) => {
                            ev.streamed = true;
                            if !pump.out.is_empty() {
                                let last = Bytes::from(std::mem::take(&mut pump.out));
                                if s.sender.send_data(last).await.is_err() {
                                    s.task.abort();
                                    return Err(ProxyError::Unreachable("reset"));
                                }
                            }
                            drop(s.sender); // clean end of body
                            let mut task = s.task;
                            match tokio::time::timeout(response_timeout, &mut task).await {
                                Err(_) => {
                                    task.abort();
                                    Err(ProxyError::Timeout(response_timeout))
                                }
                                Ok(Ok(r)) => r,
                                Ok(Err(_)) => Err(ProxyError::Internal("upstream task")),
                            }
                        }
                        None => {
                            let bytes = Bytes::from(std::mem::take(&mut pump.out));
                            out_headers
                                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                            send_full(
                                state,
                                route,
                                client,
                                builder,
                                out_headers,
                                bytes,
                                response_timeout,
                                &path_and_query,
                            )
                            .await
                        }
                    }
                }
            }
        }
    }
}

fn rest_or_root(rest: &str) -> &str {
    if rest.is_empty() { "/" } else { rest }
}

/// Rewritten output waiting to go, and the streaming upstream request once
/// the body outgrew the buffering threshold.
struct Pump {
    out: Vec<u8>,
    bytes_in: u64,
    /// Bytes already handed to the streaming upstream request.
    sent: u64,
    streaming: Option<Streaming>,
    /// The share of `limits.buffer_bytes` that `out` holds until the body
    /// is sent whole (released when streaming begins, or with the pump).
    held: Option<OwnedSemaphorePermit>,
}

impl Pump {
    /// Takes budget for every byte `out` holds beyond what is held already;
    /// 503 when the budget is spent (nothing has been sent).
    fn hold(&mut self, budget: &Arc<Semaphore>) -> Result<(), ProxyError> {
        let held = self
            .held
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits);
        let need = self.out.len().saturating_sub(held);
        if need == 0 {
            return Ok(());
        }
        let more = u32::try_from(need)
            .ok()
            .and_then(|n| budget.clone().try_acquire_many_owned(n).ok())
            .ok_or(ProxyError::BufferFull)?;
        match self.held.as_mut() {
            Some(p) => p.merge(more),
            None => self.held = Some(more),
        }
        Ok(())
    }
}

struct Streaming {
    sender: Sender<Bytes, BoxError>,
    task: JoinHandle<Result<Response<ProxyBody>, ProxyError>>,
}

#[allow(clippy::too_many_arguments)]
async fn read_and_rewrite(
    mut incoming: Incoming,
    decoder: &mut Decoder,
    rw: &mut BodyRewriter<'_>,
    pump: &mut Pump,
    pace: &mut Pace,
    threshold: u64,
    state: &Arc<State>,
    route: &Arc<Route>,
    client: &super::upstream::HttpClient,
    builder: &http::request::Builder,
    out_headers: &http::HeaderMap,
    path_and_query: &str,
) -> Result<Stats, ProxyError> {
    loop {
        let (wait, why) = pace.next_wait();
        let frame = match tokio::time::timeout(wait, incoming.frame()).await {
            Err(_) => return Err(ProxyError::BodyTimeout(why)),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(ProxyError::BodyRead),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers are not forwarded
        };
        pace.received(data.len());
        {
            let out = &mut pump.out;
            let bytes_in = &mut pump.bytes_in;
            decoder.push(&data, &mut |decoded| {
                *bytes_in += decoded.len() as u64;
                rw.feed(decoded, out).map_err(ProxyError::Invalid)
            })?;
        }
        if pump.streaming.is_none()
            && pump.bytes_in > threshold
            && !matches!(route.upstream, Upstream::Capture)
        {
            let (sender, channel) = Channel::<Bytes, BoxError>::new(4);
            let mut h = out_headers.clone();
            h.remove(header::CONTENT_LENGTH);
            let req = finish_request(clone_builder(builder), h, channel.boxed())?;
            let state2 = state.clone();
            let route2 = route.clone();
            let client2 = client.clone();
            let pq = path_and_query.to_string();
            // The response timeout starts once the body is complete (see
            // `forward`), not while the caller is still uploading.
            let task = tokio::spawn(async move {
                send(&state2, &route2, &client2, req, None, &pq, Bytes::new()).await
            });
            pump.streaming = Some(Streaming { sender, task });
            pump.held = None; // what is held now goes out below
        }
        if pump.streaming.is_none() {
            pump.hold(&state.buffered)?;
        }
        if let Some(s) = pump.streaming.as_mut()
            && !pump.out.is_empty()
        {
            let chunk = Bytes::from(std::mem::take(&mut pump.out));
            pump.sent += chunk.len() as u64;
            if s.sender.send_data(chunk).await.is_err() {
                return Err(ProxyError::Unreachable("reset"));
            }
        }
    }
    {
        let out = &mut pump.out;
        let bytes_in = &mut pump.bytes_in;
        decoder.finish(&mut |decoded| {
            *bytes_in += decoded.len() as u64;
            rw.feed(decoded, out).map_err(ProxyError::Invalid)
        })?;
    }
    let stats = rw.finish(&mut pump.out).map_err(ProxyError::Invalid)?;
    if pump.streaming.is_none() {
        pump.hold(&state.buffered)?;
    }
    Ok(stats)
}

/// Sends a complete (buffered) body.
#[allow(clippy::too_many_arguments)]
async fn send_full(
    state: &Arc<State>,
    route: &Arc<Route>,
    client: &super::upstream::HttpClient,
    builder: http::request::Builder,
    headers: http::HeaderMap,
    bytes: Bytes,
    timeout: Duration,
    path_and_query: &str,
) -> Result<Response<ProxyBody>, ProxyError> {
    let req = finish_request(builder, headers, full(bytes.clone()))?;
    send(
        state,
        route,
        client,
        req,
        Some(timeout),
        path_and_query,
        bytes,
    )
    .await
}

fn clone_builder(b: &http::request::Builder) -> http::request::Builder {
    let mut nb = Request::builder();
    if let Some(m) = b.method_ref() {
        nb = nb.method(m.clone());
    }
    if let Some(u) = b.uri_ref() {
        nb = nb.uri(u.clone());
    }
    nb
}

fn finish_request(
    builder: http::request::Builder,
    headers: http::HeaderMap,
    body: ProxyBody,
) -> Result<Request<ProxyBody>, ProxyError> {
    let mut req = builder
        .body(body)
        .map_err(|_| ProxyError::Internal("request build"))?;
    *req.headers_mut() = headers;
    Ok(req)
}

/// How fast a request body must come: the next chunk within the idle
/// timeout; after the grace time, on average at least the minimum data rate
/// (Kestrel's `MinRequestBodyDataRate`); the whole request within the
/// deadline. A client that trickles its body is cut with 408 and its slot
/// freed, instead of holding it for as long as it keeps each gap under the
/// idle timeout.
pub(crate) struct Pace {
    start: Instant,
    idle: Duration,
    min_rate: u64,
    grace: Duration,
    deadline: Option<Duration>,
    received: u64,
}

impl Pace {
    fn new(limits: &crate::config::Limits, start: Instant) -> Pace {
        Pace {
            start,
            idle: limits.body_idle_timeout,
            min_rate: limits.body_min_rate,
            grace: limits.body_min_rate_grace,
            deadline: limits.request_deadline,
            received: 0,
        }
    }

    fn received(&mut self, n: usize) {
        self.received += n as u64;
    }

    /// How long to wait for the next chunk, and what it is that runs out.
    fn next_wait(&self) -> (Duration, &'static str) {
        let elapsed = self.start.elapsed();
        let mut wait = (self.idle, "no data within the idle timeout");
        if self.min_rate > 0 {
            // By `grace + received / rate`, the average since the grace
            // time falls below the rate.
            let due =
                self.grace + Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
            let left = due.saturating_sub(elapsed);
            if left < wait.0 {
                wait = (left, "below the minimum data rate");
            }
        }
        if let Some(d) = self.deadline {
            let left = d.saturating_sub(elapsed);
            if left < wait.0 {
                wait = (left, "past the request deadline");
            }
        }
        wait
    }
}

/// Reads a whole body under the size limit and the body's pace.
async fn read_all(
    mut incoming: Incoming,
    limit: u64,
    pace: &mut Pace,
) -> Result<Bytes, ProxyError> {
    let mut buf = Vec::new();
    loop {
        let (wait, why) = pace.next_wait();
        match tokio::time::timeout(wait, incoming.frame()).await {
            Err(_) => return Err(ProxyError::BodyTimeout(why)),
            Ok(None) => return Ok(Bytes::from(buf)),
            Ok(Some(Err(_))) => return Err(ProxyError::BodyRead),
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    pace.received(d.len());
                    if buf.len() as u64 + d.len() as u64 > limit {
                        return Err(ProxyError::TooLarge { limit });
                    }
                    buf.extend_from_slice(&d);
                }
            }
        }
    }
}

/// Sends the minimised request upstream (or to the capture log) and relays
/// the response.
async fn send(
    state: &Arc<State>,
    route: &Arc<Route>,
    client: &super::upstream::HttpClient,
    req: Request<ProxyBody>,
    timeout: Option<Duration>,
    path_and_query: &str,
    captured_body: Bytes,
) -> Result<Response<ProxyBody>, ProxyError> {
    if let Upstream::Capture = route.upstream {
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                let shown = if route.set.iter().any(|(n, _)| n == k) {
                    "(set by rule)".to_string()
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                };
                (k.as_str().to_string(), shown)
            })
            .collect();
        let shown = &captured_body[..captured_body.len().min(64 * 1024)];
        let captured = Captured {
            at: 0,
            recipient: route.name.clone(),
            method: req.method().to_string(),
            path: path_and_query.to_string(),
            headers,
            body: String::from_utf8_lossy(shown).into_owned(),
            body_bytes: captured_body.len(),
        };
        tracing::info!(
            target: "scrim::capture",
            recipient = %route.name,
            method = %captured.method,
            body_bytes = captured.body_bytes,
            "captured (not forwarded): see /captured on the admin listener"
        );
        state.captured.record(captured);
        state.metrics.captured();
        let mut resp = Response::new(full(Bytes::from_static(b"{\"captured\":true}")));
        *resp.status_mut() = StatusCode::ACCEPTED;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(resp);
    }
    let sent = client.request(req);
    let result = match timeout {
        Some(t) => match tokio::time::timeout(t, sent).await {
            Err(_) => return Err(ProxyError::Timeout(t)),
            Ok(r) => r,
        },
        None => sent.await,
    };
    let resp = match result {
        Err(e) => {
            return Err(ProxyError::Unreachable(if e.is_connect() {
                "connect"
            } else {
                "reset"
            }));
        }
        Ok(r) => r,
    };
    let (mut parts, body) = resp.into_parts();
    headers::inbound_response(&mut parts.headers);
    let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(min_rate: u64, grace_ms: u64, deadline_ms: Option<u64>, idle_ms: u64) -> Pace {
        Pace {
            start: Instant::now(),
            idle: Duration::from_millis(idle_ms),
            min_rate,
            grace: Duration::from_millis(grace_ms),
            deadline: deadline_ms.map(Duration::from_millis),
            received: 0,
        }
    }

    #[test]
    fn the_nearest_of_idle_rate_and_deadline_decides() {
        // Nothing received: the rate runs out when the grace does.
        let (wait, why) = pace(240, 5_000, Some(60_000), 15_000).next_wait();
        assert!(wait <= Duration::from_millis(5_000) && wait > Duration::from_millis(4_900));
        assert_eq!(why, "below the minimum data rate");
        // 4,800 bytes in: twenty more seconds of credit, so the idle timeout
        // comes first.
        let mut p = pace(240, 5_000, Some(60_000), 15_000);
        p.received(4_800);
        let (wait, why) = p.next_wait();
        assert!(wait > Duration::from_millis(14_900), "{wait:?}");
        assert_eq!(why, "no data within the idle timeout");
        // A fast body still has to end by the deadline.
        let mut p = pace(240, 5_000, Some(1_000), 15_000);
        p.received(1 << 20);
        assert_eq!(p.next_wait().1, "past the request deadline");
        // Both limits off: only the idle timeout.
        let (wait, why) = pace(0, 5_000, None, 15_000).next_wait();
        assert_eq!(
            (wait, why),
            (
                Duration::from_millis(15_000),
                "no data within the idle timeout"
            )
        );
    }
}
