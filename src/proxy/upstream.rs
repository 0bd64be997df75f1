//! The upstream client: pooled (hyper-util legacy client with its pool timer
//! set, so idle connections really expire), rustls with verified
//! certificates, HTTP/2 when the partner offers it; and the built-in capture
//! upstream.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use serde::Serialize;

use super::ProxyBody;
use crate::config::{Roots, UpstreamConfig};

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

/// Reads PEM certificates.
pub fn read_pem_certs(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let certs = certs.map_err(|e| format!("{}: invalid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// Builds a client trusting the configured roots plus `extra_ca` files.
pub fn build_client(cfg: &UpstreamConfig, extra_ca: &[&Path]) -> Result<HttpClient, String> {
    let mut roots = RootCertStore::empty();
    match cfg.roots {
        Roots::Webpki => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(
                    "upstream.roots = \"system\" but no system certificates were found".into(),
                );
            }
        }
    }
    let mut extra: Vec<&Path> = extra_ca.to_vec();
    if let Some(p) = cfg.extra_ca_file.as_deref() {
        extra.push(p);
    }
    for path in extra {
        for cert in read_pem_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
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
