//! The admin listener (loopback by default): `/metrics`, `/healthz`,
//! `/readyz`, `/rules`, `/captured`. Nothing it serves holds a key or a
//! header credential.
//!
//! It sees the gateway through an [`AdminView`]: the metrics, the rule
//! store, the readiness flag, the active key id, and two read-only probes
//! (captured requests, aggregate windows) that the proxy hands in. It
//! cannot reach the request path, the upstream client or a key.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::metrics::Metrics;
use super::rules::{Loaded, RuleStore};

/// A read-only look at something the admin listener shows.
pub type Probe<T> = Box<dyn Fn() -> T + Send + Sync>;

/// What the admin listener may see.
pub struct AdminView<S: Loaded> {
    /// The metrics, for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The rules in force and the last refused reload, for `/rules`.
    pub rules: Arc<RuleStore<S>>,
    /// Rules loaded and listeners up (false again while draining).
    pub ready: Arc<AtomicBool>,
    /// The active key id (never key material).
    pub key_id: String,
    /// The capture upstream's records, as JSON, for `/captured`.
    pub captured: Probe<serde_json::Value>,
    /// Per aggregate recipient: open windows and unsent reports.
    pub windows: Probe<BTreeMap<String, (u64, u64)>>,
    /// Whether the suppression lists were loaded and their store answers.
    pub suppression: Probe<crate::consent::source::Health>,
}

/// Serves the admin endpoints until the task is aborted.
pub async fn serve<S: Loaded>(state: Arc<AdminView<S>>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            b.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            let _ = b.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// Admin routing.
pub fn route<S: Loaded>(state: &AdminView<S>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != http::Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.encode(),
        ),
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let policies = state.rules.policies();
            let lists_used = policies.iter().any(|p| p.suppress.is_some());
            let lists = (state.suppression)();
            if lists_used && !lists.loaded {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready: suppression lists not loaded\n".into(),
                )
            } else if state.ready.load(Ordering::SeqCst) && !policies.is_empty() {
                let text = if lists_used && !lists.store_up {
                    "ready (suppression lists: store unreachable, serving the last good copy)\n"
                } else {
                    "ready\n"
                };
                respond(StatusCode::OK, "text/plain", text.into())
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready\n".into(),
                )
            }
        }
        "/rules" => respond(StatusCode::OK, "application/json", rules_json(state)),
        "/captured" => respond(
            StatusCode::OK,
            "application/json",
            serde_json::to_string_pretty(&(state.captured)()).unwrap_or_else(|_| "[]".into()),
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// The `/rules` view: per recipient, selectors and action names (no values,
/// no credentials, no key material), and the last refused reload (file,
/// line, message of each problem) until a load succeeds.
pub fn rules_json<S: Loaded>(state: &AdminView<S>) -> String {
    let mut policies = state.rules.policies();
    policies.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    let windows = (state.windows)();
    let list: Vec<serde_json::Value> = policies
        .iter()
        .map(|p| {
            serde_json::json!({
                "recipient": p.recipient,
                "version": p.version,
                "source": p.source.display().to_string(),
                "upstream": p.upstream,
                "hosts": p.hosts,
                "fields": p.fields.rules().iter().map(|r| serde_json::json!({"selector": r.text, "action": r.action.name()})).collect::<Vec<_>>(),
                "query": p.query.rules().iter().map(|r| serde_json::json!({"selector": r.text, "action": r.action.name()})).collect::<Vec<_>>(),
                "paths": p.paths.as_ref().map(|r| r.templates.iter().map(|t| t.text.clone()).collect::<Vec<_>>()),
                "path_params": p.paths.as_ref().map_or_else(Vec::new, |r| r.params.iter().map(|pp| serde_json::json!({"name": pp.name, "action": pp.action.name()})).collect::<Vec<_>>()),
                "headers_allowed": p.headers.allow,
                "headers_set": p.headers.set.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                "rate_limit": p.rate_limit.map(|rl| serde_json::json!({"per_second": rl.per_second.get(), "burst": rl.burst.get()})),
                "key_id": state.key_id,
                "mode": match p.mode {
                    crate::policy::aggregate::Mode::Forward => "forward",
                    crate::policy::aggregate::Mode::Aggregate => "aggregate",
                },
                "aggregate": p.aggregate.as_ref().map(|a| {
                    let (open, unsent) = windows.get(&p.recipient).copied().unwrap_or((0, 0));
                    serde_json::json!({
                        "window": crate::policy::aggregate::show_secs(a.window_secs),
                        "lateness": crate::policy::aggregate::show_secs(a.lateness_secs),
                        "k": a.k,
                        "group_by": a.group_by.iter().map(|g| g.text.clone()).collect::<Vec<_>>(),
                        "measures": a.measures.iter().map(|m| serde_json::json!({"name": m.name, "kind": m.kind.label()})).collect::<Vec<_>>(),
                        "noise": a.noise.map(|n| serde_json::json!({"mechanism": "laplace", "epsilon": n.epsilon})),
                        "open_windows": open,
                        "unsent_reports": unsent,
                    })
                }),
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "recipients": list,
        "last_reload_error": state.rules.last_error(),
    }))
    .unwrap_or_default()
}
