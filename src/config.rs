//! The server configuration, `scrim.toml`: raw TOML in, validated type out.
//!
//! Every option has a safe default (documented in docs/operations.md and on
//! each field); an unknown key is an error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::policy::PolicyError;

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{file}:{line}:{col}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        message: String,
    },
}

/// scrim's server configuration, `scrim.toml`. Every option has a safe
/// default; relative paths are relative to this file. Reference:
/// docs/operations.md.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "scrim server configuration")]
pub(crate) struct RawConfig {
    /// The service-side listener, where services send partner-bound requests
    /// (`/{recipient}/{path}`).
    #[serde(default)]
    listen: RawListen,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`, `/rules`,
    /// `/captured`.
    #[serde(default)]
    admin: RawAdmin,
    /// Where the rule files are.
    #[serde(default)]
    rules: RawRules,
    /// The key ring for pseudonyms.
    #[serde(default)]
    keys: RawKeys,
    /// Request limits.
    #[serde(default)]
    limits: RawLimits,
    /// The client that talks to partners.
    #[serde(default)]
    upstream: RawUpstream,
    /// Log output.
    #[serde(default)]
    log: RawLog,
    /// Aggregate-only recipients: the store of windows and unsent reports.
    #[serde(default)]
    aggregate: crate::aggregate::config::RawAggregateConfig,
    /// Suppression lists (`[suppress] lists` of rule files): where they
    /// are kept.
    #[serde(default)]
    suppress: RawSuppressConfig,
}

/// `[suppress]`: where the suppression lists named by rule files live.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SuppressStore")]
struct RawSuppressConfig {
    /// Directory of list files (`NAME.list`), created by the first `scrim
    /// suppress add` (default `suppress`). Watched whatever `rules.watch`
    /// says.
    dir: Option<PathBuf>,
    /// Lists in Redis, shared by every replica, `redis://host:port[/db]`
    /// (default: none, the files in `dir`). A replica that never loaded
    /// the lists is not ready and refuses the traffic of recipients that
    /// use them.
    store: Option<String>,
    /// How often lists are checked for additions, in milliseconds
    /// (default 500; 50 to 1000, so an addition applies within 2 s).
    #[schemars(range(min = 50, max = 1000))]
    poll_interval_ms: Option<u64>,
}

/// `[listen]`: the service-side listener (HTTP/1.1 and h2c; with TLS, ALPN
/// h2 and http/1.1).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Listen")]
struct RawListen {
    /// `IP:port` to listen on (default `127.0.0.1:8080`).
    address: Option<String>,
    /// PEM certificate chain: serve TLS (needs `tls_key`).
    tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    tls_key: Option<PathBuf>,
    /// PEM CA bundle: require client certificates it signs (mTLS; needs
    /// `tls_cert` and `tls_key`).
    client_ca: Option<PathBuf>,
    /// Service workers: each is one thread with its own event loop, its own
    /// listening socket on `address` (the kernel spreads connections over
    /// them, `SO_REUSEPORT`) and its own connection pool to partners, so a
    /// request never hops between threads. Default 0: one per CPU core.
    workers: Option<usize>,
}

/// `[admin]`: the admin listener.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Admin")]
struct RawAdmin {
    /// `IP:port` of the admin listener (default `127.0.0.1:9090`); keep it on
    /// loopback.
    address: Option<String>,
    /// Requests kept by the `capture:` upstream for `/captured` (default 100).
    captured_max: Option<usize>,
}

/// `[rules]`: the rule files.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rules")]
struct RawRules {
    /// Directory of `*.toml` rule files (default `rules`).
    dir: Option<PathBuf>,
    /// Reload when the directory changes (default `true`).
    watch: Option<bool>,
}

/// `[keys]`: the key ring.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Keys")]
struct RawKeys {
    /// Key ring file (default: `$SCRIM_KEYS_FILE`, else none).
    file: Option<PathBuf>,
    /// With no key ring, start with a random key and a loud warning (default
    /// `true`): pseudonyms then change on every restart. Set `false` in
    /// production.
    allow_ephemeral: Option<bool>,
}

