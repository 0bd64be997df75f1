//! Shared helpers for the gateway integration tests: a temp dir, a recording
//! upstream (plain or TLS, with failure modes), an HTTP client, certificates
//! and a way to start scrim in-process with rule files in a temp dir.

#![allow(dead_code)]

pub mod leaks;
pub mod redis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use scrim::config::Config;
use scrim::proxy::Running;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

// ---------------------------------------------------------------------------
// Temp dir
// ---------------------------------------------------------------------------

/// A directory under the system temp dir, removed (recursively) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).expect("os rng");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "scrim-gw-{tag}-{}-{}-{nanos:x}-{:016x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            u64::from_le_bytes(rnd)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }

    /// Writes a file atomically (write a sibling, then rename).
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        write_atomic(&self.path.join(name), contents.as_ref());
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes `path` through a temporary sibling and a rename, so a concurrent
/// reader sees the old or the new file, never half of one.
pub fn write_atomic(path: &Path, contents: &[u8]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!("tmp{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename temp file");
}

// ---------------------------------------------------------------------------
// Recording upstream
// ---------------------------------------------------------------------------

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as on the request line.
    pub path: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    /// Body bytes received so far (exact).
    pub body: Vec<u8>,
    /// The body ended cleanly.
    pub complete: bool,
    /// Reading the body failed (connection reset, truncated chunking...).
    pub body_error: bool,
}

impl Recorded {
    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("utf-8 body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
    }

    /// Lower-case header names, sorted, with repeats.
    pub fn header_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .headers
            .keys()
            .map(|k| k.as_str().to_string())
            .collect();
        v.sort();
        v
    }
}

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long after the body was read, before answering.
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: &str) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn status(mut self, s: u16) -> Reply {
        self.status = s;
        self
    }

    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// How the upstream behaves.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Records the request and answers.
    Reply(Reply),
    /// Records the request, reads the body, then never answers.
    Hang,
    /// Reads the request head, then resets the TCP connection.
    Reset,
    /// Reads the request head, then answers bytes that are not HTTP.
    Garbage,
    /// Answers 200 with a body of `total` bytes (byte `i` is `i % 251`) in
    /// `chunk`-sized frames. After the first frame it waits until `gate` is
    /// notified, so a test can prove the body streams through: a proxy that
    /// buffered the whole response would never deliver that first frame.
    Stream {
        total: usize,
        chunk: usize,
        gate: Arc<tokio::sync::Notify>,
    },
}

/// Byte `i` of a [`Mode::Stream`] body.
pub fn stream_byte(i: usize) -> u8 {
    (i % 251) as u8
}

#[derive(Default)]
struct Shared {
    records: Mutex<Vec<Recorded>>,
    connections: AtomicUsize,
    bytes: AtomicUsize,
    notify: tokio::sync::Notify,
}

/// A recording upstream on 127.0.0.1, port 0.
pub struct Upstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts the bytes read from the wrapped stream.
struct Counting<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.shared.bytes.fetch_add(n, Ordering::SeqCst);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Upstream {
    /// A plain HTTP upstream (HTTP/1.1 and h2c).
    pub async fn start(mode: Mode) -> Upstream {
        Self::start_inner(mode, None).await
    }

    /// Answers 200 `{"ok":true}`.
    pub async fn ok() -> Upstream {
        Self::start(Mode::Reply(Reply::ok("{\"ok\":true}"))).await
    }

