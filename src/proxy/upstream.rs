//! Where a minimised request goes: the [`Upstream`] trait and its two
//! implementations, the partner over HTTP ([`HttpUpstream`]) and the
//! built-in capture upstream ([`CaptureUpstream`]).
//!
//! The HTTP client is pooled (hyper-util legacy client with its pool timer
//! set, so idle connections really expire), rustls with verified
//! certificates, HTTP/2 when the partner offers it.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Response, Uri};
use http_body_util::BodyExt;
use http_body_util::channel::{Channel, Sender};
use hyper::body::{Body, Frame, Incoming};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use serde::Serialize;
use tokio::task::JoinHandle;

use super::error::{ProxyError, Unreachable};
use super::handler::outbound::{OutboundBody, OutboundHead, RewritingBody};
use super::routes::{Destination, Route};
use super::{ProxyBody, State, full, headers};
use crate::config::{Roots, UpstreamConfig};

/// Where a minimised request goes.
///
/// The request path builds the outbound head with [`Upstream::target`],
/// reads the body whole or lets it stream as [`Upstream::streams`] allows,
/// and hands both to [`Upstream::send`]. The body is an [`OutboundBody`]:
/// the rewriter's output (or no body, or a body the rule file lets through
/// untouched), never the caller's bytes otherwise.
pub(crate) trait Upstream {
    /// The URI for the rewritten `path` (starting with `/`) and `query`
    /// (empty: none). 500 `internal` if they do not make one.
    fn target(&self, path: &str, query: &str) -> Result<Uri, ProxyError>;

    /// Whether a body over `limits.stream_threshold_bytes` may stream to
    /// this upstream. Default: it may; an upstream that needs bodies whole
    /// says no, and then every body is read whole under the buffer budget.
    fn streams(&self) -> bool {
        true
    }

    /// Sends the request and gives the answer: the partner's response, or
    /// that it was recorded instead. Failures are 502 (`connect`, `reset`)
    /// and 504 (no response head within `upstream.response_timeout` once
    /// the body is sent); a streaming body's own refusal aborts the request
    /// and is returned.
    async fn send(
        &self,
        head: OutboundHead,
        body: OutboundBody<'_, '_>,
    ) -> Result<Reply, ProxyError>;
}

/// What an upstream answered.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The partner's response, cleaned (hop-by-hop fields and `Set-Cookie`
    /// removed), to relay to the caller.
    Relayed(Response<ProxyBody>),
    /// Recorded by the capture upstream; nothing was sent.
    Captured,
    /// Folded into an aggregate recipient's windows; nothing was sent.
    Stored(super::aggregate::Stored),
    /// Every event withheld (consent, GPC, suppression); nothing was sent.
    /// The number of events.
    Withheld(u64),
}

/// A recipient's upstream, either implementation, chosen per request
/// without boxing.
pub(crate) enum RouteUpstream<'a> {
    /// The partner over HTTP(S).
    Http(HttpUpstream<'a>),
    /// The capture upstream.
    Capture(CaptureUpstream<'a>),
    /// An aggregate recipient's store.
    Store(super::aggregate::StoreUpstream<'a>),
}

impl<'a> RouteUpstream<'a> {
    /// The upstream of `route`.
    pub(crate) fn of(route: &'a Route, state: &'a State) -> RouteUpstream<'a> {
        let policy = route.engine.policy();
        if let Some(rules) = &policy.aggregate {
            return RouteUpstream::Store(super::aggregate::StoreUpstream {
                recipient: &route.name,
                rules,
                records: policy.records.as_ref(),
                aggregates: &state.aggregates,
            });
        }
        match &route.upstream {
            Destination::Capture => RouteUpstream::Capture(CaptureUpstream {
                log: &state.captured,
                recipient: &route.name,
                set: &route.set,
            }),
            Destination::Http {
                scheme,
                authority,
                base_path,
            } => RouteUpstream::Http(HttpUpstream {
                client: route.client.as_ref().unwrap_or_else(|| state.client()),
                scheme,
                authority,
                base_path,
                response_timeout: state.config.upstream.response_timeout,
            }),
        }
    }
}

impl Upstream for RouteUpstream<'_> {
    fn target(&self, path: &str, query: &str) -> Result<Uri, ProxyError> {
        match self {
            RouteUpstream::Http(u) => u.target(path, query),
            RouteUpstream::Capture(u) => u.target(path, query),
            RouteUpstream::Store(u) => u.target(path, query),
        }
    }

    fn streams(&self) -> bool {
        match self {
            RouteUpstream::Http(u) => u.streams(),
            RouteUpstream::Capture(u) => u.streams(),
            RouteUpstream::Store(u) => u.streams(),
        }
    }

    async fn send(
        &self,
        head: OutboundHead,
        body: OutboundBody<'_, '_>,
    ) -> Result<Reply, ProxyError> {
        match self {
            RouteUpstream::Http(u) => u.send(head, body).await,
            RouteUpstream::Capture(u) => u.send(head, body).await,
            RouteUpstream::Store(u) => u.send(head, body).await,
        }
    }
}