/// `[limits]`: request limits.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Limits")]
struct RawLimits {
    /// Body bytes after decoding (default 10485760, 10 MiB); 413 beyond.
    #[schemars(range(min = 1))]
    body_bytes: Option<u64>,
    /// Bodies up to this size (after decoding) are rewritten completely
    /// before anything is sent; larger bodies stream, and an error found
    /// later aborts the partly sent request. Default: `body_bytes`, so
    /// nothing streams and every refusal forwards nothing.
    stream_threshold_bytes: Option<u64>,
    /// Rewritten body bytes held, across all requests, while they wait to be
    /// sent whole (default 268435456, 256 MiB, or one whole body if that is
    /// more). A request that would go over is shed with 503; nothing of it
    /// is forwarded. At least `min(body_bytes, stream_threshold_bytes)`.
    #[schemars(range(min = 1))]
    buffer_bytes: Option<u64>,
    /// Request header section bytes, at least 1024 (default 32768); 431
    /// beyond.
    #[schemars(range(min = 1024))]
    header_bytes: Option<usize>,
    /// Request header count (default 100); 431 beyond.
    #[schemars(range(min = 1))]
    header_count: Option<usize>,
    /// Time to receive the request head and TLS handshake, in milliseconds
    /// (default 10000).
    header_read_timeout_ms: Option<u64>,
    /// Longest wait for the next body chunk, in milliseconds (default 15000);
    /// 408 beyond.
    body_idle_timeout_ms: Option<u64>,
    /// Minimum average body data rate, in bytes per second, after
    /// `body_min_rate_grace_ms` (default 240, as Kestrel; 0 turns it off);
    /// 408 below it, so a trickling client cannot hold a slot.
    body_min_rate_bytes_per_s: Option<u64>,
    /// Time before the minimum body data rate applies, in milliseconds
    /// (default 5000).
    body_min_rate_grace_ms: Option<u64>,
    /// Time to receive the whole request, head to last body byte, in
    /// milliseconds (default 60000; 0 turns it off); 408 beyond.
    request_deadline_ms: Option<u64>,
    /// Requests in flight (default 1024); 503 beyond, shed immediately.
    #[schemars(range(min = 1))]
    concurrency: Option<usize>,
    /// HTTP/2 concurrent streams per connection (default 100).
    h2_max_concurrent_streams: Option<u32>,
    /// Drain time on SIGTERM, in milliseconds (default 30000).
    shutdown_grace_ms: Option<u64>,
}

/// `[upstream]`: the client that talks to partners.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Upstream")]
struct RawUpstream {
    /// TCP and TLS connect timeout, in milliseconds (default 5000); 502
    /// beyond.
    connect_timeout_ms: Option<u64>,
    /// Time to the partner's response head, in milliseconds (default 15000);
    /// 504 beyond.
    response_timeout_ms: Option<u64>,
    /// Idle pooled connections close after this, in milliseconds (default
    /// 90000).
    pool_idle_timeout_ms: Option<u64>,
    /// Idle connections kept per partner host (default 64).
    pool_max_idle_per_host: Option<usize>,
    /// Root certificates that verify partners (default `webpki`).
    #[schemars(with = "Option<RootsName>")]
    roots: Option<String>,
    /// An extra PEM CA bundle trusted for every partner (a rule file can add
    /// its own `ca_file`).
    extra_ca_file: Option<PathBuf>,
}

/// Root certificate set.
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)] // describes the strings `Config::from_raw` accepts
enum RootsName {
    /// The Mozilla root set compiled in.
    Webpki,
    /// The operating system's store.
    System,
}