    /// A TLS upstream.
    pub async fn start_tls(mode: Mode, tls: Arc<rustls::ServerConfig>) -> Upstream {
        Self::start_inner(mode, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_inner(mode: Mode, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                sh.connections.fetch_add(1, Ordering::SeqCst);
                sh.notify.notify_waiters();
                let sh = sh.clone();
                let mode = mode.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match mode {
                        Mode::Reset | Mode::Garbage => raw_misbehave(stream, &mode, sh).await,
                        _ => {
                            let counted = Counting {
                                inner: stream,
                                shared: sh.clone(),
                            };
                            match tls {
                                None => serve_http(TokioIo::new(counted), mode, sh).await,
                                Some(acc) => {
                                    if let Ok(s) = acc.accept(counted).await {
                                        serve_http(TokioIo::new(s), mode, sh).await;
                                    }
                                }
                            }
                        }
                    }
                });
            }
        });
        Upstream { addr, shared, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn records(&self) -> Vec<Recorded> {
        self.shared.records.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn bytes_received(&self) -> usize {
        self.shared.bytes.load(Ordering::SeqCst)
    }

    /// The only request received, which must be complete.
    pub fn only(&self) -> Recorded {
        let r = self.records();
        assert_eq!(r.len(), 1, "upstream received {} requests: {r:#?}", r.len());
        assert!(r[0].complete, "request not complete: {:#?}", r[0]);
        r[0].clone()
    }

    /// Asserts the upstream never saw a connection, a byte or a request.
    pub fn assert_untouched(&self) {
        assert_eq!(
            self.records().len(),
            0,
            "upstream received requests: {:#?}",
            self.records()
        );
        assert_eq!(self.bytes_received(), 0, "upstream received bytes");
        assert_eq!(self.connections(), 0, "upstream accepted connections");
    }

    /// Waits until `pred` holds over the records (or the timeout passes).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.records();
            if pred(&r) || Instant::now() >= deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn raw_misbehave(mut stream: TcpStream, mode: &Mode, sh: Arc<Shared>) {
    // Read until the end of the request head.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                sh.bytes.fetch_add(n, Ordering::SeqCst);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    match mode {
        Mode::Reset => {
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream); // RST
        }
        Mode::Garbage => {
            let _ = stream
                .write_all(b"\x00\x01\x02 this is not HTTP at all \xff\xfe\r\n\r\n")
                .await;
            let _ = stream.flush().await;
            let _ = stream.shutdown().await;
        }
        _ => unreachable!(),
    }
}

async fn serve_http<I>(io: I, mode: Mode, sh: Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let sh = sh.clone();
        let mode = mode.clone();
        async move { Ok::<_, std::convert::Infallible>(record_and_answer(req, mode, sh).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

async fn record_and_answer(req: Request<Incoming>, mode: Mode, sh: Arc<Shared>) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    let index = {
        let mut records = sh.records.lock().unwrap();
        records.push(Recorded {
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            version: parts.version,
            headers: parts.headers.clone(),
            body: Vec::new(),
            complete: false,
            body_error: false,
        });
        records.len() - 1
    };
    sh.notify.notify_waiters();
    loop {
        match body.frame().await {
            None => {
                sh.records.lock().unwrap()[index].complete = true;
                break;
            }
            Some(Err(_)) => {
                sh.records.lock().unwrap()[index].body_error = true;
                break;
            }
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    sh.records.lock().unwrap()[index].body.extend_from_slice(&d);
                }
            }
        }
    }
    sh.notify.notify_waiters();
    match mode {
        Mode::Reply(r) => {
            if !r.delay.is_zero() {
                tokio::time::sleep(r.delay).await;
            }
            let mut resp = Response::new(full_body(r.body.clone()));
            *resp.status_mut() = StatusCode::from_u16(r.status).unwrap();
            for (k, v) in &r.headers {
                resp.headers_mut().append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(v).unwrap(),
                );
            }
            resp
        }
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(full_body(Bytes::new()))
        }
        Mode::Stream { total, chunk, gate } => {
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(4);
            tokio::spawn(async move {
                let mut sent = 0;
                while sent < total {
                    let n = chunk.min(total - sent);
                    let frame: Vec<u8> = (sent..sent + n).map(stream_byte).collect();
                    if tx.send_data(Bytes::from(frame)).await.is_err() {
                        return;
                    }
                    if sent == 0 {
                        gate.notified().await;
                    }
                    sent += n;
                }
            });
            let mut resp = Response::new(body.boxed());
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            );
            resp
        }
        Mode::Reset | Mode::Garbage => unreachable!(),
    }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