/// `path` and `query` after `base`, in one allocation.
fn path_and_query(base: &str, path: &str, query: &str) -> String {
    let mut pq = String::with_capacity(base.len() + path.len() + 1 + query.len());
    pq.push_str(base);
    pq.push_str(path);
    if !query.is_empty() {
        pq.push('?');
        pq.push_str(query);
    }
    pq
}

/// The partner over HTTP(S), through the pooled client.
pub(crate) struct HttpUpstream<'a> {
    client: &'a HttpClient,
    scheme: &'a Scheme,
    authority: &'a Authority,
    /// Base path of the upstream URL, without trailing slash.
    base_path: &'a str,
    response_timeout: Duration,
}

impl Upstream for HttpUpstream<'_> {
    fn target(&self, path: &str, query: &str) -> Result<Uri, ProxyError> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query(self.base_path, path, query))
            .build()
            .map_err(|_| ProxyError::Internal("upstream uri"))
    }

    async fn send(
        &self,
        mut head: OutboundHead,
        body: OutboundBody<'_, '_>,
    ) -> Result<Reply, ProxyError> {
        let body = match body {
            OutboundBody::Whole(whole) => whole.into_bytes(&mut head.headers),
            OutboundBody::Streaming(body) => return self.stream(head, body).await,
        };
        let sent = self.client.request(head.into_request(full(body)));
        match tokio::time::timeout(self.response_timeout, sent).await {
            Err(_) => Err(ProxyError::Timeout(self.response_timeout)),
            Ok(result) => relay(result).map(Reply::Relayed),
        }
    }
}

impl HttpUpstream<'_> {
    /// Sends a body that outgrew the buffering threshold: the request starts
    /// with what is rewritten so far and takes each rewritten frame as it
    /// comes. A refusal after that aborts it, so the partner never sees a
    /// clean end of body.
    async fn stream(
        &self,
        mut head: OutboundHead,
        body: &mut RewritingBody<'_>,
    ) -> Result<Reply, ProxyError> {
        let (sender, channel) = Channel::<Bytes, BoxError>::new(4);
        head.headers.remove(header::CONTENT_LENGTH);
        let request = head.into_request(channel.boxed());
        let client = self.client.clone();
        // The response timeout starts once the body is complete (`end`), not
        // while the caller is still uploading.
        let task = tokio::spawn(async move { relay(client.request(request).await) });
        let mut request = StreamingRequest {
            sender: Some(sender),
            task,
        };
        while let Some(frame) = body.frame().await {
            let chunk = match frame.map(Frame::into_data) {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(_)) => continue,
                Err(e) => return Err(request.abort(e).await),
            };
            if request.send(chunk).await.is_err() {
                if body.is_end_stream() {
                    // The last frame: the whole body was rewritten.
                    request.task.abort();
                    return Err(ProxyError::Unreachable(Unreachable::Reset));
                }
                let e = body.fail(ProxyError::Unreachable(Unreachable::Reset));
                return Err(request.abort(e).await);
            }
        }
        request.end(self.response_timeout).await.map(Reply::Relayed)
    }
}