/// `[log]`: log output.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Log")]
struct RawLog {
    /// Line format (default `text`; `--log-format` overrides).
    #[schemars(with = "Option<LogFormatName>")]
    format: Option<String>,
    /// Tracing filter, e.g. `info` or `scrim=debug` (default `info`;
    /// `RUST_LOG` overrides).
    level: Option<String>,
}

/// Log line format.
#[derive(JsonSchema)]
#[schemars(rename_all = "snake_case")]
#[allow(dead_code)] // describes the strings `Config::from_raw` accepts
enum LogFormatName {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Service-side TLS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle: when set, clients must present a certificate it signs (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// Which roots verify partner certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// The Mozilla root set compiled in (webpki-roots). Default.
    Webpki,
    /// The operating system's store.
    System,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Service listener (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Service workers (`listen.workers`); 0: one per CPU core.
    pub workers: usize,
    /// Service-side TLS (default: none, plain HTTP/1.1 and h2c).
    pub tls: Option<TlsConfig>,
    /// Admin listener (default `127.0.0.1:9090`, loopback).
    pub admin: SocketAddr,
    /// Captured requests kept for `/captured` (default 100).
    pub captured_max: usize,
    /// Rules directory (default `rules`).
    pub rules_dir: PathBuf,
    /// Reload when the rules directory changes (default true).
    pub watch_rules: bool,
    /// Key ring file (default: `$SCRIM_KEYS_FILE`, else none).
    pub keys_file: Option<PathBuf>,
    /// Start with a random key when no key ring is configured (default true,
    /// with a loud warning). Set false in production.
    pub allow_ephemeral_key: bool,
    /// Limits.
    pub limits: Limits,
    /// Upstream client settings.
    pub upstream: UpstreamConfig,
    /// Log format (default text; `--log-format` overrides).
    pub log_format: LogFormat,
    /// Log filter (default `info`; `RUST_LOG` overrides).
    pub log_level: String,
    /// Aggregate windows and reports.
    pub aggregate: crate::aggregate::config::AggregateConfig,
    /// Start even when the rules directory holds no rule file (`scrim serve
    /// --allow-no-rules`; not a file option). Default false: a gateway with
    /// no recipient is almost always a forgotten mount or a wrong
    /// `rules.dir`, so it refuses to start.
    pub allow_no_rules: bool,
    /// `[suppress]`: where suppression lists live.
    pub suppress: crate::consent::source::SuppressConfig,
}

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Body bytes after decoding (default 10 MiB; 413 beyond).
    pub body_bytes: u64,
    /// Bodies up to this size are rewritten completely before anything is
    /// sent (default: `body_bytes`, so nothing streams); larger ones stream.
    pub stream_threshold_bytes: u64,
    /// Rewritten bytes held across all requests before sending (default
    /// 256 MiB); a request that would go over is shed with 503.
    pub buffer_bytes: u64,
    /// Request header bytes in all (default 32 KiB; 431 beyond).
    pub header_bytes: usize,
    /// Request header count (default 100; 431 beyond).
    pub header_count: usize,
    /// Time to receive the request head (default 10 s).
    pub header_read_timeout: Duration,
    /// Longest wait for the next body chunk (default 15 s).
    pub body_idle_timeout: Duration,
    /// Minimum average body data rate after the grace time, in bytes per
    /// second (default 240; 0: off).
    pub body_min_rate: u64,
    /// Time before the minimum body data rate applies (default 5 s).
    pub body_min_rate_grace: Duration,
    /// Time to receive the whole request (default 60 s; `None`: off).
    pub request_deadline: Option<Duration>,
    /// Requests in flight before shedding with 503 (default 1024).
    pub concurrency: usize,
    /// HTTP/2 concurrent streams per connection (default 100).
    pub h2_max_concurrent_streams: u32,
    /// Drain time on shutdown (default 30 s).
    pub shutdown_grace: Duration,
}

/// Upstream client settings.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// TCP + TLS connect timeout (default 5 s; 502 beyond).
    pub connect_timeout: Duration,
    /// Time to the response head (default 15 s; 504 beyond).
    pub response_timeout: Duration,
    /// Idle pooled connections close after (default 90 s).
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per partner host (default 64).
    pub pool_max_idle_per_host: usize,
    /// Root certificates (default webpki).
    pub roots: Roots,
    /// An extra CA bundle trusted for every partner.
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_raw(RawConfig::default(), "<defaults>", "").unwrap_or_else(|_| unreachable!())
    }
}