pub type HttpClient = Client<HttpConnector, Body>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build_http()
}

pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub fn full_body(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the JSON error shape and returns (code, message, recipient).
    pub fn error(&self) -> (String, String, serde_json::Value) {
        let v = self.json();
        let e = v
            .get("error")
            .unwrap_or_else(|| panic!("no `error` in {v}"));
        let obj = e.as_object().expect("error is an object");
        let mut keys: Vec<&String> = obj.keys().collect();
        keys.sort();
        assert_eq!(keys, ["code", "message", "recipient"], "error keys in {v}");
        (
            e["code"].as_str().expect("code string").to_string(),
            e["message"].as_str().expect("message string").to_string(),
            e["recipient"].clone(),
        )
    }
}

/// Builds a request.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Body> {
    let body = body.into();
    leaks::audit().record_request(url, headers, &body);
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(full_body(body)).unwrap()
}

/// A JSON POST whose body is not added to the leak audit's pool: for bulk
/// synthetic bodies (thousands of counters such as `e21091`, which random
/// hex digests in `/rules` contain by chance). Personal values belong in
/// [`request`].
pub fn bulk_request(url: &str, body: impl Into<Bytes>) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", "application/json")
        .body(full_body(body.into()))
        .unwrap()
}

/// Sends and reads the whole response (panics on a transport error).
pub async fn send(client: &HttpClient, req: Request<Body>) -> Resp {
    try_send(client, req)
        .await
        .unwrap_or_else(|e| panic!("request failed: {e:?}"))
}

/// Sends and reads the whole response.
pub async fn try_send<C>(client: &Client<C, Body>, req: Request<Body>) -> Result<Resp, BoxError>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| -> BoxError { "client timeout".into() })??;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .map_err(|_| -> BoxError { "client body timeout".into() })??
        .to_bytes();
    if parts.status.as_u16() >= 400 {
        leaks::audit().record_error_body(&body);
    }
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

// ---------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------

/// Options of the scrim.toml the tests write.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Lines for `[limits]`.
    pub limits: String,
    /// Lines for `[listen]` (besides the address).
    pub listen: String,
    /// `[upstream] response_timeout_ms`.
    pub response_timeout_ms: u64,
    /// `[rules] watch`.
    pub watch: bool,
    /// Lines for `[aggregate]` (besides `dir`, a directory of the test's
    /// own).
    pub aggregate: String,
    /// Lines for `[suppress]` (besides `dir`, the test's own `suppress/`).
    pub suppress: String,
    /// The key ring's secret, hex (default: a random one), for gateways
    /// that must share their keys.
    pub secret_hex: Option<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            limits: String::new(),
            listen: String::new(),
            response_timeout_ms: 3000,
            watch: false,
            aggregate: String::new(),
            suppress: String::new(),
            secret_hex: None,
        }
    }
}

/// scrim running in-process with a temp rules dir and key ring.
pub struct Gateway {
    pub running: Running,
    pub dir: TempDir,
    pub rules_dir: PathBuf,
    pub keys_file: PathBuf,
    /// The hex secret of the key ring (to check it never shows).
    pub secret_hex: String,
    /// Runs the leak audit when the gateway goes away.
    pub audit: leaks::AuditOnDrop,
}

