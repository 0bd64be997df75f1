//! The gateway: hyper server, routing, body decoding, upstream client,
//! limits, and the one error-to-status map.
//!
//! Imports run one way, `proxy` -> `ops`: the proxy records into `ops`'
//! metrics and audit events, keeps its routes in an [`ops::rules::RuleStore`]
//! (handing it the builder, [`RuleSet::build`]), and gives the admin
//! listener an [`ops::admin::AdminView`] of read-only handles. Nothing in
//! `ops` names a type of the proxy, so neither reload nor admin can reach
//! the request path, the upstream client or the key ring.
//!
//! [`ops::rules::RuleStore`]: crate::ops::rules::RuleStore
//! [`ops::admin::AdminView`]: crate::ops::admin::AdminView

pub mod aggregate;
pub mod body;
pub mod error;
pub mod handler;
pub mod headers;
pub mod routes;
pub mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, TlsConfig};
use crate::ops::admin::AdminView;
use crate::ops::logbuf;
use crate::ops::metrics::Metrics;
use crate::ops::rules::{RuleStore, RulesError};
use crate::pseudonym::{KeyError, KeyRing};
use routes::RuleSet;
use upstream::{CaptureLog, HttpClient, TlsError, build_client};

/// Boxed error of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request sent upstream and response sent back.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(b: Bytes) -> ProxyBody {
    Full::new(b)
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// Shared state of a running gateway.
pub struct State {
    /// Validated configuration.
    pub config: Config,
    /// Key ring.
    pub keys: Arc<KeyRing>,
    /// Current routes; swapped whole on reload.
    pub rules: Arc<RuleStore<RuleSet>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Shared upstream client.
    pub client: HttpClient,
    /// One upstream client (and so one connection pool) per service
    /// worker, so a request and its partner connection stay on one thread;
    /// see [`State::client`].
    worker_clients: Vec<HttpClient>,
    /// Capture upstream records.
    pub captured: CaptureLog,
    /// Concurrency cap.
    pub inflight: Arc<Semaphore>,
    /// Budget of rewritten bytes held before sending (`limits.buffer_bytes`),
    /// one permit a byte.
    pub buffered: Arc<Semaphore>,
    /// Rules loaded and listeners up.
    pub ready: Arc<AtomicBool>,
    /// The aggregate store (aggregate-only recipients).
    pub aggregates: aggregate::Aggregates,
    /// The suppression lists in force.
    pub suppression: Arc<crate::consent::source::Suppression>,
}

thread_local! {
    /// The index of the service worker running on this thread.
    static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

impl State {
    /// The upstream client for a request served on this thread: the
    /// worker's own (its pool's connections are driven by the same thread),
    /// or the shared one off the workers.
    pub fn client(&self) -> &HttpClient {
        WORKER
            .with(std::cell::Cell::get)
            .and_then(|i| self.worker_clients.get(i))
            .unwrap_or(&self.client)
    }
}

/// Why there is no key ring to serve with.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The configured key ring could not be loaded (or no random key made).
    #[error(transparent)]
    Ring(#[from] KeyError),
    /// None is configured and an ephemeral one is not allowed.
    #[error(
        "no key ring configured (keys.file or SCRIM_KEYS_FILE) and keys.allow_ephemeral = false"
    )]
    NotConfigured,
}

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Key ring problem.
    #[error("key ring: {0}")]
    Keys(#[from] KeysError),
    /// Rule files problem.
    #[error("rules: {0}")]
    Rules(#[from] RulesError),
    /// The rules directory does not exist.
    #[error(
        "rules: the rules directory {} does not exist: set rules.dir in the configuration \
         (--config) to the directory of the recipients' rule files, or mount them there",
        .0.display()
    )]
    RulesDirMissing(std::path::PathBuf),
    /// The rules directory holds no rule file, and `allow_no_rules` is off.
    #[error(
        "rules: no rule file (*.toml) in the rules directory {}: put the recipients' rule \
         files there or set rules.dir in the configuration (--config); to start with no \
         recipient anyway (every request refused until rule files appear), pass \
         --allow-no-rules",
        .0.display()
    )]
    NoRuleFiles(std::path::PathBuf),
    /// TLS setup problem.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// Could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running gateway (used by `scrim serve` and by tests).