impl Config {
    /// Loads `scrim.toml`; relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.display().to_string(),
            source,
        })?;
        let mut c = Config::parse(&text, &path.display().to_string())?;
        c.resolve_paths(path.parent().unwrap_or(Path::new("")));
        Ok(c)
    }

    /// Makes the relative paths of the configuration relative to `base`,
    /// the configuration file's folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        let rel = |p: &mut PathBuf| {
            if p.is_relative() && !base.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        rel(&mut self.rules_dir);
        rel(&mut self.aggregate.dir);
        rel(&mut self.suppress.dir);
        if let Some(k) = self.keys_file.as_mut() {
            rel(k);
        }
        if let Some(t) = self.tls.as_mut() {
            rel(&mut t.cert);
            rel(&mut t.key);
            if let Some(ca) = t.client_ca.as_mut() {
                rel(ca);
            }
        }
        if let Some(ca) = self.upstream.extra_ca_file.as_mut() {
            rel(ca);
        }
    }

    /// Parses configuration text; on problems, the first (see
    /// [`Config::check_str`] for all of them).
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        match Config::check_str(text, file) {
            (Some(c), problems) if problems.is_empty() => Ok(c),
            (_, problems) => Err(problems.into_iter().next().map_or_else(
                || invalid_at(file, 0, 0, "invalid".into()),
                ConfigError::from,
            )),
        }
    }

    /// Checks configuration text and gives every problem, located (in file
    /// order for unknown keys and wrong types, then the settings' values),
    /// with the configuration as read around them when it could be read:
    /// defaults stand in for the faulty settings. Relative paths are left as
    /// written ([`Config::resolve_paths`]).
    pub fn check_str(text: &str, file: &str) -> (Option<Config>, Vec<PolicyError>) {
        let (raw, shape) = crate::policy::shape::deserialize_all::<RawConfig>(text);
        let mut problems: Vec<PolicyError> = shape
            .into_iter()
            .map(|p| {
                match p.span {
                    Some(span) => PolicyError::at(CONFIG_SYNTAX, file, text, span, p.message),
                    None => PolicyError::whole_file(CONFIG_SYNTAX, file, p.message),
                }
                .with_help_opt(p.help)
            })
            .collect();
        let Some(raw) = raw else {
            return (None, problems);
        };
        let doc = toml::de::DeTable::parse(text).ok();
        let mut bad = Vec::new();
        let config = Config::build(raw, &mut bad);
        for (path, message) in bad {
            let span = doc
                .as_ref()
                .and_then(|d| setting_span(d.get_ref(), &path, &message));
            problems.push(match span {
                Some(span) => PolicyError::at(CONFIG_VALUE, file, text, span, message),
                None => PolicyError::whole_file(CONFIG_VALUE, file, message),
            });
        }
        (Some(config), problems)
    }

    fn from_raw(raw: RawConfig, file: &str, _text: &str) -> Result<Config, ConfigError> {
        let mut bad = Vec::new();
        let config = Config::build(raw, &mut bad);
        match bad.into_iter().next() {
            None => Ok(config),
            Some((_, message)) => Err(invalid_at(file, 0, 0, message)),
        }
    }

    /// Validates the settings; each problem is recorded in `bad` with the
    /// setting it is about (a dotted path, or empty when the message names
    /// it), and the setting's default stands in for it.
    fn build(raw: RawConfig, bad: &mut Vec<(String, String)>) -> Config {
        let mut invalid = |path: &str, message: String| bad.push((path.to_string(), message));
        let mut addr = |s: Option<String>, default: &str, what: &str| -> SocketAddr {
            let text = s.unwrap_or_else(|| default.to_string());
            text.parse().unwrap_or_else(|_| {
                invalid(
                    what,
                    format!("{what}: \"{text}\" is not an IP:port address"),
                );
                default.parse().unwrap_or_else(|_| unreachable!())
            })
        };
        let listen = addr(raw.listen.address, "127.0.0.1:8080", "listen.address");
        let admin = addr(raw.admin.address, "127.0.0.1:9090", "admin.address");
        let tls = match (raw.listen.tls_cert, raw.listen.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert,
                key,
                client_ca: raw.listen.client_ca,
            }),
            (None, None) => {
                if raw.listen.client_ca.is_some() {
                    invalid(
                        "listen.client_ca",
                        "listen.client_ca needs listen.tls_cert and listen.tls_key".into(),
                    );
                }
                None
            }
            (cert, _) => {
                let given = if cert.is_some() {
                    "listen.tls_cert"
                } else {
                    "listen.tls_key"
                };
                invalid(
                    given,
                    "listen.tls_cert and listen.tls_key go together".into(),
                );
                None
            }
        };
        let ms = Duration::from_millis;
        let l = raw.limits;
        let mut positive = |v: Option<u64>, default: u64, what: &str| match v {
            Some(0) => {
                invalid(what, format!("{what} must be greater than zero"));
                default
            }
            v => v.unwrap_or(default),
        };
        let body_bytes = positive(l.body_bytes, 10 * 1024 * 1024, "limits.body_bytes");
        let concurrency = positive(l.concurrency.map(|c| c as u64), 1024, "limits.concurrency");
        let header_count = positive(l.header_count.map(|c| c as u64), 100, "limits.header_count");
        let stream_threshold_bytes = l.stream_threshold_bytes.unwrap_or(body_bytes);
        let one_body = body_bytes.min(stream_threshold_bytes);
        let mut limits = Limits {
            body_bytes,
            stream_threshold_bytes,
            buffer_bytes: l
                .buffer_bytes
                .unwrap_or_else(|| one_body.max(256 * 1024 * 1024)),
            header_bytes: l.header_bytes.unwrap_or(32 * 1024),
            header_count: usize::try_from(header_count).unwrap_or(100),
            header_read_timeout: ms(l.header_read_timeout_ms.unwrap_or(10_000)),
            body_idle_timeout: ms(l.body_idle_timeout_ms.unwrap_or(15_000)),
            body_min_rate: l.body_min_rate_bytes_per_s.unwrap_or(240),
            body_min_rate_grace: ms(l.body_min_rate_grace_ms.unwrap_or(5_000)),
            request_deadline: match l.request_deadline_ms.unwrap_or(60_000) {
                0 => None,
                d => Some(ms(d)),
            },
            concurrency: usize::try_from(concurrency).unwrap_or(1024),
            h2_max_concurrent_streams: l.h2_max_concurrent_streams.unwrap_or(100),
            shutdown_grace: ms(l.shutdown_grace_ms.unwrap_or(30_000)),
        };
        if limits.buffer_bytes < one_body {
            invalid(
                "limits.buffer_bytes",
                format!(
                    "limits.buffer_bytes ({}) must hold one whole buffered body: at least {one_body} \
                     (the smaller of limits.body_bytes and limits.stream_threshold_bytes)",
                    limits.buffer_bytes
                ),
            );
            limits.buffer_bytes = one_body;
        }
        if limits.header_bytes < 1024 {
            invalid(
                "limits.header_bytes",
                "limits.header_bytes must be at least 1024".into(),
            );
            limits.header_bytes = 1024;
        }
        let u = raw.upstream;
        let roots = match u.roots.as_deref() {
            None | Some("webpki") => Roots::Webpki,
            Some("system") => Roots::System,
            Some(other) => {
                invalid(
                    "upstream.roots",
                    format!("upstream.roots: \"{other}\" is not one of \"webpki\", \"system\""),
                );
                Roots::Webpki
            }
        };
        let upstream = UpstreamConfig {
            connect_timeout: ms(u.connect_timeout_ms.unwrap_or(5_000)),
            response_timeout: ms(u.response_timeout_ms.unwrap_or(15_000)),
            pool_idle_timeout: ms(u.pool_idle_timeout_ms.unwrap_or(90_000)),
            pool_max_idle_per_host: u.pool_max_idle_per_host.unwrap_or(64),
            roots,
            extra_ca_file: u.extra_ca_file,
        };
        let log_format = match raw.log.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                invalid(
                    "log.format",
                    format!("log.format: \"{other}\" is not one of \"text\", \"json\""),
                );
                LogFormat::Text
            }
        };
        let aggregate = crate::aggregate::config::AggregateConfig::from_raw(raw.aggregate)
            .unwrap_or_else(|message| {
                // The message names the option.
                invalid("", message);
                crate::aggregate::config::AggregateConfig::default()
            });
        let mut poll = raw.suppress.poll_interval_ms.unwrap_or(500);
        if !(50..=1000).contains(&poll) {
            invalid(
                "suppress.poll_interval_ms",
                "suppress.poll_interval_ms must be between 50 and 1000".into(),
            );
            poll = 500;
        }
        if let Some(url) = &raw.suppress.store
            && !url.starts_with("redis://")
        {
            invalid(
                "suppress.store",
                "suppress.store must be a redis:// URL".into(),
            );
        }
        let suppress = crate::consent::source::SuppressConfig {
            dir: raw
                .suppress
                .dir
                .unwrap_or_else(|| PathBuf::from("suppress")),
            store: raw.suppress.store,
            poll_interval: Duration::from_millis(poll),
        };
        Config {
            aggregate,
            suppress,
            listen,
            workers: raw.listen.workers.unwrap_or(0),
            tls,
            admin,
            captured_max: raw.admin.captured_max.unwrap_or(100),
            rules_dir: raw.rules.dir.unwrap_or_else(|| PathBuf::from("rules")),
            watch_rules: raw.rules.watch.unwrap_or(true),
            keys_file: raw
                .keys
                .file
                .or_else(|| std::env::var_os("SCRIM_KEYS_FILE").map(PathBuf::from)),
            allow_ephemeral_key: raw.keys.allow_ephemeral.unwrap_or(true),
            limits,
            upstream,
            log_format,
            log_level: raw.log.level.unwrap_or_else(|| "info".into()),
            allow_no_rules: false,
        }
    }
}