/// Converts a path to a TOML basic string.
pub fn toml_path(p: &Path) -> String {
    let s = p.to_str().expect("utf-8 path");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Gateway {
    /// Starts scrim with these rule files (`name.toml`, contents).
    pub async fn start(rules: &[(&str, &str)], opts: Opts) -> Gateway {
        leaks::audit();
        let dir = TempDir::new("gw");
        let rules_dir = dir.join("rules");
        std::fs::create_dir_all(&rules_dir).unwrap();
        for (name, text) in rules {
            write_atomic(&rules_dir.join(name), text.as_bytes());
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).unwrap();
        let secret_hex: String = opts
            .secret_hex
            .clone()
            .unwrap_or_else(|| secret.iter().map(|b| format!("{b:02x}")).collect());
        let keys_file = dir.write(
            "keys.toml",
            format!("active = \"k1\"\n\n[keys]\nk1 = \"hex:{secret_hex}\"\n"),
        );
        let config = format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n{listen}\n\
             [admin]\naddress = \"127.0.0.1:0\"\n\n\
             [rules]\ndir = {rules}\nwatch = {watch}\n\n\
             [keys]\nfile = {keys}\nallow_ephemeral = false\n\n\
             [limits]\n{limits}\n\n\
             [upstream]\nconnect_timeout_ms = 1000\nresponse_timeout_ms = {rt}\npool_idle_timeout_ms = 2000\n\n\
             [aggregate]\ndir = {spool}\n{aggregate}\n\n\
             [suppress]\ndir = {lists}\npoll_interval_ms = 200\n{suppress}\n",
            lists = toml_path(&dir.join("suppress")),
            suppress = opts.suppress,
            spool = toml_path(&dir.join("spool")),
            aggregate = opts.aggregate,
            listen = opts.listen,
            rules = toml_path(&rules_dir),
            watch = opts.watch,
            keys = toml_path(&keys_file),
            limits = {
                // Short defaults, unless the test sets them.
                let mut l = opts.limits.clone();
                for (k, v) in [
                    ("header_read_timeout_ms", "3000"),
                    ("body_idle_timeout_ms", "3000"),
                    ("shutdown_grace_ms", "5000"),
                ] {
                    if !l.contains(k) {
                        l.push_str(&format!("\n{k} = {v}"));
                    }
                }
                l
            },
            rt = opts.response_timeout_ms,
        );
        let config = Config::parse(&config, "scrim-test.toml")
            .unwrap_or_else(|e| panic!("test config: {e}\n{config}"));
        let running = scrim::proxy::start(config)
            .await
            .unwrap_or_else(|e| panic!("scrim did not start: {e}"));
        let audit = leaks::AuditOnDrop {
            state: running.state.clone(),
            secret_hex: secret_hex.clone(),
        };
        Gateway {
            running,
            dir,
            rules_dir,
            keys_file,
            secret_hex,
            audit,
        }
    }

    /// `http://127.0.0.1:PORT{path}` on the service listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.addr)
    }

    /// `http://127.0.0.1:PORT{path}` on the admin listener.
    pub fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.admin_addr)
    }

    /// The pseudonym scrim should produce for `value` for `recipient`.
    pub fn pseudonym(&self, recipient: &str, value: &str) -> String {
        scrim::pseudonym::KeyRing::load(&self.keys_file)
            .expect("key ring")
            .scoped(recipient)
            .pseudonymise(value.as_bytes(), 128)
    }

    /// Rewrites a rule file atomically.
    pub fn write_rule(&self, name: &str, text: &str) {
        write_atomic(&self.rules_dir.join(name), text.as_bytes());
    }

    /// GET on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Resp {
        send(
            &client(),
            request("GET", &self.admin(path), &[], Bytes::new()),
        )
        .await
    }
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A CA and a leaf it signed, as PEM.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generates a CA and a leaf for `names` (DNS names or IPs), for server or
/// client authentication.
pub fn pki(ca_name: &str, names: &[&str], client_auth: bool) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ca_name);
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut leaf =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0]);
    leaf.distinguished_name = dn;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![if client_auth {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

pub fn certs_of(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

pub fn key_of(pem: &str) -> rustls::pki_types::PrivateKeyDer<'static> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .unwrap()
        .expect("a private key")
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server config (no client auth) for an upstream.
pub fn server_tls(p: &Pki) -> Arc<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs_of(&p.cert_pem), key_of(&p.key_pem))
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Reads a body to the end.
pub async fn collect(b: Incoming) -> Bytes {
    b.collect().await.unwrap().to_bytes()
}