pub struct Running {
    /// Service listener address.
    pub addr: SocketAddr,
    /// Admin listener address.
    pub admin_addr: SocketAddr,
    /// Shared state.
    pub state: Arc<State>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    admin_task: JoinHandle<()>,
}

impl Drop for Running {
    /// Dropping the handle stops the gateway (the workers run on threads of
    /// their own, which would otherwise serve on).
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.admin_task.abort();
    }
}

impl Running {
    /// Stops accepting, drains in-flight requests (up to the grace period).
    /// `/readyz` answers 503 from now on, so load balancers stop sending.
    pub fn shutdown(&self) {
        self.state.ready.store(false, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
    }

    /// Waits until the gateway has stopped.
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.admin_task.abort();
    }

    /// Reloads the rules now (as SIGHUP does).
    pub fn reload(&self) -> Result<usize, RulesError> {
        self.state.rules.reload()
    }
}

/// Loads the key ring as configured.
pub fn load_keys(config: &Config) -> Result<KeyRing, ServeError> {
    match &config.keys_file {
        Some(path) => Ok(KeyRing::load(path).map_err(KeysError::from)?),
        None if config.allow_ephemeral_key => {
            tracing::warn!(
                "NO KEY RING CONFIGURED: using a random ephemeral key. Pseudonyms will change on every restart and differ between replicas. Set keys.file or SCRIM_KEYS_FILE (create one with `scrim keygen --keys FILE`)."
            );
            Ok(KeyRing::ephemeral().map_err(KeysError::from)?)
        }
        None => Err(KeysError::NotConfigured.into()),
    }
}

/// Makes sure there are rules to serve: the rules directory exists and,
/// unless `config.allow_no_rules`, holds at least one rule file. A gateway
/// started without recipients is most often a forgotten mount or a wrong
/// `rules.dir`; it would answer 404 to everything while looking healthy.
pub fn check_rules_present(config: &Config) -> Result<(), ServeError> {
    let dir = &config.rules_dir;
    if !dir.exists() {
        return Err(ServeError::RulesDirMissing(dir.clone()));
    }
    let files = crate::policy::rule_files(std::slice::from_ref(dir))
        .map_err(|e| ServeError::Rules(RulesError::Invalid(vec![e])))?;
    if files.is_empty() && !config.allow_no_rules {
        return Err(ServeError::NoRuleFiles(dir.clone()));
    }
    Ok(())
}