/// A request whose body is still being sent. Dropped before it ends (the
/// caller went away), it is aborted, never ended cleanly.
struct StreamingRequest {
    sender: Option<Sender<Bytes, BoxError>>,
    task: JoinHandle<Result<Response<ProxyBody>, ProxyError>>,
}

impl StreamingRequest {
    async fn send(&mut self, chunk: Bytes) -> Result<(), ()> {
        match self.sender.as_mut() {
            Some(sender) => sender.send_data(chunk).await.map_err(|_| ()),
            None => Err(()),
        }
    }

    /// A late refusal: the partner must not see a clean end of body. The
    /// partner may have failed first (refused the connection, answered
    /// early): then that is the error.
    async fn abort(mut self, mut e: ProxyError) -> ProxyError {
        if let Some(sender) = self.sender.take() {
            sender.abort("request refused after streaming began".into());
        }
        if self.task.is_finished() {
            if let Ok(Err(upstream)) = (&mut self.task).await {
                e = upstream;
            }
        } else {
            self.task.abort();
        }
        e
    }

    /// A clean end of body, then the response head within `timeout`.
    async fn end(mut self, timeout: Duration) -> Result<Response<ProxyBody>, ProxyError> {
        drop(self.sender.take());
        match tokio::time::timeout(timeout, &mut self.task).await {
            Err(_) => {
                self.task.abort();
                Err(ProxyError::Timeout(timeout))
            }
            Ok(Ok(response)) => response,
            Ok(Err(_)) => Err(ProxyError::Internal("upstream task")),
        }
    }
}

impl Drop for StreamingRequest {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.abort("request abandoned before its body ended".into());
        }
    }
}

/// The partner's answer as it goes back to the caller: hop-by-hop fields
/// and `Set-Cookie` removed. No answer is 502.
fn relay(
    result: Result<Response<Incoming>, hyper_util::client::legacy::Error>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let response =
        result.map_err(|e| ProxyError::Unreachable(Unreachable::classify(&e, e.is_connect())))?;
    let (mut parts, body) = response.into_parts();
    headers::inbound_response(&mut parts.headers);
    let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
    Ok(Response::from_parts(parts, body))
}

/// The built-in capture upstream: records what would have left (see
/// `/captured` on the admin listener) and sends nothing.
pub(crate) struct CaptureUpstream<'a> {
    log: &'a CaptureLog,
    recipient: &'a str,
    /// The rule file's set headers, shown as `(set by rule)`.
    set: &'a [(HeaderName, HeaderValue)],
}

impl Upstream for CaptureUpstream<'_> {
    fn target(&self, path: &str, query: &str) -> Result<Uri, ProxyError> {
        Uri::try_from(path_and_query("", path, query))
            .map_err(|_| ProxyError::Internal("upstream uri"))
    }

    /// Records whole bodies only.
    fn streams(&self) -> bool {
        false
    }

    async fn send(
        &self,
        mut head: OutboundHead,
        body: OutboundBody<'_, '_>,
    ) -> Result<Reply, ProxyError> {
        let OutboundBody::Whole(whole) = body else {
            return Err(ProxyError::Internal(
                "capture upstream given a streaming body",
            ));
        };
        let body = whole.into_bytes(&mut head.headers);
        let captured = self.record_of(&head, &body);
        tracing::info!(
            target: "scrim::capture",
            recipient = %self.recipient,
            method = %captured.method,
            body_bytes = captured.body_bytes,
            "captured (not forwarded): see /captured on the admin listener"
        );
        self.log.record(captured);
        Ok(Reply::Captured)
    }
}

impl CaptureUpstream<'_> {
    /// The record of `head` and `body`: headers set by the rule file shown
    /// as `(set by rule)`, the body's first 64 KiB as text.
    fn record_of(&self, head: &OutboundHead, body: &Bytes) -> Captured {
        let headers = head
            .headers
            .iter()
            .map(|(k, v)| {
                let shown = if self.set.iter().any(|(n, _)| n == k) {
                    "(set by rule)".to_string()
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                };
                (k.as_str().to_string(), shown)
            })
            .collect();
        let shown = &body[..body.len().min(64 * 1024)];
        Captured {
            at: 0,
            recipient: self.recipient.to_string(),
            method: head.method.to_string(),
            path: head
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_string(),
            headers,
            body: String::from_utf8_lossy(shown).into_owned(),
            body_bytes: body.len(),
        }
    }
}