fn invalid_at(file: &str, line: usize, col: usize, message: String) -> ConfigError {
    ConfigError::Invalid {
        file: file.into(),
        line,
        col,
        message,
    }
}

impl From<PolicyError> for ConfigError {
    fn from(e: PolicyError) -> ConfigError {
        let message = match &e.help {
            Some(help) => format!("{} (help: {help})", e.message),
            None => e.message.clone(),
        };
        invalid_at(&e.file, e.line, e.col, message)
    }
}

/// `scrim.toml` problems (`scrim check --config`), beside the rule files'
/// `E...` codes: unknown keys, values of the wrong type and TOML syntax.
pub const CONFIG_SYNTAX: &str = "C001";
/// A setting's value (an address, a limit, a choice).
pub const CONFIG_VALUE: &str = "C002";
/// The rules directory.
pub const CONFIG_RULES: &str = "C003";
/// The key ring.
pub const CONFIG_KEYS: &str = "C004";
/// TLS certificate, key and CA files.
pub const CONFIG_TLS: &str = "C005";

/// Where a setting is written: the value at the dotted `path`, else the
/// first dotted name in `message` that is written in the file, else its
/// section's header.
pub(crate) fn setting_span(
    doc: &toml::de::DeTable<'_>,
    path: &str,
    message: &str,
) -> Option<std::ops::Range<usize>> {
    let lookup = |path: &str| {
        let mut table = doc;
        let mut found = None;
        for (i, part) in path.split('.').enumerate() {
            let (k, v) = table.get_key_value(part)?;
            found = Some(if v.span().is_empty() {
                k.span()
            } else {
                v.span()
            });
            match v.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                _ if i + 1 < path.split('.').count() => return None,
                _ => {}
            }
            // A section's own span is its header's key.
            if matches!(v.get_ref(), toml::de::DeValue::Table(_)) {
                found = Some(k.span());
            }
        }
        found
    };
    if !path.is_empty() {
        return lookup(path);
    }
    let words = message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|w| w.contains('.'));
    for w in words.clone() {
        if let Some(span) = lookup(w.trim_matches('.')) {
            return Some(span);
        }
    }
    words.filter_map(|w| w.split('.').next()).find_map(lookup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let c = Config::parse("", "scrim.toml").unwrap();
        assert!(c.admin.ip().is_loopback());
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.limits.body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.limits.header_count, 100);
        assert_eq!(c.upstream.roots, Roots::Webpki);
        // Nothing streams by default: a refusal forwards nothing.
        assert_eq!(c.limits.stream_threshold_bytes, c.limits.body_bytes);
        assert_eq!(c.limits.buffer_bytes, 256 * 1024 * 1024);
    }

    #[test]
    fn the_buffer_budget_holds_at_least_one_body() {
        let limits = |t: &str| Config::parse(&format!("[limits]\n{t}\n"), "s");
        // A larger body limit raises the default budget with it.
        let c = limits("body_bytes = 1073741824").unwrap();
        assert_eq!(c.limits.buffer_bytes, 1 << 30);
        // Streaming above 1 MiB: the budget only has to hold 1 MiB.
        let c = limits("stream_threshold_bytes = 1048576\nbuffer_bytes = 1048576").unwrap();
        assert_eq!(c.limits.stream_threshold_bytes, 1 << 20);
        let e = limits("buffer_bytes = 1048576").unwrap_err().to_string();
        assert!(e.contains("limits.buffer_bytes (1048576)"), "{e}");
        assert!(e.contains("at least 10485760"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_with_location() {
        let e = Config::parse("[limits]\nbody_byte = 1\n", "scrim.toml").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("scrim.toml:2:1:"), "{s}");
        assert!(s.contains("body_byte"), "{s}");
    }

    #[test]
    fn every_value_problem_is_placed_at_its_setting() {
        let text = "[listen]\naddress = \"nope\"\ntls_key = \"k.pem\"\n\n\
                    [limits]\nbody_bytes = 0\n\n\
                    [aggregate]\nflush_interval_ms = 5\n";
        let (config, problems) = Config::check_str(text, "scrim.toml");
        assert!(config.is_some(), "read, with defaults standing in");
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "scrim.toml:2:11: error[C002]: listen.address: \"nope\" is not an IP:port address",
                "scrim.toml:3:11: error[C002]: listen.tls_cert and listen.tls_key go together",
                "scrim.toml:6:14: error[C002]: limits.body_bytes must be greater than zero",
                "scrim.toml:9:21: error[C002]: aggregate.flush_interval_ms must be at least 10",
            ]
        );
        // `parse` gives the first, located.
        let e = Config::parse(text, "scrim.toml").unwrap_err().to_string();
        assert!(e.starts_with("scrim.toml:2:11: listen.address"), "{e}");
    }

    #[test]
    fn tls_options_go_together() {
        assert!(Config::parse("[listen]\ntls_cert = \"c.pem\"\n", "s").is_err());
        assert!(Config::parse("[listen]\nclient_ca = \"ca.pem\"\n", "s").is_err());
        assert!(Config::parse("[listen]\ntls_cert = \"c\"\ntls_key = \"k\"\n", "s").is_ok());
    }
}