/// Starts the gateway: keys, rules, listeners, reload watchers.
pub async fn start(config: Config) -> Result<Running, ServeError> {
    let keys = Arc::new(load_keys(&config)?);
    check_rules_present(&config)?;
    let metrics = Arc::new(Metrics::new());
    let client = build_client(&config.upstream, &[])?;
    let suppression = Arc::new(
        crate::consent::source::Suppression::new(config.suppress.clone())
            .map_err(|e| ServeError::Rules(RulesError::Lists(vec![e.to_string()])))?,
    );
    let rules = {
        let (keys, upstream, counted) = (keys.clone(), config.upstream.clone(), metrics.clone());
        let (lists, shared) = (suppression.clone(), config.suppress.store.is_some());
        let build = move |policies: &[Arc<crate::policy::CompiledPolicy>],
                          previous: Option<&RuleSet>| {
            // The lists the rules name are loaded, and checked against
            // them, before the rules go live.
            if policies.iter().any(|p| p.suppress.is_some()) {
                let mut errors = lists.refresh(policies, &keys);
                if shared {
                    // Redis: not ready until the lists load; the poller
                    // retries.
                    for e in &errors {
                        tracing::error!(error = %e, "suppression lists not loaded");
                    }
                    errors.clear();
                }
                errors.extend(lists.check(policies, &keys));
                if !errors.is_empty() {
                    return Err(RulesError::Lists(errors));
                }
            }
            RuleSet::build(policies, &keys, &upstream, &counted, previous)
        };
        Arc::new(RuleStore::open(
            &config.rules_dir,
            Box::new(build),
            metrics.clone(),
        )?)
    };
    let aggregate_rules = rules
        .load()
        .routes
        .values()
        .any(|r| r.engine.policy().aggregate.is_some());
    let tls = match &config.tls {
        Some(t) => Some(tls_acceptor(t)?),
        None => None,
    };
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    };
    let listeners = bind_service(config.listen, workers).map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let worker_clients = (0..listeners.len())
        .map(|_| build_client(&config.upstream, &[]))
        .collect::<Result<Vec<_>, _>>()?;
    let admin_listener =
        TcpListener::bind(config.admin)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.admin,
                source,
            })?;
    let addr = listeners[0]
        .local_addr()
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| ServeError::Bind {
            addr: config.admin,
            source,
        })?;
    let state = Arc::new(State {
        inflight: Arc::new(Semaphore::new(config.limits.concurrency)),
        buffered: Arc::new(Semaphore::new(
            usize::try_from(config.limits.buffer_bytes)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS),
        )),
        captured: CaptureLog::new(config.captured_max),
        aggregates: aggregate::Aggregates::new(config.aggregate.clone()),
        suppression,
        config,
        keys,
        rules,
        metrics,
        client,
        worker_clients,
        ready: Arc::new(AtomicBool::new(false)),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    crate::ops::reload::spawn_watchers(
        state.rules.clone(),
        state.config.watch_rules,
        shutdown_rx.clone(),
    );
    if aggregate_rules && let Err(e) = state.aggregates.store() {
        // Requests for aggregate recipients get 503 until it opens.
        tracing::error!(error = %e, "aggregate store cannot be opened");
    }
    aggregate::spawn_flusher(state.clone(), shutdown_rx.clone());
    spawn_list_poller(state.clone(), shutdown_rx.clone());
    let admin_task = tokio::spawn(crate::ops::admin::serve(
        Arc::new(admin_view(&state)),
        admin_listener,
    ));
    let mut threads = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let (state, tls, shutdown_rx) = (state.clone(), tls.clone(), shutdown_rx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("scrim-worker-{i}"))
            .spawn(move || worker(i, state, listener, tls, shutdown_rx))
            .map_err(|source| ServeError::Bind { addr, source })?;
        threads.push(thread);
    }
    // Done when every worker has drained and stopped.
    let task = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    });
    state.ready.store(true, Ordering::SeqCst);
    tracing::info!(%addr, %admin_addr, recipients = state.rules.load().routes.len(), "scrim listening");
    Ok(Running {
        addr,
        admin_addr,
        state,
        shutdown,
        task: Some(task),
        admin_task,
    })
}

/// The admin listener's view: read-only handles and two probes, never the
/// state itself.
pub fn admin_view(state: &Arc<State>) -> AdminView<RuleSet> {
    let (captured, windows, lists) = (state.clone(), state.clone(), state.clone());
    AdminView {
        metrics: state.metrics.clone(),
        rules: state.rules.clone(),
        ready: state.ready.clone(),
        key_id: state.keys.active_id().to_string(),
        captured: Box::new(move || {
            serde_json::to_value(captured.captured.snapshot()).unwrap_or_default()
        }),
        windows: Box::new(move || aggregate::open_and_unsent(&windows)),
        suppression: Box::new(move || lists.suppression.health()),
    }
}