/// The pooled HTTPS (and loopback / in-cluster HTTP) client.
pub type HttpClient = Client<Deadline<HttpsConnector<HttpConnector>>, ProxyBody>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bounds the whole connection set-up, TCP connect and TLS handshake, by
/// `upstream.connect_timeout_ms`: a partner that accepts TCP and then
/// stalls the handshake is cut off like one that never answers (502,
/// `kind="connect"`), not left to the response timeout.
#[derive(Clone, Debug)]
pub struct Deadline<C> {
    inner: C,
    timeout: Duration,
}

impl<C> tower_service::Service<http::Uri> for Deadline<C>
where
    C: tower_service::Service<http::Uri>,
    C::Response: Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(done) => done.map_err(Into::into),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection set-up (TCP and TLS) timed out",
                )
                .into()),
            }
        })
    }
}

/// Why a TLS setup (a client's roots, the listener's certificate and key)
/// failed. Names files and the problem; never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("{}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file is malformed.
    #[error("{}: invalid PEM: {source}", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{}: no certificate found", .path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key.
    #[error("{}: no private key found", .path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate rustls cannot use.
    #[error("{}: unusable CA certificate: {source}", .path.display())]
    UnusableCa {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// `upstream.roots = "system"` and the system has none.
    #[error("upstream.roots = \"system\" but no system certificates were found")]
    NoSystemRoots,
    /// The client certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rustls refused the configuration (protocol versions, the key).
    #[error("TLS setup: {0}")]
    Setup(#[from] rustls::Error),
}

/// Reads PEM certificates.
pub fn read_pem_certs(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let certs = certs.map_err(|source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Builds a client trusting the configured roots plus `extra_ca` files.
pub fn build_client(cfg: &UpstreamConfig, extra_ca: &[&Path]) -> Result<HttpClient, TlsError> {
    let mut roots = RootCertStore::empty();
    match cfg.roots {
        Roots::Webpki => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    let mut extra: Vec<&Path> = extra_ca.to_vec();
    if let Some(p) = cfg.extra_ca_file.as_deref() {
        extra.push(p);
    }
    for path in extra {
        for cert in read_pem_certs(path)? {
            roots.add(cert).map_err(|source| TlsError::UnusableCa {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let connector = Deadline {
        inner: https,
        timeout: cfg.connect_timeout,
    };
    Ok(Client::builder(TokioExecutor::new())
        // Without a pool timer the idle timeout is never enforced.
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(cfg.pool_idle_timeout)
        .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
        .build(connector))
}

/// What the capture upstream recorded: exactly what would have left.
#[derive(Debug, Clone, Serialize)]
pub struct Captured {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// Recipient.
    pub recipient: String,
    /// Method.
    pub method: String,
    /// Path and minimised query.
    pub path: String,
    /// Headers that would have been sent (credentials set by the rule file
    /// shown as `(set by rule)`).
    pub headers: Vec<(String, String)>,
    /// Body as text (first 64 KiB).
    pub body: String,
    /// Full body length.
    pub body_bytes: usize,
}

/// Bounded ring of captured requests.
#[derive(Debug)]
pub struct CaptureLog {
    max: usize,
    items: Mutex<VecDeque<Captured>>,
}

impl CaptureLog {
    /// Keeps the last `max` requests.
    pub fn new(max: usize) -> CaptureLog {
        CaptureLog {
            max,
            items: Mutex::new(VecDeque::new()),
        }
    }

    /// Records one request.
    pub fn record(&self, mut c: Captured) {
        if self.max == 0 {
            return;
        }
        c.at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        while items.len() >= self.max {
            items.pop_front();
        }
        items.push_back(c);
    }

    /// The captured requests, oldest first.
    pub fn snapshot(&self) -> Vec<Captured> {
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