/// The service listener's TLS: certificate chain, key and, for mTLS, the
/// client CA (also used by `scrim check --config` to prove they fit).
pub(crate) fn tls_acceptor(t: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let certs = upstream::read_pem_certs(&t.cert)?;
    let key_data = std::fs::read(&t.key).map_err(|source| TlsError::Read {
        path: t.key.clone(),
        source,
    })?;
    let key = rustls_pemfile::private_key(&mut key_data.as_slice())
        .map_err(|source| TlsError::Pem {
            path: t.key.clone(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: t.key.clone(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &t.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in upstream::read_pem_certs(ca)? {
                roots.add(c).map_err(|source| TlsError::UnusableCa {
                    path: ca.clone(),
                    source,
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Binds one listening socket per worker on `addr`, all with
/// `SO_REUSEPORT`, so the kernel spreads new connections over the workers.
/// A plain bind first makes sure no other process holds the port (with
/// `SO_REUSEPORT` alone, a second gateway started by mistake would silently
/// share it) and fixes the port when `addr` asks for any (port 0).
fn bind_service(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let addr = std::net::TcpListener::bind(addr)?.local_addr()?;
    (0..workers.max(1))
        .map(|_| {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            #[cfg(unix)]
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.set_tcp_nodelay(true)?;
            socket.bind(&addr.into())?;
            socket.listen(1024)?;
            Ok(socket.into())
        })
        .collect()
}

/// One service worker: a single-threaded runtime serving the connections
/// its own listener accepts, so a request and its upstream call stay on one
/// thread (no cross-thread wake-ups on the request path).
fn worker(
    index: usize,
    state: Arc<State>,
    listener: std::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a worker runtime");
            return;
        }
    };
    WORKER.with(|w| w.set(Some(index)));
    runtime.block_on(async move {
        // Audit lines leave in batches (see `ops::logbuf`), at the latest
        // after `FLUSH_EVERY`.
        logbuf::batch_this_thread();
        let flusher = tokio::spawn(async {
            let mut tick = tokio::time::interval(logbuf::FLUSH_EVERY);
            loop {
                tick.tick().await;
                logbuf::flush_this_thread();
            }
        });
        match TcpListener::from_std(listener) {
            Ok(listener) => accept_loop(state, listener, tls, shutdown).await,
            Err(e) => tracing::error!(error = %e, "cannot register a worker listener"),
        }
        flusher.abort();
    });
    logbuf::flush_this_thread();
}

fn connection_builder(state: &State) -> auto::Builder<TokioExecutor> {
    let limits = &state.config.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        // The header read timeout is only enforced with a timer.
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Headroom above the limits: the handler refuses with the JSON 431
        // body; hyper's own bare 431 only answers far beyond them.
        .max_headers(
            limits
                .header_count
                .saturating_mul(2)
                .max(limits.header_count + 32),
        )
        .max_buf_size(limits.header_bytes.saturating_mul(2).max(16 * 1024));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.header_bytes.saturating_mul(2) as u32);
    b
}

async fn accept_loop(
    state: Arc<State>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(connection_builder(&state));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let svc_state = state.clone();
        let service = hyper::service::service_fn(move |req| {
            let state = svc_state.clone();
            async move { Ok::<_, Infallible>(handler::handle(state, req).await) }
        });
        let builder = builder.clone();
        match &tls {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                // TLS handshakes share the header read budget.
                let timeout = state.config.limits.header_read_timeout;
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Ok(Ok(tls_stream)) =
                        tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let conn = builder
                        .serve_connection(TokioIo::new(tls_stream), service)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: no longer accepting, draining in-flight requests");
    let grace = state.config.limits.shutdown_grace;
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
    }
}

/// Polls the suppression lists the rules name, every `[suppress]
/// poll_interval_ms`, so an addition applies within 2 s (files: whatever
/// `rules.watch` says; Redis: the entries appended since the last poll).
fn spawn_list_poller(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.suppression.config().poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            let st = state.clone();
            let polled = tokio::task::spawn_blocking(move || {
                let policies = st.rules.load().policies();
                let errors = st.suppression.refresh(&policies, &st.keys);
                let h = st.suppression.health();
                st.metrics.suppression(
                    h.loaded,
                    h.store_up,
                    &st.suppression.lists().sizes(),
                    errors.len(),
                );
                errors
            })
            .await;
            match polled {
                Ok(errors) if errors.is_empty() => {
                    if failing {
                        tracing::info!("suppression lists polled again");
                    }
                    failing = false;
                }
                Ok(errors) => {
                    // Logged when it starts failing, not on every poll.
                    if !failing {
                        for e in &errors {
                            tracing::error!(error = %e, "suppression list not reloaded; serving the last good copy");
                        }
                    }
                    failing = true;
                }
                Err(_) => tracing::error!("suppression list poll failed internally"),
            }
        }
    });
}

/// `scrim serve`: runs until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let running = start(config).await?;
    wait_for_signal().await;
    running.shutdown();
    running.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
